"""Inference speed by the real-time papers' protocol, with XLA's own cost figures.

Batch 1 (configurable) at a fixed resolution, a random input already on the device, the
forward compiled ahead of time outside the timer, warm-up calls, `block_until_ready`, and
an iteration count calibrated to a time budget. FPS comes from a loop synchronised once at
the end (how the papers time); latency percentiles from a loop synchronised per call.

    python run.py --config=configs/bcmfnet_cityscapes.py --mode=benchmark --workdir=DIR \
        [--config.benchmark.resolution=1024x2048] [--config.benchmark.dtype=bfloat16] \
        [--config.benchmark.runtime=xla|onnxruntime|litert]

Every runtime times the same program, the folded network forward from a normalised float32
input to its logits: XLA runs it jitted, ONNX Runtime and LiteRT run the file that
`--mode=export` would write for it (segjax/deploy.py), on the host's cores; their
"compile" time is conversion plus session set-up.

With a non-default `config.mesh` (e.g. `--config.mesh.shape='(1, -1)'
--config.mesh.axes='("data", "spatial")'`) the forward runs on the whole mesh: the input is
sharded `P("data", "spatial")` when the batch divides the data axis, else `P(None,
"spatial")` (bands of rows, the same images on every data index); params are replicated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from segjax import deploy, inference, models, runtime, sharding, xla_cpu

__all__ = ["DEVICE_PEAKS", "device_peak", "parse_resolution", "run_benchmark"]

# Dense peak compute (TFLOP/s) per compute dtype and memory bandwidth (TB/s), from the
# vendors' data sheets (SXM parts for NVIDIA). float32 convolutions on NVIDIA tensor cores
# run as TF32 under XLA's default precision, so the float32 entry is the TF32 peak.
DEVICE_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"bfloat16": 989.4, "float32": 494.7, "hbm_tbps": 4.8},
    "H100": {"bfloat16": 989.4, "float32": 494.7, "hbm_tbps": 3.35},
    "A100": {"bfloat16": 312.0, "float32": 156.0, "hbm_tbps": 2.039},
    "L4": {"bfloat16": 121.0, "float32": 60.0, "hbm_tbps": 0.3},
    "TPU v6 lite": {"bfloat16": 918.0, "float32": 918.0 / 4, "hbm_tbps": 1.64},
    "TPU v5p": {"bfloat16": 459.0, "float32": 459.0 / 4, "hbm_tbps": 2.765},
    "TPU v5 lite": {"bfloat16": 197.0, "float32": 197.0 / 4, "hbm_tbps": 0.819},
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0 / 4, "hbm_tbps": 1.2},
}

# Inference speed is measured in the deployable precisions (float64 is for checking).
BENCHMARK_DTYPES = ("float32", "bfloat16")


def device_peak(device_kind: str) -> dict[str, float] | None:
    """The peak figures of a `jax.Device.device_kind`, or None where unknown (CPUs)."""
    for key, peak in DEVICE_PEAKS.items():
        if key.lower() in device_kind.lower():
            return peak
    return None


def parse_resolution(value: Any) -> tuple[int, int]:
    """'1024x2048' or (1024, 2048) → (1024, 2048)."""
    if isinstance(value, str):
        h, sep, w = value.lower().partition("x")
        if not sep or not h.strip().isdigit() or not w.strip().isdigit():
            raise ValueError(f"config.benchmark.resolution={value!r}: expected HxW, "
                             "e.g. 1024x2048")
        return int(h), int(w)
    h, w = (int(v) for v in value)
    return h, w


def _cost(compiled) -> dict[str, float]:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, Sequence):
        analysis = {k: sum(a.get(k, 0.0) for a in analysis) for k in ("flops", "bytes accessed")}
    return {"flops": float(analysis.get("flops", 0.0)),
            "bytes": float(analysis.get("bytes accessed", 0.0))}


def _timed_loop(fn, args, iterations: int, sync_each: bool) -> list[float] | float:
    if sync_each:
        latencies = []
        for _ in range(iterations):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            latencies.append(time.perf_counter() - start)
        return latencies
    start = time.perf_counter()
    out = None
    for _ in range(iterations):
        out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - start


def run_benchmark(model_name: str, num_classes: int, *, model_kwargs: dict | None = None,
                  resolution=(1024, 2048), batch_size: int = 1, dtype: str = "float32",
                  fold_batchnorm: bool = True, warmup: int = 5, time_budget_s: float = 10.0,
                  min_iterations: int = 5, max_iterations: int = 10_000, seed: int = 0,
                  mesh: jax.sharding.Mesh | None = None, runtime_name: str = "xla",
                  cpu_kernels: str = "eigen", printer=print) -> dict[str, Any]:
    """Time the inference forward of a registry model; returns (and prints) the figures.

    Without `mesh`, on one device (the papers' protocol); with one, sharded over it (see
    the module docstring). XLA's cost figures are then per device. `cpu_kernels`: the
    convolution kernels XLA compiles to on CPU (`xla_cpu`)."""
    if dtype not in BENCHMARK_DTYPES:
        raise ValueError(f"config.benchmark.dtype={dtype!r}; choose "
                         f"{' or '.join(BENCHMARK_DTYPES)}")
    deploy.check_runtime(runtime_name)
    options = xla_cpu.compiler_options(cpu_kernels, "cpu_kernels.inference")
    if runtime_name != "xla" and (dtype != "float32" or mesh is not None):
        raise ValueError(f"config.benchmark.runtime={runtime_name!r} times float32 on one "
                         "device: drop config.benchmark.dtype / config.mesh, or use runtime=xla")
    height, width = parse_resolution(resolution)
    if batch_size < 1:
        raise ValueError(f"config.benchmark.batch_size={batch_size}: must be >= 1")
    input_spec = None if mesh is None else _input_spec(mesh, batch_size, height)
    kwargs = dict(model_kwargs or {})
    if "aux_head" in (models.accepted_kwargs(model_name) or ()):
        kwargs["aux_head"] = False  # dropped at inference, as in every paper's timing
    model = models.build(model_name, num_classes, dtype=runtime.DTYPES[dtype], **kwargs)
    device = jax.devices()[0]

    shape = (batch_size, height, width, 3)
    variables = inference.random_variables(model, shape, seed)
    params = int(sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])))
    apply = None
    num_folded = 0
    if fold_batchnorm:
        folded, variables = inference.fold_batchnorm(model, variables, shape)
        apply, num_folded = folded.apply, len(folded.pairs)
    forward = inference.make_forward(model, apply=apply)
    images = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    if mesh is None:
        variables = jax.device_put(variables, device)
        images = jax.device_put(images, device)
        jitted = jax.jit(forward, compiler_options=options)
    else:
        device = mesh.devices.flat[0]
        repl = sharding.replicated(mesh)
        image_sharding = jax.sharding.NamedSharding(mesh, input_spec)
        variables = jax.device_put(variables, repl)
        images = jax.device_put(images, image_sharding)
        jitted = jax.jit(forward, in_shardings=(repl, image_sharding),
                         compiler_options=options)

    start = time.perf_counter()
    lowered = jitted.lower(variables, images)
    if runtime_name == "xla":
        call, args = lowered.compile(), (variables, images)
        cost = _cost(call)
    else:
        cost = _cost(lowered)  # XLA's count of the same graph, uncompiled
        blob = deploy.serialize(lambda x: forward(variables, x),
                                jax.ShapeDtypeStruct(shape, np.float32),
                                deploy.RUNTIMES[runtime_name])
        call, args = deploy.load(blob, deploy.RUNTIMES[runtime_name]), (np.asarray(images),)
    compile_s = time.perf_counter() - start

    for _ in range(max(warmup, 1)):
        jax.block_until_ready(call(*args))
    probe = _timed_loop(call, args, 1, sync_each=True)[0]
    iterations = int(np.clip(time_budget_s / 2 / max(probe, 1e-6), min_iterations,
                             max_iterations))
    elapsed = _timed_loop(call, args, iterations, sync_each=False)
    latencies_ms = np.asarray(_timed_loop(call, args, iterations, sync_each=True)) * 1e3
    fps = batch_size * iterations / elapsed

    peak = device_peak(device.device_kind)
    achieved_tflops = cost["flops"] * iterations / elapsed / 1e12
    achieved_tbps = cost["bytes"] * iterations / elapsed / 1e12
    result = {
        "model": model_name,
        "runtime": runtime_name,
        "cpu_kernels": cpu_kernels if runtime_name == "xla" and device.platform == "cpu" else None,
        "device": f"{device.platform}:{device.device_kind}",
        "num_devices_visible": jax.device_count(),
        "mesh": (None if mesh is None else
                 ",".join(f"{k}={v}" for k, v in dict(mesh.shape).items())),
        "input_sharding": None if input_spec is None else str(input_spec),
        "resolution": f"{height}x{width}",
        "batch_size": batch_size,
        "dtype": dtype,
        "fold_batchnorm": bool(fold_batchnorm),
        "folded_batchnorms": num_folded,
        "fps": round(fps, 3),
        "latency_ms_mean": round(float(latencies_ms.mean()), 3),
        "latency_ms_std": round(float(latencies_ms.std()), 3),
        "latency_ms_p50": round(float(np.percentile(latencies_ms, 50)), 3),
        "latency_ms_p90": round(float(np.percentile(latencies_ms, 90)), 3),
        "iterations": iterations,
        "compile_s": round(compile_s, 3),
        "params": params,
        "gmacs": round(cost["flops"] / 2 / 1e9 / batch_size, 4),
        "gbytes_accessed": round(cost["bytes"] / 1e9, 4),
        "achieved_tflops": round(achieved_tflops, 4),
        "roofline_compute_fraction": (round(achieved_tflops / peak[dtype], 4)
                                      if peak else None),
        "roofline_memory_fraction": (round(achieved_tbps / peak["hbm_tbps"], 4)
                                     if peak else None),
    }
    printer(f"{model_name} on {result['device']} through {runtime_name}: "
            f"{result['resolution']}, batch {batch_size}, {dtype}, BatchNorm folded: "
            f"{num_folded if fold_batchnorm else 'no'}")
    if mesh is not None:
        printer(f"  mesh {result['mesh']} ({mesh.size} devices), input {input_spec}; XLA cost "
                "figures per device")
    setup = ("compile" + (f" ({cpu_kernels} convolutions)" if result["cpu_kernels"] else "")
             if runtime_name == "xla" else
             f"convert to {deploy.RUNTIMES[runtime_name]} + load")
    printer(f"  {setup} {compile_s:.2f} s; {iterations} timed iterations after {warmup} warm-up")
    printer(f"  {fps:.2f} FPS; latency mean {result['latency_ms_mean']:.2f} ms, "
            f"p50 {result['latency_ms_p50']:.2f} ms, p90 {result['latency_ms_p90']:.2f} ms")
    printer(f"  {params:,} params; {result['gmacs']:.2f} GMACs per image; "
            f"{result['gbytes_accessed']:.3f} GB accessed per call (XLA cost analysis)")
    if peak:
        printer(f"  roofline: {result['roofline_compute_fraction']:.1%} of peak {dtype} compute, "
                f"{result['roofline_memory_fraction']:.1%} of peak memory bandwidth")
    else:
        printer(f"  roofline: no peak figures for device kind {device.device_kind!r}")
    printer(json.dumps(result))
    return result


def _input_spec(mesh, batch_size: int, height: int) -> jax.sharding.PartitionSpec:
    """P("data", "spatial") when the batch divides the data axis, else P(None, "spatial")."""
    P = jax.sharding.PartitionSpec
    sharding.check_height(height, mesh, "benchmark.resolution")
    data = sharding.DATA_AXIS if batch_size % sharding.data_parallel_size(mesh) == 0 else None
    if sharding.SPATIAL_AXIS in mesh.axis_names:
        return P(data, sharding.SPATIAL_AXIS)
    return P(data)


def _config_mesh(config):
    """The config's mesh, or None for the default one (the single-device protocol)."""
    shape, axes = tuple(config.mesh.shape), tuple(config.mesh.axes)
    if shape == (-1,) and axes == (sharding.DATA_AXIS,):
        return None
    return sharding.make_mesh(shape, axes)


def benchmark(config, workdir: str | None = None) -> dict[str, Any]:
    """`run_benchmark` for the model and dataset of a config (`config.benchmark` fields).

    Speed does not depend on the weights, so none are loaded; `workdir` is unused."""
    from data_pipelines import metadata

    b = config.benchmark
    kwargs = dict(config.model.kwargs.to_dict()) if config.model.kwargs else {}
    return run_benchmark(
        config.model.name, metadata.get_info(config.dataset.name).num_classes,
        model_kwargs=kwargs, resolution=b.resolution, batch_size=int(b.batch_size),
        dtype=b.dtype, fold_batchnorm=bool(b.fold_batchnorm), warmup=int(b.warmup),
        time_budget_s=float(b.time_budget_s), min_iterations=int(b.min_iterations),
        seed=int(config.seed), mesh=_config_mesh(config), runtime_name=str(b.runtime),
        cpu_kernels=str(config.cpu_kernels.inference))
