"""CamVidSource on the shared SegNet copy, and its errors on broken fake trees."""

import os
import re

import cv2
import ml_collections
import numpy as np
import pytest

from data_pipelines import DataError, build_source
from data_pipelines.camvid import CamVidSource

VALID_LABELS = set(range(11)) | {255}


def test_real_splits_have_segnet_lengths(camvid_root):
    assert len(CamVidSource(camvid_root, "train")) == 367
    assert len(CamVidSource(camvid_root, "val")) == 101


def test_trainval_is_train_then_val(camvid_root):
    train, val = CamVidSource(camvid_root, "train"), CamVidSource(camvid_root, "val")
    both = build_source(ml_collections.ConfigDict({"name": "camvid", "root": str(camvid_root)}),
                        "trainval")
    assert len(both) == len(train) + len(val) == 468
    assert both.name(len(train) - 1) == train.name(len(train) - 1)
    assert both.name(len(train)) == val.name(0) and both.name(-1) == val.name(len(val) - 1)
    np.testing.assert_array_equal(both[len(train)]["label"], val[0]["label"])
    with pytest.raises(IndexError):
        both[len(both)]


def test_real_frames_decode_as_rgb_with_ignore_remapped(camvid_root):
    source = CamVidSource(camvid_root, "train")
    assert source.info.num_classes == 11
    assert source.name(0) == "0001TP_006690.png"
    saw_void = False
    for index in (0, 150, len(source) - 1):
        example = source[index]
        image, label = example["image"], example["label"]
        assert image.shape == (360, 480, 3) and image.dtype == np.uint8
        assert label.shape == (360, 480) and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) <= VALID_LABELS
        name = source.name(index)
        bgr = cv2.imread(os.path.join(camvid_root, "train", name), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(image, bgr[..., ::-1])
        raw = cv2.imread(os.path.join(camvid_root, "trainannot", name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(label, np.where(raw == 11, 255, raw))
        saw_void |= bool((raw == 11).any())
    assert saw_void, "pick frames with void pixels so the 11 -> 255 mapping is exercised"


def test_repr_is_deterministic(camvid_root):
    first, second = CamVidSource(camvid_root, "val"), CamVidSource(camvid_root, "val")
    assert repr(first) == repr(second)
    assert "val" in repr(first) and "101" in repr(first)


def _fake_tree(root, num=3, size=(8, 12), split="train"):
    """A SegNet-style tree whose list file holds absolute SegNet paths, like the real one."""
    rng = np.random.default_rng(0)
    os.makedirs(root / split)
    os.makedirs(root / f"{split}annot")
    lines = []
    for i in range(num):
        name = f"0001TP_{i:06d}.png"
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        label = rng.integers(0, 12, size, dtype=np.uint8)
        cv2.imwrite(str(root / split / name), image)
        cv2.imwrite(str(root / f"{split}annot" / name), label)
        lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
    (root / f"{split}.txt").write_text("".join(lines))
    return root


def test_fake_tree_loads_and_maps_void(tmp_path):
    root = _fake_tree(tmp_path / "camvid")
    source = CamVidSource(str(root), "train")
    assert len(source) == 3
    raw = cv2.imread(str(root / "trainannot" / source.name(1)), cv2.IMREAD_UNCHANGED)
    assert (raw == 11).any()
    np.testing.assert_array_equal(source[1]["label"], np.where(raw == 11, 255, raw))


def test_missing_root_explains_layout_and_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        CamVidSource(str(missing), "train")
    message = str(err.value)
    for needle in (str(missing), "trainannot/", "val.txt", "--config.dataset.root", "quickstart"):
        assert needle in message


def test_unset_root_points_at_the_config_field():
    with pytest.raises(DataError, match=re.escape("config.dataset.root is empty")):
        CamVidSource("", "train")


def test_missing_split_dir(tmp_path):
    root = _fake_tree(tmp_path / "camvid")
    with pytest.raises(DataError, match=re.escape(str(root / "val"))):
        CamVidSource(str(root), "val")


def test_missing_annotation_dir(tmp_path):
    root = _fake_tree(tmp_path / "camvid")
    for name in os.listdir(root / "trainannot"):
        os.remove(root / "trainannot" / name)
    os.rmdir(root / "trainannot")
    with pytest.raises(DataError, match=re.escape(str(root / "trainannot"))):
        CamVidSource(str(root), "train")


def test_missing_list_file(tmp_path):
    root = _fake_tree(tmp_path / "camvid")
    os.remove(root / "train.txt")
    with pytest.raises(DataError, match=re.escape(str(root / "train.txt"))):
        CamVidSource(str(root), "train")


def test_empty_list_file(tmp_path):
    root = _fake_tree(tmp_path / "camvid")
    (root / "train.txt").write_text("\n")
    with pytest.raises(DataError, match=re.escape(f"{root / 'train.txt'} is empty")):
        CamVidSource(str(root), "train")


@pytest.mark.parametrize("folder", ["train", "trainannot"])
def test_list_entry_with_missing_file(tmp_path, folder):
    root = _fake_tree(tmp_path / "camvid")
    gone = root / folder / "0001TP_000001.png"
    os.remove(gone)
    with pytest.raises(DataError, match=re.escape(str(gone))):
        CamVidSource(str(root), "train")


def test_size_mismatch_names_both_files(tmp_path):
    root = _fake_tree(tmp_path / "camvid", size=(8, 12))
    label_path = root / "trainannot" / "0001TP_000000.png"
    cv2.imwrite(str(label_path), np.zeros((8, 10), np.uint8))
    source = CamVidSource(str(root), "train")
    with pytest.raises(DataError) as err:
        source[0]
    message = str(err.value)
    assert str(root / "train" / "0001TP_000000.png") in message
    assert str(label_path) in message
    assert "12x8" in message and "10x8" in message


@pytest.mark.parametrize("bad_value", [12, 200])
def test_out_of_range_label_values(tmp_path, bad_value):
    root = _fake_tree(tmp_path / "camvid")
    label_path = root / "trainannot" / "0001TP_000002.png"
    label = np.zeros((8, 12), np.uint8)
    label[3, 4] = bad_value
    label[0, 0] = 11
    cv2.imwrite(str(label_path), label)
    source = CamVidSource(str(root), "train")
    with pytest.raises(DataError) as err:
        source[2]
    message = str(err.value)
    assert str(label_path) in message
    assert f"[{bad_value}]" in message


@pytest.mark.parametrize("folder", ["train", "trainannot"])
def test_corrupt_png(tmp_path, folder):
    root = _fake_tree(tmp_path / "camvid")
    path = root / folder / "0001TP_000001.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    source = CamVidSource(str(root), "train")
    source[0]
    with pytest.raises(DataError, match=re.escape(str(path))):
        source[1]


def test_colour_label_is_rejected(tmp_path):
    root = _fake_tree(tmp_path / "camvid")
    label_path = root / "trainannot" / "0001TP_000000.png"
    cv2.imwrite(str(label_path), np.zeros((8, 12, 3), np.uint8))
    with pytest.raises(DataError, match=re.escape(str(label_path))):
        CamVidSource(str(root), "train")[0]


def test_build_source_reads_camvid_from_config(tmp_path):
    root = _fake_tree(tmp_path / "camvid", num=2)
    config = ml_collections.ConfigDict({"name": "camvid", "root": str(root)})
    source = build_source(config, "train")
    assert isinstance(source, CamVidSource) and len(source) == 2


def test_build_source_rejects_unknown_dataset():
    config = ml_collections.ConfigDict({"name": "kitti"})
    with pytest.raises(DataError) as err:
        build_source(config, "train")
    message = str(err.value)
    assert "'kitti'" in message and "synthetic" in message and "camvid" in message
