"""Multi-scale synergy (Quyen & Kim): one DeepLabv3+ R50 at 0.5× and 1×, fused per pixel.

The paper's Eq. 1, S = U(S_lo) + S_hi·U(1 − S_lo), leaves S open; by default (R-A) S are
per-class softmax probabilities, x_lo is the input resized by 0.5 (bilinear,
align_corners=False, size floored as NVIDIA's `ResizeX`) and U is bilinear upsampling to
the high scale. The other readings are selectable with `fusion`:

- "prob"      R-A: S = U(P_lo) + P_hi·(1 − U(P_lo)), per class (a probabilistic OR).
- "mask"      R-B: one uncertainty mask m = 1 − max_c U(P_lo); S = U(P_lo) + m·P_hi.
- "logits"    R-C: Eq. 1 on raw logits, S = U(z_lo) + z_hi·U(1 − z_lo).
- "attention" R-D: NVIDIA's two-scale attention (Tao et al.), a learned sigmoid a from the
              low scale's decoder features, S = U(a·z_lo) + (1 − U(a))·z_hi.

Outputs: `logits` for argmax, softmax and CE. For the probability fusions S is not
normalised over classes, so `logits` = log(S / Σ_c S) and CE on it is the NLL of the
renormalised S (the default loss); `fused_probs` is S itself for the other loss
readings (segjax/losses/synergy.py). For the logit fusions `logits` = S. `scale_logits` are
(z_lo, z_hi), each at its own input size, for per-scale auxiliary losses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register
from segjax.models.deeplab import KEY_RENAMES, DeepLabV3Plus
from segjax.models.layers import BatchNorm, Dtype, conv2d, precise_dtype, resize_bilinear

FUSIONS = ("prob", "mask", "logits", "attention")
PROBABILITY_FUSIONS = ("prob", "mask")


def check_synergy_options(scales: Sequence[float], fusion: str) -> None:
    """Reject unknown fusions and scale pairs other than (lo, 1.0), before any tracing."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown synergy fusion {fusion!r}; valid: {', '.join(FUSIONS)}")
    scales = tuple(scales)
    if len(scales) != 2 or not 0 < scales[0] < 1 or scales[1] != 1.0:
        raise ValueError(f"synergy scales must be (lo, 1.0) with 0 < lo < 1, got {scales!r}; "
                         "the 1.0 scale is the input and sets the output size")


def resize_by(x: jax.Array, scale: float) -> jax.Array:
    """NVIDIA's `ResizeX`: bilinear, align_corners=False, output size floor(n·scale)."""
    height, width = x.shape[1:3]
    size = (max(1, math.floor(height * scale)), max(1, math.floor(width * scale)))
    return resize_bilinear(x, size)


def fuse_scales(z_lo: jax.Array, z_hi: jax.Array, fusion: str = "prob",
                attention: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """(S, logits) of the two-scale fusion, in float32 at z_hi's size.

    For the probability fusions S lies in [0, 1] per class and logits = log(S / Σ_c S)
    (S is floored at the smallest normal float so a pixel both scales rule out stays
    finite); for the logit fusions logits is S. `attention` (N, h, w, 1) is required for
    "attention" and given at z_lo's size.
    """
    wide = precise_dtype(z_hi.dtype)
    z_lo, z_hi = z_lo.astype(wide), z_hi.astype(wide)
    up = lambda t: resize_bilinear(t, z_hi.shape[1:3])
    if fusion in PROBABILITY_FUSIONS:
        p_lo = up(jax.nn.softmax(z_lo, axis=-1))
        p_hi = jax.nn.softmax(z_hi, axis=-1)
        if fusion == "prob":
            # Bilinear weights sum to one, so U(1 − P_lo) = 1 − U(P_lo).
            fused = p_lo + p_hi * (1.0 - p_lo)
        else:
            fused = p_lo + (1.0 - jnp.max(p_lo, axis=-1, keepdims=True)) * p_hi
        log_fused = jnp.log(jnp.maximum(fused, jnp.finfo(wide).tiny))
        return fused, log_fused - jnp.log(jnp.sum(fused, axis=-1, keepdims=True))
    if fusion == "logits":
        fused = up(z_lo) + z_hi * up(1.0 - z_lo)
        return fused, fused
    if fusion == "attention":
        if attention is None:
            raise ValueError("fusion='attention' needs the low scale's attention map")
        attention = attention.astype(wide)
        fused = up(attention * z_lo) + (1.0 - up(attention)) * z_hi
        return fused, fused
    raise ValueError(f"unknown synergy fusion {fusion!r}; valid: {', '.join(FUSIONS)}")


class ScaleAttention(nn.Module):
    """The scale-attention head of hierarchical multi-scale attention (NVIDIA
    `make_attn_head`, inner 3×3 on): 3×3-BN-ReLU twice, a bias-free 1×1 to one channel and
    a sigmoid; it reads the stride-4 decoder input and says how much to trust that scale."""

    features: int = 256
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i in range(2):
            x = conv2d(self.features, 3, dtype=self.dtype, name=f"conv{i}")(x)
            x = BatchNorm(use_running_average=not train, dtype=self.dtype, name=f"bn{i}")(x)
            x = nn.relu(x)
        x = conv2d(1, 1, dtype=self.dtype, name="conv2")(x)
        return jax.nn.sigmoid(x.astype(precise_dtype(self.dtype)))


@register("synergy_deeplabv3plus_r50", key_renames=KEY_RENAMES, aux_heads=0)
class SynergyDeepLabV3Plus(DeepLabV3Plus):
    """DeepLabv3+ R50 run with shared weights on the 0.5× and 1× inputs, predictions fused.

    The parameters are those of `deeplabv3plus_r50` (plus `scale_attn` for the attention
    fusion, named as NVIDIA's mscale models), so a single-scale checkpoint loads as is.
    BatchNorm runs once per scale, each scale normalised by its own batch statistics.
    """

    scales: Sequence[float] = (0.5, 1.0)
    fusion: str = "prob"

    def __post_init__(self):
        check_synergy_options(self.scales, self.fusion)
        super().__post_init__()

    def setup(self):
        super().setup()
        if self.fusion == "attention":
            self.scale_attn = ScaleAttention(256, self.dtype)

    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        x_lo = resize_by(x, self.scales[0])
        z_lo, decoder_lo = self.predict(x_lo, train)
        z_hi, _ = self.predict(x, train)
        attention = None
        if self.fusion == "attention":
            attention = resize_bilinear(self.scale_attn(decoder_lo, train), x_lo.shape[1:3])
        fused, logits = fuse_scales(z_lo, z_hi, self.fusion, attention)
        out = {"logits": logits, "scale_logits": (z_lo, z_hi)}
        if self.fusion in PROBABILITY_FUSIONS:
            out["fused_probs"] = fused
        if attention is not None:
            out["attention"] = attention
        return out
