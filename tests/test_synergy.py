"""Synergy fusion against a NumPy reference, gradients into both scales, and its loss terms."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import convert, losses, models
from segjax.losses import synergy as synergy_loss
from segjax.models import synergy
from segjax.tools import parity

FUSIONS = synergy.FUSIONS
NUM_CLASSES = 5


def _interp_matrix(out_size, in_size):
    """(out, in) weights of PyTorch bilinear, align_corners=False, no antialiasing."""
    m = np.zeros((out_size, in_size))
    for dst in range(out_size):
        src = max((dst + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = min(int(np.floor(src)), in_size - 1)
        hi = min(lo + 1, in_size - 1)
        frac = src - lo
        m[dst, lo] += 1 - frac
        m[dst, hi] += frac
    return m


def np_resize(x, size):
    """NHWC bilinear resize in float64."""
    rows, cols = _interp_matrix(size[0], x.shape[1]), _interp_matrix(size[1], x.shape[2])
    return np.einsum("ah,bw,nhwc->nabc", rows, cols, x)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_fuse(z_lo, z_hi, fusion, attention=None):
    """The four readings of Eq. 1, written from the formulas."""
    size = z_hi.shape[1:3]
    up = lambda t: np_resize(t, size)
    if fusion == "prob":
        p_lo = np_softmax(z_lo)
        return up(p_lo) + np_softmax(z_hi) * up(1 - p_lo)
    if fusion == "mask":
        u = up(np_softmax(z_lo))
        return u + (1 - u.max(-1, keepdims=True)) * np_softmax(z_hi)
    if fusion == "logits":
        return up(z_lo) + z_hi * up(1 - z_lo)
    return up(attention * z_lo) + (1 - up(attention)) * z_hi


def _scales(seed=0, n=2, hi=(11, 15)):
    rng = np.random.default_rng(seed)
    lo = (hi[0] // 2, hi[1] // 2)
    z_lo = 2 * rng.standard_normal((n, *lo, NUM_CLASSES))
    z_hi = 2 * rng.standard_normal((n, *hi, NUM_CLASSES))
    attention = rng.uniform(0, 1, (n, *lo, 1))
    labels = rng.integers(0, NUM_CLASSES, (n, *hi))
    labels[:, :2] = 255
    return z_lo, z_hi, attention, labels


@pytest.mark.parametrize("fusion", FUSIONS)
def test_fusion_matches_numpy_reference(fusion):
    z_lo, z_hi, attention, _ = _scales()
    want = np_fuse(z_lo, z_hi, fusion, attention)
    fused, logits = synergy.fuse_scales(jnp.asarray(z_lo, jnp.float32),
                                        jnp.asarray(z_hi, jnp.float32), fusion,
                                        jnp.asarray(attention, jnp.float32))
    np.testing.assert_allclose(fused, want, rtol=1e-5, atol=1e-5)
    if fusion in synergy.PROBABILITY_FUSIONS:
        # log of the renormalised map: softmax gives S / sum S, argmax is argmax S.
        np.testing.assert_allclose(logits, np.log(want / want.sum(-1, keepdims=True)),
                                   rtol=1e-5, atol=1e-5)
        assert np.all((want >= 0) & (want <= 1 + 1e-12))
    else:
        np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(np.asarray(logits), -1), np.argmax(want, -1))


def test_prob_fusion_is_a_probabilistic_or():
    z_lo, z_hi, _, _ = _scales(1)
    u = np_resize(np_softmax(z_lo), z_hi.shape[1:3])
    fused, _ = synergy.fuse_scales(jnp.asarray(z_lo, jnp.float32),
                                   jnp.asarray(z_hi, jnp.float32), "prob")
    np.testing.assert_allclose(fused, 1 - (1 - u) * (1 - np_softmax(z_hi)), atol=1e-6)


def test_mask_fusion_lets_the_high_scale_in_only_where_the_low_scale_is_unsure():
    z_hi = np.zeros((1, 4, 4, 3))
    z_hi[..., 2] = 10.0  # the high scale votes for class 2 everywhere
    z_lo = np.zeros((1, 2, 2, 3))
    z_lo[0, 0, 0, 0] = 20.0  # low scale certain of class 0 in one quadrant, unsure elsewhere
    fused, logits = synergy.fuse_scales(jnp.asarray(z_lo, jnp.float32),
                                        jnp.asarray(z_hi, jnp.float32), "mask")
    pred = np.argmax(np.asarray(logits), -1)[0]
    assert pred[0, 0] == 0 and pred[3, 3] == 2


def test_attention_fusion_needs_the_attention_map():
    z = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="attention"):
        synergy.fuse_scales(z[:, :2, :2], z, "attention")


def test_low_scale_input_is_nvidia_resizex():
    rng = np.random.default_rng(0)
    even = rng.standard_normal((1, 6, 8, 2))
    got = synergy.resize_by(jnp.asarray(even), 0.5)
    block_mean = even.reshape(1, 3, 2, 4, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(got, block_mean, atol=1e-6)
    odd = rng.standard_normal((1, 7, 9, 2))
    got = synergy.resize_by(jnp.asarray(odd), 0.5)
    assert got.shape == (1, 3, 4, 2)  # floor(n * 0.5)
    np.testing.assert_allclose(got, np_resize(odd, (3, 4)), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"fusion": "average"}, "unknown synergy fusion"),
    ({"scales": (0.5, 2.0)}, "scales must be"),
    ({"scales": (1.0, 1.0)}, "scales must be"),
    ({"scales": (0.5,)}, "scales must be"),
    ({"output_stride": 32}, "output_stride"),
])
def test_bad_options_are_rejected_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build("synergy_deeplabv3plus_r50", 19, **kwargs)


def _outputs(fusion, z_lo, z_hi, attention):
    fused, logits = synergy.fuse_scales(z_lo, z_hi, fusion, attention)
    out = {"logits": logits, "scale_logits": (z_lo, z_hi)}
    if fusion in synergy.PROBABILITY_FUSIONS:
        out["fused_probs"] = fused
    return out


def _cfg(synergy_loss="renormalised", scale_aux_weight=0.0, **fields):
    return {"name": "ce", "class_weights": (), "ignore_label": 255,
            "synergy": {"kind": synergy_loss, "scale_aux_weight": scale_aux_weight}, **fields}


def _np_mean_nll(gt_prob, labels, weights=None):
    valid = labels != 255
    w = valid.astype(float) if weights is None else np.where(valid, weights[np.where(
        valid, labels, 0)], 0.0)
    return np.sum(-np.log(gt_prob) * w) / np.sum(w)


def _gather(probs, labels):
    return np.take_along_axis(probs, np.where(labels == 255, 0, labels)[..., None], -1)[..., 0]


@pytest.mark.parametrize("fusion", ["prob", "mask"])
@pytest.mark.parametrize("kind", synergy_loss.SYNERGY_LOSSES)
def test_fused_map_losses_match_their_formulas(fusion, kind):
    z_lo, z_hi, attention, labels = _scales(2)
    s = np_fuse(z_lo, z_hi, fusion)
    class_weights = np.linspace(0.5, 1.5, NUM_CLASSES)
    if kind == "renormalised":
        want = _np_mean_nll(_gather(s / s.sum(-1, keepdims=True), labels), labels, class_weights)
    elif kind == "noisy_or":
        want = _np_mean_nll(_gather(s, labels), labels, class_weights)
    else:
        want = _np_mean_nll(_gather(np_softmax(s), labels), labels, class_weights)
    outputs = _outputs(fusion, *(jnp.asarray(a, jnp.float32) for a in (z_lo, z_hi, attention)))
    cfg = _cfg(synergy_loss=kind, class_weights=tuple(class_weights))
    total, terms = losses.segmentation_loss(outputs, jnp.asarray(labels), cfg)
    np.testing.assert_allclose(total, want, rtol=1e-5)
    # The renormalised NLL is the main CE on the model's logits; the others replace it.
    assert set(terms) == ({"loss/main"} if kind == "renormalised" else {"loss/synergy"})


def test_softmax_reading_cannot_go_below_its_floor():
    z_lo = np.full((1, 2, 2, 19), -50.0)
    z_lo[..., 0] = 50.0
    z_hi = np.full((1, 4, 4, 19), -50.0)
    z_hi[..., 0] = 50.0
    outputs = _outputs("prob", jnp.asarray(z_lo), jnp.asarray(z_hi), None)
    labels = jnp.zeros((1, 4, 4), jnp.int32)
    total, _ = losses.segmentation_loss(outputs, labels, _cfg(synergy_loss="softmax"))
    np.testing.assert_allclose(total, np.log(np.e + 18) - 1, rtol=1e-5)
    total, _ = losses.segmentation_loss(outputs, labels, _cfg())
    assert float(total) < 1e-6


def test_scale_aux_adds_weighted_per_scale_ce():
    z_lo, z_hi, attention, labels = _scales(3)
    outputs = _outputs("prob", *(jnp.asarray(a, jnp.float32) for a in (z_lo, z_hi, attention)))
    labels = jnp.asarray(labels)
    base, _ = losses.segmentation_loss(outputs, labels, _cfg())
    total, terms = losses.segmentation_loss(outputs, labels, _cfg(scale_aux_weight=0.05))
    up_lo = losses.upsample_logits(outputs["scale_logits"][0], labels.shape[1:])
    aux = losses.cross_entropy(up_lo, labels) + losses.cross_entropy(outputs["scale_logits"][1],
                                                                     labels)
    np.testing.assert_allclose(terms["loss/scale_aux"], aux, rtol=1e-6)
    np.testing.assert_allclose(total, base + 0.05 * aux, rtol=1e-6)


def test_loss_options_are_validated():
    z_lo, z_hi, attention, labels = _scales(4)
    args = (jnp.asarray(a, jnp.float32) for a in (z_lo, z_hi, attention))
    outputs = _outputs("logits", *args)
    with pytest.raises(ValueError, match="probability fusion"):
        losses.segmentation_loss(outputs, jnp.asarray(labels), _cfg(synergy_loss="noisy_or"))
    with pytest.raises(ValueError, match="config.loss.synergy.kind='dice'"):
        losses.segmentation_loss(outputs, jnp.asarray(labels), _cfg(synergy_loss="dice"))
    # A single-scale model with the per-scale term on is refused, not silently unchanged.
    single = {"logits": outputs["logits"]}
    with pytest.raises(losses.LossConfigError, match="no 'scale_logits' output"):
        losses.segmentation_loss(single, jnp.asarray(labels), _cfg(scale_aux_weight=1.0))
    total, terms = losses.segmentation_loss(single, jnp.asarray(labels), _cfg())
    assert set(terms) == {"loss/main"}
    np.testing.assert_allclose(total, losses.cross_entropy(single["logits"],
                                                           jnp.asarray(labels)), rtol=1e-6)


# The logit fusions train with the renormalised loss only (plain CE on their fused logits).
@pytest.mark.parametrize("fusion, kind", [
    (fusion, kind) for fusion in FUSIONS for kind in synergy_loss.SYNERGY_LOSSES
    if kind == "renormalised" or fusion in synergy.PROBABILITY_FUSIONS])
def test_gradients_reach_both_scales(fusion, kind):
    z_lo, z_hi, attention, labels = (jnp.asarray(a, jnp.float32) for a in _scales(5))
    labels = labels.astype(jnp.int32)

    def loss(z_lo, z_hi, attention):
        total, _ = losses.segmentation_loss(_outputs(fusion, z_lo, z_hi, attention), labels,
                                            _cfg(synergy_loss=kind))
        return total

    grads = jax.grad(loss, argnums=(0, 1, 2))(z_lo, z_hi, attention)
    for name, g in zip(("low", "high"), grads[:2]):
        assert np.all(np.isfinite(g)), name
        assert float(jnp.max(jnp.abs(g))) > 1e-4, f"no gradient into the {name} scale"
    if fusion == "attention":
        assert float(jnp.max(jnp.abs(grads[2]))) > 1e-4


@pytest.mark.parametrize("fusion", FUSIONS)
def test_model_outputs(fusion):
    model = models.build("synergy_deeplabv3plus_r50", 19, fusion=fusion)
    x = jax.ShapeDtypeStruct((2, 45, 61, 3), jnp.float32)
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x)
    assert out["logits"].shape == (2, 45, 61, 19) and out["logits"].dtype == jnp.float32
    assert [z.shape for z in out["scale_logits"]] == [(2, 22, 30, 19), (2, 45, 61, 19)]
    assert ("fused_probs" in out) == (fusion in synergy.PROBABILITY_FUSIONS)
    assert ("attention" in out) == (fusion == "attention")


def test_model_fuses_the_shared_network_at_both_scales(parity_dir):
    """Both scales run the one set of weights: the high scale reproduces NVIDIA's logits, the
    low scale is the single-scale network on ResizeX(x, 0.5), the output is their fusion."""
    manifest = parity_dir / "deeplabv3plus_r50.json"
    fixture = np.load(parity_dir / "deeplabv3plus_r50_120x200.npz")
    sd = parity.make_state_dict(json.loads(manifest.read_text())["manifest"])
    model, variables = convert.convert_for_model("synergy_deeplabv3plus_r50", sd, 19,
                                                 fusion="mask")
    _, _, single_variables, single = parity._prepared("deeplabv3plus_r50", str(manifest), None)
    x = jnp.asarray(np.transpose(fixture["input"], (0, 2, 3, 1)))
    with jax.default_matmul_precision("highest"):
        out = jax.jit(model.apply)(variables, x)
        z_lo = single(single_variables, synergy.resize_by(x, 0.5))["logits"]
    z_lo_got, z_hi_got = out["scale_logits"]
    assert z_lo_got.shape == (1, 60, 100, 19)
    np.testing.assert_allclose(np.transpose(z_hi_got, (0, 3, 1, 2)), fixture["logits"],
                               atol=1e-4)
    np.testing.assert_allclose(z_lo_got, z_lo, atol=1e-4)
    fused, logits = synergy.fuse_scales(z_lo_got, z_hi_got, "mask")
    np.testing.assert_allclose(out["fused_probs"], fused, atol=1e-6)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-5)


@pytest.mark.slow
def test_attention_head_trains_with_the_trunk():
    """A train-mode gradient of the attention model reaches its head and both scales' path."""
    model = models.build("synergy_deeplabv3plus_r50", NUM_CLASSES, fusion="attention")
    x = jax.random.normal(jax.random.key(0), (2, 32, 48, 3))
    labels = jax.random.randint(jax.random.key(1), (2, 32, 48), 0, NUM_CLASSES)
    variables = model.init(jax.random.key(2), x)

    def loss(params):
        out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                             train=True, mutable=["batch_stats"])
        assert out["attention"].shape == (2, 16, 24, 1)
        return losses.segmentation_loss(out, labels, _cfg(scale_aux_weight=0.05))[0]

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for module in ("scale_attn", "final", "backbone"):
        norm = float(optax_norm(grads[module]))
        assert np.isfinite(norm) and norm > 0, module


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(tree)))
