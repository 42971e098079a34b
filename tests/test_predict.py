"""--mode=predict: a trained workdir labels a folder of images of any size."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import REPO, override, tiny_config

from data_pipelines import metadata
from segjax import predict, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = tiny_config(**{"num_train_steps": 2, "checkpoint_every_steps": 2})
    train.train_and_evaluate(config, str(workdir))
    return config, workdir


def _write_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"frame_{i}.png"), rng.integers(0, 255, (h, w, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")


@pytest.mark.slow
def test_predict_writes_labels_colours_and_overlays(trained, tmp_path):
    config, workdir = trained
    sizes = [(64, 96), (50, 70), (64, 96)]  # 50x70 is padded to DDRNet's multiple of 8
    _write_images(tmp_path / "in", sizes)
    config = override(config, **{"predict.input": str(tmp_path / "in"),
                                 "predict.output_dir": str(tmp_path / "out")})
    result = predict.predict(config, str(workdir))
    assert result["num_images"] == 3
    assert sorted(set(map(tuple, result["compiled_sizes"]))) == [(50, 70), (64, 96)]
    info = metadata.get_info("cityscapes")
    for i, (h, w) in enumerate(sizes):
        label = cv2.imread(str(tmp_path / "out" / "labels" / f"frame_{i}.png"),
                           cv2.IMREAD_UNCHANGED)
        assert label.shape == (h, w) and label.max() < info.num_classes
        color = cv2.imread(str(tmp_path / "out" / "color" / f"frame_{i}.png"))[..., ::-1]
        np.testing.assert_array_equal(color, metadata.colorize(label, info))
        assert cv2.imread(str(tmp_path / "out" / "overlay" / f"frame_{i}.png")).shape == (h, w, 3)


@pytest.mark.slow
def test_cityscapes_label_ids(trained, tmp_path):
    config, workdir = trained
    _write_images(tmp_path / "in", [(64, 64)])
    config = override(config, **{"predict.input": str(tmp_path / "in" / "*.png"),
                                 "predict.output_dir": str(tmp_path / "out"),
                                 "predict.label_format": "labelids", "predict.overlays": False})
    predict.predict(config, str(workdir))
    label = cv2.imread(str(tmp_path / "out" / "labels" / "frame_0.png"), cv2.IMREAD_UNCHANGED)
    color = cv2.imread(str(tmp_path / "out" / "color" / "frame_0.png"))[..., ::-1]
    train_ids = {tuple(c): i for i, c in enumerate(metadata.get_info("cityscapes").palette)}
    official = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    assert set(np.unique(label)) <= official
    # The colour (train id) and the written label id agree pixel by pixel.
    lut = {0: 7, 1: 8, 2: 11, 10: 23, 13: 26}
    ids = np.vectorize(lambda *rgb: train_ids.get(rgb, 255))(*np.moveaxis(color, -1, 0))
    for train_id, label_id in lut.items():
        assert np.all(label[ids == train_id] == label_id)
    assert not (tmp_path / "out" / "overlay").exists()


@pytest.mark.slow
def test_bad_inputs_name_the_field(trained, tmp_path):
    config, workdir = trained
    with pytest.raises(ValueError, match="config.predict.input is empty"):
        predict.predict(override(config, **{"predict.input": ""}), str(workdir))
    with pytest.raises(FileNotFoundError, match="matches no image"):
        predict.predict(override(config, **{"predict.input": str(tmp_path / "*.png")}),
                        str(workdir))
    _write_images(tmp_path / "in", [(32, 32)])
    with pytest.raises(ValueError, match="label_format"):
        predict.predict(override(config, **{"predict.input": str(tmp_path / "in"),
                                            "predict.label_format": "ids"}), str(workdir))


def test_predict_without_a_checkpoint_fails_cleanly(tmp_path):
    _write_images(tmp_path / "in", [(32, 32)])
    proc = subprocess.run(
        [sys.executable, "run.py", "--config=configs/quickstart.py", "--mode=predict",
         f"--workdir={tmp_path / 'empty'}", f"--config.predict.input={tmp_path / 'in'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "error: No checkpoint in" in proc.stderr
