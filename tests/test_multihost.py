"""Multi-process training through the unchanged CLI: 2 processes x 4 CPU devices on 127.0.0.1
(gloo) train like 1 process x 8 devices, and their checkpoints resume on other topologies."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import portpicker
import pytest
from helpers import TINY_CONFIG, assert_trees_close

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS, MORE_STEPS = 3, 5
RUN_TIMEOUT_S = 420



def _env(devices, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
    # Unoptimised code generation: these programs run a few steps, compiling them dominates.
    flags = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {flags}",
               PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", SEGJAX_DISTRIBUTED_TIMEOUT_S="120",
               # One compilation cache for every run (conftest sets it for the suite).
               JAX_COMPILATION_CACHE_DIR=os.environ["JAX_COMPILATION_CACHE_DIR"])
    env.update(extra)
    return env


def run_cli(config_file, jobs):
    """Starts `python run.py --config=config_file --workdir=W [args]` for each (W, env, args)
    of `jobs` at once and waits for all; on the first failure or the deadline it kills the
    rest and fails with every process's output. Returns the outputs."""
    logs, procs = [], []
    for i, (workdir, env, args) in enumerate(jobs):
        log = open(pathlib.Path(workdir).parent / f"{pathlib.Path(workdir).name}.{i}.log", "w+")
        logs.append(log)
        command = [sys.executable, "run.py", f"--config={config_file}",
                   f"--workdir={workdir}", *args]
        procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    deadline = time.time() + RUN_TIMEOUT_S
    try:
        while any(p.poll() is None for p in procs):
            failed = any(p.returncode not in (None, 0) for p in procs)
            if failed or time.time() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=60)
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    if any(p.returncode != 0 for p in procs):
        report = "\n".join(f"--- {jobs[i][0]} (rc={p.returncode}) ---\n{out[-6000:]}"
                           for i, (p, out) in enumerate(zip(procs, outputs)))
        pytest.fail(f"run.py failed or timed out after {RUN_TIMEOUT_S}s:\n{report}")
    return outputs


def read_state(workdir, step):
    """The saved train state as numpy arrays, whatever topology wrote it."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(workdir) / "checkpoints" / str(step) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path)
    tree = getattr(getattr(tree, "item_metadata", tree), "tree", tree)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 3-step run as 2 processes x 4 devices and as 1 process x 8 devices, side by
    side (compilation is mostly single-threaded, so the three processes share 2 cores well)."""
    root = tmp_path_factory.mktemp("multihost")
    config_file = root / "tiny_multihost.py"
    config_file.write_text(TINY_CONFIG.format(steps=STEPS))
    address = f"127.0.0.1:{portpicker.pick_unused_port()}"
    pod = [(root / "two_processes",
            _env(4, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                 JAX_PROCESS_ID=str(i)), [])
           for i in range(2)]
    outputs = run_cli(config_file, [*pod, (root / "one_process", _env(8), [])])
    return root, config_file, outputs[:2]


def test_two_processes_train_and_evaluate_like_one(runs):
    root, _, pod_logs = runs
    pod, single = root / "two_processes", root / "one_process"
    pod_state, single_state = read_state(pod, STEPS), read_state(single, STEPS)
    assert int(pod_state["step"]) == int(single_state["step"]) == STEPS
    # Same global batches (each process reads its rows of them), same global BatchNorm.
    assert_trees_close(pod_state["params"], single_state["params"])
    # Running variances accumulate E[x^2] - E[x]^2 summed in another order: 1.6e-5 relative.
    assert_trees_close(pod_state["batch_stats"], single_state["batch_stats"], 1e-4)
    # The confusion matrix is summed over both processes' images (3 + 2, padded to 4 + 4).
    pod_eval = json.loads((pod / f"eval_step_{STEPS}.json").read_text())
    single_eval = json.loads((single / f"eval_step_{STEPS}.json").read_text())
    assert pod_eval["num_images"] == single_eval["num_images"] == 5
    assert pod_eval["miou"] == pytest.approx(single_eval["miou"], abs=1e-5)
    # Per-class figures: params agree to 1e-5, so an argmax near-tie may flip a pixel or two.
    assert pod_eval == pytest.approx(single_eval, abs=1e-4)
    # Process 0 alone writes TensorBoard events, eval JSON and the config; both write the
    # checkpoint together, each its own input position.
    assert len(list(pod.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in pod.glob("*.json")) == ["config.json",
                                                           f"eval_step_{STEPS}.json"]
    data_iter = pod / "checkpoints" / str(STEPS) / "data_iter"
    assert sorted(p.name for p in data_iter.glob("process_*.json")) == [
        "process_0-of-2.json", "process_1-of-2.json"]
    assert "mIoU=" in pod_logs[0] and "mIoU=" not in pod_logs[1]


def test_eight_device_checkpoint_continues_on_two_and_on_one_device(runs):
    root, config_file, _ = runs
    jobs = []
    for devices in (2, 1):
        workdir = root / f"continued_on_{devices}"
        shutil.copytree(root / "one_process", workdir)
        jobs.append((workdir, _env(devices), [f"--config.num_train_steps={MORE_STEPS}"]))
    outputs = run_cli(config_file, jobs)
    states = []
    for (workdir, _, _), out in zip(jobs, outputs):
        assert f"Resuming from checkpoint step {STEPS}" in out
        state = read_state(workdir, MORE_STEPS)
        assert int(state["step"]) == MORE_STEPS
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))
        states.append(state)
    assert_trees_close(states[0]["params"], states[1]["params"])
    before = read_state(root / "one_process", STEPS)["params"]
    moved = max(float(np.max(np.abs(a - b)))
                for a, b in zip(jax.tree.leaves(states[1]["params"]), jax.tree.leaves(before)))
    assert moved > 1e-6


def test_two_process_checkpoint_resumes_in_one_process_at_the_same_batch(runs, caplog):
    """grain keeps one input position per process, so one process finds none of its own in
    a 2-process checkpoint; process 0's position is the global step under any process count
    (data_pipelines.pipeline.train_dataset), so the one process continues with the batch the
    pod would have trained next."""
    from data_pipelines import pipeline
    from segjax import checkpoint

    root, config_file, _ = runs
    spec = importlib.util.spec_from_file_location("tiny_multihost", config_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    template = jax.device_put(read_state(root / "one_process", STEPS), replicated)
    restored, next_batches = {}, {}
    for name in ("two_processes", "one_process"):
        iterator = pipeline.make_train_iterator(config)
        ckpt = checkpoint.Checkpointer(root / name / "checkpoints")
        try:
            with caplog.at_level("WARNING"):
                restored[name] = ckpt.restore(STEPS, template, iterator)
        finally:
            ckpt.close()
        assert iterator.get_state() == {"next_index": STEPS}
        next_batches[name] = next(iterator)
    assert "saved by 2 processes and is resumed by 1" in caplog.text
    assert_trees_close(restored["two_processes"]["params"], restored["one_process"]["params"])
    for key in ("image", "label"):
        np.testing.assert_array_equal(next_batches["two_processes"][key],
                                      next_batches["one_process"][key])


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_checkpoint(runs):
    """The scheduler's signal may reach one process first: both agree on the step and save."""
    import signal

    root, config_file, _ = runs
    address = f"127.0.0.1:{portpicker.pick_unused_port()}"
    workdir = root / "preempted"
    procs, logs = [], []
    for i in range(2):
        log = open(root / f"preempted.{i}.log", "w+")
        logs.append(log)
        env = _env(4, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(i))
        procs.append(subprocess.Popen(
            [sys.executable, "run.py", f"--config={config_file}", f"--workdir={workdir}",
             "--config.num_train_steps=100000"], cwd=REPO, env=env, stdout=log,
            stderr=subprocess.STDOUT))
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while "step 2/" not in (root / "preempted.0.log").read_text():
            assert time.time() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.5)
        procs[1].send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=RUN_TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = [log.seek(0) or log.read() for log in logs]
    assert codes == [128 + signal.SIGTERM] * 2, outputs[0][-3000:] + outputs[1][-3000:]
    stopped = int(outputs[0].split("Stopped by SIGTERM after step ")[1].split(":")[0])
    assert read_state(workdir, stopped)["step"] == stopped
    assert sorted(p.name for p in (workdir / "checkpoints" / str(stopped) / "data_iter").glob(
        "process_*.json")) == ["process_0-of-2.json", "process_1-of-2.json"]
