"""Check a port against official PyTorch outputs stored as a parity fixture.

The fixture json lists every state-dict entry (key, shape, kind); the weights are
regenerated here from that manifest by the documented deterministic rule, converted with
the real checkpoint converter, and the model's outputs are compared with the stored ones.

    python -m segjax.tools.parity --model ddrnet23_slim \
        --fixture ddrnet23_slim_120x200.npz --manifest ddrnet23_slim.json [--tol 1e-4]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import zlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from segjax import convert, models

BUFFER_KINDS = frozenset({"bn_running_mean", "bn_running_var", "bn_num_batches_tracked"})


def make_tensor(key: str, shape: Sequence[int], kind: str) -> np.ndarray:
    """One tensor of a fixture state dict: drawn in float64 from a generator seeded with
    crc32(key), scaled per kind, cast to float32 (the BN counter is an int64 zero)."""
    shape = tuple(int(s) for s in shape)
    if kind == "bn_num_batches_tracked":
        return np.zeros(shape, np.int64)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    if kind in ("conv_weight", "linear_weight"):
        values = rng.standard_normal(shape) * np.sqrt(1.0 / np.prod(shape[1:]))
    elif kind in ("conv_bias", "linear_bias", "bn_bias", "bn_running_mean"):
        values = 0.1 * rng.standard_normal(shape)
    elif kind == "bn_weight":
        values = 1.0 + 0.1 * rng.standard_normal(shape)
    elif kind == "bn_running_var":
        values = 0.5 + rng.uniform(0.0, 1.0, shape)
    elif kind == "prelu_weight":
        values = 0.25 + 0.05 * rng.standard_normal(shape)
    else:
        raise ValueError(f"unknown tensor kind {kind!r} for {key!r}")
    return values.astype(np.float32)


def make_state_dict(manifest: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """The fixture's PyTorch state dict, in manifest order."""
    return {key: make_tensor(key, shape, kind) for key, shape, kind in manifest}


def manifest_param_count(manifest: Sequence[Sequence[Any]]) -> int:
    return sum(int(np.prod(shape)) for _, shape, kind in manifest if kind not in BUFFER_KINDS)


@dataclasses.dataclass
class ParityResult:
    errors: dict[str, float]
    shapes: dict[str, tuple[int, ...]]
    num_parameters: int
    expected_parameters: int

    @property
    def max_abs_err(self) -> float:
        return max(self.errors.values())

    def ok(self, tol: float) -> bool:
        return self.max_abs_err <= tol and self.num_parameters == self.expected_parameters


@functools.lru_cache(maxsize=8)
def _prepared(model_name: str, manifest_path: str, aux_head: bool | None):
    """(model, variables, jitted forward) for one fixture json; cached so that several
    fixture sizes reuse the conversion."""
    with open(manifest_path, encoding="utf-8") as f:
        meta = json.load(f)
    kwargs = {} if aux_head is None else {"aux_head": aux_head}
    model, variables = convert.convert_for_model(
        model_name, make_state_dict(meta["manifest"]), meta["num_classes"], **kwargs)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    return meta, model, variables, forward


def run_parity(model_name: str, fixture_path: str, manifest_path: str, *,
               fast_compile: bool = False) -> ParityResult:
    """Compare every output named in the json with the model's, at float32 'highest'.

    `fast_compile` skips XLA's backend optimisations: the same numbers for a quarter of
    the compile time, which dominates a one-off forward pass on CPU."""
    fixture = np.load(fixture_path)
    with open(manifest_path, encoding="utf-8") as f:
        output_names = list(json.load(f)["outputs"])
    accepted = models.accepted_kwargs(model_name) or ()
    aux_head = ("aux_logits" in fixture.files) if "aux_head" in accepted else None
    meta, _, variables, forward = _prepared(model_name, str(manifest_path), aux_head)

    x = jnp.asarray(np.transpose(fixture["input"], (0, 2, 3, 1)))
    with jax.default_matmul_precision("highest"):
        if fast_compile:
            options = {"xla_backend_optimization_level": 0}
            outputs = forward.lower(variables, x).compile(options)(variables, x)
        else:
            outputs = forward(variables, x)
    errors, shapes = {}, {}
    for name in output_names:
        if name not in outputs:
            raise KeyError(f"model output {name!r} missing; model returned {sorted(outputs)}")
        got = np.transpose(np.asarray(outputs[name], np.float32), (0, 3, 1, 2))
        want = fixture[name]
        if got.shape != want.shape:
            raise ValueError(f"{name}: shape {got.shape} != reference {want.shape}")
        errors[name] = float(np.max(np.abs(got - want)))
        shapes[name] = got.shape
    return ParityResult(errors, shapes, convert.count_params(variables), meta["num_parameters"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registry name")
    parser.add_argument("--fixture", required=True, help="<model>_<H>x<W>.npz")
    parser.add_argument("--manifest", required=True, help="<model>.json")
    parser.add_argument("--tol", type=float, default=1e-4, help="max abs error allowed")
    args = parser.parse_args(argv)

    result = run_parity(args.model, args.fixture, args.manifest)
    print(f"num_parameters={result.num_parameters} expected={result.expected_parameters}")
    for name, err in result.errors.items():
        print(f"{name} {result.shapes[name]} max_abs_err={err:.3e}")
    print(f"max_abs_err={result.max_abs_err:.6e}")
    return 0 if result.ok(args.tol) else 1


if __name__ == "__main__":
    sys.exit(main())
