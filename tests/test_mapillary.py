"""Mapillary Vistas v1.2 source on small generated trees in both packages' layouts."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from configs import synergy_mapillary
from data_pipelines import DataError, build_source, pipeline
from data_pipelines.mapillary import MapillarySource
from data_pipelines.metadata import MAPILLARY, get_info
from data_pipelines.transforms import EvalTransform, TrainAugment

PALETTE = [c for cls in MAPILLARY.classes for c in cls.color] + [0, 0, 0]  # + Unlabeled


def write_palette_png(path, indices):
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette(PALETTE + [0] * (768 - len(PALETTE)))
    img.save(path)


def make_tree(root, layout="v1.2", split_dir="training", n=2, size=(12, 20)):
    """Images and palette-index labels in `layout`, plus the package's class list."""
    label_dir = root / split_dir / ("labels" if layout == "v1.2" else "v1.2/labels")
    (root / split_dir / "images").mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    stems = []
    for i in range(n):
        stem = f"{i:03d}ABCDEFGHIJKLMNOPQR"  # 22-character keys, like the real ones
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        labels = np.zeros(size, np.uint8)
        labels[:, : size[1] // 2] = 13  # Road
        labels[:, size[1] // 2:] = 55  # Car
        labels[0] = 65  # Unlabeled
        labels[1, 0] = 64  # Ego Vehicle, the last class
        cv2.imwrite(str(root / split_dir / "images" / f"{stem}.jpg"), image)
        write_palette_png(label_dir / f"{stem}.png", labels)
        stems.append(stem)
    if layout == "v2.0":
        (root / split_dir / "v2.0" / "labels").mkdir(parents=True, exist_ok=True)
    config = "config.json" if layout == "v1.2" else "config_v1.2.json"
    (root / config).write_text(json.dumps({"labels": [{"name": c.name} for c in
                                                      MAPILLARY.classes] + [{"name": "x"}]}))
    return stems


def test_metadata_has_65_classes_and_ignores_unlabeled():
    info = get_info("mapillary")
    assert info.num_classes == 65 and info.ignore_label == 255
    assert info.class_names[13] == "Road" and info.class_names[-1] == "Ego Vehicle"
    assert tuple(info.palette[55]) == (0, 0, 142)
    lut = info.id_to_train_lut
    assert lut[65] == 255 and all(lut[i] == i for i in range(65))


@pytest.mark.parametrize("layout, split, split_dir", [("v1.2", "train", "training"),
                                                      ("v2.0", "val", "validation")])
def test_both_layouts_read_palette_indices(tmp_path, layout, split, split_dir):
    stems = make_tree(tmp_path, layout, split_dir)
    source = MapillarySource(tmp_path, split)
    assert len(source) == 2 and source.layout == layout
    assert source.name(1) == f"{stems[1]}.jpg"
    example = source[1]
    bgr = cv2.imread(str(tmp_path / split_dir / "images" / f"{stems[1]}.jpg"))
    np.testing.assert_array_equal(example["image"], bgr[..., ::-1])
    label = example["label"]
    assert label.dtype == np.uint8 and label.shape == (12, 20)
    assert (label[0] == 255).all() and label[1, 0] == 64
    assert label[5, 0] == 13 and label[5, -1] == 55
    assert repr(source) == repr(MapillarySource(tmp_path, split))


def test_build_source_and_long_edge_eval_batches(tmp_path):
    make_tree(tmp_path, "v2.0", "validation", n=3, size=(30, 40))
    config = synergy_mapillary.get_config()
    with config.unlocked():
        config.dataset.root = str(tmp_path)
        config.eval_batch_size = 2
        config.data.resize_long_edge = 20
    assert isinstance(build_source(config.dataset, "val"), MapillarySource)
    batches = list(pipeline.make_eval_iterator(config, 0, 1))
    assert [b["mask"].tolist() for b in batches] == [[True, True], [True, False]]
    assert batches[0]["image"].shape == (2, 15, 20, 3)
    # Nearest resizing keeps label ids intact (the padded example is all ignore).
    assert set(np.unique(batches[0]["label"]).tolist()) == {13, 55, 255}


def test_long_edge_resize_in_train_and_eval_transforms():
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    label = np.zeros((30, 40), np.uint8)
    label[:, 20:] = 7
    out = EvalTransform(long_edge=80)({"image": image, "label": label})
    assert out["image"].shape == (60, 80, 3) and out["label"].shape == (60, 80)
    assert set(np.unique(out["label"]).tolist()) == {0, 7}  # nearest: no blended ids
    assert EvalTransform()({"image": image, "label": label})["label"].shape == (30, 40)
    # The long edge is fixed first, so a 1.0 scale crops from the 60x80 frame.
    augment = TrainAugment(crop_size=(60, 80), scale_range=(1.0, 1.0), hflip=False,
                           long_edge=80)
    out = augment({"image": image, "label": label}, np.random.default_rng(0))
    assert (out["label"] != 255).all()


def test_missing_root_explains_layout_and_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        MapillarySource(missing, "train")
    for needle in (str(missing), "<split>/images/*.jpg", "<split>/v1.2/labels", "training",
                   "--config.dataset.root"):
        assert needle in str(err.value)
    with pytest.raises(DataError, match="config.dataset.root is empty"):
        MapillarySource("", "train")


@pytest.mark.parametrize("split, match", [("minival", "Unknown Mapillary split"),
                                          ("test", "no labels")])
def test_bad_splits(tmp_path, split, match):
    make_tree(tmp_path)
    with pytest.raises(DataError, match=match):
        MapillarySource(tmp_path, split)


def test_missing_label_dir_names_both_layouts(tmp_path):
    (tmp_path / "training" / "images").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        MapillarySource(tmp_path, "train")
    assert str(tmp_path / "training" / "labels") in str(err.value)
    assert str(tmp_path / "training" / "v1.2" / "labels") in str(err.value)


def test_v2_only_labels_are_refused(tmp_path):
    (tmp_path / "training" / "images").mkdir(parents=True)
    (tmp_path / "training" / "v2.0" / "labels").mkdir(parents=True)
    with pytest.raises(DataError, match="only v2.0 labels"):
        MapillarySource(tmp_path, "train")


def test_missing_images_or_label_file(tmp_path):
    stems = make_tree(tmp_path)
    (tmp_path / "training" / "labels" / f"{stems[0]}.png").unlink()
    with pytest.raises(DataError, match=f"Label .*{stems[0]}.png for image .*{stems[0]}.jpg"):
        MapillarySource(tmp_path, "train")
    for path in (tmp_path / "training" / "images").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="No \\*.jpg images"):
        MapillarySource(tmp_path, "train")


def test_wrong_version_config_is_refused(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"labels": [{}] * 124}))
    with pytest.raises(DataError, match="124 labels"):
        MapillarySource(tmp_path, "train")
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(DataError, match="not a Mapillary config"):
        MapillarySource(tmp_path, "train")


def _broken_label(tmp_path, write):
    stems = make_tree(tmp_path)
    path = tmp_path / "training" / "labels" / f"{stems[0]}.png"
    write(path)
    return MapillarySource(tmp_path, "train"), path


def test_colour_label_is_refused(tmp_path):
    source, path = _broken_label(
        tmp_path, lambda p: Image.fromarray(np.zeros((12, 20, 3), np.uint8)).save(p))
    with pytest.raises(DataError, match=f"{path}.*mode-RGB.*palette"):
        source[0]


def test_out_of_range_index_is_refused(tmp_path):
    source, path = _broken_label(
        tmp_path, lambda p: write_palette_png(p, np.full((12, 20), 70, np.uint8)))
    with pytest.raises(DataError, match=r"values \[70\] outside the v1.2 class indices"):
        source[0]


def test_size_mismatch_and_corrupt_label(tmp_path):
    source, path = _broken_label(
        tmp_path, lambda p: write_palette_png(p, np.zeros((10, 20), np.uint8)))
    with pytest.raises(DataError, match="is 20x12 but label .* is 20x10"):
        source[0]
    path.write_bytes(b"not a png")
    with pytest.raises(DataError, match=f"cannot decode label {path}"):
        source[0]
