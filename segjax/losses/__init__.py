"""Segmentation losses as registered terms (segjax/losses/registry.py).

ce: the main/aux head losses (CE, OHEM, bootstrapped CE); bcl: BCMFNet's flip Boundary
Corrected Loss; cbs: MSFNet's Class Boundary Supervision; synergy: the multi-scale synergy
model's fused-map readings. Importing the package registers every term.
"""

from segjax.losses import bcl, cbs, ce, synergy  # noqa: F401  (registers the terms)
from segjax.losses.ce import (
    bootstrapped_cross_entropy,
    cross_entropy,
    for_global_batch,
    ohem_cross_entropy,
    pixel_loss,
    scaled_min_kept,
)
from segjax.losses.common import (
    IGNORE_LABEL,
    loss_dtype,
    pixelwise_cross_entropy,
    upsample_logits,
    valid_mask,
)
from segjax.losses.registry import (
    LossConfigError,
    default_config,
    register_loss_term,
    register_settings,
    segmentation_loss,
    settings,
)

__all__ = ["IGNORE_LABEL", "LossConfigError", "bcl", "bootstrapped_cross_entropy", "cbs", "ce",
           "cross_entropy", "default_config", "for_global_batch", "loss_dtype",
           "ohem_cross_entropy", "pixel_loss", "pixelwise_cross_entropy", "register_loss_term",
           "register_settings", "scaled_min_kept", "segmentation_loss", "settings", "synergy",
           "upsample_logits", "valid_mask"]
