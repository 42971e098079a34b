"""Segmentation losses: class-weighted cross-entropy, HRNet-style OHEM, per-image bootstrapped CE
and the aux-head sum.

Everything takes NHWC logits and (N, H, W) integer labels, computes in float32 (float64 for
float64 logits) whatever the logit dtype, and keeps static shapes (masks instead of boolean
indexing) so it can run inside one jitted train step over a batch sharded across devices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

IGNORE_LABEL = 255


def loss_dtype(logits: jax.Array) -> Any:
    """float32, or float64 for float64 logits: bfloat16 logits are widened before the loss."""
    return jnp.promote_types(logits.dtype, jnp.float32)


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


def _class_weight_array(class_weights, num_classes: int, dtype) -> jax.Array | None:
    """The weights as float32 values (like the official torch.FloatTensor) in `dtype`."""
    if class_weights is None or len(class_weights) == 0:
        return None
    weights = jnp.asarray(class_weights, jnp.float32).astype(dtype)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights has shape {weights.shape}, logits have {num_classes} classes"
        )
    return weights


def _gt_log_prob(logits, labels, ignore_label):
    """log p(gt) per pixel, the validity mask, and labels made safe for gathering."""
    num_classes = logits.shape[-1]
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    safe_labels = jnp.where(valid, labels, 0).astype(jnp.int32)
    log_probs = jax.nn.log_softmax(logits.astype(loss_dtype(logits)), axis=-1)
    gt_log_prob = jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    return gt_log_prob, valid, safe_labels


def _pixel_terms(logits, labels, class_weights, ignore_label):
    """Weighted per-pixel CE, each pixel's weight (0 where invalid), validity, p(gt)."""
    gt_log_prob, valid, safe_labels = _gt_log_prob(logits, labels, ignore_label)
    weights = _class_weight_array(class_weights, logits.shape[-1], gt_log_prob.dtype)
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

    A pixel is valid when its label is in [0, C) and is not `ignore_label`; invalid pixels
    get loss 0. This is the building block the other losses reduce in their own way.
    """
    loss, _, valid, _ = _pixel_terms(logits, labels, class_weights, ignore_label)
    return loss, valid


def _safe_ratio(numerator, denominator):
    """numerator / denominator, or 0 when the denominator is 0, without NaN gradients."""
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


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
    loss, pixel_weight, _, _ = _pixel_terms(logits, labels, class_weights, ignore_label)
    if weights is not None:
        example_weight = jnp.asarray(weights, loss.dtype)[:, None, None]
        loss = loss * example_weight
        pixel_weight = pixel_weight * example_weight
    return _safe_ratio(jnp.sum(loss), jnp.sum(pixel_weight))


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
    loss, _, valid, gt_log_prob = _pixel_terms(logits, labels, class_weights, ignore_label)
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
    return _safe_ratio(jnp.sum(jnp.where(kept, loss, 0.0)), jnp.sum(kept, dtype=loss.dtype))


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
    loss, _, _, _ = _pixel_terms(logits, labels, class_weights, ignore_label)
    loss = loss.reshape(loss.shape[0], -1)
    if int(min_kept) >= loss.shape[1]:
        return jnp.mean(loss)
    above = loss > jnp.asarray(thresh, loss.dtype)
    num_above = jnp.sum(above, axis=1, dtype=loss.dtype)
    mean_above = _safe_ratio(jnp.sum(jnp.where(above, loss, 0.0), axis=1), num_above)
    use_above = num_above > min_kept  # sorted_loss[min_kept] > thresh
    top_mean = jax.lax.cond(
        jnp.all(use_above),
        lambda: jnp.zeros(loss.shape[:1], loss.dtype),
        lambda: jnp.mean(jax.lax.top_k(loss, int(min_kept))[0], axis=1),
    )
    return jnp.mean(jnp.where(use_above, mean_above, top_mean))


def _cfg_get(cfg: Any, name: str, default: Any = None) -> Any:
    """Field access that works for ConfigDict, dataclasses and plain dicts alike."""
    if isinstance(cfg, Mapping):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def pixel_loss(
    logits: jax.Array, labels: jax.Array, loss_cfg: Any, name: str | None = None
) -> jax.Array:
    """The configured per-head loss ('ce', 'ohem' or 'bootstrap', or `name` if given) at label
    resolution."""
    logits = upsample_logits(logits.astype(loss_dtype(logits)), labels.shape[1:3])
    name = name or _cfg_get(loss_cfg, "name", "ce")
    class_weights = _cfg_get(loss_cfg, "class_weights") or None
    ignore_label = _cfg_get(loss_cfg, "ignore_label", IGNORE_LABEL)
    if name == "ce":
        return cross_entropy(logits, labels, class_weights=class_weights, ignore_label=ignore_label)
    if name == "ohem":
        return ohem_cross_entropy(
            logits,
            labels,
            thresh=_cfg_get(loss_cfg, "ohem_thresh", 0.9),
            min_kept=_cfg_get(loss_cfg, "ohem_min_kept", 131072),
            class_weights=class_weights,
            ignore_label=ignore_label,
            groups=_cfg_get(loss_cfg, "ohem_groups", 1),
        )
    if name == "bootstrap":
        return bootstrapped_cross_entropy(
            logits,
            labels,
            thresh=_cfg_get(loss_cfg, "bootstrap_thresh", 0.3),
            min_kept=_cfg_get(loss_cfg, "bootstrap_min_kept", 4096),
            class_weights=class_weights,
            ignore_label=ignore_label,
        )
    raise ValueError(f"unknown loss name {name!r}; expected 'ce', 'ohem' or 'bootstrap'")


LossTerm = Callable[[Mapping[str, jax.Array], jax.Array, Any], tuple[jax.Array, float] | None]
LOSS_TERMS: dict[str, LossTerm] = {}
# term -> the term it stands in for whenever it applies.
REPLACED_TERMS: dict[str, str] = {}


def register_loss_term(name: str, *, replaces: str | None = None
                       ) -> Callable[[LossTerm], LossTerm]:
    """Add a term to `segmentation_loss`, logged as `loss/<name>`.

    A term maps (outputs, labels, loss_cfg) to (value, weight), or to None when the model
    does not produce the output it needs; that is how heads such as boundary branches plug in
    without touching the models that lack them. With `replaces`, the named term is dropped
    whenever this one applies: for losses that redefine the main objective, not add to it.
    """

    def register(fn: LossTerm) -> LossTerm:
        if name in LOSS_TERMS:
            raise ValueError(f"loss term {name!r} is already registered")
        LOSS_TERMS[name] = fn
        if replaces is not None:
            REPLACED_TERMS[name] = replaces
        return fn

    return register


@register_loss_term("main")
def _main_term(outputs, labels, loss_cfg):
    # BCL (segjax.bcl) can take over hard-pixel mining from OHEM on the main head.
    replaced = _cfg_get(loss_cfg, "bcl_weight") and _cfg_get(loss_cfg, "bcl_replaces_ohem", False)
    return pixel_loss(outputs["logits"], labels, loss_cfg, name="ce" if replaced else None), 1.0


@register_loss_term("aux")
def _aux_term(outputs, labels, loss_cfg):
    if outputs.get("aux_logits") is None:
        return None
    weight = _cfg_get(loss_cfg, "aux_weight", 0.4)
    return pixel_loss(outputs["aux_logits"], labels, loss_cfg), weight


def segmentation_loss(
    outputs: Mapping[str, jax.Array], labels: jax.Array, loss_cfg: Any
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted sum of every applicable registered term (main + aux_weight * aux by default).

    Logits at lower resolution are upsampled to the labels first. Returns the total and the
    unweighted term values keyed `loss/<term>` for logging.
    """
    total = 0.0
    terms = {}
    results = {name: term(outputs, labels, loss_cfg) for name, term in LOSS_TERMS.items()}
    for name, replaced in REPLACED_TERMS.items():
        if results.get(name) is not None:
            results[replaced] = None
    for name, result in results.items():
        if result is None:
            continue
        value, weight = result
        terms[f"loss/{name}"] = value
        total = total + weight * value
    return total, terms


# Terms defined in their own modules register on import; they import this module first.
from segjax import bcl as _bcl  # noqa: E402, F401
from segjax import cbs as _cbs  # noqa: E402, F401
from segjax import synergy_loss as _synergy_loss  # noqa: E402, F401
