"""Cityscapes through TensorFlow Datasets: array_record files built once from the official zips,
then read with random access and without TensorFlow.

    python -m data_pipelines.cityscapes_tfds prepare --manual_dir=ZIPS --data_dir=TFDS_DIR
    python -m data_pipelines.cityscapes_tfds verify --data_dir=TFDS_DIR

Building needs tensorflow (the TFDS builder lists files through tf.io.gfile); reading does not.
TFDS stores the raw `*_gtFine_labelIds.png`, so labels go through the same 34→19 table as the
directory source, and examples look exactly like `CityscapesSource`'s.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import re
import struct
import sys
import zipfile

import numpy as np

from data_pipelines import DataError
from data_pipelines.metadata import CITYSCAPES_MAX_LABEL_ID as MAX_LABEL_ID
from data_pipelines.metadata import get_info

NAME = "cityscapes/semantic_segmentation"
# Official zip -> its top folder; the builder needs both, unextracted, in the manual dir.
ZIPS = {"leftImg8bit_trainvaltest.zip": "leftImg8bit", "gtFine_trainvaltest.zip": "gtFine"}
DOWNLOAD_PAGE = "https://www.cityscapes-dataset.com/downloads/"
# Our split names (those of the directory layout) -> TFDS's.
SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
ZIP_SPLITS = ("train", "val", "test")
OFFICIAL_SIZES = {"train": 2975, "validation": 500, "test": 1525}
# The builder's own pattern (cityscapes_dataset_builder.py); it crashes on other file names.
IMAGE_RE = re.compile(r"([a-z\-]+)_(\d+)_(\d+)_leftImg8bit\.png")
CLI = "python -m data_pipelines.cityscapes_tfds"


def _explicit_dir(value, field):
    """TFDS falls back to ~/tensorflow_datasets on an empty path; here that is an error."""
    if not value:
        raise DataError(f"{field} is empty; give the directory explicitly (TFDS data is never "
                        "read from or written to ~/tensorflow_datasets implicitly).")
    return pathlib.Path(value).expanduser().absolute()


def _prepare_command(manual_dir, data_dir):
    return f"{CLI} prepare --manual_dir={manual_dir} --data_dir={data_dir}"


def check_manual_dir(manual_dir, data_dir="<tfds data dir>"):
    """Fails before TFDS starts (and before unzipping 11 GB) if the zips are missing or not in
    the official layout, naming the zip and what is wrong with it."""
    manual_dir = _explicit_dir(manual_dir, "--manual_dir")
    missing = [name for name in ZIPS if not (manual_dir / name).is_file()]
    if missing:
        raise DataError(
            f"Missing {' and '.join(missing)} in {manual_dir}. Download "
            f"{' and '.join(ZIPS)} from {DOWNLOAD_PAGE} (free registration), put them in "
            "that directory as they are (not unzipped), and run "
            f"{_prepare_command(manual_dir, data_dir)} again.")
    names = {}
    for zip_name, top in ZIPS.items():
        path = manual_dir / zip_name
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path} is not a readable zip (incomplete download?); download it "
                            f"again from {DOWNLOAD_PAGE}.")
        with zipfile.ZipFile(path) as archive:
            names[top] = {n for n in archive.namelist() if not n.endswith("/")}
        absent = [s for s in ZIP_SPLITS if not any(n.startswith(f"{top}/{s}/") for n in names[top])]
        if absent:
            raise DataError(f"{path} has no {', '.join(f'{top}/{s}/' for s in absent)}; the "
                            f"official zip holds {top}/{{train,val,test}}/<city>/. Use the "
                            f"unmodified {zip_name} from {DOWNLOAD_PAGE}.")
    missing_labels, bad_names = [], []
    for name in sorted(names["leftImg8bit"]):
        parts = name.split("/")
        if len(parts) != 4 or parts[1] not in ZIP_SPLITS:
            continue  # README, license.txt and other files outside <split>/<city>/
        match = IMAGE_RE.fullmatch(parts[3])
        if not match:
            bad_names.append(name)
            continue
        label = f"gtFine/{parts[1]}/{parts[2]}/{'_'.join(match.groups())}_gtFine_labelIds.png"
        if label not in names["gtFine"]:
            missing_labels.append(label)
    if bad_names:
        raise DataError(f"{len(bad_names)} files in leftImg8bit_trainvaltest.zip are not named "
                        f"<city>_<seq>_<frame>_leftImg8bit.png, e.g. {bad_names[:3]}; the TFDS "
                        "builder cannot pair them with labels.")
    if missing_labels:
        raise DataError(f"gtFine_trainvaltest.zip lacks {len(missing_labels)} labels for images "
                        f"in leftImg8bit_trainvaltest.zip, e.g. {missing_labels[:3]}.")
    return manual_dir


def _require_tensorflow():
    for module, package in (("tensorflow", "tensorflow-cpu"),
                            ("importlib_resources", "importlib_resources")):
        if importlib.util.find_spec(module) is None:
            raise DataError(
                f"Building the TFDS Cityscapes files needs {module}, which is not installed; "
                f"pip install the {package} version pinned in requirements.txt. Reading the "
                "built files afterwards does not need it.")


def _builder(data_dir, **kwargs):
    import tensorflow_datasets as tfds

    return tfds.builder(NAME, data_dir=str(data_dir), **kwargs)


def prepare(manual_dir, data_dir):
    """Builds `cityscapes/semantic_segmentation` (array_record) in `data_dir` from the zips in
    `manual_dir`; returns the dataset's version directory.

    TFDS unzips into `<data_dir>/downloads/extracted/` first (about the size of the zips),
    which can be deleted afterwards.
    """
    data_dir = _explicit_dir(data_dir, "--data_dir")
    manual_dir = check_manual_dir(manual_dir, data_dir)
    _require_tensorflow()
    import tensorflow_datasets as tfds

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        builder = _builder(data_dir, file_format="array_record")
    except ValueError as e:  # an earlier tfrecord build of the same version
        raise DataError(f"{data_dir} already holds a {NAME} build in another file format "
                        f"({e}); prepare into a new --data_dir.") from e
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return pathlib.Path(builder.data_dir)


def _png_size(data):
    """(height, width) from a PNG's IHDR chunk, so frame sizes need no decoding."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise DataError("stored segmentation_label is not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _process_count():
    import jax

    return jax.process_count()


class CityscapesTfdsSource:
    """One split of the prepared TFDS Cityscapes, in `CityscapesSource`'s example format.

    `split` uses the directory layout's names ("val" reads TFDS "validation"). When the data
    is not built yet and `manual_dir` is given, a single-process run builds it first.
    """

    def __init__(self, data_dir, split, manual_dir=""):
        self.data_dir = _explicit_dir(data_dir, "config.dataset.tfds_data_dir")
        if split not in SPLITS:
            raise DataError(f"Unknown Cityscapes split {split!r}; use one of "
                            f"{', '.join(s for s in SPLITS if s != 'validation')}.")
        self.split = split
        self.info = get_info("cityscapes")
        builder = _builder(self.data_dir) if self.data_dir.is_dir() else None
        if builder is None or not builder.is_prepared():
            builder = self._build_or_explain(manual_dir)
        if builder.info.file_format.value != "array_record":
            raise DataError(f"{builder.data_dir} was built as {builder.info.file_format.value}, "
                            "which has no random access; rebuild it into a new directory with "
                            f"{_prepare_command('<zip dir>', '<new dir>')}.")
        tfds_split = SPLITS[split]
        if tfds_split not in builder.info.splits:
            raise DataError(f"{builder.data_dir} has no split {tfds_split!r} (it has "
                            f"{', '.join(builder.info.splits)}).")
        import tensorflow_datasets as tfds

        self._examples = builder.as_data_source(tfds_split)
        skip = tfds.decode.SkipDecoding()
        self._encoded = builder.as_data_source(
            tfds_split, decoders={"image_left": skip, "segmentation_label": skip})
        if len(self._examples) == 0:
            raise DataError(f"TFDS split {tfds_split!r} in {builder.data_dir} is empty.")

    def _build_or_explain(self, manual_dir):
        if not manual_dir:
            raise DataError(
                f"No prepared TFDS {NAME} in {self.data_dir}. Build it once from the official "
                f"zips: {_prepare_command('<dir with ' + ' and '.join(ZIPS) + '>', self.data_dir)}"
                " (needs tensorflow), or set --config.dataset.manual_dir to that zip directory "
                "to build it on first use. For the unzipped layout use "
                "--config.dataset.format=directory --config.dataset.root=/path/to/cityscapes.")
        if _process_count() > 1:
            raise DataError(
                f"No prepared TFDS {NAME} in {self.data_dir}, and several processes must not "
                f"build it at once; build it first: {_prepare_command(manual_dir, self.data_dir)}")
        from absl import logging

        logging.info("Building TFDS %s in %s from the zips in %s (once; needs tensorflow).",
                     NAME, self.data_dir, manual_dir)
        prepare(manual_dir, self.data_dir)
        return _builder(self.data_dir)

    def __len__(self):
        return len(self._examples)

    def __repr__(self):
        return (f"CityscapesTfdsSource(data_dir={str(self.data_dir)!r}, split={self.split!r}, "
                f"num_examples={len(self)})")

    def image_id(self, index):
        """`<city>_<seq>_<frame>`, read without decoding the PNGs."""
        return self._encoded[index]["image_id"].decode()

    def name(self, index):
        """The official image file name, as `CityscapesSource.name` gives it."""
        return f"{self.image_id(index)}_leftImg8bit.png"

    def image_size(self, index):
        """(height, width) of frame `index` from the stored PNG header."""
        return _png_size(self._encoded[index]["segmentation_label"])

    def __getitem__(self, index):
        example = self._examples[index]
        image, label = example["image_left"], example["segmentation_label"]
        where = f"example {index} ({example['image_id'].decode()}) of {self!r}"
        if label.ndim == 3:
            label = label[..., 0]
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != label.shape:
            raise DataError(f"{where}: image {image.shape} and label {label.shape} do not form "
                            "an (H, W, 3) / (H, W) pair; rebuild the TFDS data.")
        if label.max() > MAX_LABEL_ID:
            bad = np.unique(label[label > MAX_LABEL_ID]).tolist()
            raise DataError(f"{where}: label values {bad} are outside the Cityscapes labelIds "
                            f"0..{MAX_LABEL_ID}; was it built from gtFine_trainvaltest.zip?")
        return {"image": np.ascontiguousarray(image, np.uint8),
                "label": self.info.to_train_ids(label)}


def source_from_config(dataset_cfg, split):
    """The source for `config.dataset.format = "tfds"`."""
    return CityscapesTfdsSource(dataset_cfg.get("tfds_data_dir", ""), split,
                                manual_dir=dataset_cfg.get("manual_dir", ""))


def verify(data_dir):
    """Per split: example count (next to the official one) and the first frame's size and
    classes, so a bad build shows up before training. Returns the counts."""
    counts = {}
    for split, tfds_split in (("train", "train"), ("val", "validation"), ("test", "test")):
        source = CityscapesTfdsSource(data_dir, split)
        example = source[0]
        present = [source.info.class_names[c] for c in np.unique(example["label"])
                   if c < source.info.num_classes]
        counts[split] = len(source)
        official = OFFICIAL_SIZES[tfds_split]
        note = "" if len(source) == official else f" (official Cityscapes: {official})"
        print(f"{split}: {len(source)} images{note}; {source.name(0)} is "
              f"{example['image'].shape[1]}x{example['image'].shape[0]}, classes: "
              f"{', '.join(present) or 'none (test labels are dummies)'}", flush=True)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(prog=CLI, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("prepare", help="build the TFDS files from the official zips")
    build.add_argument("--manual_dir", required=True,
                       help=f"directory holding {' and '.join(ZIPS)} (not unzipped)")
    build.add_argument("--data_dir", required=True,
                       help="TFDS data directory to write (config.dataset.tfds_data_dir)")
    check = commands.add_parser("verify", help="count and decode the built splits")
    check.add_argument("--data_dir", required=True, help="TFDS data directory to read")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            path = prepare(args.manual_dir, args.data_dir)
            print(f"Built {NAME} in {path}; read it with --config.dataset.format=tfds "
                  f"--config.dataset.tfds_data_dir={_explicit_dir(args.data_dir, '--data_dir')}",
                  flush=True)
        verify(args.data_dir)
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
