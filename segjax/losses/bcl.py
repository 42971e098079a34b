"""Flip Boundary Corrected Loss (BCL, BCMFNet), reconstructed from the paper's Eq. 2 and its
text, which leave the choices below open.

The ground truth is flipped by pairwise block swaps along H and W; where the flipped label
differs from the original the pixel lies within `step` pixels of a label transition, so the
flips mark a boundary band. Per-pixel losses are combined into a hardness score, thinned by
non-maximum suppression, thresholded OHEM-style, and the selected pixels are penalised.

Everything keeps static shapes (masks and `lax.top_k` with a static K_max instead of boolean
indexing), so the loss runs in one jitted step on a batch sharded across devices.

Exact choices:
- Phase: with phase o in [0, 2s), index r sits at u = r + o on a grid of 2s-wide block pairs;
  u maps to u + s when (u mod 2s) < s, else to u - s, and back to r' = u' - o. A pixel whose
  partner r' falls outside [0, n) (the incomplete head or tail block) keeps its own label.
  The map is an involution for every phase.
- K is per image: K_i = ceil(min_kept_fraction * N_valid_i), computed in float32.
- Normalisation: each image's L_b is a sum of three masked means (empty mean = 0); the batch
  value is their sum divided by B, i.e. the mean over images (Eq. 2's "/B").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from segjax.losses.ce import pixel_loss
from segjax.losses.common import IGNORE_LABEL, get, pixelwise_cross_entropy, upsample_logits
from segjax.losses.registry import register_loss_term, register_settings, settings

TARGETS = ("orig", "flipped")


def flip_permutation(n: int, step: int, phase: Any = 0) -> jax.Array:
    """Source index for each of `n` positions under the phased pairwise block swap.

    `phase` may be traced; out-of-range partners map to themselves (see module docstring).
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    r = jnp.arange(n, dtype=jnp.int32)
    u = r + jnp.asarray(phase, jnp.int32)
    partner = jnp.where(u % (2 * step) < step, u + step, u - step) - jnp.asarray(phase, jnp.int32)
    return jnp.where((partner >= 0) & (partner < n), partner, r)


def flip_labels(
    labels: jax.Array, step: int, phase_h: Any, phase_w: Any
) -> tuple[jax.Array, jax.Array]:
    """(G_r, G_c): labels with rows (axis 1) or columns (axis 2) block-swapped."""
    rows = flip_permutation(labels.shape[1], step, phase_h)
    cols = flip_permutation(labels.shape[2], step, phase_w)
    return jnp.take(labels, rows, axis=1), jnp.take(labels, cols, axis=2)


def draw_phase(rng: jax.Array, step: int) -> jax.Array:
    """Independent row and column phases, int32 (2,), uniform in [0, 2*step)."""
    return jax.random.randint(rng, (2,), 0, 2 * step, dtype=jnp.int32)


def _is_key(x) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) or dtype == jnp.uint32


def _resolve_phase(rng_or_phase, step, random_phase):
    if not random_phase or rng_or_phase is None:
        return jnp.zeros((2,), jnp.int32)
    if _is_key(rng_or_phase):
        return draw_phase(rng_or_phase, step)
    phase = jnp.broadcast_to(jnp.asarray(rng_or_phase, jnp.int32), (2,))
    return phase % (2 * step)


def _nms(h, window):
    if window <= 1:
        return h > 0
    pooled = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, window, window), (1, 1, 1), "SAME")
    return (h == pooled) & (h > 0)


def _masked_mean(values, mask):
    mask = mask.astype(jnp.float32)
    total = jnp.sum(values * mask, axis=(1, 2))
    count = jnp.sum(mask, axis=(1, 2))
    positive = count > 0
    return jnp.where(positive, total / jnp.where(positive, count, 1.0), 0.0)


def boundary_corrected_loss(
    logits: jax.Array,
    labels: jax.Array,
    rng_or_phase: Any = None,
    *,
    step: int = 4,
    alpha: float = 0.5,
    beta: float = 0.5,
    nms_window: int = 3,
    tau: float = 0.357,
    min_kept_fraction: float = 0.01,
    random_phase: bool = True,
    target: str = "orig",
    class_weights: Sequence[float] | None = None,
    ignore_label: int = IGNORE_LABEL,
) -> jax.Array:
    """L_b of Eq. 2, averaged over the batch: hardness scores on the flip bands, NMS, an
    OHEM-style threshold, then the selected pixels' losses.

    `rng_or_phase` is a PRNG key (phases drawn with `draw_phase`) or an explicit phase, an int
    or (phase_h, phase_w); it is ignored (phase 0) when `random_phase` is False. Selection is
    done on stop-gradient scores; gradients flow only through the selected losses.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown BCL target {target!r}; expected one of {TARGETS}")
    if nms_window < 1 or nms_window % 2 == 0:
        raise ValueError(f"nms_window must be a positive odd integer, got {nms_window}")
    logits = upsample_logits(logits.astype(jnp.float32), labels.shape[1:3])
    phase = _resolve_phase(rng_or_phase, step, random_phase)
    g_r, g_c = flip_labels(labels, step, phase[0], phase[1])

    def ce(target_labels):
        return pixelwise_cross_entropy(
            logits, target_labels, class_weights=class_weights, ignore_label=ignore_label
        )

    loss0, valid = ce(labels)
    loss_r, valid_r = ce(g_r)
    loss_c, valid_c = ce(g_c)
    m_r = valid & valid_r & (g_r != labels)
    m_c = valid & valid_c & (g_c != labels)
    band = m_r | m_c
    off_band = valid & ~band

    fm_r, fm_c, f_off = (m.astype(jnp.float32) for m in (m_r, m_c, off_band))
    h = alpha * loss_r * fm_r + beta * loss_c * fm_c + (alpha + beta) * loss0 * f_off
    h = jax.lax.stop_gradient(h)
    survivors = _nms(h, nms_window)

    batch, height, width = labels.shape
    k_max = min(height * width, math.ceil(min_kept_fraction * height * width) + 1)
    num_valid = jnp.sum(valid, axis=(1, 2), dtype=jnp.int32).astype(jnp.float32)
    k = jnp.ceil(jnp.float32(min_kept_fraction) * num_valid).astype(jnp.int32)
    k = jnp.clip(k, 0, k_max)
    ranked = jnp.where(survivors, h, -jnp.inf).reshape(batch, -1)
    top = jax.lax.top_k(ranked, max(k_max, 1))[0]
    kth = jnp.take_along_axis(top, jnp.maximum(k - 1, 0)[:, None], axis=1)[:, 0]
    kth = jnp.where(k > 0, kth, jnp.inf)
    threshold = jnp.minimum(jnp.float32(tau), kth)
    selected = survivors & (h >= threshold[:, None, None])

    if target == "orig":
        band_r, band_c = loss0, loss0
    else:
        band_r, band_c = loss_r, loss_c
    per_image = (
        alpha * _masked_mean(band_r, selected & m_r)
        + beta * _masked_mean(band_c, selected & m_c)
        + _masked_mean(loss0, selected & off_band)
    )
    return jnp.sum(per_image) / batch


def _label_rng(labels: jax.Array) -> jax.Array:
    """A key that changes from batch to batch: fold the wrapped label sum into a fixed seed."""
    stat = jnp.sum(labels.astype(jnp.uint32), dtype=jnp.uint32)
    return jax.random.fold_in(jax.random.PRNGKey(0), stat)


register_settings("bcl", {
    "weight": 0.0,  # λ; 0 = off
    "step": 4,  # flip step s, label pixels: bands of width <= s around label transitions
    "alpha": 0.5,  # row-flip weight
    "beta": 0.5,  # column-flip weight
    "nms_window": 3,  # k; 1 turns NMS off
    "tau": 0.357,  # loss threshold, -ln 0.7
    "min_kept_fraction": 0.01,  # ρ_min of the valid pixels, per image
    "random_phase": True,  # shift the flip blocks so bands do not align to a fixed grid
    "target": "orig",  # orig | flipped: labels the selected band pixels are scored against
    "replaces_ohem": False,  # main head: plain CE + BCL instead of OHEM + BCL
})


@register_loss_term("bcl", consumes=("logits",),
                    weight=lambda cfg: settings(cfg, "bcl")["weight"])
def bcl_term(outputs: Mapping[str, jax.Array], labels: jax.Array, loss_cfg: Any):
    """L_b on the main logits. The phase comes from a hash of the label sum: deterministic
    per batch, yet it varies across random crops."""
    bcl = settings(loss_cfg, "bcl")
    return boundary_corrected_loss(
        outputs["logits"],
        labels,
        _label_rng(labels),
        step=bcl["step"],
        alpha=bcl["alpha"],
        beta=bcl["beta"],
        nms_window=bcl["nms_window"],
        tau=bcl["tau"],
        min_kept_fraction=bcl["min_kept_fraction"],
        random_phase=bcl["random_phase"],
        target=bcl["target"],
        class_weights=get(loss_cfg, "class_weights") or None,
        ignore_label=get(loss_cfg, "ignore_label", IGNORE_LABEL),
    )


def _replaces_ohem(cfg) -> float:
    bcl = settings(cfg, "bcl")
    return 1.0 if bcl["weight"] and bcl["replaces_ohem"] else 0.0


@register_loss_term("main_ce", consumes=("logits",), weight=_replaces_ohem, replaces="main")
def main_ce_term(outputs: Mapping[str, jax.Array], labels: jax.Array, loss_cfg: Any):
    """BCL taking over hard-pixel mining on the main head: plain CE there, OHEM stays on aux."""
    return pixel_loss(outputs["logits"], labels, loss_cfg, name="ce")
