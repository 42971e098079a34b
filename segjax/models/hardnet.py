"""FC-HarDNet-70 (Chao et al., "HarDNet"), and the HarDNet encoder and U-decoder that
FASSD-Net (segjax/models/fassdnet.py) builds on.

Follows the official PyTorch code (PingoLH/FCHarDNet) where it differs from the paper: every
resize is bilinear with align_corners=True. Module names mirror the official state-dict keys
(`base.4.layers.0.conv`, `conv1x1_up.1`, `denseBlocksUp.2`, `finalConv`) so that
checkpoints convert by path alone.
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
    avg_pool,
    conv2d,
    precise_dtype,
    resize_bilinear,
)

# The HarDNet-70 backbone, shared with FASSD-Net (official `hardnet` constructor).
FIRST_CHANNELS = (16, 24, 32, 48)
TRANSITION_CHANNELS = (64, 96, 160, 224, 320)
GROWTH_RATES = (10, 16, 18, 24, 32)
BLOCK_LAYERS = (4, 4, 8, 8, 8)
GROWTH_MULTIPLIER = 1.7

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


def transition_up(x: jax.Array, skip: jax.Array) -> jax.Array:
    """Resize to the skip's exact size (align_corners=True), then concat [upsampled, skip]."""
    x = resize_bilinear(x, skip.shape[1:3], align_corners=True)
    return jnp.concatenate([x, skip], axis=-1)


def hardnet_segment(x: jax.Array, train: bool, *, num_classes: int, n_stages: int,
                    stem_strides: Sequence[int], dtype: Dtype,
                    context: Callable[[jax.Array, bool], jax.Array] | None = None,
                    refine: Callable[[int, int, jax.Array, bool], jax.Array] | None = None,
                    decoder_conv_width: int | None = None) -> dict[str, jax.Array]:
    """The shared U-shaped forward; call from a compact method that owns the sub-modules.

    Per decoder stage: transition_up → `conv1x1_up.i` (1×1 ConvLayer halving the channels)
    → `refine(i, level, x, train)` if given → `denseBlocksUp.i` (the mirrored HarDBlock, or
    one 3×3 ConvLayer of `decoder_conv_width` channels). `context(x, train)`, if given, runs
    on the encoder output. The hooks are where FASSD-Net adds DAPF and MDA; their modules
    belong to the caller, which names them. Logits are resized to the input
    (align_corners=True).
    """
    in_size = x.shape[1:3]
    out, skips = HarDNetBase(n_stages, tuple(stem_strides), dtype, name="base")(
        x.astype(dtype), train)
    if context is not None:
        out = context(out, train)
    conv1x1_up, blocks = Indexed(name="conv1x1_up"), Indexed(name="denseBlocksUp")
    for stage, level in enumerate(reversed(range(len(skips)))):
        out = transition_up(out, skips[level])
        out = conv1x1_up(stage, functools.partial(ConvLayer, out.shape[-1] // 2, 1,
                                                  dtype=dtype), out, train)
        if refine is not None:
            out = refine(stage, level, out, train)
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


@register("fchardnet70", aux_heads=0)
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
