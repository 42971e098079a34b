"""Mapillary Vistas v1.2 from either distributed package, palette-index labels (65 classes)."""

import json
import pathlib

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from data_pipelines import DataError, imread
from data_pipelines.metadata import MAPILLARY_UNLABELED, get_info

SPLIT_DIRS = {"train": "training", "val": "validation", "test": "testing"}
LAYOUT = ("the v1.2 package (<split>/images/*.jpg and <split>/labels/*.png) or the v2.0 "
          "package (<split>/images/*.jpg and <split>/v1.2/labels/*.png), with <split> = "
          "training | validation")
NUM_LABEL_INDICES = MAPILLARY_UNLABELED + 1  # 66 in config.json, Unlabeled last
CONFIG_FILES = ("config.json", "config_v1.2.json")


class MapillarySource:
    """One split of Mapillary Vistas v1.2; `split` is train/val (or training/validation).

    Labels are the v1.2 `labels/*.png`: 8-bit palette PNGs whose pixel value is the class
    index 0..65, so they are read as indices (PIL), not as colours; index 65 (Unlabeled)
    becomes 255. Both packages are accepted: v1.2 keeps them in `<split>/labels/`, v2.0 in
    `<split>/v1.2/labels/` next to its own 124-class `v2.0/`, which this source does not
    read. Frames vary in size; set `config.data.resize_long_edge` (2177 in the recipes).
    """

    def __init__(self, root, split):
        if not root or not pathlib.Path(root).is_dir():
            where = (f"Mapillary root {str(root)!r} ({pathlib.Path(root).absolute()}) does not "
                     "exist" if root else "Mapillary root is not set (config.dataset.root is "
                     "empty)")
            raise DataError(
                f"{where}. Unzip Mapillary Vistas ({LAYOUT}) into one directory and pass "
                "--config.dataset.root=/path/to/mapillary; or train on another dataset: "
                "--config.dataset.name=camvid --config.dataset.root=/path/to/camvid, or "
                "--config=configs/quickstart.py for the built-in synthetic scenes.")
        self.root = pathlib.Path(root).absolute()
        self.split = split
        self.info = get_info("mapillary")
        split_dir = self.root / SPLIT_DIRS.get(split, split)
        if split_dir.name not in SPLIT_DIRS.values():
            raise DataError(f"Unknown Mapillary split {split!r}; use train or val "
                            f"(directories {', '.join(SPLIT_DIRS.values())}).")
        if split_dir.name == "testing":
            raise DataError(f"Mapillary {split_dir} has no labels (the test set is withheld); "
                            "evaluate on --config.dataset.eval_split=val.")
        image_dir = split_dir / "images"
        if not image_dir.is_dir():
            raise DataError(f"Mapillary image directory {image_dir} is missing; the root must "
                            f"hold {LAYOUT}. Check --config.dataset.root and the split name.")
        self.layout, label_dir = self._find_labels(split_dir)
        self._check_config()
        images = sorted(image_dir.glob("*.jpg"))
        if not images:
            raise DataError(f"No *.jpg images in {image_dir}.")
        self._pairs = []
        for image in images:
            label = label_dir / f"{image.stem}.png"
            if not label.is_file():
                raise DataError(f"Label {label} for image {image} is missing.")
            self._pairs.append((image, label))

    @staticmethod
    def _find_labels(split_dir):
        for layout, label_dir in (("v1.2", split_dir / "labels"),
                                  ("v2.0", split_dir / "v1.2" / "labels")):
            if label_dir.is_dir():
                return layout, label_dir
        if (split_dir / "v2.0" / "labels").is_dir():
            raise DataError(
                f"{split_dir} holds only v2.0 labels (124 classes) and no {split_dir}/v1.2/"
                "labels/; this source trains on the 66-index v1.2 labels, which the v2.0 "
                "package ships in <split>/v1.2/labels/. Extract them too.")
        raise DataError(f"Mapillary label directory {split_dir / 'labels'} (v1.2 package) or "
                        f"{split_dir / 'v1.2' / 'labels'} (v2.0 package) is missing; the root "
                        f"must hold {LAYOUT}.")

    def _check_config(self):
        """A v1.2 class list that is not the 66 entries of our table means another version."""
        for name in CONFIG_FILES:
            path = self.root / name
            if not path.is_file():
                continue
            try:
                labels = json.loads(path.read_text())["labels"]
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path} is not a Mapillary config (a JSON object with a "
                                f"'labels' list): {e}") from e
            if len(labels) != NUM_LABEL_INDICES:
                raise DataError(f"{path} lists {len(labels)} labels, but Mapillary Vistas "
                                f"v1.2 has {NUM_LABEL_INDICES} (v2.0 has 124); point "
                                "--config.dataset.root at the v1.2 data.")
            return

    def __len__(self):
        return len(self._pairs)

    def __repr__(self):
        return (f"MapillarySource(root={str(self.root)!r}, split={self.split!r}, "
                f"layout={self.layout!r}, num_examples={len(self)})")

    def name(self, index):
        return self._pairs[index][0].name

    def __getitem__(self, index):
        image_path, label_path = self._pairs[index]
        image = imread(image_path, cv2.IMREAD_COLOR_RGB, "image")
        label = read_index_png(label_path)
        if image.shape[:2] != label.shape:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]} (WxH); they must match.")
        if label.max() > MAPILLARY_UNLABELED:
            bad = np.unique(label[label > MAPILLARY_UNLABELED]).tolist()
            raise DataError(f"label {label_path} has values {bad} outside the v1.2 class "
                            f"indices 0..{MAPILLARY_UNLABELED}; is it a v2.0 label?")
        return {"image": image,
                "label": self.info.to_train_ids(label)}


def read_index_png(path):
    """The pixel indices of an 8-bit palette (or greyscale) PNG, as uint8 (H, W).

    OpenCV would expand a palette image to its colours, so PIL reads it.
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.asarray(img) if mode in ("P", "L") else None
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot decode label {path}: {e}; replace the file, or set "
                        "--config.data.skip_corrupt=True to skip unreadable examples") from e
    if array is None:
        raise DataError(f"label {path} is a mode-{mode} image; expected the 8-bit palette PNG "
                        "of v1.2 labels/, whose pixel values are class indices (instances/ "
                        "are 16-bit and panoptic/ are RGB).")
    return array.astype(np.uint8, copy=False)


def source_from_config(dataset_cfg, split):
    """The source for `config.dataset` (`root`)."""
    return MapillarySource(dataset_cfg.get("root", None), split)
