"""Synthetic street scenes and the dataset class tables."""

import cv2
import numpy as np
import pytest

from data_pipelines import metadata, synthetic
from data_pipelines.metadata import CAMVID, CITYSCAPES
from data_pipelines.synthetic import SyntheticStreetScenes

VALID = np.array([*range(19), 255])


@pytest.fixture(scope="module")
def scenes_256x512():
    """16 examples at the default training size, rendered once for the coverage tests."""
    src = SyntheticStreetScenes(16, 256, 512, seed=0)
    return [src[i] for i in range(len(src))]


# ----------------------------------------------------------------------------- synthetic


def test_same_arguments_give_identical_examples():
    a = SyntheticStreetScenes(8, 64, 128, seed=3)
    b = SyntheticStreetScenes(8, 64, 128, seed=3)
    first = {i: a[i] for i in (0, 5, 7)}
    for i in (7, 5, 0):  # workers read indices in any order
        np.testing.assert_array_equal(first[i]["image"], b[i]["image"])
        np.testing.assert_array_equal(first[i]["label"], b[i]["label"])


def test_index_and_seed_change_the_scene():
    train = SyntheticStreetScenes(4, 64, 128, seed=0)
    val = SyntheticStreetScenes(4, 64, 128, seed=1)
    assert not np.array_equal(train[0]["label"], train[1]["label"])
    assert not np.array_equal(train[0]["image"], train[1]["image"])
    assert not np.array_equal(train[0]["label"], val[0]["label"])


@pytest.mark.parametrize("height,width", [(64, 128), (300, 500)])
def test_shapes_dtypes_and_label_values(height, width):
    src = SyntheticStreetScenes(3, height, width)
    for i in range(len(src)):
        ex = src[i]
        assert set(ex) == {"image", "label"}
        assert ex["image"].shape == (height, width, 3) and ex["image"].dtype == np.uint8
        assert ex["label"].shape == (height, width) and ex["label"].dtype == np.uint8
        assert np.isin(ex["label"], VALID).all()
        assert ex["image"].std() > 10  # a picture, not a flat fill


def test_layout_is_resolution_independent():
    """The same (seed, i) is the same street at any size: labels agree after resampling."""
    _, small = synthetic.render_scene(0, 2, 64, 128)
    _, large = synthetic.render_scene(0, 2, 256, 512)
    assert (large[2::4, 2::4] == small).mean() > 0.9


def test_classes_cover_the_cityscapes_label_space(scenes_256x512):
    labels = np.stack([ex["label"] for ex in scenes_256x512])
    assert np.isin(labels, VALID).all()
    present = np.unique(labels)
    assert len(np.setdiff1d(present, [255])) >= 10
    names = CITYSCAPES.class_names
    for name in ("sky", "road", "building", "vegetation", "car"):
        k = names.index(name)
        n_images = sum(bool((ex["label"] == k).any()) for ex in scenes_256x512)
        assert n_images >= 12, f"{name} in only {n_images}/16 images"
    road = (labels == names.index("road")).mean()
    assert 0.1 < road < 0.6  # a street scene, not one class everywhere


def test_image_colours_are_not_the_palette(scenes_256x512):
    """Classes must be recognised from shape, context and texture, not by colour lookup."""
    palette = CITYSCAPES.palette[:19].astype(np.int32)
    correct = total = 0
    for ex in scenes_256x512[:4]:
        img, lab = ex["image"].astype(np.int32), ex["label"]
        dist = ((img[::2, ::2, None, :] - palette) ** 2).sum(-1)
        lab = lab[::2, ::2]
        keep = lab < 19
        correct += int((dist.argmin(-1)[keep] == lab[keep]).sum())
        total += int(keep.sum())
    assert correct / total < 0.4


def test_source_protocol():
    src = SyntheticStreetScenes(5, 32, 64, seed=7)
    assert len(src) == 5
    assert repr(src) == "SyntheticStreetScenes(num_images=5, height=32, width=64, seed=7)"
    assert repr(src) == repr(SyntheticStreetScenes(5, 32, 64, seed=7))
    assert src.info is CITYSCAPES
    np.testing.assert_array_equal(src[-1]["label"], src[4]["label"])
    np.testing.assert_array_equal(src[np.int64(2)]["label"], src[2]["label"])
    with pytest.raises(IndexError):
        src[5]
    with pytest.raises(IndexError):
        src[-6]
    with pytest.raises(ValueError):
        SyntheticStreetScenes(5, 32, 64, seed=-1)


def test_main_writes_pngs(tmp_path):
    synthetic.main(["--out", str(tmp_path), "--num", "2", "--size", "32x64"])
    image = cv2.imread(str(tmp_path / "0001_image.png"))
    label = cv2.imread(str(tmp_path / "0001_label.png"))
    assert image.shape == (32, 64, 3) and label.shape == (32, 64, 3)


# ------------------------------------------------------------------------------ metadata


def test_cityscapes_table():
    assert CITYSCAPES.num_classes == 19 and len(CITYSCAPES.class_names) == 19
    assert CITYSCAPES.class_names[0] == "road" and CITYSCAPES.class_names[18] == "bicycle"
    assert CITYSCAPES.ignore_label == 255
    assert tuple(CITYSCAPES.palette[0]) == (128, 64, 128)
    assert tuple(CITYSCAPES.palette[10]) == (70, 130, 180)
    assert tuple(CITYSCAPES.palette[255]) == (0, 0, 0)
    assert CITYSCAPES.palette.shape == (256, 3) and CITYSCAPES.palette.dtype == np.uint8


def test_cityscapes_lut():
    lut = CITYSCAPES.id_to_train_lut
    assert lut.shape == (256,) and lut.dtype == np.uint8
    assert lut[7] == 0 and lut[8] == 1 and lut[26] == 13 and lut[33] == 18
    for ignored in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255):
        assert lut[ignored] == 255
    assert sorted(lut[lut != 255].tolist()) == list(range(19))
    raw = np.array([[7, 33], [0, 24]], np.uint8)
    np.testing.assert_array_equal(lut[raw], [[0, 18], [255, 11]])


def test_camvid_table():
    assert CAMVID.num_classes == 11
    assert CAMVID.class_names == ("Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                                  "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist")
    assert tuple(CAMVID.palette[0]) == (128, 128, 128)
    assert tuple(CAMVID.palette[3]) == (128, 64, 128)
    assert tuple(CAMVID.palette[10]) == (0, 128, 192)
    lut = CAMVID.id_to_train_lut
    np.testing.assert_array_equal(lut[:11], np.arange(11))
    assert lut[11] == 255 and lut[255] == 255


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        CITYSCAPES.palette[0] = 0
    with pytest.raises(ValueError):
        CITYSCAPES.id_to_train_lut[7] = 1


def test_table_validation():
    bad = (metadata.ClassInfo(0, "a", (1, 2, 3)), metadata.ClassInfo(2, "b", (4, 5, 6)))
    with pytest.raises(ValueError, match="train ids"):
        metadata.DatasetInfo("bad", bad)


def test_get_info():
    assert metadata.get_info("cityscapes") is CITYSCAPES
    assert metadata.get_info("camvid") is CAMVID
    assert metadata.get_info("synthetic") is CITYSCAPES
    with pytest.raises(ValueError) as err:
        metadata.get_info("kitti")
    for name in ("cityscapes", "camvid", "synthetic", "kitti"):
        assert name in str(err.value)


def test_colorize():
    label = np.array([[0, 10], [255, 18]], np.uint8)
    rgb = metadata.colorize(label, CITYSCAPES)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], (128, 64, 128))
    np.testing.assert_array_equal(rgb[1, 0], (0, 0, 0))
    np.testing.assert_array_equal(rgb[1, 1], (119, 11, 32))
    wide = metadata.colorize(np.array([[-1, 300, 3]], np.int32), CAMVID)
    np.testing.assert_array_equal(wide[0], [(0, 0, 0), (0, 0, 0), (128, 64, 128)])
    batch = metadata.colorize(np.zeros((2, 3, 4), np.uint8), CAMVID)
    assert batch.shape == (2, 3, 4, 3)


def test_overlay():
    image = np.full((2, 3, 3), 100, np.uint8)
    label = np.array([[0, 255, 11], [12, 0, 255]], np.uint8)
    out = metadata.overlay(image, label, CAMVID, alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    # ignore (255) and values outside the table (11, 12) keep the image
    for yx in ((0, 1), (0, 2), (1, 0), (1, 2)):
        np.testing.assert_array_equal(out[yx], image[yx])
    np.testing.assert_array_equal(out[0, 0], (114, 114, 114))  # (100 + 128) / 2 for Sky
    np.testing.assert_array_equal(metadata.overlay(image, label, CAMVID, alpha=1.0)[1, 1],
                                  (128, 128, 128))
    np.testing.assert_array_equal(metadata.overlay(image, label, CAMVID, alpha=0.0), image)
    with pytest.raises(ValueError):
        metadata.overlay(image, label[:, :2], CAMVID)
