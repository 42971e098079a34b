"""Evaluation predictions as PNG files, one per eval image at its stored resolution.

Cityscapes predictions are written as labelIds in the official result layout,
`<out>/<split>/<city>/<city>_<seq>_<frame>_pred_labelIds.png`, which cityscapesscripts'
evalPixelLevelSemanticLabeling (CITYSCAPES_RESULTS=<out>) and the benchmark server pair with
`*_gtFine_labelIds.png` by the `<city>_<seq>_<frame>` prefix. Other datasets get trainId PNGs,
`<out>/<split>/<image stem>_pred_trainIds.png`.
"""

from __future__ import annotations

import pathlib
import re

import cv2
import numpy as np
from absl import logging

from segjax import sharding

# Official image names; the prefix before `_leftImg8bit` identifies a frame in every product.
CITYSCAPES_IMAGE = re.compile(r"([a-z\-]+)_(\d+)_(\d+)_leftImg8bit\.png")


def train_to_source_lut(info, fill: int = 0) -> np.ndarray:
    """(256,) uint8 train id -> the first raw on-disk id mapping to it, `fill` elsewhere.

    This inverts `info.id_to_train_lut` the way cityscapesscripts' trainId2label does (the
    first label listed wins). Argmax predictions never hold `fill`; 0 is Cityscapes'
    'unlabeled', which the official evaluation ignores.
    """
    lut = np.full(256, fill, np.uint8)
    for c in info.classes:
        if c.source_ids:
            lut[c.train_id] = c.source_ids[0]
    return lut


def cityscapes_prediction_path(out_dir, split: str, image_name: str) -> pathlib.Path:
    """Where the official evaluation looks for the prediction of `image_name`."""
    match = CITYSCAPES_IMAGE.fullmatch(image_name)
    if not match:
        raise ValueError(f"{image_name!r} is not an official Cityscapes image name "
                         "(<city>_<seq>_<frame>_leftImg8bit.png); cannot name its prediction.")
    city, seq, frame = match.groups()
    return pathlib.Path(out_dir) / split / city / f"{city}_{seq}_{frame}_pred_labelIds.png"


def eval_frame_size(size, long_edge: int) -> tuple[int, int]:
    """(h, w) a stored frame has in the eval batch: `transforms.resize_long_edge`'s output."""
    height, width = size
    if not long_edge or max(height, width) == long_edge:
        return height, width
    scale = long_edge / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class PredictionWriter:
    """Writes each real example of the eval pass once, from `(predictions, mask)` batches.

    Eval batches carry no example ids, so the source index is recovered from the pipeline's
    fixed order: process p takes examples p, p+P, p+2P, ... and pads its last batch with
    `mask=False` entries (data_pipelines.pipeline._EvalShard). Padded pixels and any
    `resize_long_edge` scaling are undone, so files have the stored frame's size.
    """

    def __init__(self, source, out_dir, split: str, info, *, official: bool,
                 long_edge: int = 0, process_index: int = 0, process_count: int = 1):
        self.source = source
        self.out_dir = pathlib.Path(out_dir)
        self.split = split
        self.official = official
        self.long_edge = int(long_edge)
        self.process_index = process_index
        self.process_count = process_count
        self.lut = train_to_source_lut(info) if official else None
        self.num_written = 0
        self._slot = 0

    @classmethod
    def from_config(cls, config, info) -> PredictionWriter:
        """Writer for `config.eval_write_predictions`; labelIds for Cityscapes, else trainIds."""
        import jax

        from data_pipelines import build_source

        split = config.dataset.eval_split
        return cls(build_source(config.dataset, split), config.eval_write_predictions, split,
                   info, official=config.dataset.name == "cityscapes",
                   long_edge=int(config.data.get("resize_long_edge", 0)),
                   process_index=jax.process_index(), process_count=jax.process_count())

    def path(self, index: int) -> pathlib.Path:
        name = self.source.name(index) if hasattr(self.source, "name") else f"{index:06d}"
        if self.official:
            return cityscapes_prediction_path(self.out_dir, self.split, name)
        stem = pathlib.Path(name).stem
        return self.out_dir / self.split / f"{stem}_pred_trainIds.png"

    def _stored_size(self, index: int) -> tuple[int, int]:
        if hasattr(self.source, "image_size"):
            return tuple(self.source.image_size(index))
        return self.source[index]["label"].shape[:2]

    def add(self, predictions, mask) -> None:
        """Train-id `predictions`, (B, H, W): the eval step's batch-sharded global array or
        this process's rows; `mask` (B,) is the local eval batch's."""
        if hasattr(predictions, "addressable_shards"):
            predictions = sharding.process_local(predictions)
        predictions, mask = np.asarray(predictions), np.asarray(mask)
        if len(predictions) != len(mask):
            raise ValueError(f"{len(predictions)} predictions for {len(mask)} mask entries")
        for pred, real in zip(predictions, mask):
            index = self.process_index + self._slot * self.process_count
            self._slot += 1
            if not real:
                continue
            if index >= len(self.source):
                raise ValueError(f"eval slot {self._slot - 1} maps to example {index} of "
                                 f"{len(self.source)}: the eval order changed")
            self._write(index, pred)

    def _write(self, index: int, pred: np.ndarray) -> None:
        size = self._stored_size(index)
        height, width = eval_frame_size(size, self.long_edge)
        if pred.shape[0] < height or pred.shape[1] < width:
            raise ValueError(f"prediction {pred.shape} is smaller than eval frame {index} "
                             f"({height}, {width})")
        pred = np.ascontiguousarray(pred[:height, :width], np.uint8)
        if (height, width) != size:
            pred = cv2.resize(pred, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        if self.lut is not None:
            pred = self.lut[pred]
        path = self.path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), pred):
            raise OSError(f"could not write prediction {path}; check "
                          "config.eval_write_predictions points at a writable directory")
        self.num_written += 1

    def finish(self) -> int:
        kind = "labelId" if self.official else "trainId"
        logging.info("Wrote %d %s prediction PNGs to %s", self.num_written, kind,
                     self.out_dir / self.split)
        return self.num_written
