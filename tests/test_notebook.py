"""notebooks/evaluate.ipynb runs top to bottom on a checkpoint trained here."""

import json
import os
import subprocess
import sys

from helpers import REPO, override

from configs import bcmfnet_camvid
from segjax import train

NARROW = {"model.kwargs.planes": 8, "model.kwargs.spp_planes": 16,
          "model.kwargs.head_planes": 16}

RUN_CELLS = """
import json, sys
notebook = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for index, cell in enumerate(notebook["cells"]):
    if cell["cell_type"] == "code":
        exec(compile("".join(cell["source"]), f"cell {index}", "exec"), namespace)
print("MIOU", namespace["result"]["miou"], namespace["result"]["num_images"])
"""


def test_evaluate_notebook_runs_on_a_tiny_checkpoint(camvid_root, tmp_path):
    config = bcmfnet_camvid.get_config()
    with config.unlocked():
        config.model.kwargs.update({k.split(".")[-1]: v for k, v in NARROW.items()})
    config = override(config, **{
        "dataset.root": str(camvid_root), "data.crop_size": (64, 64), "global_batch_size": 8,
        "num_train_steps": 2, "eval_every_steps": 1000, "checkpoint_every_steps": 2,
        "num_eval_images_to_log": 0})
    workdir = tmp_path / "run"
    train.train_and_evaluate(config, str(workdir), stop_at_step=2)
    env = dict(os.environ, SEGJAX_REPO=str(REPO), SEGJAX_WORKDIR=str(workdir),
               CAMVID_ROOT=str(camvid_root), SEGJAX_CONFIG=str(REPO / "configs" /
                                                              "bcmfnet_camvid.py"),
               SEGJAX_OVERRIDES=json.dumps(NARROW), XLA_FLAGS="")
    proc = subprocess.run([sys.executable, "-c", RUN_CELLS, str(REPO / "notebooks" /
                                                                 "evaluate.ipynb")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    miou, num_images = proc.stdout.strip().splitlines()[-1].split()[1:]
    assert int(num_images) == 101 and 0.0 <= float(miou) <= 1.0
    assert "Sky" in proc.stdout and "restored step 2" in proc.stdout
    overlays = sorted((workdir / "notebook_overlays").glob("val_*.png"))
    assert len(overlays) == 4
