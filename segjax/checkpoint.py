"""Orbax checkpoints of the train state, the input iterator and what model they belong to.

Each step directory holds `state` (params, batch_stats, opt_state, step), `data_iter` (the
grain iterator position, so a resumed run sees exactly the batches it would have seen) and
`meta` (model name, classes and constructor arguments), which is checked before a restore so
that a workdir belonging to another model fails with a message instead of a shape error.
Orbax writes into a temporary directory and renames it on commit, so a process killed during
a save leaves the previous step as the latest complete one.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

META_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The workdir holds checkpoints of a different model or dataset."""


def _resolved_kwargs(name: str, kwargs: dict | None) -> dict | None:
    """`kwargs` with the model's defaults filled in, as JSON would store them."""
    from segjax import models

    try:
        full = {**models.default_kwargs(name), **dict(kwargs or {})}
    except ValueError:  # a model name this version does not know
        return None
    return json.loads(json.dumps(full, default=str))


def meta_diffs(found: dict, meta: dict) -> list[str]:
    """What differs between a checkpoint's `meta` and the config's (model, classes, model
    options); options spelled out in one and left at their default in the other agree."""
    diffs = [f"{k}: checkpoint has {found.get(k)!r}, config has {meta[k]!r}"
             for k in ("model", "num_classes") if found.get(k) != meta[k]]
    kwargs, want = found.get("model_kwargs"), meta["model_kwargs"]
    if kwargs != want:
        resolved = None if diffs else _resolved_kwargs(meta["model"], kwargs)
        if resolved is None or resolved != _resolved_kwargs(meta["model"], want):
            diffs.append(f"model_kwargs: checkpoint has {kwargs!r}, config has {want!r}")
    return diffs


def weights_only_meta(model: str, model_kwargs: dict, num_classes: int, source: str) -> dict:
    """`describe`'s fields for converted weights, marked `weights_only` (no optimizer state,
    step or input position: evaluate, predict and init_checkpoint accept it, resuming not)."""
    return {
        "version": META_VERSION,
        "model": model,
        "model_kwargs": json.loads(json.dumps(dict(model_kwargs), default=str)),
        "num_classes": int(num_classes),
        "dataset": None,
        "weights_only": True,
        "source": str(source),
    }


def save_weights_only(directory: str | pathlib.Path, variables: dict, meta: dict,
                      step: int = 0) -> pathlib.Path:
    """Writes `{'params', 'batch_stats'}` and `meta` as checkpoint `step` in `directory`
    (a workdir's `checkpoints/`); returns the step directory."""
    directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False, create=True)
    manager = ocp.CheckpointManager(directory, options=options)
    try:
        tree = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(dict(meta))), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()
    return directory / str(step)


def describe(config, num_classes: int) -> dict:
    """What must agree between a checkpoint and the config that resumes it."""
    return {
        "version": META_VERSION,
        "model": config.model.name,
        "model_kwargs": json.loads(json.dumps(config.model.kwargs.to_dict(), default=str)),
        "num_classes": int(num_classes),
        "dataset": config.dataset.name,
        # grain's iterator state is tied to the number of worker processes.
        "data_num_workers": int(config.data.num_workers),
    }


class Checkpointer:
    """A thin wrapper over `ocp.CheckpointManager` with the three items above."""

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 3,
                 async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_iter, meta: dict, *, force: bool = False) -> bool:
        import grain  # the input pipeline's own handler; not needed by inference users

        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iter=grain.checkpoint.CheckpointSave(data_iter),
            meta=ocp.args.JsonSave(meta),
        )
        try:
            return self.manager.save(step, args=args, force=force)
        except Exception as err:  # orbax re-raises what its writer threads hit
            self._save_failed(step, err)

    def read_meta(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def check_compatible(self, step: int, meta: dict) -> None:
        found = self.read_meta(step)
        diffs = meta_diffs(found, meta)
        workers = found.get("data_num_workers", meta["data_num_workers"])
        if not diffs and workers != meta["data_num_workers"]:
            raise CheckpointMismatchError(
                f"The checkpoint at {self.directory / str(step)} saved the input pipeline's "
                f"position with data.num_workers={workers}, and grain can only resume it with "
                f"the same count: add --config.data.num_workers={workers}.")
        if diffs:
            raise CheckpointMismatchError(
                f"The checkpoint at {self.directory / str(step)} belongs to a different model "
                f"({'; '.join(diffs)}). Nothing was changed. Pass a fresh --workdir for this "
                "config, or the config that wrote this checkpoint.")

    def check_resumable(self, step: int) -> None:
        """Refuses a weights-only checkpoint (tools/convert output) as a run to resume."""
        found = self.read_meta(step)
        if found.get("weights_only"):
            workdir = self.directory.parent
            raise CheckpointMismatchError(
                f"{self.directory / str(step)} holds converted weights only (from "
                f"{found.get('source')!r}): no optimizer state, step or input position to "
                "resume training from. Nothing was changed. Train in a fresh --workdir with "
                f"--config.init_checkpoint={workdir}; --mode=evaluate/predict read it as is.")

    def restore(self, step: int, state_template, data_iter=None) -> Any:
        """Restores into the structure and shardings of `state_template`."""
        import grain

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        items = {"state": ocp.args.StandardRestore(abstract)}
        saved_by_others = None if data_iter is None else self._iter_state_of_other_layout(step)
        if data_iter is not None and saved_by_others is None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        if saved_by_others is not None:
            # The train stream's position is its step in one global stream, the same number
            # in every process of any process count (data_pipelines.pipeline.train_dataset).
            data_iter.set_state(json.loads(saved_by_others.read_text()))
            getattr(data_iter, "start_prefetch", lambda: None)()
            logging.warning(
                "The input position of step %d was saved by %s processes and is resumed by "
                "%d: the global batches continue where they stopped.", step,
                saved_by_others.stem.rsplit("-of-", 1)[-1], jax.process_count())
        return restored["state"]

    def _iter_state_of_other_layout(self, step: int) -> pathlib.Path | None:
        """Process 0's saved input position when `step` was saved by another process count
        (grain keeps one file per process and would find none for this one), else None."""
        folder = self.directory / str(step) / "data_iter"
        mine = folder / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        if not folder.is_dir() or mine.exists():
            return None
        saved = sorted(folder.glob("process_0-of-*.json"))
        return saved[0] if saved else None

    def restore_variables(self, step: int, template: Any) -> dict:
        """`{params, batch_stats}` only, shaped and sharded like `template` (arrays or
        ShapeDtypeStructs): from a training checkpoint, whose optimizer state and input
        position are left on disk, or from a weights-only one."""
        default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
            a.shape, a.dtype, sharding=getattr(a, "sharding", None) or default), template)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=abstract, partial_restore=True,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract))))
        return {"params": restored["state"]["params"],
                "batch_stats": restored["state"].get("batch_stats", {})}

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            self._save_failed(None, err)

    def _save_failed(self, step: int | None, err: Exception) -> None:
        """One line for a failed save (full disk, lost mount): the path, the error, the last
        intact checkpoint and what to do."""
        from segjax.workdir import WorkdirError

        try:
            self.manager.reload()
            intact = [s for s in self.manager.all_steps() if s != step]
        except Exception:  # noqa: BLE001 - the directory itself may be gone
            intact = []
        last = (f"the last intact checkpoint is step {max(intact)}" if intact
                else "no checkpoint was completed")
        reason = next((line for line in str(err).splitlines() if line.strip()),
                      type(err).__name__)
        # An async save fails when the next one waits for it: name the step that failed.
        failed = re.search(r"/(\d+)\.orbax-checkpoint-tmp", reason)
        step = int(failed.group(1)) if failed else step
        which = f"checkpoint {step}" if step is not None else "a checkpoint"
        raise WorkdirError(
            f"saving {which} in {self.directory} failed ({reason.strip()}); {last}. Free "
            "space or fix the directory, then rerun the same command to resume from it."
        ) from err

    def close(self) -> None:
        self.manager.close()
