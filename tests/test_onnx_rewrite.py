"""The ONNX graph rewrites: each pattern becomes its one op, the file still computes the same
thing, and whatever does not match exactly is left as jax2onnx wrote it."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

from segjax import deploy
from segjax.models import layers


def _onnx(fn, shape):
    blob = deploy.serialize(fn, jax.ShapeDtypeStruct(shape, np.float32), "onnx")
    graph = onnx.load_from_string(blob).graph
    return blob, collections.Counter(node.op_type for node in graph.node)


def _run(blob, x):
    return deploy.load(blob, "onnx", threads=1)(x)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("size", [(24, 40), (5, 7), (9, 20)])  # up, down, H down and W up
def test_bilinear_resize_becomes_one_resize(align_corners, size):
    blob, ops = _onnx(lambda x: layers.resize_bilinear(x, size, align_corners), (1, 9, 10, 4))
    assert ops["Resize"] == 1 and not ops["Gather"] and not ops["Sub"]
    graph = onnx.load_from_string(blob).graph
    read = {name for node in graph.node for name in node.input}
    assert all(init.name in read for init in graph.initializer)  # none left behind
    attrs = {a.name: onnx.helper.get_attribute_value(a)
             for n in onnx.load_from_string(blob).graph.node if n.op_type == "Resize"
             for a in n.attribute}
    assert attrs["coordinate_transformation_mode"] == (
        b"align_corners" if align_corners else b"pytorch_half_pixel")
    for batch in (1, 3):  # the batch stays symbolic
        x = np.random.default_rng(batch).standard_normal((batch, 9, 10, 4)).astype(np.float32)
        want = np.asarray(layers.resize_bilinear(jnp.asarray(x), size, align_corners))
        np.testing.assert_allclose(_run(blob, x), want, atol=1e-5)


def test_a_lerp_of_other_weights_stays_as_written():
    lo, hi = np.array([0, 0, 1, 2, 3]), np.array([1, 1, 2, 3, 3])
    weight = jnp.asarray(np.array([0.0, 0.3, 0.3, 0.9, 0.0]).reshape(1, 5, 1, 1), jnp.float32)

    def lerp(x):
        a, b = layers.take_rows(x, lo, 1), layers.take_rows(x, hi, 1)
        return a + (b - a) * weight

    blob, ops = _onnx(lerp, (1, 4, 3, 2))
    assert not ops["Resize"] and ops["Gather"] == 2 and ops["Sub"] == 1
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 2)).astype(np.float32)
    np.testing.assert_allclose(_run(blob, x), np.asarray(lerp(jnp.asarray(x))), atol=1e-6)


def test_gathers_lose_their_transposes():
    index = np.array([0, 2, 3])
    blob, ops = _onnx(lambda x: layers.take_rows(x, index, 2) * 2.0, (1, 3, 4, 5))
    assert ops["Gather"] == 1 and not ops["Transpose"]
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(_run(blob, x), x[:, :, index] * 2.0)


def test_relu_and_prelu_become_their_ops_and_other_maxima_stay():
    slope = jnp.asarray([0.1, 0.2, 0.3], jnp.float32)

    def acts(x):
        return jax.nn.relu(x) + jnp.where(x >= 0, x, slope * x) + jnp.maximum(x, 0.5)

    blob, ops = _onnx(acts, (1, 2, 2, 3))
    assert ops["Relu"] == 1 and ops["PRelu"] == 1 and ops["Max"] == 1 and not ops["Where"]
    x = np.random.default_rng(0).standard_normal((2, 2, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(blob, x), np.asarray(acts(jnp.asarray(x))), atol=1e-6)
