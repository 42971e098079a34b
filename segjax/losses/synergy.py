"""Losses of the multi-scale synergy model: the fused two-scale map and per-scale CE.

The paper only says "cross-entropy" on the fused map S of its Eq. 1, which is not a
normalised distribution, so `loss.synergy.kind` picks a reading:

- "renormalised" (default): −log(S_y / Σ_c S). The synergy model's `logits` are
  log(S / Σ_c S), so this is the configured main loss (CE, or OHEM) on them and needs no
  term of its own.
- "noisy_or": −log S_y, the likelihood of S read as a per-class probabilistic OR.
- "softmax": CE on S taken as logits, i.e. NVIDIA's criterion applied unchanged to the
  fused probabilities. Badly scaled: with S in [0, 1] it cannot fall below
  log(e + C − 1) − 1 (≈ 2.03 for 19 classes).

The last two replace the main term. `loss.synergy.scale_aux_weight` > 0 adds w·Σ_s CE(z_s) on each
scale's own logits (NVIDIA's `SUPERVISED_MSCALE_WT`, 0.05 in its Cityscapes recipe).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from segjax.losses.ce import pixel_loss
from segjax.losses.common import (
    IGNORE_LABEL,
    class_weight_array,
    get,
    loss_dtype,
    safe_ratio,
    upsample_logits,
    valid_mask,
)
from segjax.losses.registry import (
    register_inspection_output,
    register_loss_term,
    register_settings,
    settings,
)

SYNERGY_LOSSES = ("renormalised", "noisy_or", "softmax")


def noisy_or_nll(
    fused_probs: jax.Array,
    labels: jax.Array,
    *,
    class_weights: Sequence[float] | None = None,
    ignore_label: int = IGNORE_LABEL,
) -> jax.Array:
    """Mean −log S_y over valid pixels, normalised like `cross_entropy`.

    S is floored at the smallest normal float, so a pixel both scales rule out costs about
    87 instead of infinity.
    """
    dtype = loss_dtype(fused_probs)
    probs = upsample_logits(fused_probs.astype(dtype), labels.shape[1:3])
    num_classes = probs.shape[-1]
    valid = valid_mask(labels, num_classes, ignore_label)
    safe = jnp.where(valid, labels, 0).astype(jnp.int32)
    gt_prob = jnp.take_along_axis(probs, safe[..., None], axis=-1)[..., 0]
    nll = -jnp.log(jnp.maximum(gt_prob, jnp.finfo(dtype).tiny))
    weight = valid.astype(dtype)
    class_weight = class_weight_array(class_weights, num_classes, dtype)
    if class_weight is not None:
        weight = weight * class_weight[safe]
    return safe_ratio(jnp.sum(nll * weight), jnp.sum(weight))


# The attention fusion's per-pixel weight map trains through the fused loss.
register_inspection_output("attention")
register_settings("synergy", {
    "kind": "renormalised",  # renormalised | noisy_or | softmax
    "scale_aux_weight": 0.0,  # CE on each scale's own logits; 0 = off
})


def fused_loss(fused_probs: jax.Array, labels: jax.Array, kind: str, loss_cfg: Any) -> jax.Array:
    """The fused-map loss `kind` ("noisy_or" or "softmax") with the config's class weights."""
    if kind == "noisy_or":
        return noisy_or_nll(fused_probs, labels,
                            class_weights=get(loss_cfg, "class_weights") or None,
                            ignore_label=get(loss_cfg, "ignore_label", IGNORE_LABEL))
    if kind == "softmax":
        return pixel_loss(fused_probs, labels, loss_cfg, name="ce")
    raise ValueError(f"fused_loss kind must be 'noisy_or' or 'softmax', got {kind!r}")


def _fused_weight(loss_cfg: Any) -> float:
    kind = settings(loss_cfg, "synergy")["kind"]
    if kind not in SYNERGY_LOSSES:
        raise ValueError(f"config.loss.synergy.kind={kind!r}; choose one of "
                         f"{', '.join(SYNERGY_LOSSES)}")
    return 0.0 if kind == "renormalised" else 1.0


@register_loss_term(
    "synergy", consumes=("fused_probs",), weight=_fused_weight, replaces="main", by_product=True,
    hint="the noisy_or and softmax readings need a probability fusion "
         "(--config.model.kwargs.fusion=prob or mask); the logit fusions train with "
         "--config.loss.synergy.kind=renormalised, plain CE on their fused logits")
def synergy_term(outputs: Mapping[str, Any], labels: jax.Array, loss_cfg: Any):
    """The fused-map loss when the reading is not the renormalised NLL (which `main` is)."""
    kind = settings(loss_cfg, "synergy")["kind"]
    return fused_loss(outputs["fused_probs"], labels, kind, loss_cfg)


@register_loss_term(
    "scale_aux", consumes=("scale_logits",), by_product=True,
    weight=lambda cfg: settings(cfg, "synergy")["scale_aux_weight"],
    hint="--config.loss.synergy.scale_aux_weight needs the multi-scale synergy model")
def scale_aux_term(outputs: Mapping[str, Any], labels: jax.Array, loss_cfg: Any):
    """Σ over scales of the configured pixel loss on that scale's logits."""
    return sum(pixel_loss(z, labels, loss_cfg) for z in outputs["scale_logits"])
