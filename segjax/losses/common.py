"""Pieces every loss term shares: the valid-pixel mask, weighted per-pixel CE, logit resizing
and settings lookup.

Everything takes NHWC logits and (N, H, W) integer labels, computes in float32 (float64 for
float64 logits) whatever the logit dtype, and keeps static shapes (masks instead of boolean
indexing) so it runs inside one jitted train step over a batch sharded across devices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from data_pipelines.metadata import IGNORE_LABEL

__all__ = ["IGNORE_LABEL", "class_weight_array", "get", "loss_dtype", "pixel_terms",
           "pixelwise_cross_entropy", "safe_ratio", "upsample_logits", "valid_mask"]


def get(cfg: Any, name: str, default: Any = None) -> Any:
    """Field access that works for ConfigDict, dataclasses and plain dicts alike."""
    if isinstance(cfg, Mapping):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def loss_dtype(logits: jax.Array) -> Any:
    """float32, or float64 for float64 logits: bfloat16 logits are widened before the loss."""
    return jnp.promote_types(logits.dtype, jnp.float32)


def valid_mask(labels: jax.Array, num_classes: int | None = None,
               ignore_label: int = IGNORE_LABEL) -> jax.Array:
    """Pixels that count: label >= 0, not `ignore_label` and (given `num_classes`) below it."""
    valid = (labels >= 0) & (labels != ignore_label)
    if num_classes is not None:
        valid = valid & (labels < num_classes)
    return valid


def upsample_logits(logits: jax.Array, size: Sequence[int]) -> jax.Array:
    """Bilinear resize of NHWC logits to `size` = (H, W).

    jax.image.resize's 'bilinear' samples at half-pixel centres, which is PyTorch's
    align_corners=False; for upsampling its antialiasing is a no-op, so results match
    F.interpolate(mode='bilinear', align_corners=False).
    """
    height, width = int(size[0]), int(size[1])
    if logits.shape[1:3] == (height, width):
        return logits
    shape = (logits.shape[0], height, width, logits.shape[3])
    return jax.image.resize(logits, shape, method="bilinear")


def class_weight_array(class_weights, num_classes: int, dtype) -> jax.Array | None:
    """The weights as float32 values (like the official torch.FloatTensor) in `dtype`."""
    if class_weights is None or len(class_weights) == 0:
        return None
    weights = jnp.asarray(class_weights, jnp.float32).astype(dtype)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights has shape {weights.shape}, logits have {num_classes} classes"
        )
    return weights


def safe_ratio(numerator, denominator):
    """numerator / denominator, or 0 when the denominator is 0, without NaN gradients."""
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def pixel_terms(logits, labels, class_weights=None, ignore_label=IGNORE_LABEL):
    """Per pixel: weighted CE, weight (0 where invalid), validity and log p(gt)."""
    num_classes = logits.shape[-1]
    valid = valid_mask(labels, num_classes, ignore_label)
    safe_labels = jnp.where(valid, labels, 0).astype(jnp.int32)
    log_probs = jax.nn.log_softmax(logits.astype(loss_dtype(logits)), axis=-1)
    gt_log_prob = jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    weights = class_weight_array(class_weights, num_classes, gt_log_prob.dtype)
    pixel_weight = valid.astype(gt_log_prob.dtype)
    if weights is not None:
        pixel_weight = pixel_weight * weights[safe_labels]
    return -gt_log_prob * pixel_weight, pixel_weight, valid, gt_log_prob


def pixelwise_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    class_weights: Sequence[float] | None = None,
    ignore_label: int = IGNORE_LABEL,
) -> tuple[jax.Array, jax.Array]:
    """Per-pixel (class-weighted) CE, (N, H, W), and the mask of pixels that count.

    Invalid pixels get loss 0. This is the building block the other losses reduce in their
    own way.
    """
    loss, _, valid, _ = pixel_terms(logits, labels, class_weights, ignore_label)
    return loss, valid
