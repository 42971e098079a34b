"""`--mode=export`: a checkpoint becomes one file that a process with only its runtime runs."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import tiny_config

from segjax import checkpoint, export, inference, runtime

RESOLUTION = (64, 96)

# Each format's file, labelled by a process that imports only that format's runtime.
LOAD_AND_LABEL = {
    "jax": """
import jax
exported = jax.export.deserialize(bytearray(open(path, "rb").read()))
labels = np.asarray(exported.call(frames))
""",
    "onnx": """
import onnxruntime
labels = onnxruntime.InferenceSession(path).run(None, {"input": frames})[0]
""",
    "tflite": """
import tensorflow as tf
interpreter = tf.lite.Interpreter(model_path=path)
interpreter.allocate_tensors()
labels = []
for frame in frames:  # one frame per call, as exported
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], frame[None])
    interpreter.invoke()
    labels.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
labels = np.stack(labels)
""",
}
PROLOGUE = "import sys, numpy as np\npath, frames = sys.argv[1], np.load(sys.argv[2])\n"
EPILOGUE = ('np.save(sys.argv[3], labels)\n'
            'print("segjax" in sys.modules, labels.shape, labels.dtype)\n')
SUFFIX = {"jax": "jaxexport", "onnx": "onnx", "tflite": "tflite"}


@pytest.mark.parametrize("fmt", ["jax", "onnx", "tflite"])
def test_export_labels_frames_without_segjax(tmp_path, fmt):
    config = tiny_config(**{"export.resolution": "64x96", "export.format": fmt})
    model = runtime.build_model(config, 19)
    variables = inference.random_variables(model, (1, *RESOLUTION, 3), scale=0.2)
    workdir = tmp_path / "run"
    checkpoint.save_weights_only(workdir / "checkpoints", variables, checkpoint.weights_only_meta(
        config.model.name, config.model.kwargs.to_dict(), 19, "test"), step=7)

    meta = export.export(config, str(workdir))
    size = "x".join(map(str, RESOLUTION))
    artifact = workdir / "export" / f"ddrnet23_slim_synthetic_{size}.{SUFFIX[fmt]}"
    assert meta["checkpoint_step"] == 7 and meta["agreement_with_live_model"] == 1.0
    assert meta["folded_batchnorms"] > 0 and len(meta["classes"]) == 19
    assert json.loads(artifact.with_suffix(".json").read_text())["input"]["dtype"] == "uint8"

    frames = np.random.default_rng(1).integers(0, 256, (3, *RESOLUTION, 3), dtype=np.uint8)
    np.save(tmp_path / "frames.npy", frames)
    proc = subprocess.run(
        [sys.executable, "-c", PROLOGUE + LOAD_AND_LABEL[fmt] + EPILOGUE, str(artifact),
         str(tmp_path / "frames.npy"), str(tmp_path / "labels.npy")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu",
             "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "False"  # segjax was never imported
    labels = np.load(tmp_path / "labels.npy")
    assert labels.shape == (3, *RESOLUTION) and labels.dtype == np.uint8

    # The live, unfolded model on the same frames, normalised as training does.
    live = jax.jit(export.make_label_fn(runtime.predictor(config, model), variables))(frames)
    assert np.mean(np.asarray(live) == labels) > 0.999
    assert len(np.unique(labels)) > 1  # not a constant map


def test_export_options_are_checked(tmp_path):
    for overrides, message in [({"export.format": "torchscript"}, "config.export.format"),
                               ({"export.format": "onnx", "export.float16": True},
                                "config.export.float16"),
                               ({"export.batch": 0}, "config.export.batch")]:
        with pytest.raises(ValueError, match=message):
            export.export(tiny_config(**overrides), str(tmp_path))
