"""Input-pipeline throughput: decoded + augmented training images per second.

    python -m segjax.tools.bench_input --config=configs/ddrnet23slim_cityscapes.py \
        [--config.data.num_workers=2 ...] [--num_batches 20] [--warmup 3] [--sweep] \
        [--synthetic_files /tmp/bench_files [--synthetic_count 16] [--synthetic_codec png]]

Builds the configured train pipeline (the same grain graph training uses) and times
`num_batches` batches after `warmup`. `--sweep` also tries other worker/thread counts, then
prefetch buffer sizes for the best of those, and prints the fastest setting as config flags.
`--synthetic_files DIR` writes real 1024x2048 image/label files in the Cityscapes layout
(rendered street scenes, so the PNGs compress like Cityscapes' ~2.3 MB frames) and
benchmarks those, for when the dataset is not on this machine; decoding, not scene
rendering, is then what is measured.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags; defined only when run as a program, so importing the module
    next to other tools (tests, notebooks) does not clash over --config."""
    config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
    flags.DEFINE_integer("num_batches", 20, "Batches timed per setting.")
    flags.DEFINE_integer("warmup", 3, "Batches read before timing (worker start, buffers).")
    flags.DEFINE_bool("sweep", False, "Also time other num_workers/num_threads settings, then "
                      "prefetch buffer sizes for the best of them, and recommend the fastest.")
    flags.DEFINE_string("synthetic_files", None, "Write synthetic files in the Cityscapes layout "
                        "here (reused if already written) and benchmark them instead of the "
                        "configured dataset.")
    flags.DEFINE_integer("synthetic_count", 16, "Number of synthetic image/label pairs.")
    flags.DEFINE_string("synthetic_size", "1024x2048", "HxW of the synthetic files.")
    flags.DEFINE_enum("synthetic_codec", "png", ["png", "jpeg"],
                      "Image codec of the synthetic files: png as Cityscapes, jpeg as Mapillary "
                      "(stored under the Cityscapes names; OpenCV detects the codec from the "
                      "content). Labels are always PNG.")
    flags.mark_flags_as_required(["config"])


CITY = "benchcity"


def write_synthetic_files(root, count, height, width, codec="png"):
    """Writes `count` rendered scenes as Cityscapes leftImg8bit/gtFine train files.

    Files are reused when `root/bench_files.json` says they match; labels are labelIds
    (the inverse of the 34->19 table), so CityscapesSource reads them as it reads real data.
    """
    import cv2
    import numpy as np

    from data_pipelines.metadata import CITYSCAPES
    from data_pipelines.synthetic import render_scene

    root = pathlib.Path(root)
    manifest = {"count": count, "size": [height, width], "codec": codec}
    manifest_path = root / "bench_files.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        return root
    image_dir = root / "leftImg8bit" / "train" / CITY
    label_dir = root / "gtFine" / "train" / CITY
    for folder in (image_dir, label_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{CITY}_*.png"):
            stale.unlink()
    to_label_id = np.zeros(256, np.uint8)  # ignore -> 0 (unlabeled)
    for c in CITYSCAPES.classes:
        to_label_id[c.train_id] = c.source_ids[0]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if codec == "jpeg" else []
    for i in range(count):
        image, label = render_scene(0, i, height, width)
        ok, data = cv2.imencode(".jpg" if codec == "jpeg" else ".png", image[..., ::-1], params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {codec} image")
        stem = f"{CITY}_000000_{i:06d}"
        (image_dir / f"{stem}_leftImg8bit.png").write_bytes(data.tobytes())
        cv2.imwrite(str(label_dir / f"{stem}_gtFine_labelIds.png"), to_label_id[label])
        print(f"\rwrote {i + 1}/{count} synthetic {codec} pairs in {root}", end="", flush=True)
    print(flush=True)
    manifest_path.write_text(json.dumps(manifest) + "\n")
    return root


def single_thread_rates(source, config, num_examples):
    """(read, read + augment) images/s of one thread: the per-core cost of an example."""
    import numpy as np

    from data_pipelines.transforms import TrainAugment

    data = config.data
    augment = TrainAugment(crop_size=tuple(data.crop_size), scale_range=tuple(data.scale_range),
                           hflip=bool(data.hflip), long_edge=int(data.get("resize_long_edge", 0)))
    rng = np.random.default_rng(0)
    indices = [i % len(source) for i in range(num_examples)]
    augment(source[indices[0]], rng)  # first call: lazy tables, cv2 thread setting
    start = time.perf_counter()
    examples = [source[i] for i in indices]
    read = time.perf_counter() - start
    start = time.perf_counter()
    for example in examples:
        augment(example, rng)
    augmenting = time.perf_counter() - start
    return num_examples / read, num_examples / (read + augmenting)


def pipeline_rate(source, config, num_batches, warmup):
    """Images/s of the configured train pipeline after `warmup` batches."""
    from data_pipelines import pipeline

    iterator = iter(pipeline.train_dataset(source, config, 0, 1))
    try:
        for _ in range(warmup):
            next(iterator)
        start = time.perf_counter()
        for _ in range(num_batches):
            batch = next(iterator)
        elapsed = time.perf_counter() - start
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    return num_batches * len(batch["label"]) / elapsed


def sweep_settings(num_cpus, workers, threads):
    """(num_workers, num_threads) pairs worth trying on `num_cpus` cores, configured first."""
    settings = [(workers, threads)]
    for w in sorted({0, 1, num_cpus}):
        for t in sorted({1, 2, num_cpus, 2 * num_cpus}):
            if max(w, 1) * t <= 2 * num_cpus and (w, t) not in settings:
                settings.append((w, t))
    return settings


PREFETCH_SIZES = (1, 2, 4, 8, 16)


def recommend(rows, tolerance=0.05):
    """The (workers, threads, prefetch, img/s) row to use: within `tolerance` of the
    fastest, fewest workers, then threads, then prefetched batches.

    Fewer workers keep memory and start-up low and checkpoints of the data iterator
    portable (grain ties its state to the worker count); each prefetched batch is memory.
    """
    best = max(r[-1] for r in rows)
    close = [r for r in rows if r[-1] >= (1 - tolerance) * best]
    return min(close, key=lambda r: r[:-1])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import cv2

    from data_pipelines import DataError, build_source

    config = FLAGS.config
    if FLAGS.synthetic_files:
        height, _, width = FLAGS.synthetic_size.lower().partition("x")
        root = write_synthetic_files(FLAGS.synthetic_files, FLAGS.synthetic_count, int(height),
                                     int(width), FLAGS.synthetic_codec)
        config.dataset.name = "cityscapes"
        config.dataset.root = str(root)
        config.dataset.train_split = "train"
    try:
        source = build_source(config.dataset, config.dataset.train_split)
        probe = source[0]
    except DataError as e:
        sys.exit(f"error: {e}")
    cv2.setNumThreads(1)  # as in the pipeline's augmentation: one core per grain thread
    num_cpus = len(os.sched_getaffinity(0))
    batch = int(config.global_batch_size)
    height, width = probe["label"].shape
    print(f"dataset {config.dataset.name} ({config.dataset.train_split}, {len(source)} "
          f"examples, first {height}x{width}); batch {batch}, crop "
          f"{'x'.join(map(str, config.data.crop_size))}; {num_cpus} CPU cores", flush=True)
    read, augmented = single_thread_rates(source, config, min(len(source), 8))
    print(f"1 thread: decode {read:.1f} img/s, decode+augment {augmented:.1f} img/s "
          f"(ceiling on {num_cpus} cores ~{num_cpus * augmented:.0f} img/s)", flush=True)

    data = config.data
    prefetch = int(data.prefetch_buffer_size)
    settings = [(int(data.num_workers), int(data.num_threads))]
    if FLAGS.sweep:
        settings = sweep_settings(num_cpus, *settings[0])
    print(f"{'workers':>7} {'threads':>7} {'prefetch':>8} {'img/s':>8} {'per worker':>10} "
          f"{'per thread':>10}", flush=True)
    rows = []

    def time_setting(workers, threads, prefetch):
        trial = config.copy_and_resolve_references()
        trial.data.num_workers, trial.data.num_threads = workers, threads
        trial.data.prefetch_buffer_size = prefetch
        rate = pipeline_rate(source, trial, FLAGS.num_batches, FLAGS.warmup)
        rows.append((workers, threads, prefetch, rate))
        print(f"{workers:>7} {threads:>7} {prefetch:>8} {rate:>8.1f} "
              f"{rate / max(workers, 1):>10.1f} {rate / (max(workers, 1) * threads):>10.1f}",
              flush=True)

    for workers, threads in settings:
        time_setting(workers, threads, prefetch)
    if FLAGS.sweep:
        workers, threads, _, _ = recommend(rows)
        for size in PREFETCH_SIZES:
            if size != prefetch:
                time_setting(workers, threads, size)
        workers, threads, prefetch, rate = recommend(rows)
        print(f"recommended: --config.data.num_workers={workers} "
              f"--config.data.num_threads={threads} --config.data.prefetch_buffer_size="
              f"{prefetch} ({rate:.1f} img/s; fastest measured "
              f"{max(r[-1] for r in rows):.1f} img/s)", flush=True)


def run():
    """Entry point (`segjax-bench-input`)."""
    define_flags()
    from segjax import cli

    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
