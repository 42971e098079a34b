"""Class pixel frequencies of a dataset split, reading every file: a dataset check.

    python -m data_pipelines.stats --config=configs/bcmfnet_camvid.py \
        --config.dataset.root=/data/camvid [--split=val] [--keep_going]

Every image and label is decoded and mapped exactly as training reads them, so a wrong
root, layout or label format fails here with the loader's message. The table (pixels per
class, share of all and of labelled pixels, images containing the class) can be compared
with published statistics, e.g. the SegNet CamVid train split: Sky 16.845 %, Road
31.658 %, void 3.948 % of all pixels. `--keep_going` lists every unreadable file instead
of stopping at the first.
"""

from __future__ import annotations

import concurrent.futures
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags; defined only when run as a program, so importing the module
    next to other tools (tests, notebooks) does not clash over --config."""
    config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
    flags.DEFINE_string("split", None, "Split to count (default: config.dataset.train_split).")
    flags.DEFINE_integer("num_threads", 4, "Decoding threads.")
    flags.DEFINE_integer("limit", 0, "Count only the first N examples (0: all).")
    flags.DEFINE_bool("keep_going", False, "Report unreadable examples at the end instead of "
                      "stopping at the first.")
    flags.mark_flags_as_required(["config"])


def count_split(source, num_classes, num_threads=4, limit=0, keep_going=False):
    """{'pixels': (C + 1,) int64 per class then ignore (any other value), 'images': (C + 1,)
    examples containing each, 'num_examples', 'errors': [messages of skipped examples]}."""
    from data_pipelines import DataError

    indices = range(len(source) if not limit else min(limit, len(source)))

    def count(index):
        try:
            label = source[index]["label"]
        except DataError as e:
            if not keep_going:
                raise
            return None, str(e)
        hist = np.bincount(label.ravel(), minlength=256)
        return np.append(hist[:num_classes], hist[num_classes:].sum()), None

    pixels = np.zeros(num_classes + 1, np.int64)
    images = np.zeros(num_classes + 1, np.int64)
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
        for hist, error in pool.map(count, indices):
            if error is not None:
                errors.append(error)
                continue
            pixels += hist
            images += hist > 0
    return {"pixels": pixels, "images": images, "num_examples": len(indices) - len(errors),
            "errors": errors}


def format_table(counts, info, title):
    """The per-class table as text; `info` is the dataset's metadata.DatasetInfo."""
    pixels, images = counts["pixels"], counts["images"]
    total = int(pixels.sum())
    labelled = int(pixels[: info.num_classes].sum())
    ignored = int(pixels[info.num_classes])
    width = max(len(n) for n in (*info.class_names, "ignore"))
    lines = [f"{title}: {counts['num_examples']} images, {total:,} px "
             f"({100 * ignored / max(total, 1):.3f} % ignored)",
             f"{'id':>3}  {'class':<{width}}  {'pixels':>14}  {'% all':>7}  "
             f"{'% labelled':>10}  {'images':>6}"]
    for c in info.classes:
        n = int(pixels[c.train_id])
        lines.append(f"{c.train_id:>3}  {c.name:<{width}}  {n:>14,}  "
                     f"{100 * n / max(total, 1):>7.3f}  {100 * n / max(labelled, 1):>10.3f}  "
                     f"{int(images[c.train_id]):>6}")
    lines.append(f"{info.ignore_label:>3}  {'ignore':<{width}}  {ignored:>14,}  "
                 f"{100 * ignored / max(total, 1):>7.3f}  {'-':>10}  "
                 f"{int(images[info.num_classes]):>6}")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from data_pipelines import DataError, build_source
    from data_pipelines.metadata import get_info

    config = FLAGS.config
    split = FLAGS.split or config.dataset.train_split
    info = get_info(config.dataset.name)
    try:
        source = build_source(config.dataset, split)
        counts = count_split(source, info.num_classes, FLAGS.num_threads, FLAGS.limit,
                             FLAGS.keep_going)
    except DataError as e:
        sys.exit(f"error: {e}")
    print(format_table(counts, info, f"{config.dataset.name} {split}"))
    if counts["errors"]:
        print(f"{len(counts['errors'])} unreadable examples:", *counts["errors"], sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
