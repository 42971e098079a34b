"""Cityscapes directory source on a small fake tree in the official layout."""

import cv2
import numpy as np
import pytest

from data_pipelines import DataError
from data_pipelines.cityscapes import CityscapesSource


def make_tree(root, split="val", city="frankfurt", n=2, size=(16, 32)):
    names = []
    for i in range(n):
        stem = f"{city}_000000_{i:06d}"
        img_dir = root / "leftImg8bit" / split / city
        lab_dir = root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        lab_dir.mkdir(parents=True, exist_ok=True)
        image = np.full((*size, 3), 40 * i, np.uint8)
        label = np.zeros(size, np.uint8)
        label[:, : size[1] // 2] = 7  # road -> 0
        label[:, size[1] // 2:] = 26  # car -> 13
        label[0] = 3  # out of roi -> ignore
        cv2.imwrite(str(img_dir / f"{stem}_leftImg8bit.png"), image)
        cv2.imwrite(str(lab_dir / f"{stem}_gtFine_labelIds.png"), label)
        names.append(stem)
    return names


def test_reads_and_maps_label_ids_to_train_ids(tmp_path):
    make_tree(tmp_path)
    source = CityscapesSource(tmp_path, "val")
    assert len(source) == 2
    example = source[1]
    assert example["image"].shape == (16, 32, 3) and example["image"].dtype == np.uint8
    label = example["label"]
    assert set(np.unique(label).tolist()) == {0, 13, 255}
    assert (label[0] == 255).all() and label[5, 0] == 0 and label[5, -1] == 13


def test_missing_root_says_where_and_how_to_switch(tmp_path):
    with pytest.raises(DataError) as err:
        CityscapesSource(tmp_path / "nowhere", "train")
    message = str(err.value)
    assert "nowhere" in message and "leftImg8bit" in message
    assert "--config.dataset.root" in message and "--config.dataset.name=camvid" in message


def test_missing_label_and_bad_values_name_the_file(tmp_path):
    names = make_tree(tmp_path)
    label = tmp_path / "gtFine/val/frankfurt" / f"{names[0]}_gtFine_labelIds.png"
    cv2.imwrite(str(label), np.full((16, 32), 40, np.uint8))
    source = CityscapesSource(tmp_path, "val")
    with pytest.raises(DataError, match=f"{names[0]}_gtFine_labelIds.png.*\\[40\\]"):
        source[0]
    label.unlink()
    with pytest.raises(DataError, match="is missing"):
        CityscapesSource(tmp_path, "val")
