"""Regenerate the README's figures that change with the code, on this machine.

    python -m segjax.tools.report [--suite] [--workdir DIR]

Runs the quickstart command as a newcomer does (a fresh workdir) and prints its wall time and
final val mIoU, then, with `--suite`, the default test suite's wall time and test count; the
machine (CPU model, cores, JAX devices) is printed first. Timings are only meaningful when
nothing else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = [sys.executable, "run.py", "--config=configs/quickstart.py"]
SUITE = [sys.executable, "-m", "pytest", "-m", "not slow", "-n", "2", "-q"]


def machine() -> str:
    """CPU model, core count and OS, as the README states them."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(round(seconds % 60)):02d}s"


def quickstart(workdir: pathlib.Path) -> dict:
    """Runs the quickstart into `workdir` (which must not hold a run yet)."""
    if (workdir / "checkpoints").exists():
        raise SystemExit(f"error: {workdir} already holds a run; pass a fresh --workdir")
    start = time.perf_counter()
    proc = subprocess.run(QUICKSTART + [f"--workdir={workdir}"], cwd=REPO, text=True,
                          capture_output=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: the quickstart failed:\n{proc.stderr[-3000:]}")
    evals = sorted(workdir.glob("eval_step_*.json"),
                   key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    last = json.loads(evals[-1].read_text())
    return {"seconds": seconds, "step": last["step"], "miou": 100 * last["miou"],
            "num_images": last["num_images"],
            "by_step": {json.loads(p.read_text())["step"]: 100 * json.loads(p.read_text())["miou"]
                        for p in evals}}


def suite() -> dict:
    start = time.perf_counter()
    proc = subprocess.run(SUITE, cwd=REPO, text=True, capture_output=True)
    seconds = time.perf_counter() - start
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    passed = re.search(r"(\d+) passed", summary)
    return {"seconds": seconds, "returncode": proc.returncode, "summary": summary,
            "passed": int(passed.group(1)) if passed else 0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="store_true", help="also time the default test suite")
    parser.add_argument("--workdir", help="quickstart workdir (default: a temporary one)")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = quickstart(pathlib.Path(args.workdir or pathlib.Path(tmp) / "quickstart"))
    steps = ", ".join(f"{s}: {m:.1f}" for s, m in sorted(run["by_step"].items()))
    print(f"quickstart: {_minutes(run['seconds'])} wall, val mIoU {run['miou']:.1f} at step "
          f"{run['step']} over {run['num_images']} scenes (by step: {steps})", flush=True)
    if args.suite:
        result = suite()
        print(f"test suite: {_minutes(result['seconds'])} wall, {result['summary']}", flush=True)
        return 0 if result["returncode"] == 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
