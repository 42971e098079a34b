"""BCMFNet: DDRNet-23-slim with the LMFM context module (reconstructed; the paper lost
its equations)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import param_count

from segjax import convert, inference, models
from segjax.models import layers
from segjax.models.bcmfnet import LMFM, BCMFNet
from segjax.models.ddrnet import DAPPM, DDRNet
from segjax.tools import summary

MODEL = "bcmfnet"


def _lmfm_template(module, shape=(1, 16, 32, 512)):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x)


def test_summary_matches_spec_figures():
    result = summary.summarize(MODEL, 19, (1024, 2048))
    assert result["params"] == 5564915
    assert result["gmacs"] == pytest.approx(36.21, rel=0.01)
    assert result["table"]["spp"] == 942336
    assert "seghead_extra" not in result["table"]


def test_lmfm_alone_and_alternatives_param_counts():
    assert convert.count_params(_lmfm_template(LMFM(128, 128, name="spp"))) == 942336
    assert convert.count_params(_lmfm_template(LMFM(128, 128, p4_kernel=3))) == 1073408
    assert convert.count_params(_lmfm_template(DAPPM(128, 128))) == 1073408
    assert param_count(models.build(MODEL, 19, aux_head=False, lmfm_p4_kernel=3)) == 5695987
    # Alternative (a): adjacent cascade, 3×3/1×1/3×3/1×1 refinements.
    alt = _lmfm_template(LMFM(128, 128, connection="alternating"))["params"]
    assert [alt[f"process{i}"]["2"]["kernel"].shape[0] for i in range(1, 5)] == [3, 1, 3, 1]
    assert param_count(models.build(MODEL, 19, aux_head=False)) == 5564915
    assert param_count(models.build(MODEL, 19)) == 5564915 + 38355


def test_lmfm_names_mirror_pytorch_keys():
    params = _lmfm_template(LMFM(128, 128))["params"]
    assert set(params) == {*(f"scale{i}" for i in range(5)),
                           *(f"process{i}" for i in range(1, 5)), "compression", "shortcut"}
    assert set(params["scale0"]) == {"0", "2"} and set(params["scale3"]) == {"1", "3"}
    assert params["scale4"]["3"]["kernel"].shape == (1, 1, 512, 128)
    assert params["process3"]["2"]["kernel"].shape == (3, 3, 128, 128)
    assert params["process4"]["2"]["kernel"].shape == (1, 1, 128, 128)
    assert params["compression"]["0"]["scale"].shape == (640,)
    assert params["compression"]["2"]["kernel"].shape == (1, 1, 640, 128)
    convs = [unit["3" if unit.keys() == {"1", "3"} else "2"] for unit in params.values()]
    assert all(conv.keys() == {"kernel"} for conv in convs)  # bias-free
    template = convert.model_template(models.build(MODEL, 19), (1, 64, 64, 3))
    assert template["params"]["spp"]["process4"]["2"]["kernel"].shape == (1, 1, 128, 128)


def _randomized(variables, seed=0):
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [jax.random.uniform(k, v.shape, v.dtype, 0.5, 1.5) for k, v in zip(keys, leaves)]
    return jax.tree.unflatten(tree, new)


@pytest.mark.parametrize("connection, sources, kernels", [
    ("interval", (0, 0, 1, 2), (3, 3, 3, 1)), ("alternating", (0, 1, 2, 3), (3, 1, 3, 1))])
def test_lmfm_wiring_matches_hand_composition(connection, sources, kernels):
    """Recompose §2.3 from the module's own units: catches wrong sources, pools or kernels."""
    module = LMFM(16, 8, connection=connection)
    x = jax.random.normal(jax.random.key(1), (2, 5, 7, 12))
    variables = _randomized(jax.eval_shape(lambda x: module.init(jax.random.key(0), x), x))
    params, stats = variables["params"], variables["batch_stats"]

    def unit(name, y, features=16, kernel=1, names=("0", "2")):
        sub = {"params": params[name], "batch_stats": stats[name]}
        return layers.BNReLUConv(features, kernel, *names).apply(sub, y)

    @jax.jit
    def both(variables, x):
        pooled = [layers.avg_pool(x, 5, 2, 2), layers.avg_pool(x, 9, 4, 4),
                  layers.avg_pool(x, 17, 8, 8), jnp.mean(x, axis=(1, 2), keepdims=True)]
        ys = [unit("scale0", x)]
        for i, (p, src, k) in enumerate(zip(pooled, sources, kernels), start=1):
            s = layers.resize_bilinear(unit(f"scale{i}", p, names=("1", "3")), (5, 7))
            ys.append(unit(f"process{i}", s + ys[src], kernel=k))
        want = unit("compression", jnp.concatenate(ys, -1), 8) + unit("shortcut", x, 8)
        return module.apply(variables, x), want

    with jax.default_matmul_precision("highest"):
        got, want = both(variables, x)
    assert got.shape == (2, 5, 7, 8)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, out", [((1024, 2048), (128, 256)), ((720, 960), (90, 120))])
def test_output_shapes_at_one_eighth(size, out):
    model = models.build(MODEL, 19)
    x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
    y = jax.eval_shape(lambda v, x: model.apply(v, x),
                       convert.model_template(model, (1, *size, 3)), x)
    assert set(y) == {"logits", "aux_logits"}
    assert y["logits"].shape == y["aux_logits"].shape == (1, *out, 19)
    assert y["logits"].dtype == jnp.float32


def test_real_forward_on_odd_low_resolution_sizes():
    # 120×200 reaches the context module at 2×4 (odd sizes on the way: 15×25, 8×13, 4×7).
    model = models.build(MODEL, 11)
    x = jax.random.normal(jax.random.key(0), (2, 120, 200, 3))

    # He-normal kernels drawn with NumPy: jax's init compiles every initializer (~30 s on CPU).
    variables = inference.random_variables(model, x.shape, scale=None)

    @jax.jit
    def run(variables, x):
        y = model.apply(variables, x)
        y_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return y, y_train["logits"], updates["batch_stats"]["spp"]

    y, y_train, spp_stats = run(variables, x)
    assert y["logits"].shape == y["aux_logits"].shape == y_train.shape == (2, 15, 25, 11)
    assert np.isfinite(np.asarray(y["logits"])).all() and np.isfinite(np.asarray(y_train)).all()
    assert spp_stats["process4"]["0"]["mean"].shape == (128,)

def test_registry_and_kwargs():
    assert MODEL in models.available() and "ddrnet23_slim" in models.available()
    assert models.traits(MODEL) == models.traits("ddrnet23_slim")
    accepted = set(models.accepted_kwargs(MODEL))
    assert set(models.accepted_kwargs("ddrnet23_slim")) | {
        "lmfm_connection", "lmfm_p4_kernel"} == accepted
    model = models.build(MODEL, 11, aux_head=False, planes=32, dtype=jnp.bfloat16,
                         lmfm_connection="alternating", lmfm_p4_kernel=3)
    assert isinstance(model, BCMFNet) and isinstance(model, DDRNet)
    assert (model.lmfm_connection, model.lmfm_p4_kernel, model.aux_head) == ("alternating", 3,
                                                                             False)
    assert models.build("ddrnet23_slim", 19).context is DAPPM


def test_unknown_lmfm_options_raise_clearly():
    with pytest.raises(ValueError, match=r"unknown LMFM connection 'adjacent'.*interval"):
        models.build(MODEL, 19, lmfm_connection="adjacent")
    with pytest.raises(ValueError, match="p4_kernel must be a positive odd int, got 2"):
        models.build(MODEL, 19, lmfm_p4_kernel=2)
    with pytest.raises(ValueError, match="unknown LMFM connection"):
        LMFM(connection="hierarchical")
    with pytest.raises(TypeError, match=r"bcmfnet.*lmfm_kernel.*accepted:.*lmfm_p4_kernel"):
        models.build(MODEL, 19, lmfm_kernel=3)
