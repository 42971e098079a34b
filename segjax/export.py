"""`--mode=export`: a run's latest checkpoint as one self-contained serialized program.

    python run.py --config=configs/bcmfnet_camvid.py --mode=export --workdir=RUN \
        [--config.export.resolution=360x480] [--config.export.output=bcmfnet.jaxexport]

The artifact maps uint8 RGB frames `[N, H, W, 3]` (any N, the exported H×W) to uint8 train-id
labels `[N, H, W]`: normalisation, the weights (BatchNorm folded into the convs), the
configured evaluation views and the argmax are all inside, so a deployment needs only jax:

    exported = jax.export.deserialize(open(path, "rb").read())
    labels = exported.call(frames)

A JSON file beside it names the model, checkpoint step, input size and the class table
(names, train ids, colours) for colourising the labels.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from segjax import inference


def make_label_fn(predictor: inference.Predictor, variables):
    """`labels(frames)` with the weights closed over: uint8 RGB in, uint8 train ids out."""
    return lambda frames: predictor.labels(variables, frames)


def export_labels(label_fn, height: int, width: int) -> bytes:
    """Serializes `label_fn` for uint8 `[batch, height, width, 3]` with a symbolic batch."""
    (batch,) = jax.export.symbolic_shape("batch")
    frames = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.uint8)
    return bytes(jax.export.export(jax.jit(label_fn))(frames).serialize())


def export(config, workdir: str) -> dict[str, Any]:
    """Writes the artifact and its JSON for the newest checkpoint in `workdir`."""
    from segjax import benchmark, runtime

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
    view = predictor.view
    label_fn = make_label_fn(predictor, variables)
    blob = export_labels(label_fn, height, width)

    name = f"{config.model.name}_{config.dataset.name}_{height}x{width}"
    path = pathlib.Path(config.export.output or pathlib.Path(workdir) / "export" /
                        f"{name}.jaxexport").expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    # The reloaded artifact must label a frame as the live model does.
    frame = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    agreement = float(np.mean(np.asarray(exported.call(frame)) ==
                              np.asarray(jax.jit(label_fn)(frame))))
    meta = {
        "artifact": path.name,
        "model": config.model.name,
        "dataset": config.dataset.name,
        "checkpoint_step": int(step),
        "input": {"shape": ["batch", height, width, 3], "dtype": "uint8", "channels": "RGB"},
        "output": {"shape": ["batch", height, width], "dtype": "uint8", "values": "train ids"},
        "views": view.describe(),
        "folded_batchnorms": folded,
        "classes": [{"train_id": i, "name": n, "color": [int(c) for c in info.palette[i]]}
                    for i, n in enumerate(info.class_names)],
        "ignore_label": int(info.ignore_label),
        "bytes": len(blob),
        "agreement_with_live_model": agreement,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"Exported step {step} of {config.model.name} for {height}x{width} uint8 RGB frames "
          f"(any batch) to {path} ({len(blob) / 2**20:.1f} MiB, {folded} BatchNorms folded, "
          f"views: {view.describe()}); reloaded, it labels a test frame as the live model "
          f"does on {agreement:.2%} of pixels. Class table: {path.with_suffix('.json')}",
          flush=True)
    return meta
