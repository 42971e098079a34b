"""Unreadable files: by default the run stops naming the file; with data.skip_corrupt the
example is skipped (train: replaced, eval: masked out of the metrics) and counted."""

import contextlib
import json
import logging
import os
import re

import cv2
import ml_collections
import numpy as np
import pytest

from configs import default as default_config
from data_pipelines import DataError, pipeline
from data_pipelines.camvid import CamVidSource

SIZE = (24, 32)


def _tree(root, num_train=6, num_val=3):
    """A SegNet-layout CamVid tree with small random frames."""
    rng = np.random.default_rng(0)
    for split, num in (("train", num_train), ("val", num_val)):
        os.makedirs(root / split)
        os.makedirs(root / f"{split}annot")
        lines = []
        for i in range(num):
            name = f"0001TP_{i:06d}.png"
            cv2.imwrite(str(root / split / name), rng.integers(0, 256, (*SIZE, 3), np.uint8))
            cv2.imwrite(str(root / f"{split}annot" / name), rng.integers(0, 12, SIZE, np.uint8))
            lines.append(f"{split}/{name} {split}annot/{name}\n")
        (root / f"{split}.txt").write_text("".join(lines))
    return root


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _config(root, skip_corrupt, **data):
    return ml_collections.ConfigDict({
        "seed": 0,
        "global_batch_size": 2,
        "eval_batch_size": 2,
        "dataset": {"name": "camvid", "root": str(root), "train_split": "train",
                    "eval_split": "val"},
        "data": {"crop_size": (16, 16), "scale_range": (1.0, 1.0), "hflip": False,
                 "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "channel_order": "rgb",
                 "num_workers": 0, "num_threads": 2, "prefetch_buffer_size": 2,
                 "skip_corrupt": skip_corrupt, **data},
    })


@contextlib.contextmanager
def _train_iterator(config):
    it = pipeline.make_train_iterator(config, 0, 1)
    try:
        yield it
    finally:
        it.close()


@pytest.fixture
def broken(tmp_path):
    """Six train frames of which two are unreadable (an image and a label), one bad val."""
    root = _tree(tmp_path / "camvid")
    bad = [_truncate(root / "train" / "0001TP_000001.png"),
           _truncate(root / "trainannot" / "0001TP_000004.png"),
           _truncate(root / "val" / "0001TP_000002.png")]
    return root, bad


@pytest.mark.parametrize("num_workers", [0, 1])
def test_default_stops_naming_the_file(broken, num_workers):
    root, bad = broken
    config = _config(root, False, num_workers=num_workers)
    with _train_iterator(config) as it, pytest.raises(DataError) as err:
        for _ in range(3):  # one epoch reads every frame
            next(it)
    message = str(err.value)
    assert str(bad[0]) in message or str(bad[1]) in message
    assert "skip_corrupt=True" in message
    with pytest.raises(DataError, match=re.escape(str(bad[2]))):
        list(pipeline.make_eval_iterator(config, 0, 1))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_skip_replaces_and_counts_every_epoch(broken, num_workers, caplog):
    root, _ = broken
    before = pipeline.skipped_examples("train")
    with caplog.at_level(logging.INFO), _train_iterator(
            _config(root, True, num_workers=num_workers)) as it:
        batches = [next(it) for _ in range(6)]  # two epochs of six frames
    assert pipeline.skipped_examples("train") - before == 4
    for batch in batches:
        assert set(batch) == {"image", "label"}
        assert batch["image"].shape == (2, 16, 16, 3)
        assert set(np.unique(batch["label"]).tolist()) <= set(range(11)) | {255}
    epochs = [r.getMessage() for r in caplog.records if "Input epoch" in r.getMessage()]
    assert epochs[:2] == [
        f"Input epoch {e} of this run (6 examples): 2 unreadable examples skipped "
        f"({before + 2 * e} in total)." for e in (1, 2)]


def test_skip_leaves_clean_data_unchanged(tmp_path):
    root = _tree(tmp_path / "camvid")
    with _train_iterator(_config(root, False)) as it:
        plain = [next(it) for _ in range(3)]
    with _train_iterator(_config(root, True)) as it:
        skipping = [next(it) for _ in range(3)]
    for a, b in zip(plain, skipping):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_skip_gives_up_when_nothing_is_readable(tmp_path):
    root = _tree(tmp_path / "camvid")
    for name in os.listdir(root / "train"):
        _truncate(root / "train" / name)
    with _train_iterator(_config(root, True)) as it, pytest.raises(
            DataError, match="6 consecutive examples"):
        next(it)


def test_eval_skip_masks_the_frame_out(broken):
    root, _ = broken
    before = pipeline.skipped_examples("eval")
    batches = list(pipeline.make_eval_iterator(_config(root, True), 0, 1))
    assert pipeline.skipped_examples("eval") - before == 1
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.tolist() == [True, True, False, False]  # frame 2 skipped, then padding
    labels = np.concatenate([b["label"] for b in batches])
    assert (labels[2:] == 255).all() and (labels[:2] != 255).any()


def test_missing_split_dir_names_it_and_the_fix(tmp_path):
    root = _tree(tmp_path / "camvid")
    with pytest.raises(DataError) as err:
        CamVidSource(str(root), "test")
    message = str(err.value)
    assert str(root / "test") in message and "--config.dataset.root" in message


def test_empty_list_file_names_it_and_the_fix(tmp_path):
    root = _tree(tmp_path / "camvid")
    (root / "val.txt").write_text("\n\n")
    with pytest.raises(DataError) as err:
        CamVidSource(str(root), "val")
    message = str(err.value)
    assert f"{root / 'val.txt'} is empty" in message
    assert "val/X.png valannot/X.png" in message and "regenerate" in message


class _ConstantModel:
    """Predicts class 0 everywhere: enough to check what the confusion matrix counts."""

    def apply(self, variables, images, train):
        import jax.numpy as jnp

        return {"logits": jnp.zeros((*images.shape[:3], 11)).at[..., 0].set(1.0)}


def test_evaluation_leaves_skipped_frames_out_and_reports_them(broken, tmp_path):
    import jax

    from segjax import evaluate, sharding

    root, bad = broken
    config = _config(root, True)
    config.eval_batch_size = 8
    default = default_config.get_config()
    config.update({"model": default.model, "cpu_kernels": default.cpu_kernels,
                   **{k: default[k] for k in default if k.startswith("eval_")}})
    info = pipeline.dataset_info(config)
    mesh = sharding.make_mesh((-1,), ("data",), devices=jax.devices()[:8])
    result, _ = evaluate.run_evaluation(_ConstantModel(), {}, config, mesh, info=info)
    readable = [cv2.imread(str(root / "valannot" / f"0001TP_{i:06d}.png"), cv2.IMREAD_UNCHANGED)
                for i in (0, 1)]
    assert result["confusion_matrix"].sum() == sum(int((lab < 11).sum()) for lab in readable)
    assert result["num_images"] == 2 and result["num_skipped"] == 1
    payload = evaluate.report(result, info, 7, tmp_path, "camvid")
    assert payload["num_skipped"] == 1
    assert json.loads((tmp_path / "eval_step_7.json").read_text())["num_skipped"] == 1


@pytest.mark.slow
def test_training_and_evaluation_report_skips(broken, tmp_path):
    from helpers import tensorboard_tags, tiny_config

    from segjax import train

    root, _ = broken
    config = tiny_config(**{
        "dataset.name": "camvid", "dataset.root": str(root), "data.crop_size": (16, 16),
        "data.skip_corrupt": True, "global_batch_size": 8, "eval_batch_size": 8,
        "num_train_steps": 3, "num_eval_images_to_log": 0})
    result = train.train_and_evaluate(config, tmp_path / "run")
    assert result["eval"]["num_skipped"] == 1 and result["eval"]["num_images"] == 2
    payload = json.loads((tmp_path / "run" / "eval_step_3.json").read_text())
    assert payload["num_skipped"] == 1
    assert {"train/skipped_examples", "eval/num_skipped"} <= tensorboard_tags(
        tmp_path / "run")["scalars"]
