"""The original CamVid release (960x720, 32-colour `*_L.png` labels) as a random-access source.

Its colours are grouped into the 11 SegNet classes of `metadata.CAMVID` and its frames split by
the SegNet frame names, so results compare with papers that use the 960x720 frames. The
layout checks shared with the SegNet copy (`missing_root`, `format_hint`) live here, since
the SegNet module dispatches to this one.
"""

import functools
import os
import pathlib

import cv2
import numpy as np

from data_pipelines import DataError, imread
from data_pipelines.metadata import CAMVID32_COLORS, CAMVID32_TO_CAMVID, get_info

RELEASE_DIRS = ("701_StillsRaw_full", "LabeledApproved_full")
LIST_DIRS = ("images", "labels")
ORIGINAL_LAYOUT = (
    "701_StillsRaw_full/<name>.png + LabeledApproved_full/<name>_L.png (+ label_colors.txt), "
    "or images/<name>.png + labels/<name>_L.png"
)
SPLITS_FILE = pathlib.Path(__file__).with_name("camvid_splits.txt")
SPLITS = ("train", "val", "test", "trainval")
_UNKNOWN = 254  # colour-LUT value of colours outside the table; 255 is Void


def missing_root(root, fix: str) -> DataError:
    """The error for an unset or absent CamVid root, in either format; `fix` says what to do."""
    where = (f"CamVid root {root!r} ({os.path.abspath(root)}) does not exist" if root
             else "CamVid root is not set (config.dataset.root is empty)")
    return DataError(f"{where}. {fix}")


def format_hint(root, camvid_format):
    """Points at the other camvid_format when `root` holds that layout instead."""
    if camvid_format == "segnet" and any(
        os.path.isdir(os.path.join(root, d)) for d in (RELEASE_DIRS[0], LIST_DIRS[0])
    ):
        return (" This root holds the original CamVid release; set "
                "--config.dataset.camvid_format=original.")
    if camvid_format == "original" and os.path.isdir(os.path.join(root, "trainannot")):
        return (" This root holds the SegNet copy; set --config.dataset.camvid_format=segnet "
                "(the default).")
    return ""


@functools.cache
def segnet_split_names(split):
    """Frame names (no extension) of a SegNet split, read from camvid_splits.txt.

    The 960x720 release has no split of its own; papers that report on it use SegNet's
    367/101/233 frames, so the names ship with the code instead of being guessed.
    """
    if split not in SPLITS:
        raise DataError(
            f"Unknown CamVid split {split!r}; valid splits: {', '.join(SPLITS)}. "
            "Set --config.dataset.train_split / eval_split."
        )
    if split == "trainval":
        return segnet_split_names("train") + segnet_split_names("val")
    names, current = {}, None
    for line in SPLITS_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = names.setdefault(line.strip("[]"), [])
        else:
            current.append(line)
    return tuple(names[split])


def _read_label_colors(path):
    """label_colors.txt as [(rgb, name)]; lines are 'R G B<TAB>Name'."""
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                rgb = tuple(int(v) for v in fields[:3])
                name = fields[3]
            except (ValueError, IndexError):
                raise DataError(
                    f"{path}:{line_no}: expected 'R G B<TAB>Name', got {line.strip()!r}"
                ) from None
            rows.append((rgb, name))
    return rows


def check_label_colors(path):
    """Fails unless `path` lists the 32 colours of metadata.CAMVID32_COLORS.

    The grouping into 11 classes is keyed by colour, so a release with other colours
    (a re-pack, or a different class set) would be mislabelled silently otherwise.
    """
    expected = {rgb: name for name, rgb, _ in CAMVID32_COLORS}
    found = dict(_read_label_colors(path))
    if found != expected:
        extra = sorted(set(found.items()) - set(expected.items()))
        missing = sorted(set(expected.items()) - set(found.items()))
        raise DataError(
            f"{path} does not list the 32 CamVid colours this loader groups into 11 classes: "
            f"unexpected {extra[:5]}, missing {missing[:5]} ((R, G, B), name). Use the "
            "original release's label_colors.txt, or remove the file to use the built-in table."
        )


@functools.cache
def _color_lut():
    """(2**24,) uint8: packed 0xRRGGBB colour -> CAMVID train id, 255 Void, 254 unknown.

    One gather per label map; 16 MB per process, built on first use.
    """
    lut = np.full(1 << 24, _UNKNOWN, np.uint8)
    for (r, g, b), train_id in CAMVID32_TO_CAMVID.items():
        lut[(r << 16) | (g << 8) | b] = train_id
    lut.flags.writeable = False
    return lut


def _packed_rgb(bgr):
    """HxWx3 uint8 BGR -> HxW uint32 0xRRGGBB (BGRA bytes read as little-endian uint32)."""
    bgra = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2BGRA)
    return bgra.view("<u4")[..., 0] & 0xFFFFFF


def colors_to_camvid(bgr, path="label"):
    """Colour label (HxWx3 uint8, BGR as cv2 reads it) -> HxW uint8 CAMVID train ids.

    Void becomes 255; any colour outside the 32-colour table raises a DataError naming
    `path`, the colours (RGB) and their pixel counts.
    """
    packed = _packed_rgb(bgr)
    label = _color_lut()[packed]
    unknown = label == _UNKNOWN
    if unknown.any():
        colors, counts = np.unique(packed[unknown], return_counts=True)
        order = np.argsort(-counts)[:5]
        listed = ", ".join(
            f"RGB ({c >> 16}, {(c >> 8) & 255}, {c & 255}) x{n} px"
            for c, n in zip(colors[order].tolist(), counts[order].tolist())
        )
        raise DataError(
            f"label {path} has {len(colors)} colour(s) outside the 32 CamVid colours "
            f"(label_colors.txt): {listed}. Is it an original *_L.png colour label? Repaint "
            "those pixels with a listed colour (Void (0, 0, 0) to ignore them), or set "
            "--config.data.skip_corrupt=True to skip the frame."
        )
    return label


class CamVidOriginalSource:
    """One SegNet split of the original 960x720 CamVid, colour labels grouped to 11 classes.

    Accepts the release layout (`701_StillsRaw_full/`, `LabeledApproved_full/`,
    `label_colors.txt`) and the list layout of PIDNet-style repos (`images/`, `labels/`).
    Frames are chosen by the SegNet names (camvid_splits.txt), so results compare with
    papers that train on 367 and test on 233 frames at 960x720. Every file is checked when
    the source is built, so a partial copy fails before training starts.
    """

    def __init__(self, root, split):
        if not root or not os.path.isdir(root):
            raise missing_root(
                root, f"Put the original CamVid release ({ORIGINAL_LAYOUT}) in a directory "
                "and set --config.dataset.root=/path/to/camvid, or use the SegNet copy with "
                "--config.dataset.camvid_format=segnet.")
        self.root = os.path.abspath(root)
        self.split = split
        self.info = get_info("camvid")
        for image_name, label_name in (RELEASE_DIRS, LIST_DIRS):
            image_dir = os.path.join(self.root, image_name)
            if os.path.isdir(image_dir):
                label_dir = os.path.join(self.root, label_name)
                break
        else:
            raise DataError(
                f"CamVid image directory {os.path.join(self.root, RELEASE_DIRS[0])} (or "
                f"{os.path.join(self.root, LIST_DIRS[0])}) is missing; with "
                f"camvid_format=original the root must hold {ORIGINAL_LAYOUT}."
                f"{format_hint(self.root, 'original')}"
            )
        if not os.path.isdir(label_dir):
            raise DataError(
                f"CamVid label directory {label_dir} is missing; it must hold the colour "
                f"labels <name>_L.png next to {image_dir}."
            )
        colors_file = os.path.join(self.root, "label_colors.txt")
        if os.path.isfile(colors_file):
            check_label_colors(colors_file)
        names = segnet_split_names(split)
        self._pairs = [
            (os.path.join(image_dir, f"{n}.png"), os.path.join(label_dir, f"{n}_L.png"))
            for n in names
        ]
        missing = [p for pair in self._pairs for p in pair if not os.path.isfile(p)]
        if missing:
            repack = any(pathlib.Path(label_dir).glob("*_P.png"))
            raise DataError(
                f"{len(missing)} of the {2 * len(names)} files of CamVid split {split!r} are "
                f"missing, e.g. {', '.join(missing[:3])}. The split uses the SegNet frame "
                f"names ({SPLITS_FILE.name}); restore the files from the original release."
                + (f" {label_dir} holds *_P.png class-index labels (the fastai re-pack); this "
                   "loader reads the release's *_L.png colour labels." if repack else "")
            )

    def __len__(self):
        return len(self._pairs)

    def __repr__(self):
        return (f"CamVidOriginalSource(root={self.root!r}, split={self.split!r}, "
                f"num_examples={len(self)})")

    def name(self, index):
        return os.path.basename(self._pairs[index][0])

    def __getitem__(self, index):
        image_path, label_path = self._pairs[index]
        image = imread(image_path, cv2.IMREAD_COLOR_RGB, "image")
        label = imread(label_path, cv2.IMREAD_COLOR, "label")
        if image.shape[:2] != label.shape[:2]:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but label "
                f"{label_path} is {label.shape[1]}x{label.shape[0]} (WxH); they must match."
            )
        return {
            "image": image,
            "label": colors_to_camvid(label, label_path),
        }
