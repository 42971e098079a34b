"""Exported files run by their own runtimes (ONNX Runtime, LiteRT) equal the live model:
class scores to 1e-4 and identical labels, for every segmentation model."""

import jax
import numpy as np
import pytest
from helpers import parity_variables

from segjax import deploy, export, inference, models, runtime

SIZE = (64, 128)
FAST = {"ddrnet23_slim", "fassdnet_l2"}
CASES = [pytest.param(name, fmt, id=f"{name}-{fmt}",
                      marks=() if name in FAST else pytest.mark.slow)
         for name in runtime.segmentation_models() for fmt in ("onnx", "tflite")]


def _predictor(name, parity_dir):
    model, variables = parity_variables(name, parity_dir, (1, *SIZE, 3))
    folded, variables = inference.fold_batchnorm(model, variables, (1, *SIZE, 3))
    view = inference.ViewConfig(input_multiple=models.traits(name).get("input_multiple", 1))
    return inference.Predictor.for_model(folded, view=view), variables


def _frames(batch, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, *SIZE, 3), dtype=np.uint8)


@pytest.mark.parametrize("name, fmt", CASES)
def test_exported_file_equals_the_live_model(parity_dir, name, fmt):
    predictor, variables = _predictor(name, parity_dir)
    scores = export.make_label_fn(predictor, variables, logits=True)
    blob = export.export_labels(scores, *SIZE, fmt, batch=2)
    frames = _frames(3 if fmt == "onnx" else 2)  # ONNX files take any batch
    got = deploy.load(blob, fmt, threads=2)(frames)
    want = np.asarray(jax.jit(scores)(frames))
    assert got.shape == want.shape == (len(frames), *SIZE, 19)
    assert np.max(np.abs(got - want)) <= 1e-4
    assert np.array_equal(got.argmax(-1), want.argmax(-1))
    assert len(np.unique(want.argmax(-1))) > 1  # not a constant map


def test_labels_and_float16_litert_weights(parity_dir):
    predictor, variables = _predictor("fassdnet_l2", parity_dir)
    labels = export.make_label_fn(predictor, variables)
    frames = _frames(1, seed=1)
    want = np.asarray(jax.jit(labels)(frames))
    got = deploy.load(export.export_labels(labels, *SIZE, "onnx"), "onnx")(frames)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    full = export.export_labels(labels, *SIZE, "tflite")
    half = export.export_labels(labels, *SIZE, "tflite", float16_weights=True)
    assert len(half) < 0.6 * len(full)
    assert np.array_equal(deploy.load(full, "tflite")(frames), want)
    assert np.mean(deploy.load(half, "tflite")(frames) == want) > 0.98
    with pytest.raises(ValueError, match="export with --config.export.batch=2"):
        deploy.load(full, "tflite")(_frames(2))

