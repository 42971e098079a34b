"""`--mode=export`: a run's latest checkpoint as one self-contained file for a runtime.

    python run.py --config=configs/bcmfnet_camvid.py --mode=export --workdir=RUN \
        [--config.export.format=jax|onnx|tflite] [--config.export.resolution=360x480] \
        [--config.export.logits=True] [--config.export.output=bcmfnet.onnx]

Every format holds the same program: uint8 RGB frames `[N, H, W, 3]` (the exported H×W) in,
uint8 train-id labels `[N, H, W]` out (`export.logits=True`: float32 class scores
`[N, H, W, C]`, the logits for a single view), with the input normalisation, the weights
(BatchNorm folded into the convs), the configured evaluation views and the argmax inside.
jax and ONNX files take any N; a LiteRT file takes `export.batch` frames
(`export.float16=True` stores its weights in float16). Run them with:

    jax:    jax.export.deserialize(open(p, "rb").read()).call(frames)
    onnx:   onnxruntime.InferenceSession(p).run(None, {"input": frames})[0]
    tflite: tf.lite.Interpreter(p) (or ai_edge_litert's): set_tensor, invoke, get_tensor

A JSON file beside it names the model, checkpoint step, input and output, and the class
table (names, train ids, colours) for colourising the labels. Before returning, the file is
run by its own runtime and compared with the live model.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from segjax import deploy, inference


def make_label_fn(predictor: inference.Predictor, variables, logits: bool = False):
    """`fn(frames)` with the weights closed over: uint8 RGB in, uint8 train ids out (or
    float32 class scores with `logits`)."""
    if logits:
        return lambda frames: predictor.scores(variables, frames)
    return lambda frames: predictor.labels(variables, frames)


def export_labels(label_fn, height: int, width: int, fmt: str = "jax", batch: int = 1,
                  float16_weights: bool = False) -> bytes:
    """Serializes `label_fn` for uint8 `[batch, height, width, 3]` frames (any batch for jax
    and onnx)."""
    frames = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.uint8)
    return deploy.serialize(label_fn, frames, fmt, float16_weights=float16_weights)


def _check(config) -> tuple[str, int, bool]:
    e = config.export
    fmt = deploy.check_format(str(e.format))
    if int(e.batch) < 1:
        raise ValueError(f"config.export.batch={e.batch}: must be >= 1")
    if e.float16 and fmt != "tflite":
        raise ValueError(f"config.export.float16=True stores LiteRT weights in float16; "
                         f"with config.export.format={fmt!r} drop it or use format=tflite")
    return fmt, int(e.batch), bool(e.float16)


def export(config, workdir: str) -> dict[str, Any]:
    """Writes the file and its JSON for the newest checkpoint in `workdir`."""
    from segjax import benchmark, runtime

    fmt, batch, float16 = _check(config)
    height, width = benchmark.parse_resolution(config.export.resolution
                                               or config.benchmark.resolution)
    restored = runtime.restore(config, workdir)
    model, info, step = restored.model, restored.info, restored.step
    variables = jax.device_get(restored.variables)
    folded = 0
    if config.export.fold_batchnorm:
        folded_model, variables = inference.fold_batchnorm(model, variables, (1, height, width, 3))
        model, folded = folded_model, len(folded_model.pairs)
    predictor = runtime.predictor(config, model)
    logits = bool(config.export.logits)
    label_fn = make_label_fn(predictor, variables, logits)
    blob = export_labels(label_fn, height, width, fmt, batch, float16)

    name = f"{config.model.name}_{config.dataset.name}_{height}x{width}"
    path = pathlib.Path(config.export.output or pathlib.Path(workdir) / "export" /
                        f"{name}{deploy.SUFFIXES[fmt]}").expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    # The file, run by its own runtime, must label frames as the live model does.
    frames = np.random.default_rng(0).integers(0, 256, (batch, height, width, 3), np.uint8)
    got = deploy.load(path.read_bytes(), fmt)(frames)
    want = np.asarray(jax.jit(label_fn)(frames))
    agreement = float(np.mean((got.argmax(-1) == want.argmax(-1)) if logits else got == want))
    batch_dim = batch if fmt == "tflite" else "batch"
    classes = len(info.class_names)
    meta = {
        "artifact": path.name,
        "format": fmt,
        "runtime": {v: k for k, v in deploy.RUNTIMES.items()}[fmt],
        "model": config.model.name,
        "dataset": config.dataset.name,
        "checkpoint_step": int(step),
        "input": {"name": "input", "shape": [batch_dim, height, width, 3], "dtype": "uint8",
                  "channels": "RGB"},
        "output": ({"shape": [batch_dim, height, width, classes], "dtype": "float32",
                    "values": "class scores (argmax = train id)"} if logits else
                   {"shape": [batch_dim, height, width], "dtype": "uint8",
                    "values": "train ids"}),
        "weights": "float16" if float16 else "float32",
        "views": predictor.view.describe(),
        "folded_batchnorms": folded,
        "classes": [{"train_id": i, "name": n, "color": [int(c) for c in info.palette[i]]}
                    for i, n in enumerate(info.class_names)],
        "ignore_label": int(info.ignore_label),
        "bytes": len(blob),
        "agreement_with_live_model": agreement,
    }
    if logits:
        meta["max_abs_diff_from_live_model"] = float(np.max(np.abs(got - want)))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"Exported step {step} of {config.model.name} as {fmt} for {height}x{width} uint8 "
          f"RGB frames ({'any batch' if fmt != 'tflite' else f'batch {batch}'}) to {path} "
          f"({len(blob) / 2**20:.1f} MiB, {folded} BatchNorms folded, views: "
          f"{predictor.view.describe()}); run by {meta['runtime']}, it labels a test frame as "
          f"the live model does on {agreement:.2%} of pixels. Class table: "
          f"{path.with_suffix('.json')}", flush=True)
    return meta
