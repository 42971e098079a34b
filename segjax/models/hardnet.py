"""FC-HarDNet-70 (Chao et al., "HarDNet") and FASSD-Net / -L1 / -L2 (Rosas-Arias et al.,
"FASSD-Net: Fast and Accurate Real-Time Semantic Segmentation for Embedded Systems").

Both follow the official PyTorch code (PingoLH/FCHarDNet, GibranBenitez/FASSD-Net) where it
differs from the papers: MDA sums its two branches, its BatchNorms use eps 1e-3 and are
followed by per-channel PReLUs, every resize is bilinear with align_corners=True, and L2 puts
stride 2 on both of the first two convs. Module names mirror the official state-dict keys
(`base.4.layers.0.conv`, `DAPF.pyBranch2.bn3x1`, `mda.1.parallel_ddconv3x1.bn_prelu.acti`,
`denseBlocksUp.2`, `finalConv`) so that checkpoints convert by path alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register
from segjax.models.layers import (
    BatchNorm,
    Dtype,
    IntPair,
    PReLU,
    avg_pool,
    conv2d,
    precise_dtype,
    resize_bilinear,
)

# The HarDNet-70 backbone shared by every model here (official `hardnet` constructor).
FIRST_CHANNELS = (16, 24, 32, 48)
TRANSITION_CHANNELS = (64, 96, 160, 224, 320)
GROWTH_RATES = (10, 16, 18, 24, 32)
BLOCK_LAYERS = (4, 4, 8, 8, 8)
GROWTH_MULTIPLIER = 1.7
# MDA dilation per skip level (1/4, 1/8, 1/16, 1/32); decoder stages use 8, 4, 2.
MDA_DILATIONS = (2, 4, 8, 16)
DAPF_DILATIONS = (12, 24, 36)

# The official train.py re-initialises every conv with xavier_normal_ (gain 1, untruncated).
xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")


def torch_bias_init(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default Conv2d bias init, U(±1/√fan_in); xavier leaves the bias alone."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound)


class Indexed(nn.Module):
    """The scope of a PyTorch `nn.ModuleList` whose members run at different points of the
    forward pass (`conv1x1_up.i`, `mda.i`, `denseBlocksUp.i` interleave in the decoder).

    `scope(i, factory, *args)` builds child `str(i)` with `factory(name=...)` and applies it,
    so the variables land at `<list>/<i>/...` like the torch keys.
    """

    @nn.compact
    def __call__(self, index: int, factory: Callable[..., nn.Module], *args: Any,
                 **kwargs: Any) -> Any:
        return factory(name=str(index))(*args, **kwargs)


class ConvLayer(nn.Module):
    """The official `ConvLayer` Sequential: conv k×k (padding k//2, no bias) → BN → ReLU."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv2d(self.features, self.kernel_size, self.stride, dtype=self.dtype,
                   kernel_init=xavier_normal, name="conv")(x)
        x = BatchNorm(use_running_average=not train, dtype=self.dtype, name="norm")(x)
        return nn.relu(x)


def harmonic_links(node: int) -> list[int]:
    """Earlier nodes that node k reads: k − 2^i for every 2^i dividing k, nearest first."""
    return [node - 2 ** i for i in range(10) if node % 2 ** i == 0]


def harmonic_width(node: int, growth_rate: int, grmul: float = GROWTH_MULTIPLIER) -> int:
    """Output channels of node k: growth × grmul^(links − 1), rounded down to an even int.

    The multiplications are done one at a time as in the official `get_link`, so the float
    rounding (and hence e.g. 118 rather than 117 channels) is reproduced exactly.
    """
    width = growth_rate
    for i in range(1, 10):
        if node % 2 ** i == 0:
            width *= grmul
    return int(int(width + 1) / 2) * 2


def hardblock_output_nodes(n_layers: int) -> list[int]:
    """Nodes concatenated as the block output: the odd ones and the last (not the input)."""
    return [k for k in range(1, n_layers + 1) if k % 2 == 1 or k == n_layers]


def hardblock_out_channels(growth_rate: int, n_layers: int) -> int:
    return sum(harmonic_width(k, growth_rate) for k in hardblock_output_nodes(n_layers))


class HarDBlock(nn.Module):
    """Harmonic densely connected block: node k reads the concat of nodes k − 2^i.

    Only a few nodes are kept for the output, which keeps the concat traffic (the cost
    HarDNet minimises) low while deep nodes still see shallow ones through the power-of-two
    links. Node 0 is the block input; node k is `layers.{k-1}`, a 3×3 ConvLayer.
    """

    growth_rate: int
    n_layers: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        layers = Indexed(name="layers")
        nodes = [x]
        for k in range(1, self.n_layers + 1):
            inputs = [nodes[j] for j in harmonic_links(k)]
            h = inputs[0] if len(inputs) == 1 else jnp.concatenate(inputs, axis=-1)
            conv = functools.partial(ConvLayer, harmonic_width(k, self.growth_rate),
                                     dtype=self.dtype)
            nodes.append(layers(k - 1, conv, h, train))
        return jnp.concatenate([nodes[k] for k in hardblock_output_nodes(self.n_layers)],
                               axis=-1)


class HarDNetBase(nn.Module):
    """The encoder `base`: a 4-conv stem, then per stage HarDBlock → 1×1 → 2×2 avg-pool.

    Children are numbered like the official ModuleList (pools take an index but hold no
    weights). Returns the deepest map (after the last 1×1, unpooled) and the skips, which are
    the HarDBlock outputs of every stage but the last, taken before the 1×1 transition.
    `stem_strides` are the strides of convs 0 and 1: (2, 1) for FC-HarDNet and FASSD-Net,
    (3, 1) for FASSD-Net-L1, (2, 2) for FASSD-Net-L2.
    """

    n_stages: int = 5
    stem_strides: Sequence[int] = (2, 1)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, list[jax.Array]]:
        in_size = x.shape[1:3]
        strides = (*self.stem_strides, 2, 1)
        index = 0
        for features, stride in zip(FIRST_CHANNELS, strides, strict=True):
            x = ConvLayer(features, 3, stride, self.dtype, name=str(index))(x, train)
            index += 1
        skips = []
        for stage in range(self.n_stages):
            x = HarDBlock(GROWTH_RATES[stage], BLOCK_LAYERS[stage], self.dtype,
                          name=str(index))(x, train)
            x_skip = x
            x = ConvLayer(TRANSITION_CHANNELS[stage], 1, dtype=self.dtype,
                          name=str(index + 1))(x, train)
            index += 2
            if stage < self.n_stages - 1:
                skips.append(x_skip)
                if min(x.shape[1:3]) < 2:
                    raise ValueError(
                        f"input {in_size[0]}x{in_size[1]} is too small for this model: the "
                        f"map before pool base.{index} is {x.shape[1]}x{x.shape[2]}; "
                        "every encoder map must stay at least 1 pixel on each side")
                x = avg_pool(x, 2, 2)
                index += 1
        return x, skips


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


def transition_up(x: jax.Array, skip: jax.Array) -> jax.Array:
    """Resize to the skip's exact size (align_corners=True), then concat [upsampled, skip]."""
    x = resize_bilinear(x, skip.shape[1:3], align_corners=True)
    return jnp.concatenate([x, skip], axis=-1)


def hardnet_segment(x: jax.Array, train: bool, *, num_classes: int, n_stages: int,
                    stem_strides: Sequence[int], dtype: Dtype, alpha: int | None = None,
                    decoder_conv_width: int | None = None) -> dict[str, jax.Array]:
    """The shared U-shaped forward; call from a compact method that owns the sub-modules.

    Per decoder stage: transition_up → `conv1x1_up.i` (1×1 ConvLayer halving the channels)
    → `mda.i` (FASSD only) → `denseBlocksUp.i` (the mirrored HarDBlock, or one 3×3 ConvLayer
    of `decoder_conv_width` channels in L2). `alpha` set means FASSD-Net: DAPF after the
    encoder and MDA in every stage. Logits are resized to the input (align_corners=True).
    """
    in_size = x.shape[1:3]
    out, skips = HarDNetBase(n_stages, tuple(stem_strides), dtype, name="base")(
        x.astype(dtype), train)
    if alpha is not None:
        out = DAPF(alpha, dtype, name="DAPF")(out, train)
    conv1x1_up, mda, blocks = (Indexed(name="conv1x1_up"), Indexed(name="mda"),
                               Indexed(name="denseBlocksUp"))
    for stage, level in enumerate(reversed(range(len(skips)))):
        out = transition_up(out, skips[level])
        out = conv1x1_up(stage, functools.partial(ConvLayer, out.shape[-1] // 2, 1,
                                                  dtype=dtype), out, train)
        if alpha is not None:
            out = mda(stage, functools.partial(MDA, MDA_DILATIONS[level], dtype), out, train)
        if decoder_conv_width is None:
            block = functools.partial(HarDBlock, GROWTH_RATES[level], BLOCK_LAYERS[level],
                                      dtype)
        else:
            block = functools.partial(ConvLayer, decoder_conv_width, 3, dtype=dtype)
        out = blocks(stage, block, out, train)
    logits = conv2d(num_classes, 1, use_bias=True, dtype=dtype, kernel_init=xavier_normal,
                    bias_init=torch_bias_init(out.shape[-1]), name="finalConv")(out)
    logits = resize_bilinear(logits.astype(precise_dtype(dtype)), in_size, align_corners=True)
    return {"logits": logits}


@register("fchardnet70", aux_heads=0, output_stride=1)
class FCHarDNet(nn.Module):
    """FC-HarDNet-70: HarDNet encoder (1/64) and a HarDBlock U-decoder back to 1/4.

    Takes NHWC images of any size whose 1/32 map is at least 2 pixels per side (floor
    pooling as PyTorch); returns float32 `logits` at the input size.
    """

    num_classes: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        return hardnet_segment(x, train, num_classes=self.num_classes, n_stages=5,
                               stem_strides=(2, 1), dtype=self.dtype)


@register("fassdnet", aux_heads=0, output_stride=1)
@register("fassdnet_l1", defaults={"stem_strides": (3, 1)}, aux_heads=0, output_stride=1)
@register("fassdnet_l2", defaults={"stem_strides": (2, 2), "decoder_conv_width": 64},
          aux_heads=0, output_stride=1)
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
        return hardnet_segment(x, train, num_classes=self.num_classes, n_stages=4,
                               stem_strides=self.stem_strides, dtype=self.dtype,
                               alpha=self.alpha, decoder_conv_width=self.decoder_conv_width)
