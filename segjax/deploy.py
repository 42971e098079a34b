"""A jax function as the files deployment runtimes read, and each runtime's way to run them.

| format | file | runtime | made by |
|---|---|---|---|
| `jax` | `.jaxexport` (StableHLO) | XLA, through `jax.export` | jax |
| `onnx` | `.onnx` | ONNX Runtime, TensorRT | jax2onnx, from the jaxpr; then `onnx_rewrite` |
| `tflite` | `.tflite` | LiteRT (TFLite) interpreter | jax2tf + tensorflow's TFLite converter |

`serialize(fn, example, format)` bakes whatever `fn` closes over (the weights) into the file;
`load(blob, format)` returns a numpy-in, numpy-out callable run by that format's runtime.
jax and ONNX files take any batch; a LiteRT file has the batch of `example` (the converter
cannot lower a batch-dependent gather). jax2tf + tf2onnx was tried for ONNX and rejected:
jax2tf now emits one opaque XlaCallModule op, which tf2onnx cannot convert. Both converters
trace the model for their runtime (`layers.lowering_for`): depthwise convolutions stay
convolution ops, and LiteRT files get pools as 2-D windows, which XNNPACK runs natively.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator

import jax
import numpy as np

from segjax.models import layers

FORMATS = ("jax", "onnx", "tflite")
SUFFIXES = {"jax": ".jaxexport", "onnx": ".onnx", "tflite": ".tflite"}
# --config.benchmark.runtime -> the format that runtime reads.
RUNTIMES = {"xla": "jax", "onnxruntime": "onnx", "litert": "tflite"}
ONNX_OPSET = 17  # TensorRT 8.6+ and every ONNX Runtime since 1.12 read it
JAX2ONNX_INSTALL = "pip install --no-deps -r requirements-nodeps.txt"


def check_format(fmt: str, field: str = "config.export.format") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"{field}={fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"config.benchmark.runtime={runtime!r}; choose one of "
                         f"{', '.join(RUNTIMES)}")
    return runtime


def serialize(fn: Callable, example: jax.ShapeDtypeStruct, fmt: str, *,
              float16_weights: bool = False) -> bytes:
    """`fn(x)` for inputs shaped like `example` (any batch, except for `tflite`) as bytes."""
    check_format(fmt)
    if fmt == "jax":
        (batch,) = jax.export.symbolic_shape("batch")
        spec = jax.ShapeDtypeStruct((batch, *example.shape[1:]), example.dtype)
        return bytes(jax.export.export(jax.jit(fn))(spec).serialize())
    with layers.lowering_for(fmt):
        if fmt == "onnx":
            return _to_onnx(fn, example)
        return _to_tflite(fn, example, float16_weights)


def load(blob: bytes, fmt: str, threads: int | None = None) -> Callable[[np.ndarray],
                                                                       np.ndarray]:
    """A callable that runs the file with its own runtime: numpy array in, numpy array out.

    `threads` bounds ONNX Runtime's and LiteRT's thread pools (default: every core)."""
    check_format(fmt)
    threads = threads or os.cpu_count() or 1
    if fmt == "jax":
        exported = jax.export.deserialize(bytearray(blob))
        call = jax.jit(exported.call)
        return lambda x: np.asarray(call(x))
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.asarray(x)})[0]
    return _litert_runner(blob, threads)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _library_attributes() -> dict:
    """The attributes of the libraries a model is written with, as they are now."""
    import flax.linen as nn

    owners = [jax.numpy, jax.nn, jax.lax, jax.image, nn]
    owners += [obj for obj in vars(nn).values()
               if isinstance(obj, type) and issubclass(obj, nn.Module)]
    return {owner: dict(vars(owner)) for owner in owners}


@contextlib.contextmanager
def _as_written(original: dict) -> Iterator[None]:
    """Puts back the library attributes of `original` for the duration.

    jax2onnx swaps flax modules' `__call__` and jax.numpy functions for its own while it
    traces. Those bypass flax's method interceptors, through which the folded BatchNorms
    are applied, so the graph would silently use unfolded layers on folded weights; traced
    as written, the model reaches jax2onnx as plain lax primitives.
    """
    missing = object()
    swapped = [(owner, key, vars(owner).get(key, missing), value.get(key, missing))
               for owner, value in original.items()
               for key in set(vars(owner)) | set(value)
               if vars(owner).get(key, missing) is not value.get(key, missing)]
    for owner, key, _, before in swapped:
        delattr(owner, key) if before is missing else setattr(owner, key, before)
    try:
        yield
    finally:
        for owner, key, now, _ in swapped:
            delattr(owner, key) if now is missing else setattr(owner, key, now)


def _to_onnx(fn: Callable, example: jax.ShapeDtypeStruct) -> bytes:
    try:
        from jax2onnx import to_onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs jax2onnx ({e}); install it with "
                          f"`{JAX2ONNX_INSTALL}`") from None
    from segjax import onnx_rewrite

    original = _library_attributes()

    def traced(x):
        with _as_written(original):
            return fn(x)

    spec = jax.ShapeDtypeStruct(("batch", *example.shape[1:]), example.dtype)
    with _quiet("jax2onnx", "onnx_ir"):
        proto = to_onnx(traced, [spec], model_name="segjax", opset=ONNX_OPSET,
                        input_names=["input"], output_names=["output"])
    return onnx_rewrite.simplify(proto).SerializeToString()


def _to_tflite(fn: Callable, example: jax.ShapeDtypeStruct, float16_weights: bool) -> bytes:
    import tensorflow as tf
    from jax.experimental import jax2tf

    signature = [tf.TensorSpec(example.shape, tf.as_dtype(example.dtype), name="input")]
    tf_fn = tf.function(jax2tf.convert(fn, native_serialization_platforms=("cpu",)),
                        autograph=False, input_signature=signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf_fn.get_concrete_function()], tf_fn)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if float16_weights:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


def _litert_runner(blob: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's pointer to ai_edge_litert
        interpreter = tf.lite.Interpreter(model_content=blob, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    expected = tuple(int(d) for d in source["shape"])

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != expected:
            raise ValueError(f"this LiteRT file takes inputs of shape {expected}, got "
                             f"{x.shape}; export with --config.export.batch={x.shape[0]}")
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return run
