import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from segjax import losses

C = 5
WEIGHTS = (0.5, 1.0, 2.0, 1.5, 0.8)


def _log_softmax64(logits):
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _ce_reference(logits, labels, class_weights=None, example_weights=None, ignore=255):
    """PyTorch CrossEntropyLoss(weight, ignore_index, reduction='mean'), written plainly."""
    log_probs = _log_softmax64(logits)
    w = np.ones(logits.shape[-1]) if class_weights is None else np.asarray(class_weights)
    numerator = denominator = 0.0
    for n, h, x in np.ndindex(labels.shape):
        y = labels[n, h, x]
        if y == ignore:
            continue
        scale = w[y] * (1.0 if example_weights is None else example_weights[n])
        numerator += -log_probs[n, h, x, y] * scale
        denominator += scale
    return numerator / denominator


def _ohem_reference(logits, labels, thresh, min_kept, class_weights=None, ignore=255):
    """HRNet's OhemCrossEntropy.forward, transcribed with boolean indexing and a sort."""
    num_classes = logits.shape[-1]
    log_probs = _log_softmax64(logits).reshape(-1, num_classes)
    target = labels.reshape(-1).copy()
    w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights)
    mask = target != ignore
    target[~mask] = 0
    rows = np.arange(target.size)
    pixel_losses = np.where(mask, -log_probs[rows, target] * w[target], 0.0)
    pred = np.exp(log_probs[rows, target])[mask]
    order = np.argsort(pred, kind="stable")
    pred = pred[order]
    min_value = pred[min(max(1, min_kept), pred.size - 1)]
    threshold = max(min_value, thresh)
    kept = pixel_losses[mask][order][pred < threshold]
    return kept.mean(), threshold, kept.size


def _random_case(seed, shape=(2, 12, 10), ignore_fraction=0.2, margin=0.0):
    """Random logits; `margin` (max) is added to the gt logit so p_gt spreads towards 1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, shape)
    logits = rng.normal(size=shape + (C,)).astype(np.float32)
    if margin:
        logits += (rng.uniform(0, margin, shape)[..., None] * np.eye(C)[labels]).astype(np.float32)
    labels = np.where(rng.random(shape) < ignore_fraction, 255, labels)
    return logits, labels.astype(np.int32)


@pytest.mark.parametrize("class_weights", [None, WEIGHTS])
def test_cross_entropy_matches_reference(class_weights):
    logits, labels = _random_case(0)
    got = losses.cross_entropy(
        jnp.asarray(logits), jnp.asarray(labels), class_weights=class_weights
    )
    np.testing.assert_allclose(got, _ce_reference(logits, labels, class_weights), rtol=1e-5)


def test_cross_entropy_bfloat16_logits_computed_in_float32():
    logits, labels = _random_case(1)
    bf16 = jnp.asarray(logits, jnp.bfloat16)
    got = losses.cross_entropy(bf16, jnp.asarray(labels), class_weights=WEIGHTS)
    assert got.dtype == jnp.float32
    want = _ce_reference(np.asarray(bf16.astype(jnp.float32)), labels, WEIGHTS)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_cross_entropy_example_weights_mask_padding():
    logits, labels = _random_case(2, shape=(3, 6, 7))
    got = losses.cross_entropy(
        jnp.asarray(logits),
        jnp.asarray(labels),
        class_weights=WEIGHTS,
        weights=jnp.array([1.0, 0.0, 1.0]),
    )
    kept = [0, 2]
    np.testing.assert_allclose(got, _ce_reference(logits[kept], labels[kept], WEIGHTS), rtol=1e-5)
    np.testing.assert_allclose(
        got, _ce_reference(logits, labels, WEIGHTS, example_weights=[1, 0, 1]), rtol=1e-5
    )


def test_cross_entropy_all_ignored_is_zero_with_finite_gradient():
    logits, labels = _random_case(3)
    labels = np.full_like(labels, 255)
    loss, grad = jax.value_and_grad(losses.cross_entropy)(jnp.asarray(logits), jnp.asarray(labels))
    assert loss == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_pixelwise_cross_entropy_shape_and_mask():
    logits, labels = _random_case(4)
    labels[0, 0, 0] = 254
    loss, valid = losses.pixelwise_cross_entropy(
        jnp.asarray(logits), jnp.asarray(labels), class_weights=WEIGHTS
    )
    assert loss.shape == labels.shape and valid.shape == labels.shape
    np.testing.assert_array_equal(valid, labels < C)
    assert np.all(np.asarray(loss)[~np.asarray(valid)] == 0.0)
    n, h, x = np.argwhere(labels < C)[0]
    y = labels[n, h, x]
    want = -_log_softmax64(logits)[n, h, x, y] * WEIGHTS[y]
    np.testing.assert_allclose(loss[n, h, x], want, rtol=1e-5)


def _ohem(logits, labels, **kwargs):
    fn = jax.jit(lambda lg, lb: losses.ohem_cross_entropy(lg, lb, **kwargs))
    return fn(jnp.asarray(logits), jnp.asarray(labels))


@pytest.mark.parametrize("class_weights", [None, WEIGHTS])
def test_ohem_many_easy_below_thresh_uses_thresh(class_weights):
    logits, labels = _random_case(5, margin=3.0)
    want, threshold, kept = _ohem_reference(logits, labels, 0.7, 20, class_weights)
    assert threshold == 0.7 and 20 < kept < (labels != 255).sum()
    got = _ohem(logits, labels, thresh=0.7, min_kept=20, class_weights=class_weights)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("class_weights", [None, WEIGHTS])
def test_ohem_min_kept_raises_threshold_above_thresh(class_weights):
    logits, labels = _random_case(6, margin=8.0)
    n_valid = int((labels != 255).sum())
    min_kept = n_valid // 2
    want, threshold, kept = _ohem_reference(logits, labels, 0.7, min_kept, class_weights)
    assert threshold > 0.7 and kept == min_kept
    got = _ohem(logits, labels, thresh=0.7, min_kept=min_kept, class_weights=class_weights)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ohem_min_kept_above_valid_count_drops_only_the_easiest():
    logits, labels = _random_case(7, margin=8.0)
    n_valid = int((labels != 255).sum())
    want, threshold, kept = _ohem_reference(logits, labels, 0.7, 10 * n_valid, WEIGHTS)
    assert threshold > 0.7 and kept == n_valid - 1
    got = _ohem(logits, labels, thresh=0.7, min_kept=10 * n_valid, class_weights=WEIGHTS)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ohem_min_kept_above_valid_count_keeps_all_when_all_hard():
    logits, labels = _random_case(8)
    n_valid = int((labels != 255).sum())
    want, threshold, kept = _ohem_reference(logits, labels, 0.9, 10 * n_valid, WEIGHTS)
    assert kept == n_valid
    got = _ohem(logits, labels, thresh=0.9, min_kept=10 * n_valid, class_weights=WEIGHTS)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    pixel, valid = losses.pixelwise_cross_entropy(
        jnp.asarray(logits), jnp.asarray(labels), class_weights=WEIGHTS
    )
    np.testing.assert_allclose(got, pixel.sum() / valid.sum(), rtol=1e-5)


def test_ohem_groups_select_within_each_group_and_average():
    logits, labels = _random_case(11, shape=(4, 12, 10), margin=4.0)
    kwargs = dict(thresh=0.3, min_kept=40, class_weights=WEIGHTS)
    halves = [_ohem(logits[i:i + 2], labels[i:i + 2], **kwargs) for i in (0, 2)]
    grouped = _ohem(logits, labels, groups=2, **kwargs)
    np.testing.assert_allclose(grouped, np.mean(halves), rtol=1e-6)
    assert abs(float(grouped) - float(_ohem(logits, labels, **kwargs))) > 1e-4


def test_ohem_float64_logits_give_a_float64_loss():
    logits, labels = _random_case(12)
    with jax.enable_x64(True):
        loss = losses.ohem_cross_entropy(jnp.asarray(logits, jnp.float64), jnp.asarray(labels),
                                         thresh=0.5, min_kept=10, class_weights=WEIGHTS)
    assert loss.dtype == jnp.float64


def test_ohem_all_ignored_is_zero_with_finite_gradient():
    logits, labels = _random_case(9)
    labels = np.full_like(labels, 255)
    fn = lambda lg: losses.ohem_cross_entropy(lg, jnp.asarray(labels), min_kept=7)
    loss, grad = jax.jit(jax.value_and_grad(fn))(jnp.asarray(logits))
    assert loss == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_ohem_none_kept_is_zero():
    labels = np.zeros((1, 4, 4), np.int32)
    logits = np.zeros((1, 4, 4, C), np.float32)
    logits[..., 0] = 10.0  # every pixel has the same p_gt > thresh, so p < p_(k) keeps none
    assert _ohem(logits, labels, thresh=0.7, min_kept=3) == 0.0


def test_ohem_gradient_finite_and_only_on_kept_pixels():
    logits, labels = _random_case(10, margin=8.0)
    labels_j = jnp.asarray(labels)
    fn = lambda lg: losses.ohem_cross_entropy(lg, labels_j, thresh=0.7, min_kept=30)
    grad = np.asarray(jax.jit(jax.grad(fn))(jnp.asarray(logits)))
    assert np.all(np.isfinite(grad))
    touched = np.abs(grad).sum(-1) > 0
    _, _, kept = _ohem_reference(logits, labels, 0.7, 30)
    assert touched.sum() == kept
    assert not touched[labels == 255].any()


def test_ohem_sharded_matches_unsharded():
    logits, labels = _random_case(11, shape=(8, 12, 10), margin=8.0)
    kwargs = dict(thresh=0.7, min_kept=300, class_weights=WEIGHTS)
    want = _ohem(logits, labels, **kwargs)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    got = _ohem(jax.device_put(logits, sharding), jax.device_put(labels, sharding), **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    reference, threshold, _ = _ohem_reference(logits, labels, **kwargs)
    assert threshold > 0.7
    np.testing.assert_allclose(want, reference, rtol=1e-5)


def test_scaled_min_kept():
    assert losses.scaled_min_kept(131072, 6, 12) == 262144
    assert losses.scaled_min_kept(131072, 8, 8) == 131072
    assert losses.scaled_min_kept(131072, 8, 12) == 196608


def _bilinear_half_pixel(x, size):
    """F.interpolate(mode='bilinear', align_corners=False) on NHWC, written out."""

    def axis_weights(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = src - lo
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1 - frac
        m[np.arange(n_out), hi] += frac
        return m

    rows = axis_weights(x.shape[1], size[0])
    cols = axis_weights(x.shape[2], size[1])
    return np.einsum("yh,nhwc,xw->nyxc", rows, x.astype(np.float64), cols)


def test_upsample_logits_is_half_pixel_bilinear():
    x = np.random.default_rng(12).normal(size=(2, 4, 5, 3)).astype(np.float32)
    got = losses.upsample_logits(jnp.asarray(x), (32, 40))
    np.testing.assert_allclose(got, _bilinear_half_pixel(x, (32, 40)), atol=1e-5)
    np.testing.assert_array_equal(losses.upsample_logits(jnp.asarray(x), (4, 5)), x)


@dataclasses.dataclass
class _LossConfig:
    name: str = "ce"
    ohem: dict = dataclasses.field(default_factory=lambda: {"thresh": 0.7, "min_kept": 100})
    class_weights: tuple = WEIGHTS
    aux: dict = dataclasses.field(default_factory=lambda: {"weight": 0.4})
    ignore_label: int = 255


def _config_variants():
    fields = dataclasses.asdict(_LossConfig())
    return [_LossConfig(), fields, ml_collections.ConfigDict(fields)]


@pytest.mark.parametrize("cfg", _config_variants(), ids=["dataclass", "dict", "configdict"])
def test_segmentation_loss_upsamples_and_weights_aux(cfg):
    rng = np.random.default_rng(13)
    labels = np.where(rng.random((2, 32, 40)) < 0.1, 255, rng.integers(0, C, (2, 32, 40)))
    main = rng.normal(size=(2, 4, 5, C)).astype(np.float32)
    aux = rng.normal(size=(2, 4, 5, C)).astype(np.float32)
    outputs = {"logits": jnp.asarray(main), "aux_logits": jnp.asarray(aux, jnp.bfloat16)}
    total, terms = jax.jit(lambda o, y: losses.segmentation_loss(o, y, cfg))(
        outputs, jnp.asarray(labels)
    )
    assert set(terms) == {"loss/main", "loss/aux"}
    aux_up = _bilinear_half_pixel(np.asarray(outputs["aux_logits"].astype(jnp.float32)), (32, 40))
    np.testing.assert_allclose(
        terms["loss/main"],
        _ce_reference(_bilinear_half_pixel(main, (32, 40)), labels, WEIGHTS),
        rtol=1e-4,
    )
    np.testing.assert_allclose(terms["loss/aux"], _ce_reference(aux_up, labels, WEIGHTS), rtol=1e-4)
    np.testing.assert_allclose(total, terms["loss/main"] + 0.4 * terms["loss/aux"], rtol=1e-6)


def test_segmentation_loss_ohem_without_aux():
    cfg = _LossConfig(name="ohem", class_weights=(), aux={"weight": 0.0})
    logits, labels = _random_case(14, margin=8.0)
    total, terms = losses.segmentation_loss(
        {"logits": jnp.asarray(logits)}, jnp.asarray(labels), cfg
    )
    assert set(terms) == {"loss/main"}
    want, threshold, _ = _ohem_reference(logits, labels, 0.7, 100)
    assert threshold > 0.7
    np.testing.assert_allclose(total, want, rtol=1e-5)
    np.testing.assert_allclose(terms["loss/main"], want, rtol=1e-5)


def test_segmentation_loss_rejects_unknown_name():
    logits, labels = _random_case(15)
    with pytest.raises(ValueError, match="config.loss.name='focal'"):
        losses.segmentation_loss(
            {"logits": jnp.asarray(logits)}, jnp.asarray(labels), {"name": "focal"}
        )


def test_ohem_min_kept_is_floored_at_one_like_hrnet():
    labels = np.zeros((1, 2, 3), np.int32)
    logits = np.zeros((1, 2, 3, C), np.float32)
    logits[..., 0] = 6.0 + np.arange(6, dtype=np.float32).reshape(1, 2, 3)  # all p_gt > 0.9
    want, threshold, kept = _ohem_reference(logits, labels, 0.7, 0)
    assert kept == 1 and threshold > 0.7
    np.testing.assert_allclose(_ohem(logits, labels, thresh=0.7, min_kept=0), want, rtol=1e-4)


def test_a_head_no_enabled_term_trains_is_an_error():
    logits, labels = _random_case(16)
    outputs = {"logits": jnp.asarray(logits), "aux_logits": jnp.asarray(logits)}
    with pytest.raises(losses.LossConfigError, match="'aux_logits'.*loss.aux.weight"):
        losses.segmentation_loss(outputs, jnp.asarray(labels),
                                 {"name": "ce", "aux": {"weight": 0.0}})
    with pytest.raises(losses.LossConfigError, match="'edge_logits'"):
        losses.segmentation_loss({"logits": jnp.asarray(logits), "edge_logits": outputs["logits"]},
                                 jnp.asarray(labels), {"name": "ce", "aux": {"weight": 0.0}})


@pytest.mark.parametrize("fields, missing", [({"aux": {"weight": 0.4}}, "aux_logits"),
                                             ({"cbs": {"weight": 1.0}}, "boundary_logits")])
def test_an_enabled_term_without_its_head_is_an_error(fields, missing):
    logits, labels = _random_case(17)
    with pytest.raises(losses.LossConfigError, match=f"no '{missing}' output"):
        losses.segmentation_loss({"logits": jnp.asarray(logits)}, jnp.asarray(labels),
                                 {"name": "ce", **fields})


def test_unknown_settings_field_is_named():
    logits, labels = _random_case(18)
    with pytest.raises(losses.LossConfigError, match="config.loss.bcl has no field 'wieght'"):
        losses.segmentation_loss({"logits": jnp.asarray(logits)}, jnp.asarray(labels),
                                 {"name": "ce", "aux": {"weight": 0.0}, "bcl": {"wieght": 1.0}})


def test_every_default_setting_is_a_config_field():
    """configs/default.py takes the loss defaults from the registry, so they cannot drift; it
    only switches on the default model's aux head."""
    from configs import default

    expected = losses.default_config()
    expected["aux"]["weight"] = 0.4
    assert default.get_config().loss.to_dict() == expected


def test_for_global_batch_scales_or_groups_ohem():
    cfg = {"name": "ohem", "ohem": {"min_kept": 131072, "min_kept_batch": 6, "scope": "global"}}
    ohem = losses.for_global_batch(cfg, 12).ohem
    assert (ohem.min_kept, ohem.groups) == (262144, 1)
    cfg["ohem"]["scope"] = "group"
    ohem = losses.for_global_batch(cfg, 12).ohem
    assert (ohem.min_kept, ohem.groups) == (131072, 2)
    with pytest.raises(ValueError, match="not a multiple"):
        losses.for_global_batch(cfg, 8)
