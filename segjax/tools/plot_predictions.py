"""A figure of eval frames: image | ground truth | prediction, one row per frame.

    python run.py --config=configs/ddrnet23slim_camvid.py:cpu --mode=predict --workdir=RUN \
        --config.dataset.root=/data/camvid --config.predict.input=/data/camvid/val
    python -m segjax.tools.plot_predictions --dataset camvid --root /data/camvid \
        --predictions RUN/predictions/labels --out frames.png [--frames 0,25,50,75]

Reads the labels `--mode=predict` wrote (trainIds, named like the images) and the eval
split's ground truth through the dataset's own loader, and colours both with its palette.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

import cv2
import ml_collections
import numpy as np


def triptych_rows(source, predictions: pathlib.Path, frames: Sequence[int]) -> np.ndarray:
    """(image | ground truth | prediction) rows stacked, uint8 RGB."""
    from data_pipelines import metadata

    info = source.info if hasattr(source, "info") else None
    rows = []
    for index in frames:
        example = source[index]
        name = pathlib.Path(source.name(index)).stem
        found = sorted(predictions.glob(f"{name}.*"))
        if not found:
            raise FileNotFoundError(f"no prediction for {name} in {predictions}; run "
                                    "--mode=predict on the eval images first")
        predicted = cv2.imread(str(found[0]), cv2.IMREAD_UNCHANGED)
        rows.append(np.concatenate([example["image"],
                                    metadata.colorize(example["label"], info),
                                    metadata.colorize(predicted, info)], axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset name (camvid, cityscapes…)")
    parser.add_argument("--root", required=True, help="dataset root")
    parser.add_argument("--split", default="val")
    parser.add_argument("--predictions", required=True, help="the labels/ folder of --mode=predict")
    parser.add_argument("--frames", default="0,25,50,75", help="eval-split indices")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from data_pipelines import DataError, build_source

    try:
        source = build_source(ml_collections.ConfigDict(
            {"name": args.dataset, "root": args.root}), args.split)
        frames = [int(i) for i in args.frames.split(",")]
        figure = triptych_rows(source, pathlib.Path(args.predictions), frames)
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}: {len(frames)} frames (image | ground truth | prediction)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
