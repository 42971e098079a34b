"""Procedural street scenes labelled with Cityscapes train ids: the built-in default dataset.

It lets every pipeline, model and benchmark run end to end without a download. Classes are
told apart by shape, context and texture rather than by a fixed colour: every instance draws
its own colours and every image its own lighting, so the task is not a colour lookup, yet a
small network learns it quickly. Scenes are laid out in metric street coordinates and drawn
through a pinhole camera far to near (`camera`), one module per kind of thing drawn
(`ground`, `buildings`, `street_furniture`, `people`, `vehicles`), put together in `scene`.

    python -m data_pipelines.synthetic --out /tmp/synth --num 4 --size 256x512
"""

from __future__ import annotations

import argparse
import operator
import pathlib

import cv2
import numpy as np

from data_pipelines import metadata
from data_pipelines.synthetic.scene import render_scene

__all__ = ["SyntheticStreetScenes", "main", "render_scene", "source_from_config"]


class SyntheticStreetScenes:
    """Random-access source of procedural street scenes in Cityscapes train ids.

    Example i is a pure function of (seed, i, height, width), so any worker can produce any
    example in any order and runs are reproducible; give each split its own seed.
    """

    def __init__(self, num_images: int, height: int, width: int, seed: int = 0):
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if height < 8 or width < 8:
            raise ValueError(f"image size {height}x{width} is too small (min 8x8)")
        self.num_images = int(num_images)
        self.height = int(height)
        self.width = int(width)
        self.seed = int(seed)
        self.info = metadata.get_info("synthetic")

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index) -> dict[str, np.ndarray]:
        i = operator.index(index)
        if i < 0:
            i += self.num_images
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        image, label = render_scene(self.seed, i, self.height, self.width)
        return {"image": image, "label": label}

    def __repr__(self) -> str:
        return (f"SyntheticStreetScenes(num_images={self.num_images}, height={self.height}, "
                f"width={self.width}, seed={self.seed})")


def source_from_config(dataset_cfg, split):
    """The source for `config.dataset` (`image_size`, `num_train`, `num_eval`, `seed`).

    Synthetic data is a fixed dataset, not part of the training randomness, so its content
    seed comes from `dataset_cfg.seed` (default 0, the eval split uses seed+1) rather than
    from the run seed.
    """
    height, width = dataset_cfg.image_size
    seed = int(dataset_cfg.get("seed", 0))
    if split == dataset_cfg.get("train_split", "train"):
        return SyntheticStreetScenes(int(dataset_cfg.num_train), height, width, seed)
    return SyntheticStreetScenes(int(dataset_cfg.num_eval), height, width, seed + 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write synthetic street scenes as PNGs.")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--size", default="256x512", help="HxW")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    source = SyntheticStreetScenes(args.num, height, width, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(len(source)):
        ex = source[i]
        colour = metadata.colorize(ex["label"], source.info)
        cv2.imwrite(str(args.out / f"{i:04d}_image.png"), ex["image"][..., ::-1])
        cv2.imwrite(str(args.out / f"{i:04d}_label.png"), colour[..., ::-1])
    print(f"wrote {len(source)} image/label pairs to {args.out}")
