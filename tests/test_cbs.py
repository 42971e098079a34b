"""Class Boundary Supervision (MSFNet): boundary labels at 1/8 and the boundary loss term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from segjax import losses
from segjax.losses import cbs

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
    """Loops over the 1/8 map: the boundary rule (centre samples, Chebyshev ε) written out."""
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
    cfg = {"name": "ce", "cbs": {"weight": 1.0, "epsilon": 1}}
    total, terms = jax.jit(lambda o, y: losses.segmentation_loss(o, y, cfg))(outputs, labels)
    targets = cbs.boundary_labels(labels, 5)
    want = losses.cross_entropy(outputs["boundary_logits"], targets)
    main = losses.cross_entropy(outputs["logits"], labels)
    assert set(terms) == {"loss/main", "loss/boundary"}
    np.testing.assert_allclose(terms["loss/boundary"], want, rtol=1e-6)
    np.testing.assert_allclose(total, main + want, rtol=1e-6)

    half, half_terms = losses.segmentation_loss(outputs, labels, {**cfg, "cbs": {"weight": 0.5}})
    np.testing.assert_allclose(half, main + 0.5 * want, rtol=1e-6)
    wide = losses.segmentation_loss(outputs, labels,
                                    {**cfg, "cbs": {"weight": 1.0, "epsilon": 2}})[1]
    assert abs(float(wide["loss/boundary"]) - float(want)) > 1e-4
    # literal labels on logits with the non-boundary channel moved to the front: same loss.
    rolled = {**outputs, "boundary_logits": jnp.roll(outputs["boundary_logits"], 1, axis=-1)}
    literal = losses.segmentation_loss(
        rolled, labels, {**cfg, "cbs": {"weight": 1.0, "label_mode": "literal"}})[1]
    np.testing.assert_allclose(literal["loss/boundary"], want, rtol=1e-6)

    plain = losses.segmentation_loss({"logits": outputs["logits"]}, labels,
                                     {**cfg, "cbs": {"weight": 0.0}})[1]
    assert set(plain) == {"loss/main"}
    # A boundary head nothing trains, or a boundary weight without the head, is refused.
    with pytest.raises(losses.LossConfigError, match="'boundary_logits' but no enabled"):
        losses.segmentation_loss(outputs, labels, {**cfg, "cbs": {"weight": 0.0}})
    with pytest.raises(losses.LossConfigError, match="no 'boundary_logits' output"):
        losses.segmentation_loss({"logits": outputs["logits"]}, labels, cfg)
    with pytest.raises(ValueError, match="boundary_logits"):
        losses.segmentation_loss(outputs, labels[:, :60], cfg)


