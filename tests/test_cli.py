"""run.py as a newcomer meets it: overrides, and one-line errors that name the fix."""

import subprocess
import sys

from helpers import REPO


def run_cli(*args, timeout=180):
    proc = subprocess.run([sys.executable, "run.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def test_missing_camvid_directory_names_path_and_fix(tmp_path):
    missing = tmp_path / "no_camvid_here"
    code, out = run_cli("--config=configs/ddrnet23slim_camvid.py",
                        f"--config.dataset.root={missing}", f"--workdir={tmp_path / 'w'}")
    assert code == 1
    assert str(missing) in out and "--config.dataset.root" in out
    assert "Traceback" not in out


def test_unknown_model_lists_valid_names(tmp_path):
    code, out = run_cli("--config=configs/quickstart.py", "--config.model.name=ddrnet99",
                        f"--workdir={tmp_path}")
    assert code == 1
    assert "ddrnet99" in out and "ddrnet23_slim" in out


def test_unknown_dataset_lists_valid_names(tmp_path):
    code, out = run_cli("--config=configs/quickstart.py", "--config.dataset.name=kitti",
                        f"--workdir={tmp_path}")
    assert code == 1
    assert "kitti" in out and "camvid" in out and "synthetic" in out


def test_override_typo_is_rejected(tmp_path):
    code, out = run_cli("--config=configs/quickstart.py", "--config.optimizer.lr=0.1",
                        f"--workdir={tmp_path}")
    assert code != 0 and "lr" in out


def test_evaluate_without_checkpoint_says_train_first(tmp_path):
    code, out = run_cli("--config=configs/quickstart.py", "--mode=evaluate",
                        f"--workdir={tmp_path}")
    assert code == 1
    assert "No checkpoint" in out and "--mode=train" in out


def test_bcmfnet_cityscapes_without_data_says_where_and_how_to_switch(tmp_path):
    code, out = run_cli("--config=configs/bcmfnet_cityscapes.py", f"--workdir={tmp_path}")
    assert code == 1
    assert "data/cityscapes" in out and "leftImg8bit" in out
    assert "--config.dataset.name=camvid" in out and "Traceback" not in out

