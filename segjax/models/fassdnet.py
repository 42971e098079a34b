"""FASSD-Net / -L1 / -L2 (Rosas-Arias et al., "FASSD-Net: Fast and Accurate Real-Time
Semantic Segmentation for Embedded Systems"): FC-HarDNet-70's encoder and decoder
(segjax/models/hardnet.py) with DAPF for context and MDA in every decoder stage.

Follows the official PyTorch code (GibranBenitez/FASSD-Net) where it differs from the paper:
MDA sums its two branches, its BatchNorms use eps 1e-3 and are followed by per-channel
PReLUs, every resize is bilinear with align_corners=True, and L2 puts stride 2 on both of the
first two convs. Module names mirror the official state-dict keys (`DAPF.pyBranch2.bn3x1`,
`mda.1.parallel_ddconv3x1.bn_prelu.acti`, `denseBlocksUp.2`) so that checkpoints convert by
path alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register
from segjax.models.hardnet import Indexed, hardnet_segment, xavier_normal
from segjax.models.layers import BatchNorm, Dtype, IntPair, PReLU, conv2d

# MDA dilation per skip level (1/4, 1/8, 1/16, 1/32); decoder stages use 8, 4, 2.
MDA_DILATIONS = (2, 4, 8, 16)
DAPF_DILATIONS = (12, 24, 36)

# The released weights may predate the official code's module rename: `aspp` (with branches
# `aspp2..4`) became `DAPF` (`pyBranch2..4`), `Dab_leo` became `mda`, and MDA's
# `ddconv3x1`/`ddconv1x3` gained a `parallel_` prefix. Current names pass unchanged.
KEY_RENAMES = (
    (r"^aspp\.aspp(\d)\.", r"DAPF.pyBranch\1."),
    (r"^aspp\.", "DAPF."),
    (r"^Dab_leo\.", "mda."),
    (r"\.ddconv(3x1|1x3)\.", r".parallel_ddconv\1."),
)


class PyramBranch(nn.Module):
    """One dilated DAPF branch: (3,1) conv dilated on H, then (1,3) dilated on W, each BN-ReLU.

    Factorising the dilated 3×3 keeps a large receptive field at a fraction of the weights.
    Taps that fall outside the map read PyTorch's zero padding, as in the original.
    """

    features: int
    dilation: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        d, dt = self.dilation, self.dtype
        bn = lambda name: BatchNorm(use_running_average=not train, dtype=dt, name=name)
        conv = lambda k, dil, name: conv2d(self.features, k, dilation=dil, dtype=dt,
                                           kernel_init=xavier_normal, name=name)
        x = nn.relu(bn("bn3x1")(conv((3, 1), (d, 1), "atrous_conv3x1")(x)))
        return nn.relu(bn("bn1x3")(conv((1, 3), (1, d), "atrous_conv1x3")(x)))


class DAPF(nn.Module):
    """Dilated Asymmetric Pyramidal Fusion: FASSD-Net's context module on the 1/32 map.

    A 1×1 branch and three factorised dilated branches (d = 12, 24, 36), each at C//alpha
    channels, are concatenated in that order and fused back to C by a 1×1 conv-BN-ReLU.
    The released models use alpha = 2.
    """

    alpha: int = 2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        channels, dt = x.shape[-1], self.dtype
        mid = channels // self.alpha
        bn = lambda name: BatchNorm(use_running_average=not train, dtype=dt, name=name)
        branches = [nn.relu(bn("bn1x1")(conv2d(mid, 1, dtype=dt, kernel_init=xavier_normal,
                                                name="conv1x1")(x)))]
        for i, d in enumerate(DAPF_DILATIONS, start=2):
            branches.append(PyramBranch(mid, d, dt, name=f"pyBranch{i}")(x, train))
        x = conv2d(channels, 1, dtype=dt, kernel_init=xavier_normal,
                   name="conv1")(jnp.concatenate(branches, axis=-1))
        return nn.relu(bn("bn1")(x))


class BNPReLU(nn.Module):
    """BatchNorm (eps 1e-3) → per-channel PReLU, the activation unit inside MDA."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = BatchNorm(use_running_average=not train, epsilon=1e-3, dtype=self.dtype,
                      name="bn")(x)
        return PReLU(dtype=self.dtype, name="acti")(x)


class MDAConv(nn.Module):
    """MDA's `Conv`: a bias-free conv with optional BN-PReLU (`bn_prelu`)."""

    features: int
    kernel_size: IntPair = 3
    dilation: IntPair = 1
    bn_acti: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv2d(self.features, self.kernel_size, dilation=self.dilation, dtype=self.dtype,
                   kernel_init=xavier_normal, name="conv")(x)
        return BNPReLU(self.dtype, name="bn_prelu")(x, train) if self.bn_acti else x


class MDA(nn.Module):
    """Multi-resolution Dilated Asymmetric module: a residual refinement of a decoder stage.

    Pre-activation BN-PReLU, a 3×3 halving the channels, then a plain 3×3 branch and a
    factorised dilated (3,1)/(1,3) branch are summed (the paper draws a concat; the released
    code and weights sum), BN-PReLU, a bare 1×1 back to C channels, plus the input. The
    dilation grows with depth (8, 4, 2 from the 1/16 stage to the 1/4 one).
    """

    dilation: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        channels, d, dt = x.shape[-1], self.dilation, self.dtype
        half = channels // 2
        out = BNPReLU(dt, name="bn_relu_1")(x, train)
        out = MDAConv(half, 3, dtype=dt, name="conv3x3")(out, train)
        plain = MDAConv(half, 3, dtype=dt, name="parallel_conv3x3")(out, train)
        dilated = MDAConv(half, (3, 1), (d, 1), dtype=dt, name="parallel_ddconv3x1")(out, train)
        dilated = MDAConv(half, (1, 3), (1, d), dtype=dt,
                          name="parallel_ddconv1x3")(dilated, train)
        out = BNPReLU(dt, name="bn_relu_2")(plain + dilated, train)
        return MDAConv(channels, 1, bn_acti=False, dtype=dt, name="conv1x1")(out, train) + x


@register("fassdnet", key_renames=KEY_RENAMES, aux_heads=0)
@register("fassdnet_l1", defaults={"stem_strides": (3, 1)}, key_renames=KEY_RENAMES,
          aux_heads=0)
@register("fassdnet_l2", defaults={"stem_strides": (2, 2), "decoder_conv_width": 64},
          key_renames=KEY_RENAMES, aux_heads=0)
class FASSDNet(nn.Module):
    """FASSD-Net: FC-HarDNet-70's encoder cut at 1/32, DAPF for context, MDA per decoder stage.

    L1 downsamples the stem by 3 instead of 2 (≈2.3× fewer MACs, same weights); L2 puts
    stride 2 on the first two convs and replaces each decoder HarDBlock by one 3×3 ConvLayer
    to `decoder_conv_width` channels. Returns float32 `logits` at the input size.
    """

    num_classes: int
    alpha: int = 2
    stem_strides: Sequence[int] = (2, 1)
    decoder_conv_width: int | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        mda = Indexed(name="mda")

        def refine(stage: int, level: int, y: jax.Array, train: bool) -> jax.Array:
            return mda(stage, functools.partial(MDA, MDA_DILATIONS[level], self.dtype), y, train)

        return hardnet_segment(x, train, num_classes=self.num_classes, n_stages=4,
                               stem_strides=self.stem_strides, dtype=self.dtype,
                               context=DAPF(self.alpha, self.dtype, name="DAPF"),
                               refine=refine, decoder_conv_width=self.decoder_conv_width)
