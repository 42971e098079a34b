"""Metric writers (TensorBoard event files plus console on process 0, console only elsewhere)
and the training progress line."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sys
import time
from collections.abc import Iterator

import jax
import numpy as np
from absl import logging


def hide_accelerators_from_tensorflow() -> None:
    """TensorFlow only writes summaries here; it must not grab GPU memory JAX needs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        return
    tf.config.set_visible_devices([], "GPU")


def create_writer(workdir: str):
    """clu's TensorBoard + console writer where TensorFlow is installed (it writes through
    TensorFlow); elsewhere — accelerator images often ship without it — `ScalarWriter`."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return ScalarWriter(workdir, tensorboard=jax.process_index() == 0)
    from clu import metric_writers

    hide_accelerators_from_tensorflow()
    if jax.process_index() > 0:
        return metric_writers.MultiWriter([])
    # No console writer: hyperparameters go to config.json and TensorBoard, progress and
    # evaluations have their own lines.
    return metric_writers.AsyncWriter(metric_writers.SummaryWriter(workdir))


class ScalarWriter:
    """The metric-writer calls the trainer makes, without TensorFlow: scalars as TensorBoard
    events through tensorboard's own numpy writer and on the console, evaluation panels as
    PNG files in `workdir/images/`, hyperparameters in `workdir/hparams.json`."""

    def __init__(self, workdir: str, tensorboard: bool = True):
        self.workdir = pathlib.Path(workdir)
        self._events = None
        if tensorboard:
            from tensorboard.summary import Writer

            self._events = Writer(str(self.workdir))

    def write_scalars(self, step: int, scalars: dict) -> None:
        for tag, value in scalars.items():
            if self._events is not None:
                self._events.add_scalar(tag, float(value), int(step))
        logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}"
                                                for k, v in sorted(scalars.items())))

    def write_images(self, step: int, images: dict) -> None:
        import cv2

        if self._events is None:
            return
        folder = self.workdir / "images"
        folder.mkdir(exist_ok=True)
        for tag, batch in images.items():
            tiled = np.concatenate(list(np.asarray(batch, np.uint8)), axis=0)
            name = f"{tag.replace('/', '_')}_step{int(step)}.png"
            cv2.imwrite(str(folder / name), tiled[..., ::-1])

    def write_hparams(self, hparams: dict) -> None:
        if self._events is not None:
            (self.workdir / "hparams.json").write_text(json.dumps(hparams, indent=1) + "\n")

    def flush(self) -> None:
        if self._events is not None:
            self._events.flush()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


class Progress:
    """Every `every` steps: steps/s since the last report (time spent in `paused()`, e.g.
    evaluation and checkpoints, left out), the ETA of the remaining steps, and a
    `steps_per_sec` scalar."""

    def __init__(self, num_steps: int, writer, every: int, first_step: int = 0):
        self.num_steps, self.writer, self.every = num_steps, writer, max(int(every), 1)
        self._last_step, self._last_time, self._paused = first_step, None, 0.0
        self.loss: float | None = None  # the latest logged training loss, shown when set

    def __call__(self, step: int) -> None:
        now = time.perf_counter()
        if self._last_time is None:  # the first step compiles: time from its end
            self._last_step, self._last_time, self._paused = step, now, 0.0
            return
        if step % self.every and step != self.num_steps:
            return
        elapsed = now - self._last_time - self._paused
        rate = (step - self._last_step) / elapsed if elapsed > 0 else float("nan")
        eta = (self.num_steps - step) / rate if rate > 0 else float("nan")
        self.writer.write_scalars(step, {"steps_per_sec": rate})
        loss = "" if self.loss is None else f"  loss {self.loss:.4g}"
        print(f"step {step}/{self.num_steps} ({100.0 * step / self.num_steps:.0f}%){loss}  "
              f"{rate:.3g} steps/s  ETA {_duration(eta)}", flush=True)
        self._last_step, self._last_time, self._paused = step, now, 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - start


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class _DropLibraryInfo:
    """Keeps warnings from checkpoint and input libraries but drops their per-save INFO chatter."""

    NOISY = ("/orbax/", "/grain/", "/jax/_src/xla_bridge.py")

    def filter(self, record) -> bool:
        import logging as std_logging

        if record.pathname.endswith("asyncio/base_events.py") and "never retrieved" in str(
                record.msg):
            return False  # orbax's abandoned writes after a failed save, at exit
        noisy = any(part in record.pathname for part in self.NOISY)
        if noisy and record.exc_info:
            # orbax's writer threads log each failure with its traceback; the failure also
            # reaches the training loop, which reports it once (a full disk: one per array).
            record.exc_info, record.exc_text = None, None
        if record.levelno >= std_logging.WARNING:
            return True
        return not noisy


def quiet_environment(verbose: bool = False) -> None:
    """Before TensorFlow loads: its oneDNN and C++ start-up lines (TensorFlow only writes
    summaries and decodes TFDS records here, where oneDNN's op rewrites do not matter)."""
    if not verbose:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_console(verbose: bool = False) -> None:
    """The console shows segjax's own lines (header, progress, evaluation tables, where the
    results went) and warnings; `verbose` adds INFO logs of segjax and its libraries."""
    import logging as std_logging

    from absl import logging as absl_logging

    quiet_library_logs()
    if not verbose:
        absl_logging.set_verbosity(absl_logging.WARNING)
        std_logging.getLogger("matplotlib").setLevel(std_logging.ERROR)  # font-cache notice


def quiet_library_logs() -> None:
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().addFilter(_DropLibraryInfo())
    sys.unraisablehook = _QuietClosedLoop(sys.unraisablehook)


class _QuietClosedLoop:
    """After a failed checkpoint write, tensorstore's pending callbacks find orbax's event
    loop closed and print one traceback each; the failure itself is reported once."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        self.previous(unraisable)
