"""MSFNet (spec §4): SAP/MFM wiring, the three published compute figures, output shapes,
the ResNet-18 import, and Class Boundary Supervision labels and loss."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_train import override

from configs import default, msfnet_camvid, msfnet_cityscapes, msfnet_cityscapes_512
from segjax import cbs, convert, inference, losses, models, train
from segjax.models import layers
from segjax.models.msfnet import MSFNet, SpatialAwarePooling
from segjax.tools import parity, summary

MODEL = "msfnet"
BACKBONE_PARAMS = 11_176_512  # torchvision ResNet-18 without fc

# (constructor kwargs, resolution, paper GFLOPs, spec §4.2 conv-only count)
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


# Concatenated MFM widths per level (stride), spec §4.2 table; J=3 truncates to j <= 3.
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
    loss_cfg = {"name": "ce", "cbs_weight": 1.0}

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


# --- class boundary labels ------------------------------------------------------------------


def test_centre_sampling_indices():
    np.testing.assert_array_equal(cbs.centre_indices(16), [4, 12])
    np.testing.assert_array_equal(cbs.centre_indices(20), [4, 12, 18])  # last block 16..19
    np.testing.assert_array_equal(cbs.centre_indices(17), [4, 12, 16])
    labels = np.arange(20 * 9).reshape(1, 20, 9)
    np.testing.assert_array_equal(np.asarray(cbs.downsample_labels(labels)),
                                  labels[:, [4, 12, 18]][:, :, [4, 8]])


def _upsample8(small, size=None):
    """A full-resolution label map whose 8×8 blocks (centre sample included) hold `small`."""
    full = np.kron(np.asarray(small), np.ones((8, 8), np.int64)).astype(np.uint8)
    return full if size is None else full[:size[0], :size[1]]


def test_boundary_labels_hand_computed():
    i = 255
    small = np.array([
        [0, 0, 0, 1, 1],
        [0, 0, 0, 1, 1],
        [2, 2, 0, 0, 0],
        [2, 2, i, i, 0],
    ])
    # ε=1, 8-neighbourhood, ignore neighbours do not count; C = 3 marks non-boundary.
    expected = np.array([
        [3, 3, 0, 1, 3],
        [0, 0, 0, 1, 1],
        [2, 2, 0, 0, 0],
        [3, 2, i, i, 3],
    ])
    full = _upsample8(small, (29, 37))  # 29×37 → ceil 4×5, partial last blocks
    got = cbs.boundary_labels(full[None], 3)
    np.testing.assert_array_equal(np.asarray(got)[0], expected)
    # With ignore neighbours making boundaries, (3,4) joins; the image edge never counts.
    flagged = expected.copy()
    flagged[3, 4] = 0
    got = cbs.boundary_labels(full[None], 3, ignore_makes_boundary=True)
    np.testing.assert_array_equal(np.asarray(got)[0], flagged)
    literal = np.where(expected == 3, 0, np.where(expected == i, i, expected + 1))
    got = cbs.boundary_labels(full[None], 3, label_mode="literal")
    np.testing.assert_array_equal(np.asarray(got)[0], literal)
    # ε=2: every valid pixel of this small map is within 2 of another class.
    got = np.asarray(cbs.boundary_labels(full[None], 3, epsilon=2))[0]
    np.testing.assert_array_equal(got, np.where(small == i, i, small))


def _boundary_reference(labels, num_classes, epsilon, mode, ignore_flag, ignore=255):
    """Loops over the 1/8 map: the spec §4.3 rule written out directly."""
    n, height, width = labels.shape
    rows = [8 * r + min(8, height - 8 * r) // 2 for r in range(-(-height // 8))]
    cols = [8 * c + min(8, width - 8 * c) // 2 for c in range(-(-width // 8))]
    small = labels[:, rows][:, :, cols].astype(int)
    out = np.full(small.shape, ignore)
    valid = lambda v: 0 <= v < num_classes and v != ignore
    for b in range(n):
        for y in range(small.shape[1]):
            for x in range(small.shape[2]):
                p = small[b, y, x]
                if not valid(p):
                    continue
                boundary = False
                for qy in range(max(0, y - epsilon), min(small.shape[1], y + epsilon + 1)):
                    for qx in range(max(0, x - epsilon), min(small.shape[2], x + epsilon + 1)):
                        q = small[b, qy, qx]
                        boundary |= (valid(q) and q != p) or (ignore_flag and not valid(q))
                if mode == "extra_class":
                    out[b, y, x] = p if boundary else num_classes
                else:
                    out[b, y, x] = p + 1 if boundary else 0
    return out


def _drawn_labels():
    """Two 70×93 maps: blobs of five classes, an ignore band, classes touching every edge,
    a one-pixel-wide line (usually missed by the 1/8 sampling) and out-of-range ids."""
    a = np.zeros((70, 93), np.uint8)
    a[:, 40:] = 1
    a[20:45, 10:30] = 2
    a[50:, 60:] = 3
    a[30:38, :] = 255
    a[:, 90:] = 4
    a[60, :] = 2
    b = np.full((70, 93), 3, np.uint8)
    b[::16, :] = 0
    b[:, 33:50] = 255
    b[40:, 70:] = 200  # outside the 5 classes: treated as ignore
    b[64:, :] = 1
    rng = np.random.default_rng(0)
    c = rng.integers(0, 5, (70, 93)).astype(np.uint8)
    c[rng.random((70, 93)) < 0.1] = 255
    return np.stack([a, b, c])


@pytest.mark.parametrize("epsilon", [1, 2])
@pytest.mark.parametrize("mode", ["extra_class", "literal"])
@pytest.mark.parametrize("ignore_flag", [False, True])
def test_boundary_labels_match_numpy_reference(epsilon, mode, ignore_flag):
    labels = _drawn_labels()
    got = jax.jit(lambda y: cbs.boundary_labels(
        y, 5, epsilon=epsilon, label_mode=mode, ignore_makes_boundary=ignore_flag))(labels)
    want = _boundary_reference(labels, 5, epsilon, mode, ignore_flag)
    assert got.shape == (3, 9, 12) and got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), want)
    counts = np.bincount(want.ravel(), minlength=256)
    assert counts[255] > 0 and counts[0] > 0 and counts[5] > 0  # every kind occurs


def test_boundary_label_arguments():
    with pytest.raises(ValueError, match="label mode"):
        cbs.boundary_labels(np.zeros((1, 8, 8)), 3, label_mode="binary")
    with pytest.raises(ValueError, match="epsilon"):
        cbs.boundary_labels(np.zeros((1, 8, 8)), 3, epsilon=0)


# --- CBS loss term --------------------------------------------------------------------------


def _outputs(labels, num_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    n, h, w = labels.shape
    eighth = (-(-h // 8), -(-w // 8))
    return {
        "logits": jnp.asarray(rng.standard_normal((n, h, w, num_classes)), jnp.float32),
        "boundary_logits": jnp.asarray(rng.standard_normal((n, *eighth, num_classes + 1)),
                                       jnp.float32),
    }


def test_boundary_loss_term():
    labels = jnp.asarray(_drawn_labels())
    outputs = _outputs(labels)
    cfg = {"name": "ce", "cbs_weight": 1.0, "cbs_epsilon": 1}
    total, terms = jax.jit(lambda o, y: losses.segmentation_loss(o, y, cfg))(outputs, labels)
    targets = cbs.boundary_labels(labels, 5)
    want = losses.cross_entropy(outputs["boundary_logits"], targets)
    main = losses.cross_entropy(outputs["logits"], labels)
    assert set(terms) == {"loss/main", "loss/boundary"}
    np.testing.assert_allclose(terms["loss/boundary"], want, rtol=1e-6)
    np.testing.assert_allclose(total, main + want, rtol=1e-6)

    half, half_terms = losses.segmentation_loss(outputs, labels, {**cfg, "cbs_weight": 0.5})
    np.testing.assert_allclose(half, main + 0.5 * want, rtol=1e-6)
    wide = losses.segmentation_loss(outputs, labels, {**cfg, "cbs_epsilon": 2})[1]
    assert abs(float(wide["loss/boundary"]) - float(want)) > 1e-4
    # literal labels on logits with the non-boundary channel moved to the front: same loss.
    rolled = {**outputs, "boundary_logits": jnp.roll(outputs["boundary_logits"], 1, axis=-1)}
    literal = losses.segmentation_loss(rolled, labels, {**cfg, "cbs_label_mode": "literal"})[1]
    np.testing.assert_allclose(literal["loss/boundary"], want, rtol=1e-6)

    off = losses.segmentation_loss(outputs, labels, {**cfg, "cbs_weight": 0.0})[1]
    assert "loss/boundary" not in off
    plain = losses.segmentation_loss({"logits": outputs["logits"]}, labels, cfg)[1]
    assert set(plain) == {"loss/main"}
    with pytest.raises(ValueError, match="boundary_logits"):
        losses.segmentation_loss(outputs, labels[:, :60], cfg)


# --- decoder LR / weight-decay multipliers -------------------------------------------------


def _opt_cfg(name, **fields):
    cfg = default.get_config().optimizer
    cfg.name = name
    cfg.learning_rate, cfg.end_learning_rate, cfg.schedule = 0.1, 1e-3, "cosine"
    cfg.weight_decay = 1e-2
    for key, value in fields.items():
        setattr(cfg, key, value)
    return cfg


def _params(with_backbone):
    rng = np.random.default_rng(0)
    leaf = lambda *shape: jnp.asarray(rng.standard_normal(shape), jnp.float32)
    first = "backbone" if with_backbone else "stem"
    return {first: {"conv": {"kernel": leaf(3, 3, 2, 4)}, "bn": {"scale": leaf(4)}},
            "head": {"kernel": leaf(1, 1, 4, 5), "bias": leaf(5)}}


def _updates(tx, params, steps=3):
    """Updates of `steps` steps with fixed pseudo-gradients."""
    state, out = tx.init(params), []
    for i in range(steps):
        grads = jax.tree.map(lambda p, k=i + 1: jnp.cos(p * k), params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out, state


def _single_group(cfg, num_steps):
    """The optimizer as it was before parameter groups (one LR, one weight decay)."""
    schedule = train.make_schedule(cfg, num_steps)
    if cfg.name == "adamw":
        return optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
    base = (optax.sgd(schedule, momentum=cfg.momentum, nesterov=cfg.nesterov)
            if cfg.name == "sgd" else optax.adam(schedule, b1=cfg.b1, b2=cfg.b2))
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), base)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_unit_multipliers_are_the_single_group_optimizer(name):
    for with_backbone in (False, True):
        params = _params(with_backbone)
        tx, _ = train.make_optimizer(_opt_cfg(name), 10)
        got, state = _updates(tx, params)
        want, want_state = _updates(_single_group(_opt_cfg(name), 10), params)
        assert jax.tree.structure(state) == jax.tree.structure(want_state)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_without_backbone_everything_is_decoder(name):
    params = _params(with_backbone=False)
    assert set(jax.tree.leaves(train.decoder_labels(params))) == {"decoder"}
    tx, _ = train.make_optimizer(_opt_cfg(name, decoder_lr_multiplier=10.0,
                                          decoder_wd_multiplier=3.0), 10)
    scaled = _opt_cfg(name, learning_rate=1.0, end_learning_rate=1e-2, weight_decay=3e-2)
    got, _ = _updates(tx, params)
    want, _ = _updates(_single_group(scaled, 10), params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_decoder_update_is_ten_times_the_backbone_one_step_sgd():
    params = {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(3)}}
    ones = jax.tree.map(jnp.ones_like, params)

    def one_step(grads, **fields):
        cfg = _opt_cfg("sgd", **{"schedule": "constant", "weight_decay": 0.0, **fields})
        tx, _ = train.make_optimizer(cfg, 10)
        updates, _ = tx.update(grads, tx.init(params), params)
        return np.asarray(updates["backbone"]["w"]), np.asarray(updates["head"]["w"])

    backbone, head = one_step(ones, decoder_lr_multiplier=10.0)
    np.testing.assert_allclose(backbone, -0.1, rtol=1e-6)
    np.testing.assert_allclose(head, 10 * backbone, rtol=1e-6)
    # Weight decay alone (zero gradient): the decoder decays 10× faster, and 100× with both.
    zeros = jax.tree.map(jnp.zeros_like, params)
    backbone, head = one_step(zeros, weight_decay=1e-2, decoder_wd_multiplier=10.0)
    np.testing.assert_allclose(backbone, -0.1 * 1e-2, rtol=1e-6)
    np.testing.assert_allclose(head, 10 * backbone, rtol=1e-6)
    backbone, head = one_step(zeros, weight_decay=1e-2, decoder_lr_multiplier=10.0,
                              decoder_wd_multiplier=10.0)
    np.testing.assert_allclose(head, 100 * backbone, rtol=1e-6)


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
        model = train.build_model(config, 19)
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
