"""Preemption, a busy workdir and a full disk: what a cluster does to a training run."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import TINY_CONFIG

from segjax import checkpoint, workdir

TINY = ["--config=configs/quickstart.py", "--config.dataset.image_size=(64,96)",
        "--config.dataset.num_train=64", "--config.dataset.num_eval=8",
        "--config.data.crop_size=(64,64)", "--config.eval_batch_size=8",
        "--config.num_train_steps=14", "--config.log_every_steps=1",
        "--config.eval_every_steps=1000", "--config.checkpoint_every_steps=1000",
        "--config.optimizer.warmup_steps=0", "--config.async_checkpointing=False"]


# One CPU device: "bitwise" is a one-device promise (the suite simulates 8). No TF_* settings:
# the runs see segjax's own defaults, as a newcomer's shell does.
ONE_DEVICE = {**{k: v for k, v in os.environ.items() if not k.startswith("TF_")},
              "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def start(workdir_path, *extra):
    return subprocess.Popen([sys.executable, "run.py", *TINY, f"--workdir={workdir_path}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=ONE_DEVICE)


def run(workdir_path):
    return subprocess.run([sys.executable, "run.py", *TINY, f"--workdir={workdir_path}"],
                          capture_output=True, text=True, timeout=600, env=ONE_DEVICE)


def wait_for_step(proc, step, timeout=300):
    """Reads the run's output until it logs `step`; returns what it read."""
    seen, deadline = [], time.time() + timeout
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"step {step}/") or time.time() > deadline:
            return seen
    return seen


def final_params(workdir_path):
    reader = checkpoint.Checkpointer(pathlib.Path(workdir_path) / "checkpoints", async_save=False)
    try:
        step = reader.latest_step()
        restored = reader.manager.restore(step, args=checkpoint.ocp.args.Composite(
            state=checkpoint.ocp.args.StandardRestore()))
        return step, restored["state"]["params"]
    finally:
        reader.close()


def test_sigterm_checkpoints_and_the_rerun_ends_bitwise_equal(tmp_path):
    reference = run(tmp_path / "ref")
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-2000:]
    # The console a newcomer sees: segjax's header, progress, the evaluation table and where
    # the results went; no TensorFlow/oneDNN start-up lines, no hyperparameter dump.
    lines = reference.stdout.splitlines()
    assert lines[0].startswith("segjax: ddrnet23_slim on synthetic (19 classes)"), lines[:3]
    assert any(line.startswith("step 14/14 (100%)  loss ") for line in lines)
    assert "mIoU=" in reference.stdout and lines[-1].startswith("Results of step 14 are in ")
    assert reference.stderr.strip() == "", reference.stderr[-2000:]
    stop_after = int(np.random.default_rng(int(time.time())).integers(3, 10))
    proc = start(tmp_path / "run")
    wait_for_step(proc, stop_after)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "SIGTERM received: finishing this step, then saving a checkpoint" in out
    stopped = int(out.split("Stopped by SIGTERM after step ")[1].split(":")[0])
    assert stop_after <= stopped < 14
    assert (tmp_path / "run" / "checkpoints" / str(stopped)).is_dir()
    assert "Rerun the same command to resume." in out
    resumed = run(tmp_path / "run")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"Resuming from checkpoint step {stopped}" in resumed.stdout
    (ref_step, ref), (step, got) = final_params(tmp_path / "ref"), final_params(tmp_path / "run")
    assert ref_step == step == 14
    flat_ref, flat_got = np.concatenate([np.ravel(x) for x in _leaves(ref)]), np.concatenate(
        [np.ravel(x) for x in _leaves(got)])
    np.testing.assert_array_equal(flat_got, flat_ref)


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_a_second_run_on_a_held_workdir_stops_before_compiling(tmp_path):
    proc = start(tmp_path, "--config.num_train_steps=100000")
    try:
        wait_for_step(proc, 2)  # the first step compiles; step 2 is the first progress line
        started = time.time()
        second = run(tmp_path)
        assert second.returncode == 1
        error = second.stderr.strip().splitlines()[-1]
        assert error.startswith(f"error: {tmp_path} is in use by another training run (host ")
        assert f"pid {proc.pid}, started " in error
        assert error.endswith("Stop that run first, or train in another --workdir.")
        assert time.time() - started < 60  # refused before any compilation
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT


def test_a_dead_runs_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    (tmp_path / workdir.LOCK_NAME).write_text(
        '{"host": "gone", "pid": 1, "started": "2026-01-01T00:00:00+00:00", "argv": []}\n')
    with workdir.WorkdirLock(tmp_path):
        assert "from a run that is no longer running (host gone, pid 1" in capsys.readouterr().err
        holder = (tmp_path / workdir.LOCK_NAME).read_text()
        assert f'"pid": {os.getpid()}' in holder
    assert not (tmp_path / workdir.LOCK_NAME).exists()


def test_full_workdir_is_refused_with_the_sizes(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(workdir.shutil, "disk_usage",
                        lambda path: usage._replace(free=30 * 2**20))
    with pytest.raises(workdir.WorkdirError) as err:
        workdir.check_writable(tmp_path, 23 * 2**20, keep=3)
    assert str(err.value) == (
        f"--workdir {tmp_path} has 30 MiB free; a checkpoint of this run takes 23 MiB and a "
        "save needs room for 46 MiB (config.keep_checkpoints=3 keeps 69 MiB). Free space or "
        "use another --workdir.")


def test_unwritable_workdir_is_refused(tmp_path):
    if os.geteuid() == 0:
        target = pathlib.Path("/proc/segjax_workdir")  # not writable even for root
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    with pytest.raises(workdir.WorkdirError, match="cannot write in --workdir"):
        workdir.check_writable(target, 1, keep=1)


def test_a_failed_save_is_one_line_naming_the_last_intact_step(tmp_path, monkeypatch):
    import jax.numpy as jnp

    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", async_save=False)
    try:
        ckpt.manager.save(3, args=checkpoint.ocp.args.Composite(
            state=checkpoint.ocp.args.StandardSave({"w": jnp.ones(3)})))
        ckpt.manager.wait_until_finished()

        def full(*args, **kwargs):
            raise OSError(28, "RESOURCE_EXHAUSTED: No space left on device")

        monkeypatch.setattr(ckpt.manager, "save", full)
        with pytest.raises(workdir.WorkdirError) as err:
            ckpt.save(6, {"w": jnp.ones(3)}, None, {})
    finally:
        ckpt.close()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"saving checkpoint 6 in {tmp_path / 'checkpoints'} failed (")
    assert "No space left on device" in message
    assert "the last intact checkpoint is step 3" in message


@pytest.mark.slow
def test_a_disk_that_fills_during_training_ends_in_one_line(tmp_path):
    """A 2.6 MiB tmpfs takes two checkpoints of a narrow DDRNet (1.1 MiB each), not a third."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2600K", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        steps = ["--config.num_train_steps=12", "--config.checkpoint_every_steps=2",
                 "--config.async_checkpointing=True"]
        config = tmp_path / "narrow.py"
        config.write_text(TINY_CONFIG.format(steps=12))
        done = subprocess.run(
            [sys.executable, "run.py", f"--config={config}", f"--workdir={mount / 'run'}",
             *steps], capture_output=True, text=True, timeout=600, env=ONE_DEVICE)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output[-3000:]
    error = output.strip().splitlines()[-1]
    assert error.startswith(f"error: saving checkpoint 6 in {mount / 'run' / 'checkpoints'} "
                            "failed (RESOURCE_EXHAUSTED")
    assert "No space left on device" in error
    assert error.endswith("the last intact checkpoint is step 4. Free space or fix the "
                          "directory, then rerun the same command to resume from it.")

