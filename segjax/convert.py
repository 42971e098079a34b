"""PyTorch state dicts → Flax variables, matched by module path.

Flax module names mirror the PyTorch keys, so one generic rule converts every model: the
key minus its last component is the Flax module path, and the template (the model's own
variable shapes) decides what the last component becomes. Checkpoints whose names differ
from ours are covered by the key renames each model registers (`models.key_renames`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from segjax import models
from segjax.models import Renames

__all__ = [
    "ConversionError",
    "ConversionReport",
    "WRAPPER_PREFIXES",
    "convert_for_model",
    "count_params",
    "flax_paths",
    "matching_keys",
    "model_template",
    "strip_wrappers",
    "to_torch_layout",
    "torch_to_flax",
]

WRAPPER_PREFIXES = ("module.", "model.")
DROPPED_SUFFIXES = ("num_batches_tracked",)


class ConversionError(ValueError):
    """The state dict and the model disagree (unmatched, missing or mis-shaped entries)."""


@dataclasses.dataclass
class ConversionReport:
    """What a non-strict conversion did; `skipped` maps torch keys to the reason."""

    loaded: list[str]
    skipped: dict[str, str]
    missing: list[str]

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)}, skipped {len(self.skipped)}, "
                 f"missing {len(self.missing)}"]
        lines += [f"  skipped {k}: {why}" for k, why in sorted(self.skipped.items())]
        lines += [f"  missing {k}" for k in self.missing]
        return "\n".join(lines)


def strip_wrappers(key: str) -> str:
    """`key` without any leading `module.` / `model.` (DataParallel, Lightning wrappers)."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _apply_renames(key: str, renames: Renames | None) -> str | None:
    if renames is None:
        return key
    if callable(renames):
        return renames(key)
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _layout(value: np.ndarray, leaf: str) -> np.ndarray:
    """PyTorch weight layout → Flax: conv OI[D]HW → [D]HWIO, linear (out, in) → (in, out)."""
    if leaf == "kernel" and value.ndim >= 2:
        return np.transpose(value, tuple(range(2, value.ndim)) + (1, 0))
    return value


def to_torch_layout(value: np.ndarray, leaf: str) -> np.ndarray:
    """The inverse of the conversion's layout change: Flax [D]HWIO → OI[D]HW, (in, out) →
    (out, in); for comparing gradients and updates with PyTorch's."""
    value = np.asarray(value)
    if leaf == "kernel" and value.ndim >= 2:
        forward = tuple(range(2, value.ndim)) + (1, 0)
        return np.transpose(value, np.argsort(forward))
    return value


def _target(torch_leaf: str,
            module_leaves: Mapping[tuple[str, str], Any]) -> tuple[str, str] | None:
    """(collection, flax leaf) for a torch leaf name at a module, decided by the template."""
    candidates = {
        "weight": [("params", "kernel"), ("params", "scale"), ("params", "alpha"),
                   ("params", "embedding")],
        "bias": [("params", "bias")],
        "running_mean": [("batch_stats", "mean")],
        "running_var": [("batch_stats", "var")],
    }.get(torch_leaf, [])
    return next((c for c in candidates if c in module_leaves), None)


def _index_template(variables: Mapping[str, Any]) -> dict[tuple[str, ...], dict]:
    """module path → {(collection, leaf): template leaf}."""
    index: dict[tuple[str, ...], dict] = {}
    for collection in ("params", "batch_stats"):
        flat = traverse_util.flatten_dict(dict(variables.get(collection, {})))
        for path, leaf in flat.items():
            index.setdefault(tuple(path[:-1]), {})[(collection, path[-1])] = leaf
    return index


def _describe(keys: Iterable[str], limit: int = 40) -> str:
    keys = list(keys)
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n  {shown}{more}"


def _match(
    state_dict: Mapping[str, Any],
    index: Mapping[tuple[str, ...], dict],
    renames: Renames | None,
    prefix: str = "",
    *,
    cast: bool = True,
) -> tuple[dict[tuple[str, ...], np.ndarray], dict[str, tuple[str, ...]], dict[str, str]]:
    """(filled Flax paths -> values, loaded torch key -> its Flax path, skipped torch key ->
    reason).

    cast=False only decides what would load (the values stay un-copied torch-layout views).
    """
    filled: dict[tuple[str, ...], np.ndarray] = {}
    loaded: dict[str, tuple[str, ...]] = {}
    skipped: dict[str, str] = {}
    for raw_key, raw_value in state_dict.items():
        key = _apply_renames(prefix + strip_wrappers(raw_key), renames)
        if key is None:
            skipped[raw_key] = "dropped by renames"
            continue
        *module_path, torch_leaf = key.split(".")
        if torch_leaf in DROPPED_SUFFIXES:
            continue
        module_leaves = index.get(tuple(module_path), {})
        target = _target(torch_leaf, module_leaves)
        if target is None:
            skipped[raw_key] = f"no Flax variable for {key!r}"
            continue
        collection, leaf = target
        expected = module_leaves[target]
        value = _layout(_to_numpy(raw_value), leaf)
        if tuple(value.shape) != tuple(expected.shape):
            skipped[raw_key] = (f"shape {tuple(value.shape)} (Flax layout) != "
                                f"{tuple(expected.shape)} at {'/'.join(module_path)}/{leaf}")
            continue
        path = (collection, *module_path, leaf)
        if path in filled:
            skipped[raw_key] = f"{'/'.join(path)} already filled by another key"
            continue
        filled[path] = value.astype(expected.dtype) if cast else value
        loaded[raw_key] = path
    return filled, loaded, skipped


def torch_to_flax(
    state_dict: Mapping[str, Any],
    variables_template: Mapping[str, Any],
    *,
    strict: bool = True,
    renames: Renames | None = None,
    prefix: str = "",
) -> dict[str, Any] | tuple[dict[str, Any], ConversionReport]:
    """Convert a PyTorch state dict into `{'params': ..., 'batch_stats': ...}`.

    `variables_template` is the model's variables, real or abstract (`jax.eval_shape` of
    `model.init`); it fixes the target paths, shapes and dtypes. Wrapper prefixes
    (`module.`, `model.`) and `num_batches_tracked` are dropped before matching.

    strict=True: every key must land on a template leaf of the same shape and every leaf
    must be filled, else `ConversionError` lists the offending keys; returns the variables.
    strict=False: returns `(variables, ConversionReport)`; unmatched or mis-shaped keys are
    skipped and unfilled leaves keep the template's value (pass real initial variables to
    get a usable tree, e.g. when importing a backbone into a segmentation model).
    `prefix` is prepended to every key (after the wrappers are stripped, before the renames):
    `"base."` places a bare trunk state dict in the model's `base` module.
    """
    index = _index_template(variables_template)
    filled, loaded, skipped = _match(state_dict, index, renames, prefix)

    template_paths = [(c, *m, leaf) for m, leaves in index.items() for (c, leaf) in leaves]
    missing = ["/".join(p) for p in template_paths if p not in filled]

    if strict and (skipped or missing):
        parts = []
        if skipped:
            parts.append(f"{len(skipped)} state-dict key(s) not loaded:" + _describe(
                f"{k}: {why}" for k, why in skipped.items()))
        if missing:
            parts.append(f"{len(missing)} model variable(s) not in the state dict:"
                         + _describe(missing))
        raise ConversionError("\n".join(parts))

    flat_template = traverse_util.flatten_dict(
        {c: dict(variables_template.get(c, {})) for c in ("params", "batch_stats")})
    merged = {path: (jnp.asarray(filled[path]) if path in filled else leaf)
              for path, leaf in flat_template.items()}
    variables = traverse_util.unflatten_dict(merged)
    variables.setdefault("batch_stats", {})
    if strict:
        return variables
    return variables, ConversionReport(list(loaded), skipped, missing)


def matching_keys(
    state_dict: Mapping[str, Any],
    variables_template: Mapping[str, Any],
    *,
    renames: Renames | None = None,
    prefix: str = "",
) -> list[str]:
    """The state-dict keys `torch_to_flax(..., strict=False)` would load (nothing is copied)."""
    return list(_match(state_dict, _index_template(variables_template), renames, prefix,
                       cast=False)[1])


def flax_paths(
    state_dict: Mapping[str, Any],
    variables_template: Mapping[str, Any],
    *,
    renames: Renames | None = None,
) -> dict[str, tuple[str, ...]]:
    """torch key → (collection, *module path, leaf) of the variable it converts to."""
    return _match(state_dict, _index_template(variables_template), renames, cast=False)[1]


def model_template(model, input_shape: Sequence[int] = (1, 256, 256, 3)) -> dict[str, Any]:
    """Abstract variables of `model` (shapes and dtypes only, nothing is computed)."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def count_params(variables: Mapping[str, Any]) -> int:
    """Learnable values (the `params` collection; BN running stats excluded)."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(variables["params"])))


def convert_for_model(
    name: str,
    state_dict: Mapping[str, Any],
    num_classes: int,
    *,
    strict: bool = True,
    template: Mapping[str, Any] | None = None,
    **model_kwargs: Any,
):
    """Build registry model `name`, and convert `state_dict` for it with its key renames.

    Returns `(model, variables)`, or `(model, variables, report)` when strict=False.
    """
    model = models.build(name, num_classes, **model_kwargs)
    if template is None:
        template = model_template(model)
    result = torch_to_flax(state_dict, template, strict=strict, renames=models.key_renames(name))
    return (model, result) if strict else (model, *result)
