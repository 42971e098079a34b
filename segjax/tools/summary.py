"""Parameter count and compute of a registry model's inference graph.

    python -m segjax.tools.summary --model ddrnet23_slim --num_classes 19 \
        --resolution 1024x2048 [--set key=value ...]

Aux heads are excluded (they are dropped at inference). GMACs are XLA's cost analysis of
the compiled, jitted batch-1 inference forward: flops / 2 / 1e9. XLA skips kernel taps that
fall into zero padding, so it reads low on small maps and far-dilated convs; `conv_gmacs`
counts every convolution tap, padding included, as PyTorch hook counters (and the papers) do.
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from segjax import cli, models
from segjax.models import layers

__all__ = ["compiled_flops", "conv_gmacs", "inference_model", "main", "param_table",
           "summarize"]


def inference_model(name: str, num_classes: int, **kwargs: Any):
    """The model as deployed: without aux heads when the model has that option."""
    if "aux_head" in (models.accepted_kwargs(name) or ()):
        kwargs.setdefault("aux_head", False)
    return models.build(name, num_classes, **kwargs)


def param_table(params: Any) -> dict[str, int]:
    """Parameter count per top-level module (by name)."""
    counts: dict[str, int] = collections.defaultdict(int)
    for path, leaf in traverse_util.flatten_dict(dict(params)).items():
        counts[path[0]] += int(np.prod(leaf.shape))
    return dict(counts)


def compiled_flops(fn, *args) -> float:
    """Flops XLA reports for `fn` compiled at the given (abstract) arguments."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, Sequence):  # older jax: one dict per computation
        return float(sum(a.get("flops", 0.0) for a in analysis))
    return float(analysis.get("flops", 0.0))


def conv_gmacs(model, variables, resolution: tuple[int, int]) -> float:
    """Multiply-adds of every convolution of the batch-1 forward, traced only (no compile)."""
    x = jax.ShapeDtypeStruct((1, *resolution, 3), jnp.float32)
    with layers.lowering_for("onnx"):  # depthwise convs count as the convs they are
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    total = 0

    def walk(inner_jaxpr):
        nonlocal total
        for eqn in inner_jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                kh, kw, cin_per_group, _ = eqn.invars[1].aval.shape
                total += int(np.prod(eqn.outvars[0].aval.shape)) * kh * kw * cin_per_group
            for param in eqn.params.values():
                sub = getattr(param, "jaxpr", param)
                if hasattr(sub, "eqns"):
                    walk(sub)

    walk(jaxpr.jaxpr)
    return total / 1e9


def summarize(name: str, num_classes: int, resolution: tuple[int, int],
              **kwargs: Any) -> dict[str, Any]:
    """`{'params', 'gmacs', 'conv_gmacs', 'table'}` of the batch-1 float32 inference forward."""
    model = inference_model(name, num_classes, **kwargs)
    x = jax.ShapeDtypeStruct((1, *resolution, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    table = param_table(variables["params"])
    flops = compiled_flops(lambda v, x: model.apply(v, x, train=False), variables, x)
    return {"params": sum(table.values()), "gmacs": flops / 2 / 1e9,
            "conv_gmacs": conv_gmacs(model, variables, resolution), "table": table}


def _parse_resolution(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep:
        raise argparse.ArgumentTypeError(f"resolution must be HxW, got {text!r}")
    return int(h), int(w)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=models.available())
    parser.add_argument("--num_classes", type=int, required=True)
    parser.add_argument("--resolution", type=_parse_resolution, required=True, help="HxW")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model constructor option (python literal), repeatable")
    args = parser.parse_args(argv)

    try:
        result = summarize(args.model, args.num_classes, args.resolution,
                           **cli.parse_key_values(args.set))
    except (TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    width = max(map(len, result["table"]), default=6)
    print(f"{'module':<{width}}  {'params':>10}")
    for module, count in result["table"].items():
        print(f"{module:<{width}}  {count:>10,}")
    print(f"params={result['params']} gmacs={result['gmacs']:.4f} "
          f"conv_gmacs={result['conv_gmacs']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
