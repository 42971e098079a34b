"""Pretrained weights: state-dict files and non-strict loading into part of a model.

One reader (`read_state_dict`) serves `config.model.pretrained`, `config.init_checkpoint` and
`python -m segjax.tools.convert`: `.npz` and `.safetensors` are read with numpy alone,
`.pth`/`.pt`/`.pkl` with torch when it is importable. `load_pretrained` fills every model
variable a file has a same-shaped entry for, wherever the file's keys sit in the model: a
torchvision ResNet-18 goes into MSFNet's `backbone`, the HarDNet ImageNet trunk (`0.conv.*`)
into FASSD-Net's `base`, an official DDRNet-23-slim file into DDRNet or BCMFNet from the root.
The rest keeps its initialisation and is reported as missing.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from segjax import convert, models

__all__ = [
    "PretrainedReport",
    "STATE_DICT_SUFFIXES",
    "apply_to_state",
    "candidate_prefixes",
    "load_pretrained",
    "read_safetensors",
    "read_state_dict",
    "unwrap_state_dict",
]

STATE_DICT_SUFFIXES = (".npz", ".safetensors", ".pth", ".pt", ".pkl")
TORCH_SUFFIXES = (".pth", ".pt", ".pkl")
# Top-level entries of training checkpoints that hold the state dict (FASSD-Net's `model_state`,
# Lightning / mmseg `state_dict`, `model`).
WRAPPER_KEYS = ("model_state", "state_dict", "model")
FIELD = "config.model.pretrained"
FILE_KINDS = "an .npz, .safetensors or .pth/.pt/.pkl state dict"

# --------------------------------------------------------------------------- reading


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """A `.safetensors` file as `{key: array}` through the safetensors package's numpy API
    (no torch). F16 and BF16 tensors are returned as float32; other dtypes keep theirs."""
    import ml_dtypes  # registers bfloat16 with numpy (jax depends on it)
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        loaded = load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"{path} is not a safetensors file ({err})") from None
    half = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
    return {key: value.astype(np.float32) if value.dtype in half else value
            for key, value in loaded.items()}


def _torch_to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return value


def _torch_help(field: str, name: str) -> str:
    return ("Convert it to .npz (or .safetensors) once where torch is available: "
            "python -c \"import numpy as np, "
            f"torch; sd = torch.load('{name}', map_location='cpu'); "
            "sd = sd.get('model_state', sd.get('state_dict', sd)); "
            "np.savez('weights.npz', **{k: v.float().numpy() if v.is_floating_point() else "
            "v.numpy() for k, v in sd.items()})\" and point "
            f"{field} at weights.npz (or write a .safetensors file with "
            "safetensors.torch.save_file).")


def read_state_dict(path: str | pathlib.Path, *, field: str = FIELD,
                    expected: str = FILE_KINDS) -> dict[str, np.ndarray]:
    """The `{key: numpy array}` state dict in a `.npz`, `.safetensors` or `.pth/.pt/.pkl` file.

    Wrappers are removed (`unwrap_state_dict`: a top-level `model_state` / `state_dict` /
    `model` entry, `module.` / `model.` key prefixes). Errors name `field` and the path.
    """
    source = pathlib.Path(path).expanduser()
    where = f"{field}={str(path)!r}"
    if not source.is_file():
        raise FileNotFoundError(
            f"{where} does not exist{' (it is a directory)' if source.is_dir() else ''}. "
            f"Point it at {expected}.")
    suffix = source.suffix.lower()
    if suffix not in STATE_DICT_SUFFIXES:
        raise ValueError(f"{where}: expected {expected}, got {source.name!r}")
    if suffix in TORCH_SUFFIXES:
        try:
            import torch
        except ImportError:
            raise ValueError(f"{where} is a PyTorch file but torch is not installed. "
                             + _torch_help(field, source.name)) from None
    try:
        if suffix == ".npz":
            with np.load(source, allow_pickle=False) as archive:
                loaded = {k: archive[k] for k in archive.files}
        elif suffix == ".safetensors":
            loaded = read_safetensors(source)
        else:
            try:
                loaded = torch.load(source, map_location="cpu", weights_only=True)
            except Exception:  # older files pickle more than tensors (e.g. argparse args)
                logging.warning("%s: torch.load(weights_only=True) failed; loading the full "
                                "pickle (only do this for files you trust)", where)
                loaded = torch.load(source, map_location="cpu", weights_only=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, RuntimeError) as err:
        raise ValueError(f"{where} could not be read ({type(err).__name__}: {err}). "
                         f"Point it at {expected}.") from None
    state_dict = unwrap_state_dict(loaded)
    if not state_dict:
        raise ValueError(f"{where} holds no arrays (keys: {sorted(loaded)[:10]}).")
    return state_dict


def unwrap_state_dict(obj: Any) -> dict[str, np.ndarray]:
    """The state dict inside a training checkpoint: descends into a top-level `model_state`,
    `state_dict` or `model` dict, strips `module.` / `model.` key prefixes and keeps array
    entries only (torch tensors become numpy arrays)."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS
                      if isinstance(obj.get(k), Mapping) and obj[k]), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict (key -> tensor), got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        value = _torch_to_numpy(value)
        if isinstance(value, np.ndarray | np.generic):
            out[convert.strip_wrappers(str(key))] = np.asarray(value)
    return out


# --------------------------------------------------------------------------- loading


@dataclasses.dataclass
class PretrainedReport:
    """What `load_pretrained` did: where the file's keys went and what was (not) used."""

    source: str
    prefix: str  # the Flax module the file was placed in ("" = the model's root)
    loaded: list[str]  # file keys copied into the model
    skipped: dict[str, str]  # file keys not used -> why (no such variable, shape mismatch)
    missing: list[str]  # model variables the file did not fill (they keep their init)

    def summary(self, limit: int = 20) -> str:
        where = f"module {self.prefix.rstrip('.')!r}" if self.prefix else "the model's root"
        lines = [f"Pretrained weights from {self.source} (placed at {where}): loaded "
                 f"{len(self.loaded)}, skipped {len(self.skipped)}, missing {len(self.missing)}"]

        def listing(title, items):
            if items:
                lines.append(f"  {title}:")
                lines.extend(f"    {item}" for item in items[:limit])
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")

        listing("loaded", self.loaded)
        listing("skipped (in the file, not used)",
                [f"{k}: {why}" for k, why in self.skipped.items()])
        listing("missing (in the model, keep their initialisation)", self.missing)
        return "\n".join(lines)


def candidate_prefixes(variables: Mapping[str, Any]) -> list[str]:
    """Where a state dict may sit: the root, then every top-level module of the model."""
    modules = [str(k) for k, v in dict(variables.get("params", {})).items()
               if isinstance(v, Mapping)]
    return [""] + [f"{name}." for name in modules]


def load_pretrained(
    state_dict: Mapping[str, Any],
    variables: Mapping[str, Any],
    model_name: str,
    *,
    source: str = "",
    field: str = FIELD,
    prefixes: Sequence[str] | None = None,
) -> tuple[dict[str, Any], PretrainedReport]:
    """Non-strict import of `state_dict` into `variables` (the model's real initial ones).

    Every candidate placement (`candidate_prefixes`) is tried with the model's registered
    key renames; the one that loads the most keys wins (the root on a tie). Only
    same-shaped entries load; the other variables keep their values. Raises
    `convert.ConversionError` naming `field` when no key fits.
    """
    renames = models.key_renames(model_name)
    prefixes = list(prefixes) if prefixes is not None else candidate_prefixes(variables)
    counts = {p: len(convert.matching_keys(state_dict, variables, renames=renames, prefix=p))
              for p in prefixes}
    best = max(prefixes, key=lambda p: counts[p])  # first maximum: the root wins ties
    where = f"{field}={source!r}" if source else field
    if counts[best] == 0:
        _, report = convert.torch_to_flax(state_dict, variables, strict=False, renames=renames)
        file_keys = list(state_dict)[:8]
        model_keys = report.missing[:8]
        raise convert.ConversionError(
            f"{where}: no entry of the file fits model {model_name!r} (tried placing its keys "
            f"at {', '.join(repr(p.rstrip('.') or '<root>') for p in prefixes)}). Use an "
            "official state dict of this model or of its trunk (e.g. a torchvision ResNet for "
            "msfnet / deeplabv3plus_r50, the DDRNet-23-slim ImageNet or Cityscapes file for "
            "ddrnet23_slim / bcmfnet, HarDNet for the FASSD-Net family), or set "
            f"{field}='' .\n  file keys: {file_keys}\n  model variables: {model_keys}")
    new, report = convert.torch_to_flax(state_dict, variables, strict=False, renames=renames,
                                        prefix=best)
    return new, PretrainedReport(source, best, report.loaded, report.skipped, report.missing)


def apply_to_state(path: str, state, model_name: str, *, field: str = FIELD):
    """`state` (a train state with `params` / `batch_stats`) with the pretrained weights of
    `path` loaded non-strictly; prints and logs the report. Step and optimizer state stay."""
    state_dict = read_state_dict(path, field=field)
    template = {"params": state.params, "batch_stats": state.batch_stats}
    variables, report = load_pretrained(state_dict, template, model_name, source=str(path),
                                        field=field)
    variables = jax.tree.map(
        lambda new, old: jax.device_put(new, old.sharding) if hasattr(old, "sharding") else new,
        variables, template)
    text = report.summary()
    logging.info("%s", text)
    print(text, flush=True)
    return state.replace(params=variables["params"], batch_stats=variables["batch_stats"])
