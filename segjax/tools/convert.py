"""Convert an official PyTorch state dict of a whole model into a segjax checkpoint.

    python -m segjax.tools.convert DDRNet23s_cityscapes.npz runs/ddrnet_official \
        --model ddrnet23_slim [--num_classes 19] [--set key=value ...]

The state dict (.npz, .safetensors, or .pth/.pt/.pkl when torch is importable) is converted
strictly, with the model's key renames, exactly as `config.init_checkpoint` converts it, and
written as OUT/checkpoints/0 (params, BatchNorm statistics and the model description, marked
weights-only). Then `run.py --mode=evaluate --workdir=OUT` and `--mode=predict --workdir=OUT`
use it as they use a trained run, and `--config.init_checkpoint=OUT` fine-tunes from it in a
fresh workdir. `--mode=train` refuses OUT itself: it has no optimizer state to resume.
The config used later must describe the same model (`--set` options it leaves at their
defaults may be omitted).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

import jax
import numpy as np

from segjax import checkpoint, cli, convert, models, pretrained

__all__ = ["convert_to_checkpoint", "main"]


def convert_to_checkpoint(source: str | pathlib.Path, out: str | pathlib.Path, model_name: str,
                          num_classes: int = 19, **model_kwargs) -> dict:
    """Converts `source` for registry model `model_name` and writes OUT/checkpoints/0.

    Returns `{'step_dir', 'params', 'batch_stats', 'tensors', 'meta'}`. Raises
    `convert.ConversionError` when the file is not a whole `model_name` state dict, and
    `FileExistsError` when OUT already holds checkpoints.
    """
    out = pathlib.Path(out).expanduser().absolute()
    directory = out / "checkpoints"
    if directory.is_dir() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} already holds checkpoints; pass a new OUT directory.")
    state_dict = pretrained.read_state_dict(source, field="IN")
    model_kwargs = models.typed_kwargs(model_name, model_kwargs)
    model = models.build(model_name, num_classes, **model_kwargs)
    template = convert.model_template(model)
    try:
        variables = convert.torch_to_flax(state_dict, template, strict=True,
                                          renames=models.key_renames(model_name))
    except convert.ConversionError as err:
        raise convert.ConversionError(
            f"{source} is not a whole {model_name!r} state dict with {num_classes} classes and "
            f"options {model_kwargs or '(defaults)'} (check --model, --num_classes and --set; "
            f"a trunk-only file goes into training with config.model.pretrained instead).\n"
            f"{err}") from None
    variables = jax.tree.map(np.asarray, variables)
    meta = checkpoint.weights_only_meta(model_name, model_kwargs, num_classes, str(source))
    step_dir = checkpoint.save_weights_only(directory, variables, meta)
    return {"step_dir": step_dir, "params": convert.count_params(variables),
            "batch_stats": int(sum(np.size(x) for x in jax.tree.leaves(variables["batch_stats"]))),
            "tensors": len(state_dict), "meta": meta}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", metavar="IN", help=".npz / .safetensors / .pth state dict")
    parser.add_argument("out", metavar="OUT", help="workdir to create (OUT/checkpoints/0)")
    parser.add_argument("--model", required=True, choices=[
        n for n in models.available() if not models.traits(n).get("backbone")])
    parser.add_argument("--num_classes", type=int, default=19)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model constructor option (python literal), repeatable")
    args = parser.parse_args(argv)

    try:
        result = convert_to_checkpoint(args.input, args.out, args.model, args.num_classes,
                                       **cli.parse_key_values(args.set))
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    out = pathlib.Path(args.out).absolute()
    print(f"Wrote {result['step_dir']} (weights only, from {result['tensors']} tensors of "
          f"{args.input}): model {args.model}, {args.num_classes} classes, "
          f"options {result['meta']['model_kwargs']}")
    print(f"params={result['params']} batch_stats={result['batch_stats']}")
    print(f"Evaluate: python run.py --config=CONFIG --mode=evaluate --workdir={out}\n"
          f"Fine-tune: python run.py --config=CONFIG --workdir=NEW "
          f"--config.init_checkpoint={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
