"""Training loop: jit over a device mesh, orbax resume with the data iterator, metric writers.

`train_and_evaluate(config, workdir)` is the whole job: it resumes from the latest complete
checkpoint in `workdir/checkpoints` when there is one (params, BatchNorm statistics,
optimizer state, step and the input iterator's position), so re-running the same command
continues where the last one stopped and reaches the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from segjax import checkpoint, evaluate, inference, logs, losses, runtime, sharding, xla_cpu
from segjax import workdir as workdir_lib
from segjax.models import layers


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def make_schedule(opt_cfg, num_steps: int) -> optax.Schedule:
    """Per-step learning rate: optional linear warm-up, then poly, cosine or constant."""
    lr, warmup = opt_cfg.learning_rate, int(opt_cfg.warmup_steps)
    decay_steps = max(num_steps - warmup, 1)
    if opt_cfg.schedule == "poly":
        main = optax.polynomial_schedule(lr, opt_cfg.end_learning_rate, opt_cfg.power, decay_steps)
    elif opt_cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=opt_cfg.end_learning_rate / lr)
    elif opt_cfg.schedule == "constant":
        main = optax.constant_schedule(lr)
    else:
        raise ValueError(f"config.optimizer.schedule={opt_cfg.schedule!r}; "
                         "choose poly, cosine or constant")
    if warmup <= 0:
        return main
    ramp = optax.linear_schedule(lr * opt_cfg.warmup_init_fraction, lr, warmup)
    return optax.join_schedules([ramp, main], [warmup])


def decoder_labels(params: Any) -> Any:
    """'backbone' for params under a top-level `backbone` module, 'decoder' for the rest.

    Pretrained trunks are fine-tuned while new layers train from scratch (SwiftNet/MSFNet),
    so the two get separate LR and weight decay; without a `backbone` all is decoder.
    """
    def label(path, _):
        return "backbone" if getattr(path[0], "key", None) == "backbone" else "decoder"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(opt_cfg, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """SGD/Adam with PyTorch's coupled L2 weight decay, or AdamW's decoupled decay.

    `decoder_lr_multiplier` / `decoder_wd_multiplier` scale the LR and weight decay of the
    decoder params (`decoder_labels`), like a second PyTorch param group. At 1 the optimizer
    (and its state layout) is the single-group one. The returned schedule is the base LR.
    """
    schedule = make_schedule(opt_cfg, num_steps)
    if opt_cfg.name not in ("sgd", "adam", "adamw"):
        raise ValueError(f"config.optimizer.name={opt_cfg.name!r}; choose sgd, adam or adamw")

    def group(lr_multiplier: float, wd_multiplier: float) -> optax.GradientTransformation:
        lr = schedule
        if lr_multiplier != 1:
            lr = lambda step: lr_multiplier * schedule(step)
        wd = opt_cfg.weight_decay * wd_multiplier
        if opt_cfg.name == "adamw":
            return optax.adamw(lr, b1=opt_cfg.b1, b2=opt_cfg.b2, weight_decay=wd)
        if opt_cfg.name == "sgd":
            base = optax.sgd(lr, momentum=opt_cfg.momentum or None, nesterov=opt_cfg.nesterov)
        else:
            base = optax.adam(lr, b1=opt_cfg.b1, b2=opt_cfg.b2)
        return optax.chain(optax.add_decayed_weights(wd), base) if wd else base

    lr_multiplier = float(getattr(opt_cfg, "decoder_lr_multiplier", 1.0))
    wd_multiplier = float(getattr(opt_cfg, "decoder_wd_multiplier", 1.0))
    if lr_multiplier == 1 and wd_multiplier == 1:
        return group(1.0, 1.0), schedule
    tx = optax.multi_transform(
        {"backbone": group(1.0, 1.0), "decoder": group(lr_multiplier, wd_multiplier)},
        decoder_labels)
    return tx, schedule


def make_train_step(model, tx, schedule, loss_cfg, mesh,
                    norm: inference.InputNorm | None = None, *,
                    running_variance: str = "unbiased", return_grads: bool = False,
                    compiler_options: dict | None = None):
    """One SGD step on a batch-sharded global batch; BatchNorm sees the global batch.

    The batch holds uint8 frames and labels as the pipeline ships them; `norm` turns the
    frames into network input inside the step (float images are taken as normalised;
    None: ImageNet mean/std, the configs' default). `running_variance` is
    `config.bn_running_variance`. `return_grads` adds the gradients as a third output,
    for checking the step against a reference. `compiler_options`: `xla_cpu.for_config(config,
    "train")`.
    """
    norm = norm or inference.InputNorm()

    def train_step(state: TrainState, batch):
        images, labels = norm(batch["image"]), batch["label"].astype(jnp.int32)

        def loss_fn(params):
            with layers.running_variance(running_variance):
                outputs, updates = model.apply(
                    {"params": params, "batch_stats": state.batch_stats}, images,
                    train=True, mutable=["batch_stats"])
            total, terms = losses.segmentation_loss(outputs, labels, loss_cfg)
            return total, (terms, updates["batch_stats"])

        (loss, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state)
        scalars = {"loss": loss, **terms, "learning_rate": schedule(state.step),
                   "grad_norm": optax.tree.norm(grads)}
        return (new_state, scalars, grads) if return_grads else (new_state, scalars)

    # image [B, H, W, 3] and label [B, H, W]: P("data"), or P("data", "spatial") with a
    # spatial mesh axis (bands of rows; GSPMD adds the convolutions' halo exchanges).
    repl, data = sharding.replicated(mesh), sharding.batch_sharding(mesh, ndim=3)
    outputs = (repl, repl, repl) if return_grads else (repl, repl)
    return jax.jit(train_step, in_shardings=(repl, data), out_shardings=outputs,
                   donate_argnums=0, compiler_options=compiler_options)


def train_step_for(config, model, tx, schedule, mesh):
    """`make_train_step` with everything a recipe sets: its loss, input normalisation,
    BatchNorm convention and CPU convolution kernels."""
    return make_train_step(
        model, tx, schedule, losses.for_global_batch(config.loss, config.global_batch_size),
        mesh, inference.InputNorm.from_config(config.data),
        running_variance=config.bn_running_variance,
        compiler_options=xla_cpu.for_config(config, "train", mesh.devices.flat[0].platform))


def init_state(model, tx, rng, input_shape, mesh) -> TrainState:
    """Initialises directly into replicated device buffers."""

    def init(rng):
        variables = model.init(rng, jnp.zeros(input_shape, jnp.float32), train=False)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          batch_stats=variables.get("batch_stats", {}),
                          opt_state=tx.init(params))

    return jax.jit(init, out_shardings=sharding.replicated(mesh))(rng)


@dataclasses.dataclass
class Setup:
    """Everything a training run builds from the config before the first step."""
    info: Any
    model: Any
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    mesh: Any
    state: TrainState
    checkpointer: checkpoint.Checkpointer
    meta: dict


def setup(config, workdir: str) -> Setup:
    info = runtime.dataset_info(config)
    if config.bn_running_variance not in layers.RUNNING_VARIANCES:
        raise ValueError(f"config.bn_running_variance={config.bn_running_variance!r}; choose "
                         f"one of {layers.RUNNING_VARIANCES}")
    for field in ("train", "inference"):  # a bad choice fails before anything is written
        xla_cpu.for_config(config, field)
    mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
    sharding.check_batch_size(config.global_batch_size, mesh, height=config.data.crop_size[0])
    model = runtime.build_model(config, info.num_classes)
    tx, schedule = make_optimizer(config.optimizer, config.num_train_steps)
    crop = tuple(config.data.crop_size)
    state = init_state(model, tx, jax.random.key(config.seed), (1, *crop, 3), mesh)
    checkpointer = checkpoint.Checkpointer(
        pathlib.Path(workdir) / "checkpoints", max_to_keep=config.keep_checkpoints,
        async_save=config.async_checkpointing)
    return Setup(info, model, tx, schedule, mesh, state, checkpointer,
                 checkpoint.describe(config, info.num_classes))


def create_writer(workdir: str):
    return logs.create_writer(workdir)


def _check_finite(step_metrics: list[tuple[int, dict]], checkpointer, workdir) -> None:
    for step, scalars in step_metrics:
        bad = {k: float(v) for k, v in scalars.items() if not np.isfinite(v)}
        if bad:
            checkpointer.wait()
            last = checkpointer.latest_step()
            where = (f"the last good checkpoint (step {last}) in "
                     f"{checkpointer.directory} is intact and a rerun resumes from it"
                     if last is not None else "no checkpoint had been written yet")
            raise TrainingDivergedError(
                f"Training diverged at step {step}: {bad}. Stopped without saving; {where}. "
                "Lower config.optimizer.learning_rate, add warm-up "
                "(config.optimizer.warmup_steps) or use config.dtype='float32'.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       stop_at_step: int | None = None) -> dict[str, Any]:
    """Trains `config` in `workdir`, resuming if possible; evaluates and checkpoints periodically.

    `stop_at_step` ends this invocation after that step (with a checkpoint), as a time-sliced
    job would; the schedule still runs to `config.num_train_steps`.
    Returns the per-step losses of this invocation and the last evaluation.
    """
    from data_pipelines import pipeline

    if config.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    workdir = str(pathlib.Path(workdir).absolute())
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    lock = workdir_lib.WorkdirLock(workdir)
    if jax.process_index() == 0:  # one writer per workdir, checked before any compile
        lock.acquire()
    train_iter = s = None
    try:
        # Data problems surface before minutes of compilation, not after.
        train_iter = pipeline.make_train_iterator(config)
        s = setup(config, workdir)
        if jax.process_index() == 0:
            workdir_lib.check_writable(workdir, _state_bytes(s.state), config.keep_checkpoints)
        return _train_loop(config, workdir, s, train_iter, stop_at_step)
    finally:
        if s is not None:
            # Let a pending async save commit before anything else happens to the process.
            s.checkpointer.wait()
            s.checkpointer.close()
        if train_iter is not None:
            _close(train_iter)
        lock.release()


def run_header(config, s: Setup, state: TrainState, initial_step: int, workdir: str) -> str:
    """What is about to run, named as the user named it (the synthetic scenes use
    Cityscapes' class table, but they are `synthetic`)."""
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    mesh = " x ".join(f"{name}={size}" for name, size in s.mesh.shape.items())
    start = f"from step {initial_step} " if initial_step else ""
    return (f"segjax: {config.model.name} on {config.dataset.name} ({s.info.num_classes} "
            f"classes), {params / 1e6:.2f}M params\n"
            f"  {jax.device_count()} {jax.devices()[0].platform} device(s), mesh {mesh}; "
            f"{start}to step {config.num_train_steps}, global batch "
            f"{config.global_batch_size}\n  workdir {workdir}")


def _state_bytes(state: TrainState) -> int:
    return int(sum(leaf.nbytes for leaf in jax.tree.leaves(state)))


def _train_loop(config, workdir, s: Setup, train_iter, stop_at_step):
    state = s.state

    latest = s.checkpointer.latest_step()
    if latest is not None:
        s.checkpointer.check_resumable(latest)
        s.checkpointer.check_compatible(latest, s.meta)
        state = s.checkpointer.restore(latest, state, train_iter)
        logging.info("Resumed from %s at step %d", s.checkpointer.directory, latest)
        if jax.process_index() == 0:
            print(f"Resuming from checkpoint step {latest} in {s.checkpointer.directory}",
                  flush=True)
    else:  # a fresh run: pretrained (part of the model), then init_checkpoint (all of it)
        if config.model.get("pretrained", ""):
            from segjax import pretrained

            state = pretrained.apply_to_state(config.model.pretrained, state, config.model.name)
        if config.init_checkpoint:
            # Step and optimizer state stay fresh: a fine-tune runs its own schedule.
            variables = runtime.load_variables(config.init_checkpoint, state.variables(), s.meta)
            state = state.replace(params=variables["params"],
                                  batch_stats=variables["batch_stats"])
            print(f"Initialised params and BatchNorm statistics from {config.init_checkpoint}",
                  flush=True)
    initial_step = int(jax.device_get(state.step))

    writer = create_writer(workdir)
    if initial_step == 0 and jax.process_index() == 0:
        (pathlib.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))
        writer.write_hparams({k: str(v) for k, v in _flatten(config.to_dict()).items()})
    train_step = train_step_for(config, s.model, s.tx, s.schedule, s.mesh)
    num_steps = int(config.num_train_steps)
    hooks = []
    progress = logs.Progress(num_steps, writer, config.log_every_steps, initial_step)
    if jax.process_index() == 0:
        hooks.append(progress)

    history: dict[int, float] = {}
    last_eval: dict | None = None
    pending: list[tuple[int, dict]] = []
    if jax.process_index() == 0:
        print(run_header(config, s, state, initial_step, workdir), flush=True)
    step = initial_step
    with workdir_lib.StopSignals() as signals:
        for step in range(initial_step + 1, num_steps + 1):
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                batch = sharding.to_global(next(train_iter), s.mesh)
                state, scalars = train_step(state, batch)
            pending.append((step, scalars))
            stop = signals.agreed(step, config.log_every_steps)
            last = step == num_steps or step == stop_at_step or stop
            log_now = step % config.log_every_steps == 0 or last
            save_now = step % config.checkpoint_every_steps == 0 or last
            eval_now = (step % config.eval_every_steps == 0 or step == num_steps) and not stop
            if log_now or save_now or eval_now:
                fetched = [(i, jax.device_get(m)) for i, m in pending]
                pending = []
                _check_finite(fetched, s.checkpointer, workdir)
                history.update({i: float(m["loss"]) for i, m in fetched})
                means = {f"train/{k}": float(np.mean([m[k] for _, m in fetched]))
                         for k in fetched[-1][1]}
                if config.data.get("skip_corrupt", False):
                    from data_pipelines.pipeline import skipped_examples

                    means["train/skipped_examples"] = evaluate.sum_over_processes(
                        skipped_examples("train"))
                writer.write_scalars(step, means)
                progress.loss = means["train/loss"]
            for hook in hooks:
                hook(step)
            with progress.paused():
                if save_now:
                    s.checkpointer.save(step, state, train_iter, s.meta)
                if eval_now:
                    last_eval = _evaluate(config, s, state, step, writer, workdir)
            if stop:
                s.checkpointer.wait()
                writer.flush()
                signals.interrupt(step, s.checkpointer.directory)
            if step == stop_at_step:
                break

    if initial_step >= num_steps:
        print(f"Training already finished ({initial_step}/{num_steps} steps); re-running the "
              "final evaluation.", flush=True)
        last_eval = _evaluate(config, s, state, initial_step, writer, workdir)
    writer.flush()
    writer.close()
    if jax.process_index() == 0:
        final = step if initial_step < num_steps else initial_step
        print(f"Results of step {final} are in {workdir}: eval_step_*.json, checkpoints/, "
              f"config.json; curves: tensorboard --logdir {workdir}", flush=True)
    return {"step": step if initial_step < num_steps else initial_step, "history": history,
            "eval": last_eval, "state": state}


def _evaluate(config, s: Setup, state, step, writer, workdir):
    result, panels = evaluate.run_evaluation(
        s.model, state.variables(), config, s.mesh, info=s.info,
        num_images_to_log=config.num_eval_images_to_log)
    payload = evaluate.report(result, s.info, step, workdir, config.dataset.name)
    scalars = {f"eval/{k}": v for k, v in payload.items()
               if isinstance(v, (int, float)) and v is not None and k != "step"}
    writer.write_scalars(step, scalars)
    if panels is not None:
        writer.write_images(step, {"eval/image_label_prediction": panels})
    writer.flush()
    return payload


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else v
    return out


def _close(iterator) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
