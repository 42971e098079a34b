"""MSFNet: SAP/MFM wiring, the three published compute figures, output shapes, the ResNet-18
import and its recipes' parameter groups."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import override

from configs import msfnet_camvid, msfnet_cityscapes, msfnet_cityscapes_512
from segjax import convert, inference, losses, models, runtime, train
from segjax.models import layers
from segjax.models.msfnet import MSFNet, SpatialAwarePooling
from segjax.tools import parity, summary

MODEL = "msfnet"
BACKBONE_PARAMS = 11_176_512  # torchvision ResNet-18 without fc

# (constructor kwargs, resolution, paper GFLOPs, our conv-only count calibrated to them)
PUBLISHED = [
    ({}, (1024, 2048), 96.8, 95.8),
    ({"class_boundary_supervision": False}, (1024, 2048), 85.2, 85.2),
    ({"num_poolings": 4}, (512, 1024), 24.2, 23.9),
]
PUBLISHED_IDS = ["cbs", "no_cbs", "512x1024"]


def _template(model, size=(64, 64)):
    return convert.model_template(model, (1, *size, 3))


def _conv_gmacs(model, size):
    return summary.conv_gmacs(model, _template(model, size), size)


# --- architecture -------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, size, paper, spec", PUBLISHED, ids=PUBLISHED_IDS)
def test_conv_macs_match_spec_calibration_and_paper(kwargs, size, paper, spec):
    gmacs = _conv_gmacs(models.build(MODEL, 19, **kwargs), size)
    assert gmacs == pytest.approx(spec, abs=0.05)
    assert gmacs == pytest.approx(paper, rel=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, size, paper, spec", PUBLISHED, ids=PUBLISHED_IDS)
def test_summary_gmacs(kwargs, size, paper, spec):
    # XLA does not count the taps that fall on padding: the ResNet-18 trunk alone reads
    # 0.85% (1024×2048) and 2.1% (512×1024) below its conv count, hence the wider bound.
    result = summary.summarize(MODEL, 19, size, **kwargs)
    assert result["gmacs"] == pytest.approx(paper, rel=0.025)
    assert result["conv_gmacs"] == pytest.approx(paper, rel=0.02)
    assert result["table"]["backbone"] == BACKBONE_PARAMS


def test_param_counts_match_spec():
    cbs_model = convert.count_params(_template(models.build(MODEL, 19)))
    no_cbs = convert.count_params(_template(models.build(MODEL, 19,
                                                         class_boundary_supervision=False)))
    assert cbs_model == 14_769_703 and cbs_model == pytest.approx(14.77e6, rel=1e-3)
    assert no_cbs == 13_666_835 and no_cbs == pytest.approx(13.67e6, rel=1e-3)
    # The second branch, the 1/8 fusion and the C+1 boundary head are the difference.
    params = _template(models.build(MODEL, 19))["params"]
    extra = sum(convert.count_params({"params": params[k]})
                for k in ("branch2", "fusion", "boundary_head"))
    assert cbs_model - no_cbs == extra
    assert convert.count_params({"params": params["backbone"]}) == BACKBONE_PARAMS


# Concatenated MFM widths per level (stride); J=3 truncates to j <= 3.
MFM_WIDTHS = {
    5: {8: 192, 16: 448, 32: 960, 64: 960, 128: 960, 256: 896, 512: 768, 1024: 512},
    4: {8: 192, 16: 448, 32: 960, 64: 960, 128: 896, 256: 768, 512: 512},
    3: {8: 192, 16: 448, 32: 960, 64: 896, 128: 768, 256: 512},
    0: {8: 128, 16: 256, 32: 512},
}


@pytest.mark.parametrize("num_poolings", sorted(MFM_WIDTHS))
def test_mfm_members_per_level(num_poolings):
    params = _template(models.build(MODEL, 19, num_poolings=num_poolings))["params"]
    widths = {int(k[3:]): v["fuse"]["depthwise"]["kernel"].shape
              for k, v in params.items() if k.startswith("mfm")}
    assert widths == {s: (3, 3, 1, c) for s, c in MFM_WIDTHS[num_poolings].items()}
    assert all(v["fuse"]["pointwise"]["kernel"].shape[-1] == 256
               for k, v in params.items() if k.startswith("mfm"))
    stages = {int(k[5:]) for k in params["branch1"]}
    assert stages == set(MFM_WIDTHS[num_poolings]) - {max(MFM_WIDTHS[num_poolings])}
    assert params["branch1"]["stage8"]["depthwise"]["kernel"].shape == (3, 3, 1, 512)


def test_variants_and_alternatives():
    def tree(**kw):  # one SAP pooling keeps the trace short; the wiring is the same
        return _template(models.build(MODEL, 19, **{"num_poolings": 1, **kw}))["params"]

    default = tree()
    assert {"branch1", "branch2", "fusion", "boundary_head", "classifier"} <= set(default)
    assert default["boundary_head"]["kernel"].shape == (1, 1, 256, 20)
    assert default["fusion"]["depthwise"]["kernel"].shape == (3, 3, 1, 512)
    no_cbs = tree(class_boundary_supervision=False)
    assert not {"branch2", "fusion", "boundary_head"} & set(no_cbs)
    two = tree(class_boundary_supervision=False, num_branches=2)
    assert "fusion" in two and "boundary_head" not in two
    one = tree(num_branches=1)
    assert "boundary_head" in one and not {"branch2", "fusion"} & set(one)
    add = tree(stage_merge="add")
    assert add["branch1"]["stage8"]["depthwise"]["kernel"].shape == (3, 3, 1, 256)
    narrow = tree(channels=128)
    assert narrow["mfm8"]["fuse"]["pointwise"]["kernel"].shape == (1, 1, 192, 128)
    assert narrow["classifier"]["kernel"].shape == (1, 1, 128, 19)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_poolings": -1}, "num_poolings"), ({"num_poolings": 2.0}, "num_poolings"),
    ({"channels": 0}, "channels"), ({"stage_merge": "sum"}, "stage_merge"),
    ({"pooling": "min"}, "pooling"), ({"num_branches": 3}, "num_branches"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MSFNet(**{"num_classes": 19, **kwargs})


def _output_shapes(model, size, batch=2):
    """Output shapes of one traced forward (init_with_output: a single trace, no compile)."""
    x = jax.ShapeDtypeStruct((batch, *size, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x)


@pytest.mark.parametrize("size, kwargs", [
    ((1024, 2048), {}), ((1024, 1024), {}), ((512, 1024), {"num_poolings": 4}),
    ((720, 960), {"num_poolings": 3}), ((768, 1024), {"num_poolings": 3}),
    ((120, 200), {}), ((121, 203), {"num_poolings": 3, "class_boundary_supervision": False}),
])
def test_output_shapes(size, kwargs):
    model = models.build(MODEL, 19, dtype=jnp.bfloat16, **kwargs)
    y = _output_shapes(model, size)
    assert y["logits"].shape == (2, *size, 19) and y["logits"].dtype == jnp.float32
    if model.class_boundary_supervision:
        assert set(y) == {"logits", "boundary_logits"}
        eighth = tuple(-(-n // 8) for n in size)
        assert y["boundary_logits"].shape == (2, *eighth, 20)
        assert y["boundary_logits"].dtype == jnp.float32
    else:
        assert set(y) == {"logits"}


def _avg_pool_reference(b, s):
    """AvgPool2d(2s+1, s, padding=s, count_include_pad=True) with loops, NHWC."""
    k = 2 * s + 1
    n, h, w, c = b.shape
    padded = np.pad(b, ((0, 0), (s, s), (s, s), (0, 0)))
    out_h, out_w = (h + 2 * s - k) // s + 1, (w + 2 * s - k) // s + 1
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = padded[:, i * s:i * s + k, j * s:j * s + k].sum(axis=(1, 2)) / k ** 2
    return out


def test_spatial_aware_pooling_pools_each_stage_output_directly():
    b = np.random.default_rng(0).standard_normal((1, 15, 25, 3)).astype(np.float32)
    outs = SpatialAwarePooling(3).apply({}, jnp.asarray(b))
    assert len(outs) == 4
    np.testing.assert_array_equal(np.asarray(outs[0]), b)
    for j, o in enumerate(outs[1:], start=1):
        s = 2 ** j
        assert o.shape == (1, -(-15 // s), -(-25 // s), 3)
        np.testing.assert_allclose(np.asarray(o), _avg_pool_reference(b, s), atol=1e-5)
    maxed = SpatialAwarePooling(1, pooling="max").apply({}, jnp.asarray(b))[1]
    np.testing.assert_allclose(np.asarray(maxed),
                               np.asarray(layers.max_pool(jnp.asarray(b), 5, 2, 2)))


def test_real_forward_at_odd_size_keeps_branches_independent():
    model = models.build(MODEL, 11, num_poolings=3)
    x = jax.random.normal(jax.random.key(0), (1, 120, 200, 3))
    variables = inference.random_variables(model, (1, 120, 200, 3), scale=None)
    forward = jax.jit(lambda v, x: model.apply(v, x))
    y = forward(variables, x)
    assert y["logits"].shape == (1, 120, 200, 11) and y["boundary_logits"].shape == (1, 15, 25, 12)
    assert np.isfinite(np.asarray(y["logits"])).all()
    assert np.isfinite(np.asarray(y["boundary_logits"])).all()
    # No information passes between the branches: changing branch 1 leaves the boundary
    # prediction (branch 2) exactly as it was and changes the segmentation.
    params = dict(variables["params"])
    params["branch1"] = jax.tree.map(lambda w: w * 1.5, params["branch1"])
    z = forward({**variables, "params": params}, x)
    np.testing.assert_array_equal(np.asarray(z["boundary_logits"]),
                                  np.asarray(y["boundary_logits"]))
    assert np.abs(np.asarray(z["logits"]) - np.asarray(y["logits"])).max() > 1e-3


@pytest.mark.slow
def test_train_step_at_odd_size_reaches_every_module():
    model = models.build(MODEL, 11, num_poolings=3)
    x = jax.random.normal(jax.random.key(0), (2, 120, 200, 3))
    labels = jax.random.randint(jax.random.key(1), (2, 120, 200), 0, 11)
    variables = inference.random_variables(model, (1, 120, 200, 3), scale=None)
    loss_cfg = {"name": "ce", "cbs": {"weight": 1.0}}

    @jax.jit
    def step(params):
        def loss_fn(params):
            out, _ = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"])
            return losses.segmentation_loss(out, labels, loss_cfg)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    (total, terms), grads = step(variables["params"])
    assert set(terms) == {"loss/main", "loss/boundary"}
    assert float(total) == pytest.approx(float(terms["loss/main"] + terms["loss/boundary"]))
    for name in ("backbone", "mfm256", "branch1", "branch2", "fusion", "boundary_head"):
        assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads[name])) > 0, name


def test_resnet18_checkpoint_fills_exactly_the_backbone(parity_dir):
    meta = json.loads((parity_dir / "resnet18.json").read_text())
    state_dict = parity.make_state_dict(meta["manifest"])
    _, variables, report = convert.convert_for_model(MODEL, state_dict, 19, strict=False)
    assert report.skipped == {"fc.weight": "dropped by renames", "fc.bias": "dropped by renames"}
    expected = [k for k in state_dict
                if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert sorted(report.loaded) == sorted(expected)
    assert report.missing and all(not m.split("/")[1] == "backbone" for m in report.missing)
    template = _template(models.build(MODEL, 19))
    decoder = [f"{c}/{'/'.join(p.key for p in path)}"
               for c in ("params", "batch_stats")
               for path, _ in jax.tree_util.tree_leaves_with_path(
                   {k: v for k, v in template[c].items() if k != "backbone"})]
    assert sorted(report.missing) == sorted(decoder)
    reference = convert.convert_for_model("resnet18", state_dict, 1000)[1]
    for c in ("params", "batch_stats"):
        ref = dict(reference[c])
        ref.pop("fc", None)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(variables[c]["backbone"]),
                                jax.tree.leaves(ref), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(path))


def test_msfnet_param_groups_and_recipes():
    params = _template(models.build(MODEL, 11, num_poolings=3))["params"]
    labels = train.decoder_labels(params)
    assert set(jax.tree.leaves(labels["backbone"])) == {"backbone"}
    assert {k for k, v in labels.items() if set(jax.tree.leaves(v)) == {"decoder"}} == \
        set(params) - {"backbone"}
    for module, num_poolings, crop in ((msfnet_cityscapes, 5, (1024, 1024)),
                                       (msfnet_cityscapes_512, 4, (512, 1024)),
                                       (msfnet_camvid, 3, (768, 1024))):
        config = module.get_config()
        assert config.model.name == MODEL and config.loss.name == "ce"
        assert config.model.kwargs.num_poolings == num_poolings
        assert tuple(config.data.crop_size) == crop and config.global_batch_size == 12
        model = runtime.build_model(config, 19)
        assert model.class_boundary_supervision and model.num_poolings == num_poolings
        tx, schedule = train.make_optimizer(config.optimizer, config.num_train_steps)
        assert config.optimizer.name == "adam"
        assert float(schedule(0)) == pytest.approx(1e-4)
        assert float(schedule(config.num_train_steps)) == pytest.approx(1e-6)
        assert config.optimizer.weight_decay == 2.5e-5
    with_groups = override(msfnet_camvid.get_config(), **{
        "optimizer.decoder_lr_multiplier": 4.0, "optimizer.decoder_wd_multiplier": 4.0})
    tx, _ = train.make_optimizer(with_groups.optimizer, 100)
    state = jax.eval_shape(tx.init, params)
    updates, _ = jax.eval_shape(tx.update, params, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert msfnet_cityscapes.get_config().num_train_steps == 350 * (2975 // 12)
    assert msfnet_camvid.get_config().num_train_steps == 700 * (367 // 12)
