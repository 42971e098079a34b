"""Ahead-of-time compile of every model's train step for a 64-device mesh (segjax.tools.aot).

One subprocess per model (each compiles for 64 simulated devices, which the 8-device test
process cannot host), so pytest-xdist can spread them. `--fast-compile` skips LLVM
optimisation: same partitioning and memory figures, about half the compile time.
"""

import json
import subprocess
import sys

import pytest
from helpers import REPO

from segjax import runtime
from segjax.tools import aot


def test_mesh_choice_puts_what_the_batch_cannot_use_on_the_spatial_axis():
    assert aot.choose_mesh(64, 1024, 64) == (64, 1)
    assert aot.choose_mesh(16, 1024, 64) == (16, 4)
    assert aot.choose_mesh(12, 1024, 64) == (4, 16)
    assert aot.choose_mesh(8, 1024, 64) == (8, 8)
    assert aot.choose_mesh(2, 896, 64) == (2, 32)
    with pytest.raises(ValueError, match="no data x spatial mesh"):
        aot.choose_mesh(1, 100, 64)
    assert aot.parse_mesh("32x2", 64) == (32, 2) and aot.parse_mesh("-1x4", 64) == (16, 4)
    with pytest.raises(ValueError, match="exactly 64 devices"):
        aot.parse_mesh("32x4", 64)


def test_every_model_has_its_cityscapes_config():
    names = {m: aot.config_for_model(m).name for m in runtime.segmentation_models()}
    assert names["ddrnet23_slim"] == "ddrnet23slim_cityscapes.py"
    assert names["synergy_deeplabv3plus_r50"] == "synergy_cityscapes.py"
    assert names["deeplabv3plus_r50"] == "deeplabv3plus_r50_cityscapes.py"


def test_refuses_to_run_where_jax_has_fewer_devices():
    with pytest.raises(SystemExit, match="8 CPU devices, fewer than --devices 64"):
        aot.main(["--devices", "64", "--config", "configs/ddrnet23slim_cityscapes.py"])


@pytest.mark.parametrize("model", runtime.segmentation_models())
def test_train_step_compiles_for_64_devices(model):
    config = aot.config_for_model(model)
    proc = subprocess.run(
        [sys.executable, "-m", "segjax.tools.aot", "--devices", "64", "--config", str(config),
         "--fast-compile"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    r = json.loads(lines[-1])
    assert r["model"] == model and r["devices"] == 64 and "error" not in r
    assert any(line.startswith(model) and r["mesh"] in line for line in lines[:-1])
    data, spatial = (int(v) for v in r["mesh"].split("x"))
    assert data * spatial == 64 and r["global_batch"] % data == 0
    assert int(r["crop"].split("x")[0]) % spatial == 0
    for key in ("argument_bytes", "output_bytes", "temp_bytes", "total_bytes", "state_bytes"):
        assert r[key] > 0, key
    # Per device: the replicated params + BatchNorm statistics + optimizer state, and only
    # this device's 1/64 of the batch (its images' band of rows), uint8 image and label as
    # the pipeline ships them.
    h, w = (int(v) for v in r["crop"].split("x"))
    assert r["batch_shard_bytes"] == r["global_batch"] * h * w * (3 + 1) // 64
    assert r["argument_bytes"] == pytest.approx(r["state_bytes"] + r["batch_shard_bytes"],
                                                rel=1e-3)
    assert r["alias_bytes"] >= 0.99 * r["state_bytes"]  # the donated state is updated in place
    assert r["runnable"] == (spatial == 1 or r["rows_per_device"] >= 128)
