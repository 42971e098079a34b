"""Losses of the multi-scale synergy model: the fused two-scale map and per-scale CE.

The paper only says "cross-entropy" on the fused map S of its Eq. 1, which is not a
normalised distribution, so `loss.synergy_loss` picks a reading (spec §8.2):

- "renormalised" (default): −log(S_y / Σ_c S). The synergy model's `logits` are
  log(S / Σ_c S), so this is the configured main loss (CE, or OHEM) on them and needs no
  term of its own.
- "noisy_or": −log S_y, the likelihood of S read as a per-class probabilistic OR.
- "softmax": CE on S taken as logits, i.e. NVIDIA's criterion applied unchanged to the
  fused probabilities. Badly scaled: with S in [0, 1] it cannot fall below
  log(e + C − 1) − 1 (≈ 2.03 for 19 classes).

The last two replace the main term. `loss.scale_aux_weight` > 0 adds w·Σ_s CE(z_s) on each
scale's own logits (NVIDIA's `SUPERVISED_MSCALE_WT`, 0.05 in its Cityscapes recipe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from segjax import losses

SYNERGY_LOSSES = ("renormalised", "noisy_or", "softmax")


def noisy_or_nll(
    fused_probs: jax.Array,
    labels: jax.Array,
    *,
    class_weights: Sequence[float] | None = None,
    ignore_label: int = losses.IGNORE_LABEL,
) -> jax.Array:
    """Mean −log S_y over valid pixels, normalised like `losses.cross_entropy`.

    S is floored at the smallest normal float, so a pixel both scales rule out costs about
    87 instead of infinity.
    """
    dtype = losses.loss_dtype(fused_probs)
    probs = losses.upsample_logits(fused_probs.astype(dtype), labels.shape[1:3])
    num_classes = probs.shape[-1]
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    safe = jnp.where(valid, labels, 0).astype(jnp.int32)
    gt_prob = jnp.take_along_axis(probs, safe[..., None], axis=-1)[..., 0]
    nll = -jnp.log(jnp.maximum(gt_prob, jnp.finfo(dtype).tiny))
    weight = valid.astype(dtype)
    class_weight = losses._class_weight_array(class_weights, num_classes, dtype)
    if class_weight is not None:
        weight = weight * class_weight[safe]
    return losses._safe_ratio(jnp.sum(nll * weight), jnp.sum(weight))


def fused_loss(fused_probs: jax.Array, labels: jax.Array, kind: str, loss_cfg: Any) -> jax.Array:
    """The fused-map loss `kind` ("noisy_or" or "softmax") with the config's class weights."""
    get = losses._cfg_get
    class_weights = get(loss_cfg, "class_weights") or None
    ignore_label = get(loss_cfg, "ignore_label", losses.IGNORE_LABEL)
    if kind == "noisy_or":
        return noisy_or_nll(fused_probs, labels, class_weights=class_weights,
                            ignore_label=ignore_label)
    if kind == "softmax":
        return losses.pixel_loss(fused_probs, labels, loss_cfg, name="ce")
    raise ValueError(f"fused_loss kind must be 'noisy_or' or 'softmax', got {kind!r}")


def _synergy_kind(loss_cfg: Any) -> str:
    kind = losses._cfg_get(loss_cfg, "synergy_loss", "renormalised")
    if kind not in SYNERGY_LOSSES:
        raise ValueError(f"config.loss.synergy_loss={kind!r}; choose one of "
                         f"{', '.join(SYNERGY_LOSSES)}")
    return kind


@losses.register_loss_term("synergy", replaces="main")
def _synergy_term(outputs: Mapping[str, Any], labels: jax.Array, loss_cfg: Any):
    """The fused-map loss when `synergy_loss` is not the renormalised NLL (which `main` is)."""
    kind = _synergy_kind(loss_cfg)
    if kind == "renormalised" or outputs.get("scale_logits") is None:
        return None
    if outputs.get("fused_probs") is None:
        raise ValueError(f"config.loss.synergy_loss={kind!r} needs a probability fusion "
                         "(fusion='prob' or 'mask'); the logit fusions are trained with "
                         "synergy_loss='renormalised', plain CE on their fused logits")
    return fused_loss(outputs["fused_probs"], labels, kind, loss_cfg), 1.0


@losses.register_loss_term("scale_aux")
def _scale_aux_term(outputs: Mapping[str, Any], labels: jax.Array, loss_cfg: Any):
    """w · Σ over scales of the configured pixel loss on that scale's logits."""
    weight = losses._cfg_get(loss_cfg, "scale_aux_weight", 0.0)
    scale_logits = outputs.get("scale_logits")
    if not weight or scale_logits is None:
        return None
    value = sum(losses.pixel_loss(z, labels, loss_cfg) for z in scale_logits)
    return value, float(weight)
