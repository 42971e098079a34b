"""Plot val mIoU and training loss of one or several runs against step and wall time.

    python -m segjax.tools.plot_runs WORKDIR [WORKDIR ...] --out curves.png \
        [--labels a,b] [--title TEXT]

Reads what a run already writes: the TensorBoard scalars (`train/loss`, `eval/miou`, with
their wall times) and, where the event files lack an evaluation, `eval_step_<N>.json`.
Wall time is minutes of running since the run's first logged step: the time a run stood
stopped between a stop and its restart (one event file per start) is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
from collections.abc import Sequence


@dataclasses.dataclass
class Series:
    """(step, wall minutes, value) triples of one scalar, sorted by step."""
    steps: list[int] = dataclasses.field(default_factory=list)
    minutes: list[float] = dataclasses.field(default_factory=list)
    values: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Run:
    name: str
    loss: Series
    miou: Series


def read_scalars(workdir: pathlib.Path) -> dict[str, dict[int, tuple[float, float]]]:
    """tag -> step -> (running wall time s, value) from every event file in `workdir` (last
    wins); each file's times are moved back by the idle time before it started."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tensorboard loads TensorFlow if present
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util

    tags: dict[str, dict[int, tuple[float, float]]] = {}
    files = [[e for e in event_file_loader.EventFileLoader(str(path)).Load() if e.summary.value]
             for path in workdir.glob("events.out.tfevents.*")]
    idle, previous_end = 0.0, None
    for events in sorted((f for f in files if f), key=lambda f: f[0].wall_time):
        if previous_end is not None:
            idle += max(events[0].wall_time - previous_end, 0.0)
        previous_end = events[-1].wall_time
        for event in events:
            for value in event.summary.value:
                if value.HasField("tensor"):
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size != 1 or array.dtype.kind not in "fiu":
                        continue  # images, histograms, text
                    number = float(array.reshape(()))
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                tags.setdefault(value.tag, {})[int(event.step)] = (event.wall_time - idle,
                                                                   number)
    return tags


def _series(points: dict[int, tuple[float, float]], start: float) -> Series:
    series = Series()
    for step in sorted(points):
        wall, value = points[step]
        series.steps.append(step)
        series.minutes.append((wall - start) / 60.0 if wall else float("nan"))
        series.values.append(value)
    return series


def read_run(workdir: str | pathlib.Path, name: str | None = None) -> Run:
    """The training-loss and val-mIoU curves of one workdir."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"{workdir} is not a directory; pass a run's --workdir")
    tags = read_scalars(workdir)
    walls = [wall for points in tags.values() for wall, _ in points.values()]
    start = min(walls) if walls else 0.0
    loss = _series(tags.get("train/loss", {}), start)
    miou_points = dict(tags.get("eval/miou", {}))
    for path in workdir.glob("eval_step_*.json"):
        payload = json.loads(path.read_text())
        miou_points.setdefault(int(payload["step"]), (0.0, float(payload["miou"])))
    if not loss.steps and not miou_points:
        raise FileNotFoundError(f"{workdir} holds no TensorBoard scalars or eval_step_*.json; "
                                "is it a segjax workdir that has trained?")
    miou = _series(miou_points, start)
    miou.values = [100.0 * v for v in miou.values]
    return Run(name or workdir.name, loss, miou)


def plot(runs: Sequence[Run], out: str | pathlib.Path, title: str = "") -> pathlib.Path:
    """A 2×2 figure: val mIoU and training loss, against step and against wall minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    for run in runs:
        for col, x_of in enumerate((lambda s: s.steps, lambda s: s.minutes)):
            axes[0, col].plot(x_of(run.miou), run.miou.values, marker="o", label=run.name)
            axes[1, col].plot(x_of(run.loss), run.loss.values, linewidth=1, label=run.name)
    for col, xlabel in enumerate(("step", "wall time (min)")):
        axes[0, col].set(xlabel=xlabel, ylabel="val mIoU (%)")
        axes[1, col].set(xlabel=xlabel, ylabel="training loss", yscale="log")
        for row in range(2):
            axes[row, col].grid(alpha=0.3)
    axes[0, 0].legend()
    if title:
        fig.suptitle(title)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+", help="run workdirs")
    parser.add_argument("--out", required=True, help="output image (.png, .svg, .pdf)")
    parser.add_argument("--labels", help="comma-separated legend names (default: folder names)")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [None] * len(args.workdirs)
    if len(labels) != len(args.workdirs):
        print(f"error: --labels has {len(labels)} names for {len(args.workdirs)} workdirs",
              file=sys.stderr)
        return 2
    try:
        runs = [read_run(w, n) for w, n in zip(args.workdirs, labels)]
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    path = plot(runs, args.out, args.title)
    for run in runs:
        best = max(run.miou.values) if run.miou.values else float("nan")
        print(f"{run.name}: {len(run.loss.steps)} loss points, {len(run.miou.steps)} "
              f"evaluations, best val mIoU {best:.2f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
