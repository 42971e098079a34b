"""grain input pipelines: an endless, resumable train stream and an exact, padded eval pass.

Batch sizes in the config are global; each process builds its own slice of the data
and produces `global // process_count` examples per step.
"""

import collections
import dataclasses
import math
import threading
from typing import Any

import grain
import numpy as np
from absl import logging

from data_pipelines import DataError, build_source
from data_pipelines.transforms import IGNORE_LABEL, EvalTransform, TrainAugment, mean_color


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


# --- Unreadable examples (config.data.skip_corrupt) --------------------------------------

MAX_CONSECUTIVE_SKIPS = 100
_skip_lock = threading.Lock()
_skipped = collections.Counter()


def skipped_examples(kind="train"):
    """Unreadable examples skipped so far in this process with `config.data.skip_corrupt`.

    'train' counts those replaced in the batches consumed so far (also when grain workers
    are separate processes), 'eval' those left out of every eval pass so far.
    """
    with _skip_lock:
        return _skipped[kind]


def _add_skipped(kind, count):
    with _skip_lock:
        _skipped[kind] += count


class SkipCorrupt:
    """Source wrapper: an example whose files raise DataError is replaced by the next
    readable one.

    The replacement depends only on the index, so shuffling, resuming and multi-process
    sharding stay deterministic. grain workers may be separate processes, so the number of
    examples each element replaced travels with it as `skipped` (see `_CountSkipped`).
    Each bad example is logged once per process.
    """

    def __init__(self, source):
        self._source = source
        self._logged = set()

    def __len__(self):
        return len(self._source)

    def __repr__(self):
        return f"SkipCorrupt({self._source!r})"

    def __getitem__(self, index):
        size = len(self._source)
        tries = min(size, MAX_CONSECUTIVE_SKIPS)
        first_error = None
        for attempt in range(tries):
            i = (index + attempt) % size
            try:
                example = self._source[i]
            except DataError as e:
                first_error = first_error or e
                if i not in self._logged:
                    self._logged.add(i)
                    logging.warning("Skipping unreadable example %d: %s", i, e)
                continue
            return {**example, "skipped": np.int32(attempt)}
        raise DataError(
            f"{tries} consecutive examples of {self._source!r} from index {index} are "
            "unreadable, so the dataset rather than a few files is broken (check "
            f"--config.dataset.root and the dataset format); first error: {first_error}"
        )


@dataclasses.dataclass(frozen=True)
class _KeepSkipped:
    """Carries `skipped` past an augmentation that returns only image and label."""

    augment: Any

    def __call__(self, example, rng):
        return {**self.augment(example, rng), "skipped": example["skipped"]}


class _CountSkipped:
    """Last stage of the train stream, in the trainer process: moves each batch's `skipped`
    into `skipped_examples('train')` and logs the count after every epoch's worth of
    examples (epochs of this process's shard, counted from the start of this run)."""

    def __init__(self, epoch_size):
        self._epoch_size = epoch_size
        self._seen = 0
        self._epoch = 0
        self._in_epoch = 0

    def __call__(self, batch):
        batch = dict(batch)
        skipped = int(np.sum(batch.pop("skipped")))
        _add_skipped("train", skipped)
        self._in_epoch += skipped
        self._seen += len(batch["label"])
        while self._seen >= self._epoch_size:
            self._seen -= self._epoch_size
            self._epoch += 1
            log = logging.warning if self._in_epoch else logging.info
            log("Input epoch %d of this run (%d examples): %d unreadable examples skipped "
                "(%d in total).", self._epoch, self._epoch_size, self._in_epoch,
                skipped_examples("train"))
            self._in_epoch = 0
        return batch


def dataset_info(config):
    """The DatasetInfo (classes, palette, ignore label) of the configured dataset."""
    from data_pipelines.metadata import get_info

    return get_info(config.dataset.name)


def train_dataset(source, config, process_index, process_count):
    """The per-process train pipeline over `source`, before iteration starts.

    One global stream (shuffle, augmentation seeds) is cut into blocks of `local_batch`
    examples; process p reads and augments only blocks p, p + P, ..., i.e. rows
    [p * local, (p + 1) * local) of every global batch. So the global batch of step s is
    the same for any process count (a 2-process pod trains like 1 process with the same
    devices), each process reads a disjoint 1/P of every epoch, and the iterator state (the
    step) means the same position under any process count.
    """
    local_batch = _local_batch_size(config.global_batch_size, process_count, "global_batch_size")
    data = config.data
    skip_corrupt = bool(data.get("skip_corrupt", False))
    examples = grain.MapDataset.source(SkipCorrupt(source) if skip_corrupt else source)
    if len(examples) == 0:
        raise DataError(f"{source!r} has no examples")
    augment = TrainAugment(
        crop_size=tuple(data.crop_size),
        scale_range=tuple(data.scale_range),
        hflip=bool(data.hflip),
        long_edge=int(data.get("resize_long_edge", 0)),
    )
    if skip_corrupt:
        augment = _KeepSkipped(augment)
    blocks = (
        examples.seed(_process_seed(config.seed, 0))  # process 0's seed: unchanged 1-process order
        .shuffle()
        .repeat()
        .random_map(augment)
        .batch(local_batch, drop_remainder=True)
    )
    if process_count > 1:
        blocks = blocks[process_index::process_count]
    ds = (
        blocks.to_iter_dataset(
            grain.ReadOptions(
                num_threads=int(data.num_threads),
                prefetch_buffer_size=int(data.prefetch_buffer_size),
            )
        )
    )
    if data.num_workers > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(data.num_workers)))
    if skip_corrupt:
        ds = ds.map(_CountSkipped(max(len(examples) // process_count, 1)))
    return ds


def make_train_iterator(config, process_index=None, process_count=None):
    """Endless shuffled, augmented batches `{'image': u8 (B,h,w,3) RGB, 'label': u8 (B,h,w)}`.

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
    process runs the same number of equally shaped batches. With `skip_corrupt`, an
    unreadable frame becomes such a masked entry, so it counts in no metric.
    """

    def __init__(self, source, process_index, process_count, length, skip_corrupt=False):
        self._source = source
        self._indices = range(process_index, len(source), process_count)
        self._length = length
        self._padding = None
        self._skip_corrupt = skip_corrupt

    def __len__(self):
        return self._length

    def __getitem__(self, i):
        if i < len(self._indices):
            try:
                example = self._source[self._indices[i]]
            except DataError as e:
                if not self._skip_corrupt:
                    raise
                _add_skipped("eval", 1)
                logging.warning("Leaving unreadable eval example %d out of the metrics: %s",
                                self._indices[i], e)
                return self._pad()
            return {"image": example["image"], "label": example["label"], "mask": True}
        return self._pad()

    def _pad(self):
        if self._padding is None:
            template = self._template()
            self._padding = {
                "image": np.zeros_like(template["image"]),
                "label": np.full_like(template["label"], IGNORE_LABEL),
                "mask": False,
            }
        return self._padding

    def _template(self):
        """A readable frame whose shape the padding copies."""
        if not self._skip_corrupt:
            return self._source[self._indices[0] if self._indices else 0]
        for index in [*self._indices, *range(len(self._source))]:
            try:
                return self._source[index]
            except DataError:
                continue
        raise DataError(f"No example of {self._source!r} is readable; check "
                        "--config.dataset.root and the dataset format.")


@dataclasses.dataclass(frozen=True)
class _CollatePadded:
    """Stacks examples, padding smaller frames bottom/right with `fill` (the mean colour,
    so padding normalises to 0) and label ignore."""

    fill: tuple = (0, 0, 0)

    def __call__(self, examples):
        height = max(e["label"].shape[0] for e in examples)
        width = max(e["label"].shape[1] for e in examples)
        batch = len(examples)
        images = np.empty((batch, height, width, 3), np.uint8)
        images[...] = np.asarray(self.fill, np.uint8)
        labels = np.full((batch, height, width), IGNORE_LABEL, np.uint8)
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
    transform = EvalTransform(long_edge=int(data.get("resize_long_edge", 0)))
    collate = _CollatePadded(tuple(int(v) for v in mean_color(data.mean, data.channel_order)))

    def prepare(example):
        return {**transform(example), "mask": example["mask"]}

    shard = _EvalShard(source, process_index, process_count, num_batches * local_batch,
                       skip_corrupt=bool(data.get("skip_corrupt", False)))
    return (
        grain.MapDataset.source(shard)
        .map(prepare)
        .batch(local_batch, drop_remainder=True, batch_fn=collate)
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
    """One pass over the eval split: `{'image': u8, 'label': u8, 'mask': bool (B,)}` batches.

    Process p takes examples p, p+P, p+2P, ...; all processes yield
    `num_eval_batches` batches and padded entries have `mask=False`, so summing
    masked statistics over all processes counts every image exactly once.
    """
    process_index, process_count = _process_layout(process_index, process_count)
    source = build_source(config.dataset, config.dataset.eval_split)
    return iter(eval_dataset(source, config, process_index, process_count))
