"""Class tables of the supported datasets and the registry of dataset names.

Loaders, metrics, logs and visualisations all read these tables, so a class name or colour
is spelt once. Train ids are contiguous 0..num_classes-1 and every other value is ignored.
`REGISTRY` maps each `config.dataset.name` to its table and source builder, the one place a
dataset is added.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib

import numpy as np

IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class ClassInfo:
    """One training class: `source_ids` are the raw on-disk label values that map to it."""

    train_id: int
    name: str
    color: tuple[int, int, int]
    source_ids: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A dataset's label space; derived arrays are cached and read-only."""

    name: str
    classes: tuple[ClassInfo, ...]
    ignore_label: int = IGNORE_LABEL
    ignore_color: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self):
        ids = [c.train_id for c in self.classes]
        if ids != list(range(len(ids))):
            raise ValueError(
                f"{self.name}: train ids must be 0..{len(ids) - 1} in order, got {ids}"
            )
        if not len(ids) <= self.ignore_label <= 255:
            raise ValueError(f"{self.name}: ignore_label {self.ignore_label} collides or overflows")
        sources = [s for c in self.classes for s in c.source_ids]
        if len(sources) != len(set(sources)) or not all(0 <= s <= 255 for s in sources):
            raise ValueError(f"{self.name}: source ids must be unique values in 0..255")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @functools.cached_property
    def palette(self) -> np.ndarray:
        """(256, 3) uint8 colour per label value; the ignore value and unknown values are
        `ignore_color`, so `palette[label]` colours any uint8 label map."""
        pal = np.zeros((256, 3), np.uint8)
        pal[self.ignore_label] = self.ignore_color
        for c in self.classes:
            pal[c.train_id] = c.color
        pal.flags.writeable = False
        return pal

    @functools.cached_property
    def id_to_train_lut(self) -> np.ndarray:
        """(256,) uint8 raw on-disk value -> train id (ignore_label where unmapped), so
        `lut[raw]` converts a raw label map in one indexing op."""
        lut = np.full(256, self.ignore_label, np.uint8)
        for c in self.classes:
            lut[list(c.source_ids)] = c.train_id
        lut.flags.writeable = False
        return lut

    def to_train_ids(self, raw: np.ndarray) -> np.ndarray:
        """A raw uint8 label map -> train ids through `id_to_train_lut` (cv2.LUT, which is
        ~5x faster than numpy indexing on full-resolution frames)."""
        import cv2

        return cv2.LUT(np.ascontiguousarray(raw, np.uint8), self.id_to_train_lut)


def _table(name, rows, **kwargs) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        classes=tuple(
            ClassInfo(i, n, tuple(rgb), (src,)) for i, (n, src, rgb) in enumerate(rows)
        ),
        **kwargs,
    )


# Cityscapes: (train name, labelId, colour) from cityscapesScripts labels.py; every other
# labelId (unlabeled, ego vehicle, parking, rail track, guard rail, caravan, ...) is ignored.
CITYSCAPES = _table(
    "cityscapes",
    [
        ("road", 7, (128, 64, 128)),
        ("sidewalk", 8, (244, 35, 232)),
        ("building", 11, (70, 70, 70)),
        ("wall", 12, (102, 102, 156)),
        ("fence", 13, (190, 153, 153)),
        ("pole", 17, (153, 153, 153)),
        ("traffic light", 19, (250, 170, 30)),
        ("traffic sign", 20, (220, 220, 0)),
        ("vegetation", 21, (107, 142, 35)),
        ("terrain", 22, (152, 251, 152)),
        ("sky", 23, (70, 130, 180)),
        ("person", 24, (220, 20, 60)),
        ("rider", 25, (255, 0, 0)),
        ("car", 26, (0, 0, 142)),
        ("truck", 27, (0, 0, 70)),
        ("bus", 28, (0, 60, 100)),
        ("train", 31, (0, 80, 100)),
        ("motorcycle", 32, (0, 0, 230)),
        ("bicycle", 33, (119, 11, 32)),
    ],
)
# labelIds on disk run 0..33, ignored ones included; a larger value means the file is not a
# labelIds map, which the loaders report instead of mapping it to ignore.
CITYSCAPES_MAX_LABEL_ID = 33

# CamVid, SegNet 11-class version: raw values 0..10 are the train ids; raw 11 (Unlabelled)
# maps to 255 through the LUT.
CAMVID = _table(
    "camvid",
    [
        ("Sky", 0, (128, 128, 128)),
        ("Building", 1, (128, 0, 0)),
        ("Pole", 2, (192, 192, 128)),
        ("Road", 3, (128, 64, 128)),
        ("Pavement", 4, (60, 40, 222)),
        ("Tree", 5, (128, 128, 0)),
        ("SignSymbol", 6, (192, 128, 128)),
        ("Fence", 7, (64, 64, 128)),
        ("Car", 8, (64, 0, 128)),
        ("Pedestrian", 9, (64, 64, 0)),
        ("Bicyclist", 10, (0, 128, 192)),
    ],
)

# Original CamVid release (960x720 colour labels `*_L.png`): the 32 colours of its
# label_colors.txt, in file order, each with the CAMVID class it is grouped into by the
# SegNet 11-class methodology (MathWorks camvidPixelLabelIDs); Void (None) is ignored.
CAMVID32_COLORS = (
    ("Animal", (64, 128, 64), "Pedestrian"),
    ("Archway", (192, 0, 128), "Building"),
    ("Bicyclist", (0, 128, 192), "Bicyclist"),
    ("Bridge", (0, 128, 64), "Building"),
    ("Building", (128, 0, 0), "Building"),
    ("Car", (64, 0, 128), "Car"),
    ("CartLuggagePram", (64, 0, 192), "Pedestrian"),
    ("Child", (192, 128, 64), "Pedestrian"),
    ("Column_Pole", (192, 192, 128), "Pole"),
    ("Fence", (64, 64, 128), "Fence"),
    ("LaneMkgsDriv", (128, 0, 192), "Road"),
    ("LaneMkgsNonDriv", (192, 0, 64), "Road"),
    ("Misc_Text", (128, 128, 64), "SignSymbol"),
    ("MotorcycleScooter", (192, 0, 192), "Bicyclist"),
    ("OtherMoving", (128, 64, 64), "Car"),
    ("ParkingBlock", (64, 192, 128), "Pavement"),
    ("Pedestrian", (64, 64, 0), "Pedestrian"),
    ("Road", (128, 64, 128), "Road"),
    ("RoadShoulder", (128, 128, 192), "Pavement"),
    ("Sidewalk", (0, 0, 192), "Pavement"),
    ("SignSymbol", (192, 128, 128), "SignSymbol"),
    ("Sky", (128, 128, 128), "Sky"),
    ("SUVPickupTruck", (64, 128, 192), "Car"),
    ("TrafficCone", (0, 0, 64), "Pole"),
    ("TrafficLight", (0, 64, 64), "SignSymbol"),
    ("Train", (192, 64, 128), "Car"),
    ("Tree", (128, 128, 0), "Tree"),
    ("Truck_Bus", (192, 128, 192), "Car"),
    ("Tunnel", (64, 0, 64), "Building"),
    ("VegetationMisc", (192, 192, 0), "Tree"),
    ("Void", (0, 0, 0), None),
    ("Wall", (64, 192, 0), "Building"),
)
# The 31 named classes with their own colours (Void is the ignore colour), for palettes and
# names of the raw 32-class labels; training on the original release uses CAMVID's 11.
CAMVID32 = DatasetInfo(
    "camvid32",
    tuple(ClassInfo(i, name, rgb) for i, (name, rgb, _) in
          enumerate(row for row in CAMVID32_COLORS if row[2] is not None)),
)
# RGB colour -> CAMVID train id (IGNORE_LABEL for Void); a misspelt group fails at import.
CAMVID32_TO_CAMVID = {
    rgb: CAMVID.class_names.index(group) if group else IGNORE_LABEL
    for _, rgb, group in CAMVID32_COLORS
}

# Mapillary Vistas v1.2: the 8-bit palette labels store the class index 0..65 (config.json
# order), which is the train id; index 65 "Unlabeled" (evaluate=False, colour (0, 0, 0)) is
# ignored through the LUT, leaving 65 training classes.
MAPILLARY_UNLABELED = 65
MAPILLARY = _table(
    "mapillary",
    [
        ("Bird", 0, (165, 42, 42)),
        ("Ground Animal", 1, (0, 192, 0)),
        ("Curb", 2, (196, 196, 196)),
        ("Fence", 3, (190, 153, 153)),
        ("Guard Rail", 4, (180, 165, 180)),
        ("Barrier", 5, (90, 120, 150)),
        ("Wall", 6, (102, 102, 156)),
        ("Bike Lane", 7, (128, 64, 255)),
        ("Crosswalk - Plain", 8, (140, 140, 200)),
        ("Curb Cut", 9, (170, 170, 170)),
        ("Parking", 10, (250, 170, 160)),
        ("Pedestrian Area", 11, (96, 96, 96)),
        ("Rail Track", 12, (230, 150, 140)),
        ("Road", 13, (128, 64, 128)),
        ("Service Lane", 14, (110, 110, 110)),
        ("Sidewalk", 15, (244, 35, 232)),
        ("Bridge", 16, (150, 100, 100)),
        ("Building", 17, (70, 70, 70)),
        ("Tunnel", 18, (150, 120, 90)),
        ("Person", 19, (220, 20, 60)),
        ("Bicyclist", 20, (255, 0, 0)),
        ("Motorcyclist", 21, (255, 0, 100)),
        ("Other Rider", 22, (255, 0, 200)),
        ("Lane Marking - Crosswalk", 23, (200, 128, 128)),
        ("Lane Marking - General", 24, (255, 255, 255)),
        ("Mountain", 25, (64, 170, 64)),
        ("Sand", 26, (230, 160, 50)),
        ("Sky", 27, (70, 130, 180)),
        ("Snow", 28, (190, 255, 255)),
        ("Terrain", 29, (152, 251, 152)),
        ("Vegetation", 30, (107, 142, 35)),
        ("Water", 31, (0, 170, 30)),
        ("Banner", 32, (255, 255, 128)),
        ("Bench", 33, (250, 0, 30)),
        ("Bike Rack", 34, (100, 140, 180)),
        ("Billboard", 35, (220, 220, 220)),
        ("Catch Basin", 36, (220, 128, 128)),
        ("CCTV Camera", 37, (222, 40, 40)),
        ("Fire Hydrant", 38, (100, 170, 30)),
        ("Junction Box", 39, (40, 40, 40)),
        ("Mailbox", 40, (33, 33, 33)),
        ("Manhole", 41, (100, 128, 160)),
        ("Phone Booth", 42, (142, 0, 0)),
        ("Pothole", 43, (70, 100, 150)),
        ("Street Light", 44, (210, 170, 100)),
        ("Pole", 45, (153, 153, 153)),
        ("Traffic Sign Frame", 46, (128, 128, 128)),
        ("Utility Pole", 47, (0, 0, 80)),
        ("Traffic Light", 48, (250, 170, 30)),
        ("Traffic Sign (Back)", 49, (192, 192, 192)),
        ("Traffic Sign (Front)", 50, (220, 220, 0)),
        ("Trash Can", 51, (140, 140, 20)),
        ("Bicycle", 52, (119, 11, 32)),
        ("Boat", 53, (150, 0, 255)),
        ("Bus", 54, (0, 60, 100)),
        ("Car", 55, (0, 0, 142)),
        ("Caravan", 56, (0, 0, 90)),
        ("Motorcycle", 57, (0, 0, 230)),
        ("On Rails", 58, (0, 80, 100)),
        ("Other Vehicle", 59, (128, 64, 64)),
        ("Trailer", 60, (0, 0, 110)),
        ("Truck", 61, (0, 0, 70)),
        ("Wheeled Slow", 62, (0, 0, 192)),
        ("Car Mount", 63, (32, 32, 32)),
        ("Ego Vehicle", 64, (120, 10, 10)),
    ],
)

@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registered dataset: its class table and the function that builds its sources.

    `builder` is a "module:function" path imported on first use, so reading the registry
    (and importing `data_pipelines`) never loads TensorFlow, grain or cv2.
    """

    info: DatasetInfo
    builder: str

    def build_source(self, dataset_cfg, split):
        """The source for `split` from `config.dataset`; imports the builder's module."""
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)(dataset_cfg, split)


# config.dataset.name -> Dataset, in the order error messages list them. The synthetic street
# scenes are labelled in Cityscapes train ids, so models and metrics trained on them transfer
# to Cityscapes unchanged.
REGISTRY = {
    "synthetic": Dataset(CITYSCAPES, "data_pipelines.synthetic:source_from_config"),
    "camvid": Dataset(CAMVID, "data_pipelines.camvid:source_from_config"),
    "cityscapes": Dataset(CITYSCAPES, "data_pipelines.cityscapes:source_from_config"),
    "mapillary": Dataset(MAPILLARY, "data_pipelines.mapillary:source_from_config"),
}
DATASETS = tuple(REGISTRY)


def get_info(name: str) -> DatasetInfo:
    """The table for a dataset name as used in configs ('cityscapes', 'camvid', 'mapillary',
    'synthetic')."""
    try:
        return REGISTRY[name].info
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown dataset {name!r}; valid names: {', '.join(sorted(REGISTRY))}"
        ) from None


def _as_index(label: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """uint8 view of a label map of any integer dtype; out-of-range values become ignore."""
    label = np.asarray(label)
    if label.dtype == np.uint8:
        return label
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"label must be an integer array, got {label.dtype}")
    return np.where((label >= 0) & (label <= 255), label, info.ignore_label).astype(np.uint8)


def colorize(label: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """(..., H, W) integer label map -> (..., H, W, 3) uint8 RGB in the dataset palette."""
    return info.palette[_as_index(label, info)]


def overlay(image: np.ndarray, label: np.ndarray, info: DatasetInfo,
            alpha: float = 0.5) -> np.ndarray:
    """Blends the palette colour into `image` (uint8 RGB) with weight `alpha`; ignore and
    unknown label values leave the image untouched so they read as 'no label'."""
    image = np.asarray(image)
    idx = _as_index(label, info)
    if image.shape[:-1] != idx.shape or image.shape[-1] != 3:
        raise ValueError(f"image {image.shape} and label {idx.shape} must be (H, W, 3) and (H, W)")
    blended = (1.0 - alpha) * image + alpha * info.palette[idx].astype(np.float32)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    keep = idx >= info.num_classes
    out[keep] = image[keep]
    return out
