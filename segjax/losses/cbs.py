"""Class Boundary Supervision (MSFNet): class-boundary labels at 1/8 and their CE loss term.

The paper defines a pixel as a boundary pixel when some pixel within distance ε has another
class, labels boundary pixels with their class and everything else 0, and computes the loss
directly at 1/8 (upsampled supervision scored worse). The details it leaves open are
decided as follows:

- 1/8 labels: the centre sample of each 8×8 block (row 8i+4, col 8j+4). The map has the
  boundary logits' size ceil(H/8) × ceil(W/8); a last, partial block of n < 8 rows (or
  columns) is sampled at its own centre, offset n//2.
- Neighbourhood: in-bounds pixels within Chebyshev distance ε (a (2ε+1)² window). Only valid
  neighbours of another class make a boundary; ignore neighbours do too when
  `ignore_makes_boundary` is set. Ignore pixels stay ignore.
- Non-boundary index: 0 is a real class (Cityscapes road, CamVid sky), so the boundary head
  has C+1 channels and "extra_class" marks non-boundary pixels with C. "literal" keeps the
  paper's 0 = non-boundary by shifting the classes to 1..C; the two differ by a channel
  permutation only.

Everything is jnp with static shapes, so the labels are made on device inside the train step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from segjax.losses.ce import cross_entropy
from segjax.losses.common import IGNORE_LABEL, get, valid_mask
from segjax.losses.registry import register_loss_term, register_settings, settings

LABEL_MODES = ("extra_class", "literal")
FACTOR = 8
_OUT_OF_BOUNDS = -1


def centre_indices(n: int, factor: int = FACTOR) -> np.ndarray:
    """Sample index of each of the ceil(n/factor) blocks: block start + (block length)//2."""
    starts = np.arange(0, n, factor)
    return starts + np.minimum(factor, n - starts) // 2


def downsample_labels(labels: jax.Array, factor: int = FACTOR) -> jax.Array:
    """(N, H, W) → (N, ceil(H/f), ceil(W/f)) by taking each block's centre sample."""
    labels = jnp.asarray(labels)
    rows = centre_indices(labels.shape[1], factor)
    cols = centre_indices(labels.shape[2], factor)
    return labels[:, rows][:, :, cols]


def boundary_mask(
    labels: jax.Array,
    *,
    epsilon: int = 1,
    num_classes: int | None = None,
    ignore_label: int = IGNORE_LABEL,
    ignore_makes_boundary: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """(boundary, valid) for a (N, h, w) label map: valid pixels with a differing neighbour.

    A label is valid when it is >= 0, not `ignore_label` and (given `num_classes`) below it.
    """
    if not (isinstance(epsilon, int) and epsilon >= 1):
        raise ValueError(f"boundary width epsilon must be an int >= 1, got {epsilon!r}")
    labels = jnp.asarray(labels).astype(jnp.int32)
    valid = valid_mask(labels, num_classes, ignore_label)
    # Invalid labels are all one value, so that they never differ among themselves.
    labels = jnp.where(valid, labels, ignore_label)
    e = epsilon
    padded = jnp.pad(labels, ((0, 0), (e, e), (e, e)), constant_values=_OUT_OF_BOUNDS)
    height, width = labels.shape[1:]
    boundary = jnp.zeros(labels.shape, bool)
    for dy in range(2 * e + 1):
        for dx in range(2 * e + 1):
            q = padded[:, dy:dy + height, dx:dx + width]
            q_valid = (q != _OUT_OF_BOUNDS) & (q != ignore_label)
            makes = q_valid & (q != labels)
            if ignore_makes_boundary:
                makes = makes | (q == ignore_label)
            boundary = boundary | makes
    return boundary & valid, valid


def boundary_labels(
    labels: jax.Array,
    num_classes: int,
    *,
    epsilon: int = 1,
    label_mode: str = "extra_class",
    ignore_label: int = IGNORE_LABEL,
    ignore_makes_boundary: bool = False,
    factor: int = FACTOR,
) -> jax.Array:
    """Full-resolution (N, H, W) labels → int32 CBS targets at 1/`factor` (see module doc).

    extra_class: boundary → class, non-boundary → num_classes, ignore → ignore_label.
    literal: boundary → class + 1, non-boundary → 0, ignore → ignore_label.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"unknown CBS label mode {label_mode!r}; valid: {', '.join(LABEL_MODES)}")
    if num_classes + 1 > ignore_label:
        raise ValueError(f"{num_classes} classes + non-boundary collide with ignore "
                         f"label {ignore_label}")
    small = downsample_labels(labels, factor).astype(jnp.int32)
    boundary, valid = boundary_mask(small, epsilon=epsilon, num_classes=num_classes,
                                    ignore_label=ignore_label,
                                    ignore_makes_boundary=ignore_makes_boundary)
    if label_mode == "extra_class":
        target = jnp.where(boundary, small, num_classes)
    else:
        target = jnp.where(boundary, small + 1, 0)
    return jnp.where(valid, target, ignore_label).astype(jnp.int32)


register_settings("cbs", {
    "weight": 0.0,  # λ; 0 = off (the MSFNet recipes use 1)
    "epsilon": 1,  # boundary width ε, 1/8-scale pixels (Chebyshev)
    "ignore_neighbours_make_boundary": False,
    "label_mode": "extra_class",  # extra_class (C = non-boundary) | literal (0 = non-boundary)
})


@register_loss_term(
    "boundary", consumes=("boundary_logits",), weight=lambda cfg: settings(cfg, "cbs")["weight"],
    hint="set --config.loss.cbs.weight (1 in the MSFNet recipes) and "
         "--config.model.kwargs.class_boundary_supervision together")
def boundary_term(outputs: Mapping[str, jax.Array], labels: jax.Array, loss_cfg: Any):
    """CE(boundary_logits, CBS labels) at 1/8, without class weights as in the paper."""
    logits = outputs["boundary_logits"]
    cbs = settings(loss_cfg, "cbs")
    expected = tuple(-(-n // FACTOR) for n in labels.shape[1:3])
    if tuple(logits.shape[1:3]) != expected:
        raise ValueError(f"boundary_logits are {tuple(logits.shape[1:3])}, the 1/{FACTOR} of "
                         f"{tuple(labels.shape[1:3])} labels is {expected}")
    ignore_label = get(loss_cfg, "ignore_label", IGNORE_LABEL)
    targets = boundary_labels(
        labels,
        logits.shape[-1] - 1,
        epsilon=cbs["epsilon"],
        label_mode=cbs["label_mode"],
        ignore_label=ignore_label,
        ignore_makes_boundary=cbs["ignore_neighbours_make_boundary"],
    )
    return cross_entropy(logits, targets, ignore_label=ignore_label)
