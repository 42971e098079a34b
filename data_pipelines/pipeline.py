"""grain input pipelines: an endless, resumable train stream and an exact, padded eval pass.

Batch sizes in the config are global; each process builds its own slice of the data
and produces `global // process_count` examples per step.
"""

import math

import grain
import numpy as np

from data_pipelines import DataError, build_source
from data_pipelines.transforms import IGNORE_LABEL, EvalTransform, TrainAugment


def _process_layout(process_index=None, process_count=None):
    """Fills in jax's process index/count unless given (tests simulate several hosts)."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def _local_batch_size(global_batch_size, process_count, what):
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f"{what}={global_batch_size} must be a positive multiple of the process "
            f"count {process_count}; batch sizes in the config are global."
        )
    return global_batch_size // process_count


def _process_seed(seed, process_index):
    """Distinct per-process seed, so processes don't draw the same augmentations."""
    return int(np.random.SeedSequence([int(seed), int(process_index)]).generate_state(1)[0])


def dataset_info(config):
    """The DatasetInfo (classes, palette, ignore label) of the configured dataset."""
    from data_pipelines.metadata import get_info

    return get_info(config.dataset.name)


def train_dataset(source, config, process_index, process_count):
    """The per-process train pipeline over `source`, before iteration starts."""
    local_batch = _local_batch_size(config.global_batch_size, process_count, "global_batch_size")
    shard = grain.MapDataset.source(source)[process_index::process_count]
    if len(shard) == 0:
        raise DataError(f"{source!r} has no examples for process {process_index}/{process_count}")
    data = config.data
    augment = TrainAugment(
        crop_size=tuple(data.crop_size),
        scale_range=tuple(data.scale_range),
        hflip=bool(data.hflip),
        mean=tuple(data.mean),
        std=tuple(data.std),
        channel_order=data.channel_order,
    )
    ds = (
        shard.seed(_process_seed(config.seed, process_index))
        .shuffle()
        .repeat()
        .random_map(augment)
        .batch(local_batch, drop_remainder=True)
        .to_iter_dataset(
            grain.ReadOptions(
                num_threads=int(data.num_threads),
                prefetch_buffer_size=int(data.prefetch_buffer_size),
            )
        )
    )
    if data.num_workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(data.num_workers)))
    return ds


def make_train_iterator(config, process_index=None, process_count=None):
    """Endless shuffled, augmented batches `{'image': f32 (B,h,w,3), 'label': i32 (B,h,w)}`.

    The returned grain iterator has `get_state`/`set_state` (and works with
    `grain.checkpoint.CheckpointSave/Restore`), so a resumed run sees the same batches
    it would have seen without interruption. The state depends on `num_workers`.
    """
    process_index, process_count = _process_layout(process_index, process_count)
    source = build_source(config.dataset, config.dataset.train_split)
    return iter(train_dataset(source, config, process_index, process_count))


class _EvalShard:
    """This process's strided share of `source`, padded to `length` with masked examples.

    Padding reuses the shape of a real frame (label all ignore, image 0) so every
    process runs the same number of equally shaped batches.
    """

    def __init__(self, source, process_index, process_count, length):
        self._source = source
        self._indices = range(process_index, len(source), process_count)
        self._length = length
        self._padding = None

    def __len__(self):
        return self._length

    def __getitem__(self, i):
        if i < len(self._indices):
            example = self._source[self._indices[i]]
            return {"image": example["image"], "label": example["label"], "mask": True}
        if self._padding is None:
            template = self._source[self._indices[0] if self._indices else 0]
            self._padding = {
                "image": np.zeros_like(template["image"]),
                "label": np.full_like(template["label"], IGNORE_LABEL),
                "mask": False,
            }
        return self._padding


def _collate_padded(examples):
    """Stacks examples, padding smaller frames bottom/right with image 0 and label ignore."""
    height = max(e["label"].shape[0] for e in examples)
    width = max(e["label"].shape[1] for e in examples)
    batch = len(examples)
    images = np.zeros((batch, height, width, 3), np.float32)
    labels = np.full((batch, height, width), IGNORE_LABEL, np.int32)
    for b, e in enumerate(examples):
        h, w = e["label"].shape
        images[b, :h, :w] = e["image"]
        labels[b, :h, :w] = e["label"]
    return {
        "image": images,
        "label": labels,
        "mask": np.array([e["mask"] for e in examples], bool),
    }


def _eval_layout(num_examples, eval_batch_size, process_count):
    local_batch = _local_batch_size(eval_batch_size, process_count, "eval_batch_size")
    per_process = math.ceil(num_examples / process_count)
    return local_batch, math.ceil(per_process / local_batch)


def eval_dataset(source, config, process_index, process_count):
    """The per-process eval pipeline over `source`: one full, ordered pass."""
    local_batch, num_batches = _eval_layout(len(source), config.eval_batch_size, process_count)
    data = config.data
    transform = EvalTransform(
        mean=tuple(data.mean), std=tuple(data.std), channel_order=data.channel_order
    )

    def normalise(example):
        return {**transform(example), "mask": example["mask"]}

    shard = _EvalShard(source, process_index, process_count, num_batches * local_batch)
    return (
        grain.MapDataset.source(shard)
        .map(normalise)
        .batch(local_batch, drop_remainder=True, batch_fn=_collate_padded)
        .to_iter_dataset(
            grain.ReadOptions(
                num_threads=int(data.num_threads),
                prefetch_buffer_size=int(data.prefetch_buffer_size),
            )
        )
    )


def num_eval_batches(config, process_index=None, process_count=None):
    """Batches each process yields in one eval pass; identical on every process."""
    _, process_count = _process_layout(process_index, process_count)
    source = build_source(config.dataset, config.dataset.eval_split)
    return _eval_layout(len(source), config.eval_batch_size, process_count)[1]


def make_eval_iterator(config, process_index=None, process_count=None):
    """One pass over the eval split: `{'image', 'label', 'mask': bool (B,)}` batches.

    Process p takes examples p, p+P, p+2P, ...; all processes yield
    `num_eval_batches` batches and padded entries have `mask=False`, so summing
    masked statistics over all processes counts every image exactly once.
    """
    process_index, process_count = _process_layout(process_index, process_count)
    source = build_source(config.dataset, config.dataset.eval_split)
    return iter(eval_dataset(source, config, process_index, process_count))
