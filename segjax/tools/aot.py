"""Ahead-of-time compile of each model's sharded train step for a mesh this machine lacks.

    python -m segjax.tools.aot --devices 64 [--config configs/X.py ...] [--mesh 64x1|32x2]

Simulated CPU devices (`--xla_force_host_platform_device_count`, set here before jax is
imported) stand in for the target's accelerators, and nothing is initialised or read: the
train state is `jax.eval_shape` of `train.init_state` and the batch is a ShapeDtypeStruct at
the config's global batch and crop. `train.make_train_step` (params and optimizer state
replicated, batch `P("data")` or `P("data", "spatial")`) is lowered and compiled, which
catches sharding and shape errors and gives XLA's per-device memory figures
(`compiled.memory_analysis()`: arguments, outputs, aliased (donated) bytes, temporaries,
generated code) as compiled for CPU; accelerator compilers lay out temporaries differently.

Without `--config`, every registered segmentation model is compiled through its Cityscapes
recipe (its global batch, crop, loss terms and optimizer). Without `--mesh`, the mesh is
data x spatial with the largest data axis that divides the global batch, the rest of the
devices on the spatial axis (which must divide the crop height): global batch 12 on 64
devices gives data 4 x spatial 16. One table row and one JSON line per config.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import pathlib
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["choose_mesh", "compile_train_step", "config_for_model", "default_configs", "main"]

REPO = pathlib.Path(__file__).resolve().parents[2]
# Registry name -> Cityscapes recipe, where the file is not `<name>_cityscapes.py`.
_CONFIG_NAMES = {"ddrnet23_slim": "ddrnet23slim_cityscapes",
                 "synergy_deeplabv3plus_r50": "synergy_cityscapes"}
_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def force_cpu_devices(n: int) -> None:
    """Asks XLA for `n` CPU devices; must run before jax is imported."""
    if "jax" in sys.modules:
        import jax

        have = len(jax.devices("cpu"))
        if have < n:
            raise SystemExit(
                f"jax was imported before segjax.tools.aot with {have} CPU devices, fewer than "
                f"--devices {n}; run the tool as its own process (python -m segjax.tools.aot "
                f"--devices {n}) or import it before jax")
        return
    flags = re.sub(rf"{_DEVICE_FLAG}=\S+", "", os.environ.get("XLA_FLAGS", "")).strip()
    os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={n}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def config_for_model(name: str) -> pathlib.Path:
    """The Cityscapes recipe of a registry model: configs/<name>_cityscapes.py or the map."""
    path = REPO / "configs" / f"{_CONFIG_NAMES.get(name, name + '_cityscapes')}.py"
    if not path.exists():
        raise FileNotFoundError(f"no Cityscapes config for model {name!r}: expected {path}")
    return path


def default_configs() -> list[pathlib.Path]:
    from segjax import runtime

    return [config_for_model(name) for name in runtime.segmentation_models()]


def load_config(path: str | pathlib.Path):
    """`get_config()` of a config file (relative to the working directory or the repo)."""
    path = pathlib.Path(path)
    if not path.exists() and (REPO / path).exists():
        path = REPO / path
    if not path.exists():
        raise FileNotFoundError(f"--config {path}: no such file")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # configs import `configs.default`
    spec = importlib.util.spec_from_file_location(f"_aot_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def parse_mesh(text: str, devices: int) -> tuple[int, int]:
    """'32x2' -> (32, 2): data x spatial; one side may be -1."""
    match = re.fullmatch(r"\s*(-1|\d+)\s*x\s*(-1|\d+)\s*", text)
    if not match:
        raise ValueError(f"--mesh {text!r}: expected DATAxSPATIAL, e.g. 64x1 or 32x2")
    data, spatial = int(match[1]), int(match[2])
    if data == -1 and spatial > 0:
        data = devices // spatial
    elif spatial == -1 and data > 0:
        spatial = devices // data
    if data < 1 or spatial < 1 or data * spatial != devices:
        raise ValueError(f"--mesh {text!r} does not use exactly {devices} devices")
    return data, spatial


def choose_mesh(global_batch: int, height: int, devices: int) -> tuple[int, int]:
    """(data, spatial): the largest data axis dividing both the batch and the devices whose
    spatial remainder divides the height."""
    for data in range(math.gcd(global_batch, devices), 0, -1):
        if global_batch % data == 0 and devices % data == 0 and height % (devices // data) == 0:
            return data, devices // data
    raise ValueError(f"no data x spatial mesh of {devices} devices fits global batch "
                     f"{global_batch} and crop height {height}")


def _tree_bytes(tree) -> int:
    import jax
    import numpy as np

    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


# LLVM code generation unoptimised: the same partitioning, shapes and buffer assignment
# (memory figures identical), in about half the time on CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compile_train_step(config, devices: Sequence[Any], mesh_shape: tuple[int, int] | None = None,
                       config_name: str = "", compiler_options: dict | None = None
                       ) -> dict[str, Any]:
    """Lowers and compiles the config's train step on `devices`; returns the figures."""
    import jax
    import jax.numpy as jnp

    from data_pipelines import metadata
    from segjax import runtime, sharding, train

    n = len(devices)
    batch = int(config.global_batch_size)
    height, width = (int(v) for v in config.data.crop_size)
    data, spatial = mesh_shape or choose_mesh(batch, height, n)
    if spatial == 1:
        mesh = sharding.make_mesh((data,), (sharding.DATA_AXIS,), devices=devices)
    else:
        mesh = sharding.make_mesh((data, spatial), (sharding.DATA_AXIS, sharding.SPATIAL_AXIS),
                                  devices=devices)
    sharding.check_batch_size(batch, mesh)
    # Compiled whatever the band height, so a pod's memory can be read off; runs refuse
    # bands under MIN_ROWS_PER_DEVICE rows (reported as `runnable`).
    sharding.check_height(height, mesh, min_rows=1)

    num_classes = metadata.get_info(config.dataset.name).num_classes
    model = runtime.build_model(config, num_classes)
    tx, schedule = train.make_optimizer(config.optimizer, config.num_train_steps)
    step = train.train_step_for(config, model, tx, schedule, mesh)

    start = time.perf_counter()
    state = jax.eval_shape(lambda rng: train.init_state(model, tx, rng, (1, height, width, 3),
                                                        mesh), jax.random.key(0))
    images = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.uint8)  # as the pipeline ships
    labels = jax.ShapeDtypeStruct((batch, height, width), jnp.uint8)
    lowered = step.lower(state, {"image": images, "label": labels})
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile(compiler_options)
    compile_s = time.perf_counter() - start

    memory = compiled.memory_analysis()
    figures = {k: int(getattr(memory, f"{k}_size_in_bytes", 0) or 0)
               for k in ("argument", "output", "alias", "temp", "generated_code")}
    state_bytes = _tree_bytes(state)
    batch_bytes = _tree_bytes([images, labels])
    return {
        "model": config.model.name,
        "config": config_name,
        "devices": n,
        "mesh": f"{data}x{spatial}",
        "mesh_axes": list(mesh.axis_names),
        "global_batch": batch,
        "crop": f"{height}x{width}",
        "local_batch_shard": f"{batch // data}x{height // spatial}x{width}",
        "rows_per_device": height // spatial,
        "runnable": spatial == 1 or height // spatial >= sharding.MIN_ROWS_PER_DEVICE,
        "params": int(sum(math.prod(p.shape) for p in jax.tree.leaves(state.params))),
        "lower_s": round(lower_s, 2),
        "compile_s": round(compile_s, 2),
        "fast_compile": bool(compiler_options),
        **{f"{k}_bytes": v for k, v in figures.items()},
        "total_bytes": (figures["argument"] + figures["output"] - figures["alias"]
                        + figures["temp"] + figures["generated_code"]),
        # What the arguments should be: replicated state + this device's band of the batch.
        "state_bytes": state_bytes,
        "batch_shard_bytes": batch_bytes // n,
    }


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def format_row(r: dict) -> str:
    return (f"{r['model']:<26} {r['mesh']:>6} {r['global_batch']:>5} {r['crop']:>10} "
            f"{r['compile_s']:>9.1f} {_gib(r['argument_bytes']):>8} {_gib(r['output_bytes']):>8} "
            f"{_gib(r['alias_bytes']):>8} {_gib(r['temp_bytes']):>8} "
            f"{r['generated_code_bytes'] / 2**20:>8.1f} {_gib(r['total_bytes']):>8} "
            f"{r['rows_per_device']:>5}{'' if r['runnable'] else ' (too thin to run)'}")


HEADER = (f"{'model':<26} {'mesh':>6} {'batch':>5} {'crop':>10} {'compile s':>9} "
          f"{'args GiB':>8} {'out GiB':>8} {'alias':>8} {'temp GiB':>8} {'code MiB':>8} "
          f"{'total':>8} {'rows':>5}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segjax.tools.aot", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=64,
                        help="simulated devices of the target mesh (default 64)")
    parser.add_argument("--config", action="append", default=[],
                        help="config file(s); default: every model's Cityscapes recipe")
    parser.add_argument("--mesh", default="",
                        help="DATAxSPATIAL, e.g. 64x1 or 32x2; default: chosen per config")
    parser.add_argument("--fast-compile", action="store_true",
                        help="skip LLVM optimisation (same memory figures, faster; for CI)")
    args = parser.parse_args(argv)
    if args.devices < 1:
        parser.error("--devices must be >= 1")
    mesh_shape = parse_mesh(args.mesh, args.devices) if args.mesh else None
    force_cpu_devices(args.devices)

    import jax

    from segjax import sharding

    devices = jax.devices("cpu")[:args.devices]
    paths = [pathlib.Path(p) for p in args.config] or default_configs()
    print(f"AOT compile of the train step on {len(devices)} simulated {devices[0].platform} "
          "devices (memory per device, XLA:CPU buffer assignment)", flush=True)
    print(HEADER, flush=True)
    failures = 0
    for path in paths:
        config = load_config(path)
        try:
            result = compile_train_step(config, devices, mesh_shape, config_name=path.name,
                                        compiler_options=FAST_COMPILE if args.fast_compile
                                        else None)
        except Exception as err:  # report every config, fail at the end
            failures += 1
            print(f"{config.model.name:<26} FAILED ({path.name}): {type(err).__name__}: {err}",
                  flush=True)
            print(json.dumps({"model": config.model.name, "config": path.name,
                              "error": f"{type(err).__name__}: {err}"}), flush=True)
            continue
        print(format_row(result), flush=True)
        if not result["runnable"]:
            print(f"  {result['model']}: {result['rows_per_device']} rows per device on the "
                  f"spatial axis; this compiles, but runs refuse bands under "
                  f"{sharding.MIN_ROWS_PER_DEVICE} rows (XLA partitions 3x3 convolutions over "
                  "single-row bands wrongly): use fewer devices or a larger global batch.",
                  flush=True)
        print(json.dumps(result), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
