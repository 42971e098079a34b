"""Cityscapes through TFDS: fake official zips -> prepare -> source and grain pipelines."""

import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest
from helpers import REPO, override

from configs import default
from data_pipelines import DataError, build_source, cityscapes_tfds, pipeline
from data_pipelines.metadata import CITYSCAPES

SIZE = (64, 128)  # the builder declares 1024x2048 but does not check files given by path
FRAMES = {"train": ("aachen", 3), "val": ("frankfurt", 2), "test": ("berlin", 1)}


def write_zips(manual_dir, frames=FRAMES, splits=("train", "val", "test")):
    """Official-layout zips; returns {image_id: (RGB image, labelIds)} of what they hold."""
    manual_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    with zipfile.ZipFile(manual_dir / "leftImg8bit_trainvaltest.zip", "w") as images, \
            zipfile.ZipFile(manual_dir / "gtFine_trainvaltest.zip", "w") as labels:
        images.writestr("README", "Cityscapes left 8-bit images\n")
        for split in splits:
            city, count = frames[split]
            for i in range(count):
                image_id = f"{city}_{i:06d}_{19 + i:06d}"
                image = rng.integers(0, 256, (*SIZE, 3), np.uint8)
                label = rng.integers(0, 34, SIZE, np.uint8)  # every labelId, ignored ones too
                images.writestr(f"leftImg8bit/{split}/{city}/{image_id}_leftImg8bit.png",
                                cv2.imencode(".png", image[..., ::-1])[1].tobytes())
                labels.writestr(f"gtFine/{split}/{city}/{image_id}_gtFine_labelIds.png",
                                cv2.imencode(".png", label)[1].tobytes())
                written[image_id] = (image, label)
    return written


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cityscapes_tfds")
    written = write_zips(root / "manual")
    cityscapes_tfds.main(["prepare", f"--manual_dir={root / 'manual'}",
                          f"--data_dir={root / 'tfds'}"])
    return root / "tfds", written


def tfds_config(data_dir, **overrides):
    config = default.get_config()
    return override(config, **{
        "dataset.name": "cityscapes", "dataset.format": "tfds",
        "dataset.tfds_data_dir": str(data_dir), "data.crop_size": (32, 48),
        "global_batch_size": 2, "eval_batch_size": 4, **overrides})


def test_source_returns_written_pairs_with_train_ids(prepared):
    data_dir, written = prepared
    for split, (city, count) in FRAMES.items():
        source = build_source(tfds_config(data_dir).dataset, split)
        assert isinstance(source, cityscapes_tfds.CityscapesTfdsSource) and len(source) == count
        names = sorted(source.name(i) for i in range(count))
        assert names == [f"{city}_{i:06d}_{19 + i:06d}_leftImg8bit.png" for i in range(count)]
        for i in range(count):
            image, label_ids = written[source.image_id(i)]
            example = source[i]
            assert source.image_size(i) == SIZE
            assert example["image"].dtype == np.uint8 and example["label"].dtype == np.uint8
            np.testing.assert_array_equal(example["image"], image)  # RGB, as written
            np.testing.assert_array_equal(example["label"], CITYSCAPES.id_to_train_lut[label_ids])
            label = example["label"]
            assert (label[label_ids == 7] == 0).all() and (label[label_ids == 33] == 18).all()
            assert (label[label_ids == 26] == 13).all()
            assert (label[np.isin(label_ids, [0, 3, 6, 9, 15, 29])] == 255).all()


def test_train_and_eval_pipelines_read_the_tfds_source(prepared):
    data_dir, written = prepared
    config = tfds_config(data_dir)
    batch = next(pipeline.make_train_iterator(config, 0, 1))
    assert batch["image"].shape == (2, 32, 48, 3) and batch["label"].shape == (2, 32, 48)
    assert set(np.unique(batch["label"])) <= set(range(19)) | {255}

    source = build_source(config.dataset, "val")
    batches = list(pipeline.make_eval_iterator(config, 0, 1))
    assert len(batches) == 1 and batches[0]["mask"].tolist() == [True, True, False, False]
    for b in range(len(source)):
        image, label_ids = written[source.image_id(b)]
        np.testing.assert_array_equal(batches[0]["label"][b], CITYSCAPES.id_to_train_lut[label_ids])
        np.testing.assert_array_equal(batches[0]["image"][b], image)  # uint8 RGB as written


def test_verify_counts_splits(prepared, capsys):
    assert cityscapes_tfds.verify(prepared[0]) == {"train": 3, "val": 2, "test": 1}
    out = capsys.readouterr().out
    assert "train: 3 images (official Cityscapes: 2975)" in out and "is 128x64" in out


def test_reading_does_not_import_tensorflow(prepared):
    data_dir, _ = prepared
    code = ("import sys, data_pipelines, segjax.evaluate, segjax.cityscapes_export\n"
            "from data_pipelines import cityscapes_tfds\n"
            f"source = cityscapes_tfds.CityscapesTfdsSource({str(data_dir)!r}, 'val')\n"
            "assert source[0]['label'].shape == (64, 128)\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_missing_zip_names_the_zip_and_the_fix(tmp_path):
    manual = tmp_path / "manual"
    write_zips(manual)
    (manual / "gtFine_trainvaltest.zip").unlink()
    with pytest.raises(SystemExit) as exit_info:
        cityscapes_tfds.main(["prepare", f"--manual_dir={manual}",
                              f"--data_dir={tmp_path / 'tfds'}"])
    message = str(exit_info.value)
    assert message.startswith("error: Missing gtFine_trainvaltest.zip in ")
    assert f"prepare --manual_dir={manual} --data_dir={tmp_path / 'tfds'} again" in message
    assert cityscapes_tfds.DOWNLOAD_PAGE in message and "not unzipped" in message
    assert not (tmp_path / "tfds").exists()


def test_zips_without_a_split_or_labels_are_rejected_before_building(tmp_path):
    write_zips(tmp_path / "a", splits=("train", "val"))
    with pytest.raises(DataError, match=r"has no leftImg8bit/test/"):
        cityscapes_tfds.check_manual_dir(tmp_path / "a")
    write_zips(tmp_path / "b")
    with zipfile.ZipFile(tmp_path / "b" / "leftImg8bit_trainvaltest.zip", "a") as images:
        images.writestr("leftImg8bit/val/frankfurt/frankfurt_000009_000019_leftImg8bit.png", b"")
    with pytest.raises(DataError, match="lacks 1 labels.*frankfurt_000009_000019_gtFine"):
        cityscapes_tfds.check_manual_dir(tmp_path / "b")


def test_unprepared_or_unset_data_dir_says_how_to_build(tmp_path):
    with pytest.raises(DataError, match=r"tfds_data_dir is empty.*~/tensorflow_datasets"):
        build_source(tfds_config("").dataset, "val")
    with pytest.raises(DataError) as err:
        build_source(tfds_config(tmp_path / "nothing").dataset, "val")
    message = str(err.value)
    assert "No prepared TFDS cityscapes/semantic_segmentation" in message
    assert "prepare --manual_dir=" in message and f"--data_dir={tmp_path / 'nothing'}" in message
    assert "--config.dataset.manual_dir" in message
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(DataError, match="config.dataset.format='zip'"):
        build_source(tfds_config(tmp_path, **{"dataset.format": "zip"}).dataset, "val")
    with pytest.raises(DataError, match="Unknown Cityscapes split 'valid'"):
        cityscapes_tfds.CityscapesTfdsSource(tmp_path, "valid")


def test_manual_dir_in_config_builds_on_first_use(tmp_path):
    written = write_zips(tmp_path / "manual")
    config = tfds_config(tmp_path / "tfds", **{"dataset.manual_dir": str(tmp_path / "manual")})
    source = build_source(config.dataset, "val")
    assert len(source) == 2
    np.testing.assert_array_equal(source[0]["image"], written[source.image_id(0)][0])
