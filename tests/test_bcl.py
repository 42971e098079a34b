import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from segjax import losses
from segjax.losses import bcl

C = 8
IGN = 255
WEIGHTS = (0.5, 1.0, 2.0, 1.5, 0.8, 1.2, 0.7, 1.1)


# ---------------------------------------------------------------- plain NumPy reference


def _partner(r, n, s, o):
    """Where index r takes its label from: phased pairwise block swap, out of range = self."""
    u = r + o
    v = u + s if u % (2 * s) < s else u - s
    return v - o if 0 <= v - o < n else r


def _flip_ref(labels, s, ph, pw):
    n, h, w = labels.shape
    g_r = np.empty_like(labels)
    g_c = np.empty_like(labels)
    for y in range(h):
        g_r[:, y, :] = labels[:, _partner(y, h, s, ph), :]
    for x in range(w):
        g_c[:, :, x] = labels[:, :, _partner(x, w, s, pw)]
    return g_r, g_c


def _ce_ref(log_probs, labels, weights):
    valid = (labels != IGN) & (labels >= 0) & (labels < log_probs.shape[-1])
    safe = np.where(valid, labels, 0)
    nll = -np.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    w = np.ones(log_probs.shape[-1]) if weights is None else np.asarray(weights, np.float64)
    return np.where(valid, nll * w[safe], 0.0), valid


def _bcl_ref(logits, labels, ph, pw, *, step, alpha, beta, nms_window, tau, rho, target,
             class_weights):
    """Spec §3.2 per image with boolean indexing, a full sort and explicit NMS loops."""
    x = np.asarray(logits, np.float64)
    x = x - x.max(-1, keepdims=True)
    log_probs = x - np.log(np.exp(x).sum(-1, keepdims=True))
    g_r, g_c = _flip_ref(labels, step, ph, pw)
    l0, valid = _ce_ref(log_probs, labels, class_weights)
    lr, valid_r = _ce_ref(log_probs, g_r, class_weights)
    lc, valid_c = _ce_ref(log_probs, g_c, class_weights)
    m_r = valid & valid_r & (g_r != labels)
    m_c = valid & valid_c & (g_c != labels)
    off = valid & ~(m_r | m_c)
    h = alpha * lr * m_r + beta * lc * m_c + (alpha + beta) * l0 * off
    n, height, width = labels.shape
    r = nms_window // 2
    total = 0.0
    for i in range(n):
        keep = np.zeros((height, width), bool)
        for y in range(height):
            for xx in range(width):
                window = h[i, max(0, y - r):y + r + 1, max(0, xx - r):xx + r + 1]
                keep[y, xx] = h[i, y, xx] > 0 and h[i, y, xx] == window.max()
        k = int(np.ceil(np.float32(rho) * np.float32(valid[i].sum())))
        scores = np.sort(h[i][keep])[::-1]
        kth = np.inf if k == 0 else (scores[k - 1] if k <= scores.size else -np.inf)
        sel = keep & (h[i] >= min(tau, kth))

        def mean(v, m):
            return v[m].mean() if m.any() else 0.0

        band_r, band_c = (l0[i], l0[i]) if target == "orig" else (lr[i], lc[i])
        total += (alpha * mean(band_r, sel & m_r[i]) + beta * mean(band_c, sel & m_c[i])
                  + mean(l0[i], sel & off[i]))
    return total / n


# ---------------------------------------------------------------- data


def _blocky_labels(rng, n=2, h=24, w=40, ignore_frac=True):
    labels = np.empty((n, h, w), np.int32)
    for i in range(n):
        labels[i] = rng.integers(C)
        for _ in range(10):
            y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
            y1, x1 = y0 + rng.integers(2, 12), x0 + rng.integers(2, 16)
            labels[i, y0:y1, x0:x1] = rng.integers(C)
        if ignore_frac:
            y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 6)
            labels[i, y0:y0 + 4, x0:x0 + 6] = IGN
    return labels


def _case(seed, scale):
    rng = np.random.default_rng(seed)
    labels = _blocky_labels(rng)
    logits = (2.0 * rng.standard_normal((2, 24 // scale, 40 // scale, C))).astype(np.float32)
    return logits, labels


def _full_res(logits, labels):
    return np.asarray(losses.upsample_logits(jnp.asarray(logits), labels.shape[1:3]))


# ---------------------------------------------------------------- reference equality


@pytest.mark.parametrize("target", ["orig", "flipped"])
@pytest.mark.parametrize("nms_window", [1, 3])
@pytest.mark.parametrize("random_phase", [False, True])
@pytest.mark.parametrize(
    "scale,tau,rho,alpha,beta,weights,step",
    [
        (4, 0.357, 0.01, 0.5, 0.5, None, 4),
        (1, 3.0, 0.05, 0.25, 0.5, WEIGHTS, 2),
        (4, 2.0, 0.2, 0.5, 0.3, WEIGHTS, 3),
    ],
)
def test_matches_numpy_reference(target, nms_window, random_phase, scale, tau, rho, alpha, beta,
                                 weights, step):
    logits, labels = _case(step * 10 + scale, scale)
    key = jax.random.PRNGKey(step + nms_window)
    phase = np.asarray(bcl.draw_phase(key, step)) if random_phase else np.zeros(2, int)
    got = bcl.boundary_corrected_loss(
        jnp.asarray(logits), jnp.asarray(labels), key, step=step, alpha=alpha, beta=beta,
        nms_window=nms_window, tau=tau, min_kept_fraction=rho, random_phase=random_phase,
        target=target, class_weights=weights)
    want = _bcl_ref(_full_res(logits, labels), labels, int(phase[0]), int(phase[1]), step=step,
                    alpha=alpha, beta=beta, nms_window=nms_window, tau=tau, rho=rho,
                    target=target, class_weights=weights)
    assert want > 0
    np.testing.assert_allclose(float(got), want, rtol=1e-6, atol=1e-6)


def test_explicit_phase_equals_drawn_phase_and_phase_matters():
    logits, labels = _case(3, 4)
    key = jax.random.PRNGKey(7)
    phase = bcl.draw_phase(key, 4)
    by_key = bcl.boundary_corrected_loss(jnp.asarray(logits), jnp.asarray(labels), key)
    by_phase = bcl.boundary_corrected_loss(jnp.asarray(logits), jnp.asarray(labels), phase)
    assert float(by_key) == float(by_phase)
    values = {float(bcl.boundary_corrected_loss(jnp.asarray(logits), jnp.asarray(labels), (o, o)))
              for o in range(8)}
    assert len(values) > 1


def test_threshold_branches_are_exercised():
    """tau below every score keeps all survivors; a huge tau keeps only the top K."""
    logits, labels = _case(5, 1)
    full = _full_res(logits, labels)
    args = dict(step=2, alpha=0.5, beta=0.5, nms_window=3, rho=0.05, target="orig",
                class_weights=None)
    low = _bcl_ref(full, labels, 0, 0, tau=0.0, **args)
    high = _bcl_ref(full, labels, 0, 0, tau=1e9, **args)
    assert low != high
    for tau, want in ((0.0, low), (1e9, high)):
        got = bcl.boundary_corrected_loss(jnp.asarray(logits), jnp.asarray(labels), None, step=2,
                                          tau=tau, min_kept_fraction=0.05)
        np.testing.assert_allclose(float(got), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- flips and band masks


def test_flip_permutation_examples():
    np.testing.assert_array_equal(bcl.flip_permutation(7, 2, 1), [2, 1, 0, 5, 6, 3, 4])
    np.testing.assert_array_equal(bcl.flip_permutation(10, 4, 0), [4, 5, 6, 7, 0, 1, 2, 3, 8, 9])
    np.testing.assert_array_equal(bcl.flip_permutation(6, 4, 0), [4, 5, 2, 3, 0, 1])
    for n, s in ((13, 1), (24, 4), (17, 3)):
        for o in range(2 * s):
            perm = np.asarray(bcl.flip_permutation(n, s, o))
            np.testing.assert_array_equal(perm[perm], np.arange(n))
            assert np.all(np.abs(perm - np.arange(n)) <= s)
            np.testing.assert_array_equal(perm, [_partner(r, n, s, o) for r in range(n)])


def _hand_drawn():
    """Runs are all at least 3 px along both axes, so 'within s' is exact for s <= 3."""
    g = np.zeros((1, 16, 20), np.int32)
    g[0, :, 7:] = 2
    g[0, 9:, :] = 3
    g[0, 9:13, 12:16] = IGN
    g[0, 0:4, 14:20] = 5
    g[0, 3:6, 0:3] = IGN
    return g


def _within_s(labels, s, axis):
    """Valid pixels with a valid, different label at most s px away along `axis`."""
    out = np.zeros(labels.shape, bool)
    _, h, w = labels.shape
    for n, y, x in np.ndindex(labels.shape):
        a = labels[n, y, x]
        if a == IGN:
            continue
        for d in range(-s, s + 1):
            yy, xx = (y + d, x) if axis == 1 else (y, x + d)
            if 0 <= yy < h and 0 <= xx < w and labels[n, yy, xx] not in (IGN, a):
                out[n, y, x] = True
    return out


def _band_masks(labels, step, phase_h, phase_w):
    """(M_r, M_c): both labels valid and the flipped label differs, as the loss marks bands."""
    labels = jnp.asarray(labels)
    g_r, g_c = bcl.flip_labels(labels, step, phase_h, phase_w)
    valid = labels != IGN
    return valid & (g_r != IGN) & (g_r != labels), valid & (g_c != IGN) & (g_c != labels)


@pytest.mark.parametrize("s", [1, 2, 3])
def test_band_masks_mark_pixels_within_s_of_a_label_change(s):
    labels = _hand_drawn()
    near_h, near_w = _within_s(labels, s, 1), _within_s(labels, s, 2)
    union_r = np.zeros(labels.shape, bool)
    union_c = np.zeros(labels.shape, bool)
    for o in range(2 * s):
        m_r, m_c = (np.asarray(m) for m in _band_masks(labels, s, o, o))
        g_r, g_c = _flip_ref(labels, s, o, o)
        valid = labels != IGN
        np.testing.assert_array_equal(m_r, valid & (g_r != IGN) & (g_r != labels))
        np.testing.assert_array_equal(m_c, valid & (g_c != IGN) & (g_c != labels))
        assert not np.any(m_r & ~near_h) and not np.any(m_c & ~near_w)
        union_r |= m_r
        union_c |= m_c
    np.testing.assert_array_equal(union_r, near_h)
    np.testing.assert_array_equal(union_c, near_w)
    assert near_h.any() and near_w.any()


def test_band_masks_small_example_with_ignore():
    labels = np.array([[[0, 0, 1, 1, 1, 255, 2, 2, 2]]], np.int32)
    _, m_c = _band_masks(labels, 1, 0, 0)
    # pairs (0,1) (2,3) (4,5) (6,7); index 8 is an incomplete tail block
    np.testing.assert_array_equal(np.asarray(m_c)[0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0])
    _, m_c = _band_masks(labels, 1, 0, 1)
    # pairs (1,2) (3,4) (5,6) (7,8); index 0 has no partner
    np.testing.assert_array_equal(np.asarray(m_c)[0, 0], [0, 1, 1, 0, 0, 0, 0, 0, 0])
    _, m_c = _band_masks(labels, 2, 0, 0)
    # blocks [0,1]<->[2,3], [4,5]<->[6,7], 8 alone; 5 is ignored, which also voids 7
    np.testing.assert_array_equal(np.asarray(m_c)[0, 0], [1, 1, 1, 1, 1, 0, 1, 0, 0])


# ---------------------------------------------------------------- gradients, jit, sharding


def test_gradients_finite_including_empty_images():
    logits, labels = _case(11, 4)
    labels[1] = IGN
    for target in ("orig", "flipped"):
        grad = jax.grad(lambda z, t=target: bcl.boundary_corrected_loss(
            z, jnp.asarray(labels), jax.random.PRNGKey(0), target=t))(jnp.asarray(logits))
        assert np.all(np.isfinite(np.asarray(grad)))
        assert np.any(np.asarray(grad) != 0)
    uniform = np.zeros((1, 8, 8), np.int32)
    value, grad = jax.value_and_grad(lambda z: bcl.boundary_corrected_loss(
        z, jnp.asarray(uniform), None, tau=1e9, min_kept_fraction=0.0))(jnp.zeros((1, 8, 8, C)))
    assert float(value) == 0.0 and np.all(np.asarray(grad) == 0)


def test_jit_sharded_matches_unsharded():
    devices = np.array(jax.devices())
    assert devices.size == 8
    rng = np.random.default_rng(0)
    labels = _blocky_labels(rng, n=8)
    logits = rng.standard_normal((8, 6, 10, C)).astype(np.float32)
    key = jax.random.PRNGKey(3)
    fn = jax.jit(lambda z, y, k: bcl.boundary_corrected_loss(z, y, k, class_weights=WEIGHTS))
    plain = fn(jnp.asarray(logits), jnp.asarray(labels), key)
    sharding = NamedSharding(Mesh(devices, ("data",)), P("data"))
    sharded = fn(jax.device_put(logits, sharding), jax.device_put(labels, sharding), key)
    np.testing.assert_allclose(float(sharded), float(plain), rtol=1e-6)
    phase = np.asarray(bcl.draw_phase(key, 4))
    want = _bcl_ref(_full_res(logits, labels), labels, int(phase[0]), int(phase[1]), step=4,
                    alpha=0.5, beta=0.5, nms_window=3, tau=0.357, rho=0.01, target="orig",
                    class_weights=WEIGHTS)
    np.testing.assert_allclose(float(sharded), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- loss-term registration


def _cfg(**fields):
    base = dict(name="ohem", ohem=dict(thresh=0.7, min_kept=100), class_weights=(),
                bcl=fields)
    return ml_collections.ConfigDict(base)


def test_term_absent_without_bcl_fields_and_added_with_them():
    logits, labels = _case(2, 4)
    outputs = {"logits": jnp.asarray(logits), "aux_logits": None}
    total, terms = losses.segmentation_loss(outputs, jnp.asarray(labels), _cfg())
    assert "loss/bcl" not in terms
    total0, terms0 = losses.segmentation_loss(outputs, jnp.asarray(labels), _cfg(weight=0.0))
    assert "loss/bcl" not in terms0 and float(total0) == float(total)

    cfg = _cfg(weight=2.0, step=2, random_phase=False)
    total2, terms2 = losses.segmentation_loss(outputs, jnp.asarray(labels), cfg)
    want = bcl.boundary_corrected_loss(jnp.asarray(logits), jnp.asarray(labels), None, step=2,
                                       random_phase=False)
    np.testing.assert_allclose(float(terms2["loss/bcl"]), float(want), rtol=1e-6)
    np.testing.assert_allclose(float(total2), float(total) + 2.0 * float(want), rtol=1e-6)


def test_bcl_replaces_ohem_switches_main_term_to_plain_ce():
    logits, labels = _case(4, 4)
    outputs = {"logits": jnp.asarray(logits)}
    _, ohem = losses.segmentation_loss(outputs, jnp.asarray(labels), _cfg(weight=1.0))
    _, ce = losses.segmentation_loss(outputs, jnp.asarray(labels),
                                     _cfg(weight=1.0, replaces_ohem=True))
    assert set(ce) == {"loss/main_ce", "loss/bcl"}
    full = losses.upsample_logits(jnp.asarray(logits), labels.shape[1:3])
    np.testing.assert_allclose(float(ce["loss/main_ce"]),
                               float(losses.cross_entropy(full, jnp.asarray(labels))), rtol=1e-6)
    np.testing.assert_allclose(
        float(ohem["loss/main"]),
        float(losses.ohem_cross_entropy(full, jnp.asarray(labels), thresh=0.7, min_kept=100)),
        rtol=1e-6)
    assert float(ce["loss/main_ce"]) != float(ohem["loss/main"])
    _, ignored = losses.segmentation_loss(outputs, jnp.asarray(labels),
                                          _cfg(replaces_ohem=True))
    np.testing.assert_allclose(float(ignored["loss/main"]), float(ohem["loss/main"]), rtol=1e-6)


def test_k_is_per_image():
    """One mostly-ignored image must not borrow its K from the other."""
    logits, labels = _case(8, 1)
    labels[0, :, 4:] = IGN
    full = _full_res(logits, labels)
    args = dict(step=2, alpha=0.5, beta=0.5, nms_window=1, tau=1e9, rho=0.1, target="orig",
                class_weights=None)
    want = _bcl_ref(full, labels, 0, 0, **args)
    got = bcl.boundary_corrected_loss(jnp.asarray(logits), jnp.asarray(labels), None, step=2,
                                      nms_window=1, tau=1e9, min_kept_fraction=0.1)
    np.testing.assert_allclose(float(got), want, rtol=1e-6, atol=1e-6)
    assert math.ceil(0.1 * (labels[0] != IGN).sum()) < math.ceil(0.1 * (labels[1] != IGN).sum())
