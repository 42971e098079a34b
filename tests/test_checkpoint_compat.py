"""Checkpoints written by earlier versions of segjax restore in this one."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_CONFIG, param_tree_fingerprint

from segjax import cli, models, runtime, train

REPO = pathlib.Path(__file__).resolve().parents[1]
# Parameter trees as of commit 3c9a0d1 (before the losses/runtime/model-file redesign),
# from the same fingerprint: a model whose tree differs can no longer restore those runs.
PARAM_TREES = json.loads((REPO / "tests" / "fixtures" / "param_trees.json").read_text())
PREVIOUS_LAYOUT = "3c9a0d1"


@pytest.mark.parametrize("name", sorted(PARAM_TREES))
def test_parameter_trees_are_unchanged(name):
    kwargs = {"aux_head": True} if "aux_head" in (models.accepted_kwargs(name) or ()) else {}
    assert param_tree_fingerprint(models.build(name, 19, **kwargs)) == PARAM_TREES[name], (
        f"{name}'s parameter paths, shapes or dtypes changed: checkpoints written before "
        "would no longer restore. Keep the module names, or add a checkpoint conversion.")


def _config(path, steps):
    path.write_text(TINY_CONFIG.format(steps=steps))
    return cli.load_config(str(path))


@pytest.mark.slow
def test_a_run_of_the_previous_layout_restores_and_resumes(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS_LAYOUT],
                             capture_output=True, timeout=120)
    assert archive.returncode == 0, (
        f"needs the repository history (commit {PREVIOUS_LAYOUT}): "
        f"git fetch --unshallow. {archive.stderr.decode()[-300:]}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    # That version had no loss term checks (nor `loss.aux`).
    old_config = TINY_CONFIG.replace("    config.loss.aux.weight = 0.0\n", "")
    (old / "configs" / "tiny.py").write_text(old_config.format(steps=2))
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "run.py", "--config=configs/tiny.py", f"--workdir={workdir}"],
        cwd=old, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    config = _config(tmp_path / "tiny.py", steps=3)
    restored = runtime.restore(config, workdir)
    assert restored.step == 2
    frames = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), np.uint8)
    labels = np.asarray(restored.predictor.labels(restored.variables, frames))
    assert labels.shape == (1, 64, 64)
    result = train.train_and_evaluate(config, str(workdir))  # resumes at step 2
    assert result["step"] == 3 and sorted(result["history"]) == [3]
