"""Cityscapes from its official directory layout, labelIds mapped to the 19 train ids."""

import pathlib

import cv2
import numpy as np

from data_pipelines import DataError, imread
from data_pipelines.metadata import CITYSCAPES_MAX_LABEL_ID as MAX_LABEL_ID
from data_pipelines.metadata import get_info

LAYOUT = ("leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png and "
          "gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png")


class CityscapesSource:
    """One split of the official `leftImg8bit/` + `gtFine/` tree (unzipped as distributed).

    Labels are the official `*_gtFine_labelIds.png` (ids 0..33), mapped through the
    34→19 table of `metadata.CITYSCAPES`; everything outside the 19 classes becomes 255.
    """

    def __init__(self, root, split):
        if not root or not pathlib.Path(root).is_dir():
            where = (f"Cityscapes root {str(root)!r} ({pathlib.Path(root).absolute()}) does not "
                     "exist" if root else "Cityscapes root is not set (config.dataset.root is "
                     "empty)")
            raise DataError(
                f"{where}. Unzip leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into "
                f"one directory ({LAYOUT}) and pass --config.dataset.root=/path/to/cityscapes; "
                "or train on another dataset: --config.dataset.name=camvid "
                "--config.dataset.root=/path/to/camvid, or --config=configs/quickstart.py for "
                "the built-in synthetic scenes.")
        self.root = pathlib.Path(root).absolute()
        self.split = split
        self.info = get_info("cityscapes")
        image_dir = self.root / "leftImg8bit" / split
        label_dir = self.root / "gtFine" / split
        for path in (image_dir, label_dir):
            if not path.is_dir():
                raise DataError(f"Cityscapes split directory {path} is missing; the root must "
                                f"hold {LAYOUT}. Check --config.dataset.root and the split name.")
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise DataError(f"No *_leftImg8bit.png images under {image_dir}/<city>/.")
        self._pairs = []
        for image in images:
            stem = image.name[: -len("_leftImg8bit.png")]
            label = label_dir / image.parent.name / f"{stem}_gtFine_labelIds.png"
            if not label.is_file():
                raise DataError(f"Label {label} for image {image} is missing.")
            self._pairs.append((image, label))

    def __len__(self):
        return len(self._pairs)

    def __repr__(self):
        return f"CityscapesSource(root={str(self.root)!r}, split={self.split!r}, " \
               f"num_examples={len(self)})"

    def name(self, index):
        return self._pairs[index][0].name

    def __getitem__(self, index):
        image_path, label_path = self._pairs[index]
        image = imread(image_path, cv2.IMREAD_COLOR_RGB, "image")
        label = imread(label_path, cv2.IMREAD_UNCHANGED, "label")
        if label.ndim != 2:
            raise DataError(f"label {label_path} has shape {label.shape}; expected the "
                            "single-channel *_gtFine_labelIds.png.")
        if image.shape[:2] != label.shape:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]} (WxH); they must match.")
        if label.dtype != np.uint8 or label.max() > MAX_LABEL_ID:
            bad = np.unique(label[label > MAX_LABEL_ID]).tolist()
            raise DataError(f"label {label_path} has values {bad} outside the Cityscapes "
                            f"labelIds 0..{MAX_LABEL_ID}; is it a labelIds PNG?")
        return {"image": image,
                "label": self.info.to_train_ids(label)}


def source_from_config(dataset_cfg, split):
    """The source for `config.dataset`: the directory tree (`root`) or, with
    `format="tfds"`, the prepared TFDS dataset (`tfds_data_dir`)."""
    storage = dataset_cfg.get("format", "directory")
    if storage == "tfds":
        from data_pipelines.cityscapes_tfds import source_from_config as tfds_source

        return tfds_source(dataset_cfg, split)
    if storage != "directory":
        raise DataError(f"config.dataset.format={storage!r}; Cityscapes is read from "
                        "'directory' (config.dataset.root) or 'tfds' "
                        "(config.dataset.tfds_data_dir).")
    return CityscapesSource(dataset_cfg.get("root", None), split)
