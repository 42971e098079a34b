"""CamVid in the 11 SegNet classes, read with OpenCV: the SegNet 480x360 copy (`CamVidSource`,
class-id PNGs), and `make_source`, which picks it or the original 960x720 release
(`camvid_original`) from `config.dataset.camvid_format`.
"""

import os

import cv2
import numpy as np

from data_pipelines import DataError, imread
from data_pipelines.camvid_original import (
    ORIGINAL_LAYOUT,
    CamVidOriginalSource,
    format_hint,
    missing_root,
)
from data_pipelines.metadata import get_info

NUM_CLASSES = 11
RAW_IGNORE = 11
LAYOUT = "train/ trainannot/ val/ valannot/ train.txt val.txt"


def _allowed_raw_values():
    """SegNet ids 0..10, its void 11, and 255 so already-remapped copies load too."""
    allowed = np.zeros(256, bool)
    allowed[: RAW_IGNORE + 1] = True
    allowed[255] = True
    return allowed


_ALLOWED = _allowed_raw_values()


class CamVidSource:
    """One split of the SegNet CamVid copy: `train/ trainannot/ ... train.txt val.txt`.

    The whole layout is checked when the source is built so that a wrong path fails
    before training starts rather than hours later inside a worker process. List lines
    hold absolute SegNet paths (`/SegNet/CamVid/train/x.png ...`), so only their
    basenames are used, resolved against `root/<split>` and `root/<split>annot`.
    """

    def __init__(self, root, split):
        if not root or not os.path.isdir(root):
            raise missing_root(
                root, f"Put the SegNet CamVid copy (layout: {LAYOUT}) in a directory "
                "and set --config.dataset.root=/path/to/camvid, "
                "or use --config=configs/quickstart.py for the built-in synthetic data.")
        self.root = os.path.abspath(root)
        self.split = split
        self.info = get_info("camvid")
        image_dir = os.path.join(self.root, split)
        annot_dir = os.path.join(self.root, split + "annot")
        list_file = os.path.join(self.root, split + ".txt")
        for path in (image_dir, annot_dir):
            if not os.path.isdir(path):
                raise DataError(
                    f"CamVid split directory {path} is missing; the root must hold the "
                    f"SegNet layout ({LAYOUT}). Check --config.dataset.root and the split "
                    f"name.{format_hint(self.root, 'segnet')}"
                )
        if not os.path.isfile(list_file):
            raise DataError(
                f"CamVid list file {list_file} is missing; it must list "
                f"'<image> <annotation>' per line (SegNet layout: {LAYOUT})."
            )
        self._pairs = self._read_list(list_file, image_dir, annot_dir)

    @staticmethod
    def _read_list(list_file, image_dir, annot_dir):
        pairs = []
        with open(list_file) as f:
            for line_no, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise DataError(
                        f"{list_file}:{line_no}: expected '<image> <annotation>', "
                        f"got {line.strip()!r}"
                    )
                image = os.path.join(image_dir, os.path.basename(fields[0]))
                label = os.path.join(annot_dir, os.path.basename(fields[1]))
                for path in (image, label):
                    if not os.path.isfile(path):
                        raise DataError(
                            f"{list_file}:{line_no} refers to {path}, which does not exist; "
                            "restore the file or remove the line."
                        )
                pairs.append((image, label))
        if not pairs:
            split = os.path.basename(image_dir)
            raise DataError(
                f"CamVid list file {list_file} is empty; it must list "
                f"'<image> <annotation>' per line, e.g. '{split}/X.png {split}annot/X.png'. "
                "Restore it from the SegNet copy, or regenerate it from the image folder: "
                f"for f in {split}/*.png; do echo \"$f {split}annot/${{f#{split}/}}\"; done"
                f" > {list_file}"
            )
        return pairs

    def __len__(self):
        return len(self._pairs)

    def __repr__(self):
        return f"CamVidSource(root={self.root!r}, split={self.split!r}, num_examples={len(self)})"

    def name(self, index):
        return os.path.basename(self._pairs[index][0])

    def __getitem__(self, index):
        image_path, label_path = self._pairs[index]
        image = imread(image_path, cv2.IMREAD_COLOR_RGB, "image")
        label = imread(label_path, cv2.IMREAD_UNCHANGED, "label")
        if label.ndim != 2:
            raise DataError(
                f"label {label_path} has shape {label.shape}; expected a single-channel "
                "class-id PNG (SegNet trainannot/valannot), not a colour mask."
            )
        if image.shape[:2] != label.shape:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]} (WxH); they must match."
            )
        label = _check_label_values(label, label_path)
        return {
            "image": image,
            "label": self.info.to_train_ids(label),
        }


def _check_label_values(label, path):
    """Returns `label` as uint8 or names the values that are not SegNet class ids."""
    if label.dtype == np.uint8 and _ALLOWED[label].all():
        return label
    values = np.unique(label)
    in_range = (values >= 0) & (values <= 255)
    valid = in_range.copy()
    valid[in_range] = _ALLOWED[values[in_range].astype(np.intp)]
    if not valid.all():
        raise DataError(
            f"label {path} has values {values[~valid].tolist()} outside 0..{NUM_CLASSES - 1} "
            f"and the ignore value {RAW_IGNORE}; is this the SegNet 11-class annotation?"
        )
    return label.astype(np.uint8)


FORMATS = ("segnet", "original")


class TrainValSource:
    """train followed by val: the papers' final CamVid protocol trains on both once the
    settings were chosen on val (`--config.dataset.train_split=trainval`)."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.info = self.parts[0].info

    def _locate(self, index):
        if index < 0:
            index += len(self)
        for part in self.parts:
            if 0 <= index < len(part):
                return part, index
            index -= len(part)
        raise IndexError(f"index out of range for {self!r}")

    def __len__(self):
        return sum(len(part) for part in self.parts)

    def __repr__(self):
        return f"TrainValSource({', '.join(map(repr, self.parts))})"

    def name(self, index):
        part, index = self._locate(index)
        return part.name(index)

    def __getitem__(self, index):
        part, index = self._locate(index)
        return part[index]


def make_source(root, split, camvid_format="segnet"):
    """The CamVid source for `config.dataset.camvid_format` ('segnet' or 'original');
    split "trainval" is train and val together."""
    if split == "trainval":
        return TrainValSource(make_source(root, part, camvid_format) for part in ("train", "val"))
    if camvid_format == "segnet":
        return CamVidSource(root, split)
    if camvid_format == "original":
        return CamVidOriginalSource(root, split)
    raise DataError(
        f"config.dataset.camvid_format={camvid_format!r} is not one of {', '.join(FORMATS)}: "
        "'segnet' for the 480x360 SegNet copy (train/ trainannot/ ...), 'original' for the "
        f"960x720 release ({ORIGINAL_LAYOUT})."
    )


def source_from_config(dataset_cfg, split):
    """The source for `config.dataset` (`root`, `camvid_format`, default 'segnet')."""
    return make_source(dataset_cfg.get("root", None), split,
                       dataset_cfg.get("camvid_format", "segnet"))
