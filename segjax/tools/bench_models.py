"""Benchmark table: `run.py --mode=benchmark` for every registered model at several sizes.

    python -m segjax.tools.bench_models [--resolutions 512x1024,1024x2048] \
        [--models ddrnet23_slim,bcmfnet] [--runtimes xla,onnxruntime,litert] \
        [--dtype float32] [--time_budget_s 10] [--warmup 2] [--min_iterations 3] \
        [--json_out results.jsonl]

Each (model, resolution, runtime) runs the documented command in its own process, with the model's
Cityscapes config (its constructor arguments as the paper timed them), so the figures are
exactly what a user gets from that command and one model's memory never weighs on the next.
Prints a Markdown table (the one in benchmarks.md) and, with --json_out, every JSON line.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile

from absl import app, flags

REPO = pathlib.Path(__file__).resolve().parents[2]
FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("resolutions", ["512x1024", "1024x2048"], "HxW sizes to time.")
    flags.DEFINE_list("models", [], "Registry names; default: every segmentation model.")
    flags.DEFINE_list("runtimes", ["xla"], "xla, onnxruntime, litert (config.benchmark.runtime).")
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
    flags.DEFINE_integer("batch_size", 1, "Images per call.")
    flags.DEFINE_float("time_budget_s", 10.0, "Timing budget per run (seconds).")
    flags.DEFINE_integer("warmup", 2, "Untimed calls after compiling.")
    flags.DEFINE_integer("min_iterations", 3, "Timed calls at least.")
    flags.DEFINE_integer("timeout_s", 1800, "Give up on one run after this long.")
    flags.DEFINE_string("json_out", None, "Append each run's JSON line to this file.")


def run_one(config: pathlib.Path, resolution: str, runtime: str = "xla") -> dict:
    """One `run.py --mode=benchmark` process; returns its final JSON line."""
    with tempfile.TemporaryDirectory() as workdir:
        command = [
            sys.executable, str(REPO / "run.py"), f"--config={config}", "--mode=benchmark",
            f"--workdir={workdir}", f"--config.benchmark.resolution={resolution}",
            f"--config.benchmark.dtype={FLAGS.dtype}",
            f"--config.benchmark.batch_size={FLAGS.batch_size}",
            f"--config.benchmark.time_budget_s={FLAGS.time_budget_s}",
            f"--config.benchmark.warmup={FLAGS.warmup}",
            f"--config.benchmark.min_iterations={FLAGS.min_iterations}",
            f"--config.benchmark.runtime={runtime}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                              timeout=FLAGS.timeout_s)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def markdown_row(result: dict, config: pathlib.Path) -> str:
    return (f"| {result['model']} | {config.name} | {result['runtime']} | {result['resolution']} | "
            f"{result['dtype']} | "
            f"{result['fps']:.2f} | {result['latency_ms_p50']:.0f} | "
            f"{result['latency_ms_p90']:.0f} | {result['compile_s']:.0f} | "
            f"{result['params'] / 1e6:.2f} | {result['gmacs']:.1f} |")


HEADER = ("| model | config | runtime | H×W | dtype | FPS | p50 ms | p90 ms | compile s | "
          "params M | GMACs (XLA) |\n|---|---|---|---|---|---:|---:|---:|---:|---:|---:|")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from segjax import deploy, runtime
    from segjax.tools.aot import config_for_model

    names = FLAGS.models or runtime.segmentation_models()
    for name in FLAGS.runtimes:
        try:
            deploy.check_runtime(name)
        except ValueError as e:
            sys.exit(f"error: --runtimes: {e}")
    try:
        configs = {name: config_for_model(name) for name in names}
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    rows = []
    for name in names:
        for resolution in FLAGS.resolutions:
            for runtime_name in FLAGS.runtimes:
                result = run_one(configs[name], resolution, runtime_name)
                rows.append(markdown_row(result, configs[name]))
                print(f"{name} {resolution} {runtime_name}: {result['fps']:.2f} FPS "
                      f"(p50 {result['latency_ms_p50']:.0f} ms, compile "
                      f"{result['compile_s']:.0f} s)", flush=True)
                if FLAGS.json_out:
                    with open(FLAGS.json_out, "a") as out:
                        out.write(json.dumps(result) + "\n")
    print(f"\n{HEADER}\n" + "\n".join(rows))


def run():
    """Entry point (`segjax-bench-models`)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
