"""Metric writers: TensorBoard event files plus console on process 0, console only elsewhere."""

from __future__ import annotations

import os

import jax


def hide_accelerators_from_tensorflow() -> None:
    """TensorFlow only writes summaries here; it must not grab GPU memory JAX needs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        return
    tf.config.set_visible_devices([], "GPU")


def create_writer(workdir: str):
    from clu import metric_writers

    hide_accelerators_from_tensorflow()
    return metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0, asynchronous=True)


class _DropLibraryInfo:
    """Keeps warnings from checkpoint and input libraries but drops their per-save INFO chatter."""

    NOISY = ("/orbax/", "/grain/", "/jax/_src/xla_bridge.py")

    def filter(self, record) -> bool:
        import logging as std_logging

        if record.levelno >= std_logging.WARNING:
            return True
        return not any(part in record.pathname for part in self.NOISY)


def quiet_library_logs() -> None:
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().addFilter(_DropLibraryInfo())
