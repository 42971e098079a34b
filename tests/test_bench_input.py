"""bench_input: writes Cityscapes-layout files, times the train pipeline, recommends flags."""

import pathlib
import re
import subprocess
import sys

import numpy as np

from data_pipelines.cityscapes import CityscapesSource
from segjax.tools import bench_input

REPO = pathlib.Path(__file__).resolve().parents[1]
NUMBER = r"\d+(\.\d+)?"


def tiny_command(files, *extra):
    return [sys.executable, "-m", "segjax.tools.bench_input", "--config=configs/quickstart.py",
            f"--synthetic_files={files}", "--synthetic_size=48x96", "--synthetic_count=3",
            "--num_batches=2", "--warmup=1", "--config.global_batch_size=2",
            "--config.data.crop_size=(32,48)", "--config.data.num_workers=0", *extra]


def test_tiny_run_prints_rates(tmp_path):
    files = tmp_path / "files"
    out = subprocess.run(tiny_command(files), cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("dataset cityscapes (train, 3 examples, first 48x96); batch 2")
               for line in lines), out.stdout
    assert any(re.fullmatch(rf"1 thread: decode {NUMBER} img/s, decode\+augment {NUMBER} "
                            rf"img/s \(ceiling on \d+ cores ~\d+ img/s\)", line)
               for line in lines), out.stdout
    header = lines.index(next(line for line in lines if line.split()[:2] == ["workers",
                                                                            "threads"]))
    row = lines[header + 1].split()
    assert row[:3] == ["0", "2", "4"] and all(float(v) > 0 for v in row[3:]) and len(row) == 6
    assert sorted(p.name for p in (files / "gtFine" / "train" / "benchcity").iterdir()) == [
        f"benchcity_000000_{i:06d}_gtFine_labelIds.png" for i in range(3)]


def test_synthetic_jpeg_files_read_as_cityscapes(tmp_path):
    root = bench_input.write_synthetic_files(tmp_path, 2, 32, 64, codec="jpeg")
    image = next((root / "leftImg8bit" / "train" / "benchcity").iterdir())
    assert image.read_bytes()[:2] == b"\xff\xd8"  # JPEG content under the Cityscapes name
    example = CityscapesSource(str(root), "train")[1]
    assert example["image"].shape == (32, 64, 3)
    assert set(np.unique(example["label"]).tolist()) <= set(range(19)) | {255}
    assert len(set(np.unique(example["label"]).tolist()) - {255}) > 2


def test_sweep_and_recommendation():
    settings = bench_input.sweep_settings(2, 0, 2)
    assert settings[0] == (0, 2) and len(settings) == len(set(settings))
    assert all(max(w, 1) * t <= 4 for w, t in settings) and (2, 2) in settings
    rows = [(0, 2, 4, 40.0), (2, 2, 4, 41.0), (0, 1, 4, 22.0)]
    assert bench_input.recommend(rows) == (0, 2, 4, 40.0)
    assert bench_input.recommend([(0, 2, 4, 30.0), (2, 1, 4, 41.0)]) == (2, 1, 4, 41.0)
    # Prefetch: the smallest buffer within 5% of the fastest.
    rows = [(0, 2, 4, 40.0), (0, 2, 1, 30.0), (0, 2, 2, 39.0), (0, 2, 16, 41.0)]
    assert bench_input.recommend(rows) == (0, 2, 2, 39.0)


def test_sweep_times_prefetch_sizes_for_the_best_setting_and_recommends_flags(tmp_path):
    out = subprocess.run(tiny_command(tmp_path / "files", "--sweep"), cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["workers", "threads"])
    rows = [tuple(line.split()[:3]) for line in lines[header + 1:] if line[:1] == " "]
    first_settings = [r[:2] for r in rows if r[2] == "4"]
    assert len(first_settings) == len(set(first_settings)) >= 6
    prefetch_rows = [r for r in rows if r[2] != "4"]
    assert sorted(int(r[2]) for r in prefetch_rows) == [1, 2, 8, 16]
    assert len({r[:2] for r in prefetch_rows}) == 1  # one (workers, threads): the best
    match = re.search(r"recommended: --config.data.num_workers=(\d+) --config.data.num_threads="
                      r"(\d+) --config.data.prefetch_buffer_size=(\d+) ", out.stdout)
    assert match and match.groups() in rows, out.stdout
