"""Train a recipe for as many steps as fit in a wall-clock budget, then evaluate on val.

    python -m segjax.tools.timed_train --config=configs/bcmfnet_camvid.py \
        --config.dataset.root=/data/camvid --workdir=/tmp/bcmfnet_timed --budget_s=480

For a lent accelerator with minutes of time: the recipe's train step is compiled and timed
on random batches of the recipe's shape, the schedule (poly, warm-up, …) is sized to the
steps that fit in what is left of the budget after `--reserve_s` (the real run's start and
the final evaluation), and the run trains and evaluates as `run.py` does. The last three
lines printed are the val mIoU, the training images/s (median of the run's logged
steps/s times the global batch) and the device.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import sys
import time

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_flags():
    """Flags are defined only when run as a program (tests import the functions)."""
    config_flags.DEFINE_config_file("config", None, "Recipe file (configs/*.py).")
    flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, eval JSON).")
    flags.DEFINE_float("budget_s", 480.0, "Wall-clock seconds for the whole command.")
    flags.DEFINE_float("reserve_s", 90.0, "Seconds kept for the run's start and evaluation.")
    flags.DEFINE_integer("calibration_steps", 10, "Timed train steps after the compile.")
    flags.DEFINE_integer("input_threads", 0, "Input pipeline threads (0: one per CPU core).")
    flags.mark_flags_as_required(["config", "workdir"])


def step_rate(config, num_steps: int) -> tuple[float, float]:
    """(steps/s of the compiled train step on random batches, compile seconds)."""
    import jax
    import numpy as np

    from data_pipelines import metadata
    from segjax import runtime, sharding, train

    info = metadata.get_info(config.dataset.name)
    mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
    model = runtime.build_model(config, info.num_classes)
    tx, schedule = train.make_optimizer(config.optimizer, max(config.num_train_steps, 1))
    height, width = config.data.crop_size
    state = train.init_state(model, tx, jax.random.key(0), (1, height, width, 3), mesh)
    step = train.train_step_for(config, model, tx, schedule, mesh)
    rng = np.random.default_rng(0)
    local = config.global_batch_size // jax.process_count()
    batch = sharding.to_global({
        "image": rng.integers(0, 256, (local, height, width, 3), np.uint8),
        "label": rng.integers(0, info.num_classes, (local, height, width), np.uint8)}, mesh)
    start = time.perf_counter()
    state, scalars = step(state, batch)
    jax.block_until_ready(scalars)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(num_steps):
        state, scalars = step(state, batch)
    jax.block_until_ready(scalars)
    return num_steps / (time.perf_counter() - start), compiled


def plan_steps(budget_s: float, elapsed_s: float, reserve_s: float, steps_per_s: float,
               log_every: int = 50) -> int:
    """Steps that fit in the budget left, at 90% of the calibrated rate (input pipeline,
    logging), rounded down to whole logging intervals where there are several."""
    steps = int(max(budget_s - elapsed_s - reserve_s, 0.0) * steps_per_s * 0.9)
    if steps >= 2 * log_every:
        steps -= steps % log_every
    if steps < 1:
        raise ValueError(f"--budget_s={budget_s:g} leaves no time to train after "
                         f"{elapsed_s:.0f}s of calibration and --reserve_s={reserve_s:g}")
    return steps


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    began = time.perf_counter()
    import jax

    from segjax import logs, train
    from segjax.tools import plot_runs

    logs.quiet_library_logs()
    workdir = pathlib.Path(FLAGS.workdir).absolute()
    if not jax.config.jax_compilation_cache_dir:  # the run reuses the calibration's compile
        jax.config.update("jax_compilation_cache_dir", str(workdir / "compilation_cache"))
    config = FLAGS.config
    with config.unlocked():
        config.data.num_threads = FLAGS.input_threads or len(os.sched_getaffinity(0))
    rate, compiled = step_rate(config, FLAGS.calibration_steps)
    steps = plan_steps(FLAGS.budget_s, time.perf_counter() - began, FLAGS.reserve_s, rate)
    batch = config.global_batch_size
    print(f"calibration: compile {compiled:.1f}s, {rate:.2f} steps/s ({rate * batch:.1f} "
          f"images/s) on random batches; training {steps} steps", flush=True)
    config.num_train_steps = steps
    config.log_every_steps = min(config.log_every_steps, max(steps // 10, 1))
    config.eval_every_steps = config.checkpoint_every_steps = steps
    result = train.train_and_evaluate(config, str(workdir))
    rates = plot_runs.read_scalars(workdir).get("steps_per_sec", {})
    per_step = statistics.median(v for _, v in rates.values()) if rates else float("nan")
    device = jax.devices()[0]
    print(f"trained {steps} steps of batch {batch} in {time.perf_counter() - began:.0f}s "
          f"(budget {FLAGS.budget_s:.0f}s)")
    print(f"val mIoU={100 * result['eval']['miou']:.2f}")
    print(f"images/s={per_step * batch:.1f}")
    print(f"device={device.device_kind} ({jax.device_count()} x {device.platform})")
    return 0


def run():
    """Entry point (`segjax-timed-train`)."""
    define_flags()
    from segjax import cli

    app.run(lambda argv: sys.exit(main(argv)), flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
