"""Segmentation metrics from an integer confusion matrix built on device.

Counting happens inside the jitted eval step: under jit over a batch-sharded global array the
sum is global by construction, so no pixels are gathered. The host only sees a (C, C) matrix,
accumulated exactly in int64, and derives IoU from it once at the end of evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.metadata import IGNORE_LABEL
from segjax.losses.common import valid_mask

INT32_MAX = 2**31 - 1


def confusion_matrix(
    pred: jax.Array,
    labels: jax.Array,
    num_classes: int,
    *,
    ignore_label: int = IGNORE_LABEL,
    mask: jax.Array | None = None,
) -> jax.Array:
    """int32 (C, C) counts, rows = ground truth, columns = prediction.

    Only pixels with 0 <= label < C and label != ignore_label count, so 255 and any other
    stray value (e.g. an unmapped id) are dropped rather than crashing or landing in a class.
    `mask` (N,) drops whole examples, e.g. the padding that makes eval batches equal-sized.
    `pred` must be class indices in [0, C), as argmax gives.

    Uses bincount into C*C bins with invalid pixels sent to an out-of-range bin that bincount
    drops: on CPU this is ~35x faster than a one-hot matmul for an (8, 360, 480) batch.
    """
    valid = valid_mask(labels, num_classes, ignore_label)
    if mask is not None:
        valid = valid & jnp.asarray(mask, bool).reshape((-1,) + (1,) * (labels.ndim - 1))
    index = num_classes * labels.astype(jnp.int32) + pred.astype(jnp.int32)
    index = jnp.where(valid, index, num_classes * num_classes)
    counts = jnp.bincount(index.ravel(), length=num_classes * num_classes)
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


class ConfusionAccumulator:
    """Sums per-batch device confusion matrices on device, exactly, over a whole eval run.

    Device matrices are int32 (int64 needs jax x64), so they are folded into a host int64
    total before any cell could pass `max_count`. `num_pixels` passed to `add` is an upper
    bound on what the batch counted (N*H*W is fine) and is known on the host, so deciding
    when to flush never waits on the device.
    """

    def __init__(self, num_classes: int, *, max_count: int = INT32_MAX):
        self.num_classes = num_classes
        self.max_count = max_count
        self.num_flushes = 0
        self._total = np.zeros((num_classes, num_classes), np.int64)
        self._pending: jax.Array | None = None
        self._pending_pixels = 0

    def add(self, cm: jax.Array, num_pixels: int) -> None:
        if num_pixels > self.max_count:
            raise ValueError(f"one batch of {num_pixels} pixels can overflow an int32 matrix")
        if self._pending_pixels + num_pixels > self.max_count:
            self._flush()
        self._pending = cm if self._pending is None else self._pending + cm
        self._pending_pixels += num_pixels

    def _flush(self) -> None:
        if self._pending is not None:
            self._total += np.asarray(self._pending).astype(np.int64)
            self.num_flushes += 1
        self._pending = None
        self._pending_pixels = 0

    def result(self) -> np.ndarray:
        self._flush()
        return self._total.copy()


def _ratio_or_nan(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """nanmean that returns NaN, without a warning, when everything is NaN."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def compute_iou(cm: np.ndarray) -> dict:
    """Per-class IoU and accuracy, mIoU, pixel and mean accuracy, in float64.

    IoU is NaN for a class absent from both labels and predictions, so it does not enter
    the mIoU; a class only ever predicted gets IoU 0 and does pull the mean down. Per-class
    accuracy (recall) is NaN for classes absent from the labels.
    """
    cm = np.asarray(cm, np.float64)
    true_positive = np.diag(cm)
    label_count = cm.sum(axis=1)
    pred_count = cm.sum(axis=0)
    iou = _ratio_or_nan(true_positive, label_count + pred_count - true_positive)
    acc = _ratio_or_nan(true_positive, label_count)
    total = cm.sum()
    return {
        "iou": iou,
        "acc": acc,
        "miou": _nanmean(iou),
        "pixel_acc": float(true_positive.sum() / total) if total > 0 else float("nan"),
        "mean_acc": _nanmean(acc),
    }


def _check_names(result: dict, class_names: Sequence[str]) -> None:
    if len(class_names) != len(result["iou"]):
        raise ValueError(f"{len(class_names)} class names for {len(result['iou'])} classes")


def _percent(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.2f}"


def format_table(result: dict, class_names: Sequence[str]) -> str:
    """Per-class IoU/accuracy table in percent, NaN as 'n/a', ending with the summary line."""
    _check_names(result, class_names)
    width = max([len("class"), *map(len, class_names)])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
    for name, iou, acc in zip(class_names, result["iou"], result["acc"]):
        lines.append(f"{name:<{width}}  {_percent(iou):>6}  {_percent(acc):>6}")
    lines.append(
        f"mIoU {_percent(result['miou'])}  pixel acc {_percent(result['pixel_acc'])}"
        f"  mean acc {_percent(result['mean_acc'])}"
    )
    return "\n".join(lines)


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def metrics_to_dict(result: dict, class_names: Sequence[str]) -> dict[str, float | None]:
    """Flat fractions for JSON and TensorBoard: `iou/<class>`, `miou`, `pixel_acc`, `mean_acc`.

    NaN becomes None so the dict serialises as valid JSON; writers should skip None values.
    """
    _check_names(result, class_names)
    flat = {f"iou/{name}": _json_float(v) for name, v in zip(class_names, result["iou"])}
    for key in ("miou", "pixel_acc", "mean_acc"):
        flat[key] = _json_float(result[key])
    return flat
