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
from typing import Any

import jax
import orbax.checkpoint as ocp

META_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The workdir holds checkpoints of a different model or dataset."""


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
        return self.manager.save(step, args=args, force=force)

    def read_meta(self, step: int) -> dict:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def check_compatible(self, step: int, meta: dict) -> None:
        found = self.read_meta(step)
        keys = ("model", "num_classes", "model_kwargs")
        diffs = [f"{k}: checkpoint has {found.get(k)!r}, config has {meta[k]!r}"
                 for k in keys if found.get(k) != meta[k]]
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

    def restore(self, step: int, state_template, data_iter=None) -> Any:
        """Restores into the structure and shardings of `state_template`."""
        import grain

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        items = {"state": ocp.args.StandardRestore(abstract)}
        if data_iter is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def restore_state_only(self, step: int, state_template) -> Any:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        return restored["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
