"""Cross-entropy losses for the main and aux heads: class-weighted CE, HRNet-style OHEM
(DDRNet, BCMFNet) and per-image bootstrapped CE (FC-HarDNet, FASSD-Net)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from segjax.losses.common import (
    IGNORE_LABEL,
    get,
    loss_dtype,
    pixel_terms,
    safe_ratio,
    upsample_logits,
)
from segjax.losses.registry import register_loss_term, register_settings, settings


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    class_weights: Sequence[float] | None = None,
    ignore_label: int = IGNORE_LABEL,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Mean CE normalised like PyTorch's CrossEntropyLoss(weight, ignore_index, 'mean').

    The sum of weighted losses is divided by the summed class weights of the valid pixels, not
    by their count. `weights` (N,) scales whole examples, so padded examples (weight 0) drop
    out of both sums. With no valid pixel the loss is 0 rather than PyTorch's NaN.
    """
    loss, pixel_weight, _, _ = pixel_terms(logits, labels, class_weights, ignore_label)
    if weights is not None:
        example_weight = jnp.asarray(weights, loss.dtype)[:, None, None]
        loss = loss * example_weight
        pixel_weight = pixel_weight * example_weight
    return safe_ratio(jnp.sum(loss), jnp.sum(pixel_weight))


def scaled_min_kept(min_kept_per_gpu: int, per_gpu_batch: int, global_batch: int) -> int:
    """OHEM's min_kept for a global batch, from a recipe that states it per GPU batch.

    HRNet/DDRNet apply OHEM separately on each GPU's batch; we apply it once to the global
    batch (sharded over devices inside one jitted loss), so the floor scales with the number
    of per-GPU batches merged: 131072 at 6 per GPU becomes 262144 for a global batch of 12.
    """
    if per_gpu_batch <= 0 or global_batch <= 0:
        raise ValueError("batch sizes must be positive")
    return int(round(min_kept_per_gpu * global_batch / per_gpu_batch))


def ohem_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    thresh: float = 0.9,
    min_kept: int = 131072,
    class_weights: Sequence[float] | None = None,
    ignore_label: int = IGNORE_LABEL,
    groups: int = 1,
) -> jax.Array:
    """Online hard example mining CE, as in HRNet's OhemCrossEntropy (used by DDRNet).

    Pixels whose ground-truth probability is below max(p_(k), thresh) are kept, where p_(k) is
    the k-th smallest p_gt among valid pixels and k = min(min_kept, n_valid - 1); the result
    is the plain mean of their class-weighted losses (not weight-normalised, unlike CE).
    `min_kept` applies to the whole batch given here: see `scaled_min_kept`.

    The k-th smallest value only matters when fewer than k + 1 valid pixels have p_gt <= thresh,
    so the full sort is skipped otherwise; it is costly on large sharded batches. min_kept is
    floored at 1 as in HRNet. With no valid or no kept pixel the loss is 0 (HRNet: NaN).

    `groups` > 1 cuts the batch into that many consecutive groups, selects within each with
    this `min_kept` and averages the group losses: HRNet's loss on each GPU's batch,
    averaged over GPUs by data parallelism.
    """
    if groups > 1:
        if logits.shape[0] % groups:
            raise ValueError(f"OHEM over {groups} groups needs a batch divisible by {groups}, "
                             f"got {logits.shape[0]}")
        size = logits.shape[0] // groups
        return jnp.mean(jnp.stack([
            ohem_cross_entropy(logits[i * size:(i + 1) * size], labels[i * size:(i + 1) * size],
                               thresh=thresh, min_kept=min_kept, class_weights=class_weights,
                               ignore_label=ignore_label)
            for i in range(groups)]))
    loss, _, valid, gt_log_prob = pixel_terms(logits, labels, class_weights, ignore_label)
    prob = jax.lax.stop_gradient(jnp.exp(gt_log_prob))
    num_valid = jnp.sum(valid, dtype=jnp.int32)
    kth = jnp.clip(jnp.minimum(max(int(min_kept), 1), num_valid - 1), 0, prob.size - 1)
    thresh = jnp.asarray(thresh, prob.dtype)

    def kth_smallest_valid_prob():
        masked = jnp.where(valid, prob, jnp.inf).ravel()
        return jnp.take(jnp.sort(masked), kth)

    enough_below_thresh = jnp.sum(valid & (prob <= thresh), dtype=jnp.int32) > kth
    threshold = jax.lax.cond(
        enough_below_thresh, lambda: thresh, lambda: jnp.maximum(kth_smallest_valid_prob(), thresh)
    )
    kept = valid & (prob < threshold)
    return safe_ratio(jnp.sum(jnp.where(kept, loss, 0.0)), jnp.sum(kept, dtype=loss.dtype))


def bootstrapped_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    thresh: float = 0.3,
    min_kept: int = 4096,
    class_weights: Sequence[float] | None = None,
    ignore_label: int = IGNORE_LABEL,
) -> jax.Array:
    """Per-image bootstrapped CE, FC-HarDNet's and FASSD-Net's `bootstrapped_cross_entropy2d`.

    For each image, over all H·W pixels (ignored ones take part with loss 0, as in the
    original sort): if more than `min_kept` pixel losses exceed `thresh`, their mean;
    otherwise the mean of the `min_kept` largest losses, divided by `min_kept` even when some
    are 0. The batch loss is the mean over images. `thresh` is on the CE itself (0.3 keeps
    pixels with p(gt) < e^-0.3 ≈ 0.74). An image of at most `min_kept` pixels averages all
    of them. Unlike OHEM the floor is per image, so no rescaling with the batch is needed.
    The top-k only runs when some image has too few losses above the threshold.
    """
    if int(min_kept) < 1:
        raise ValueError(f"bootstrap min_kept must be >= 1, got {min_kept!r}")
    loss, _, _, _ = pixel_terms(logits, labels, class_weights, ignore_label)
    loss = loss.reshape(loss.shape[0], -1)
    if int(min_kept) >= loss.shape[1]:
        return jnp.mean(loss)
    above = loss > jnp.asarray(thresh, loss.dtype)
    num_above = jnp.sum(above, axis=1, dtype=loss.dtype)
    mean_above = safe_ratio(jnp.sum(jnp.where(above, loss, 0.0), axis=1), num_above)
    use_above = num_above > min_kept  # sorted_loss[min_kept] > thresh
    top_mean = jax.lax.cond(
        jnp.all(use_above),
        lambda: jnp.zeros(loss.shape[:1], loss.dtype),
        lambda: jnp.mean(jax.lax.top_k(loss, int(min_kept))[0], axis=1),
    )
    return jnp.mean(jnp.where(use_above, mean_above, top_mean))


register_settings("ohem", {
    "thresh": 0.9,
    # DDRNet keeps at least 131072 pixels per GPU batch of 6 images.
    "min_kept": 131072,
    "min_kept_batch": 6,
    # "group": select within each group of min_kept_batch images and average the groups
    # (HRNet's loss per GPU; the global batch must be a multiple of it). "global": select
    # once over the global batch with min_kept scaled by global_batch_size / min_kept_batch.
    "scope": "global",
    # Filled by `for_global_batch` from scope: the number of groups selected separately.
    "groups": 1,
})
# The mean of the pixel losses above `thresh` if more than `min_kept` exceed it, else of the
# top `min_kept`, per image.
register_settings("bootstrap", {"thresh": 0.3, "min_kept": 4096})
register_settings("aux", {"weight": 0.0})  # 0 = off; DDRNet's recipes use 0.4

MAIN_LOSSES = ("ce", "ohem", "bootstrap")
OHEM_SCOPES = ("group", "global")


def pixel_loss(logits: jax.Array, labels: jax.Array, loss_cfg: Any, name: str | None = None
               ) -> jax.Array:
    """The configured head loss (`config.loss.name`, or `name`) at label resolution."""
    logits = upsample_logits(logits.astype(loss_dtype(logits)), labels.shape[1:3])
    name = name or get(loss_cfg, "name", "ce")
    class_weights = get(loss_cfg, "class_weights") or None
    ignore_label = get(loss_cfg, "ignore_label", IGNORE_LABEL)
    if name == "ce":
        return cross_entropy(logits, labels, class_weights=class_weights, ignore_label=ignore_label)
    if name == "ohem":
        ohem = settings(loss_cfg, "ohem")
        return ohem_cross_entropy(logits, labels, thresh=ohem["thresh"],
                                  min_kept=ohem["min_kept"], class_weights=class_weights,
                                  ignore_label=ignore_label, groups=ohem["groups"])
    if name == "bootstrap":
        boot = settings(loss_cfg, "bootstrap")
        return bootstrapped_cross_entropy(logits, labels, thresh=boot["thresh"],
                                          min_kept=boot["min_kept"],
                                          class_weights=class_weights, ignore_label=ignore_label)
    raise ValueError(f"config.loss.name={name!r}; choose one of "
                     f"{', '.join(repr(n) for n in MAIN_LOSSES)}")


def for_global_batch(loss_cfg: Any, global_batch_size: int) -> ml_collections.FrozenConfigDict:
    """The loss config with OHEM's selection laid over the global batch (see `ohem.scope`):
    what the train step uses."""
    cfg = loss_cfg.to_dict() if hasattr(loss_cfg, "to_dict") else dict(loss_cfg)
    ohem = settings(cfg, "ohem")
    scope, per_batch = ohem["scope"], int(ohem["min_kept_batch"])
    if scope not in OHEM_SCOPES:
        raise ValueError(f"config.loss.ohem.scope={scope!r}; choose one of {OHEM_SCOPES}")
    if per_batch <= 0:
        raise ValueError(f"config.loss.ohem.min_kept_batch={per_batch}; it must be positive")
    if scope == "group":
        if global_batch_size % per_batch and get(cfg, "name") == "ohem":
            raise ValueError(
                f"config.loss.ohem.scope='group' cuts the global batch into groups of "
                f"config.loss.ohem.min_kept_batch={per_batch} images, but "
                f"config.global_batch_size={global_batch_size} is not a multiple of "
                f"it; change either, or set config.loss.ohem.scope='global'.")
        ohem["groups"] = max(global_batch_size // per_batch, 1)
    else:
        ohem["groups"] = 1
        ohem["min_kept"] = scaled_min_kept(ohem["min_kept"], per_batch, global_batch_size)
    cfg["ohem"] = ohem
    cfg["class_weights"] = tuple(cfg.get("class_weights") or ())
    return ml_collections.FrozenConfigDict(cfg)


@register_loss_term("main", consumes=("logits",), weight=lambda cfg: 1.0)
def main_term(outputs, labels, loss_cfg):
    return pixel_loss(outputs["logits"], labels, loss_cfg)


@register_loss_term(
    "aux", consumes=("aux_logits",), weight=lambda cfg: settings(cfg, "aux")["weight"],
    hint="set --config.loss.aux.weight (0.4 in the DDRNet recipes) and "
         "--config.model.kwargs.aux_head together")
def aux_term(outputs, labels, loss_cfg):
    return pixel_loss(outputs["aux_logits"], labels, loss_cfg)
