"""DDRNet-23-slim (Hong et al., "Deep Dual-resolution Networks"), as the official segmentation code.

Module names mirror the official PyTorch state-dict keys (`layer3_.1.bn2`, `spp.scale1.3`,
`final_layer.conv2`, ...) so that checkpoints convert by path alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register, resnet
from segjax.models.layers import (
    BatchNorm,
    BNReLUConv,
    ConvBN,
    Dtype,
    avg_pool,
    conv2d,
    global_avg_pool,
    precise_dtype,
    resize_bilinear,
)
from segjax.models.resnet import BasicBlock


class Bottleneck(resnet.Bottleneck):
    """DDRNet's Bottleneck: expands ×2 and, by default, ends without a ReLU."""

    no_relu: bool = True

    expansion = 2
    default_no_relu = True


def ResLayer(block, in_planes, planes, num_blocks, stride=1, dtype=jnp.float32, name=None):
    """The official `_make_layer`: the last of several blocks skips its ReLU; a single-block
    layer keeps the block's default, which is how the Bottleneck layers end without one."""
    return resnet.ResLayer(block, in_planes, planes, num_blocks, stride, end_without_relu=True,
                           dtype=dtype, name=name)


class StridedConvs(nn.Module):
    """A chain of 3×3 stride-2 conv-BN units with ReLU between, named as the official
    Sequential ('0','1', then '3','4'): the stem (`conv1`, biased, ends in ReLU) and the
    high-to-low fusion paths (`down3`, `down4`, bias-free, no final ReLU).
    """

    features: Sequence[int]
    use_bias: bool = False
    final_relu: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i, f in enumerate(self.features):
            x = conv2d(f, 3, 2, use_bias=self.use_bias, dtype=self.dtype, name=str(3 * i))(x)
            x = BatchNorm(use_running_average=not train, dtype=self.dtype,
                          name=str(3 * i + 1))(x)
            if self.final_relu or i < len(self.features) - 1:
                x = nn.relu(x)
        return x


def pyramid_pooling_fusion(x, train, branch_planes, out_planes, *, sources, kernels, dtype):
    """The pooled-pyramid body DAPPM and BCMFNet's LMFM share; only the refinement wiring
    differs.

    Branch i (pooled k5/s2, k9/s4, k17/s8, global; BN-ReLU-1×1) is upsampled, added to
    `ys[sources[i-1]]` and refined by a BN-ReLU-conv of `kernels[i-1]`; the five maps are
    concatenated, compressed and added to a 1×1 shortcut. Call it from a compact method: the
    sub-modules (scale0..4, process1..4, compression, shortcut) belong to the caller.
    """
    size = x.shape[1:3]
    pooled_unit = lambda name: BNReLUConv(branch_planes, 1, "1", "3", dtype, name=name)
    pooled = [
        pooled_unit("scale1")(avg_pool(x, 5, 2, 2), train),
        pooled_unit("scale2")(avg_pool(x, 9, 4, 4), train),
        pooled_unit("scale3")(avg_pool(x, 17, 8, 8), train),
        pooled_unit("scale4")(global_avg_pool(x), train),
    ]
    ys = [BNReLUConv(branch_planes, 1, dtype=dtype, name="scale0")(x, train)]
    for i, (p, src, k) in enumerate(zip(pooled, sources, kernels, strict=True), start=1):
        y = resize_bilinear(p, size) + ys[src]
        ys.append(BNReLUConv(branch_planes, k, dtype=dtype, name=f"process{i}")(y, train))
    out = BNReLUConv(out_planes, 1, dtype=dtype,
                     name="compression")(jnp.concatenate(ys, axis=-1), train)
    return out + BNReLUConv(out_planes, 1, dtype=dtype, name="shortcut")(x, train)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling Module, the context module on the 1/64 map.

    Branches pool the input at growing scales; each is upsampled, added to the previous
    branch's result and refined by a 3×3, so coarse context is fused hierarchically.
    Interface shared with other context modules: (x, train) -> `out_planes` at x's size.
    """

    branch_planes: int = 128
    out_planes: int = 128
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return pyramid_pooling_fusion(x, train, self.branch_planes, self.out_planes,
                                      sources=(0, 1, 2, 3), kernels=(3, 3, 3, 3),
                                      dtype=self.dtype)


class SegmentHead(nn.Module):
    """BN-ReLU-3×3 then BN-ReLU-1×1 (biased) to classes; output stays at the input's scale."""

    inter_planes: int
    num_classes: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        bn = lambda name: BatchNorm(use_running_average=not train, dtype=self.dtype, name=name)
        x = conv2d(self.inter_planes, 3, dtype=self.dtype, name="conv1")(nn.relu(bn("bn1")(x)))
        return conv2d(self.num_classes, 1, use_bias=True, dtype=self.dtype,
                      name="conv2")(nn.relu(bn("bn2")(x)))


@register("ddrnet23_slim", aux_heads=1, input_multiple=8)
class DDRNet(nn.Module):
    """Dual-resolution network: a 1/8 high-resolution branch and a 1/64 context branch
    exchange features through two bilateral fusions; defaults are DDRNet-23-slim.

    `context` builds the `spp` module (DAPPM here); a replacement must accept
    (branch_planes, out_planes, dtype, name) and map (x, train) at 1/64 to out_planes
    channels, so variants such as BCMFNet only swap this field (overriding `context_module`
    to pass their own options).
    Logits stay at (H//8, W//8), in float32 (float64 under float64 compute) whatever `dtype`
    so the loss is computed at full precision; the loss and evaluation upsample them.
    H and W must be multiples of 8.
    """

    num_classes: int
    planes: int = 32
    spp_planes: int = 128
    head_planes: int = 64
    layers: Sequence[int] = (2, 2, 2, 2)
    aux_head: bool = True
    context: Callable[..., nn.Module] = DAPPM
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        p, hp, dt = self.planes, 2 * self.planes, self.dtype
        if x.shape[1] % 8 or x.shape[2] % 8:
            # The strided convs give ceil(n/8) while the fusions resize to n//8 (official).
            raise ValueError(f"DDRNet needs H and W divisible by 8, got {x.shape[1:3]}")
        out_size = (x.shape[1] // 8, x.shape[2] // 8)
        relu = nn.relu

        def layer(block, in_planes, planes, blocks, stride, name):
            return ResLayer(block, in_planes, planes, blocks, stride, dtype=dt, name=name)

        def low_to_high(low, name):
            low = ConvBN(hp, 1, relu=False, dtype=dt, name=name)(relu(low), train)
            return resize_bilinear(low, out_size)

        x = x.astype(dt)
        x = StridedConvs((p, p), use_bias=True, final_relu=True, dtype=dt,
                         name="conv1")(x, train)
        x = layer(BasicBlock, p, p, self.layers[0], 1, "layer1")(x, train)
        x = layer(BasicBlock, p, 2 * p, self.layers[1], 2, "layer2")(relu(x), train)

        low = layer(BasicBlock, 2 * p, 4 * p, self.layers[2], 2, "layer3")(relu(x), train)
        high = layer(BasicBlock, 2 * p, hp, 2, 1, "layer3_")(relu(x), train)
        low, high = (low + StridedConvs((4 * p,), dtype=dt, name="down3")(relu(high), train),
                     high + low_to_high(low, "compression3"))
        aux_input = high

        low = layer(BasicBlock, 4 * p, 8 * p, self.layers[3], 2, "layer4")(relu(low), train)
        high = layer(BasicBlock, hp, hp, 2, 1, "layer4_")(relu(high), train)
        low, high = (low + StridedConvs((4 * p, 8 * p), dtype=dt, name="down4")(relu(high), train),
                     high + low_to_high(low, "compression4"))

        high = layer(Bottleneck, hp, hp, 1, 1, "layer5_")(relu(high), train)
        low = layer(Bottleneck, 8 * p, 8 * p, 1, 2, "layer5")(relu(low), train)
        context = self.context_module(branch_planes=self.spp_planes, out_planes=4 * p,
                                      dtype=dt, name="spp")(low, train)
        merged = resize_bilinear(context, out_size) + high

        head = lambda name: SegmentHead(self.head_planes, self.num_classes, dt, name=name)
        wide = precise_dtype(dt)
        out = {"logits": head("final_layer")(merged, train).astype(wide)}
        if self.aux_head:
            out["aux_logits"] = head("seghead_extra")(aux_input, train).astype(wide)
        return out

    def context_module(self, **kwargs: Any) -> nn.Module:
        """The `spp` module; subclasses add their context options here."""
        return self.context(**kwargs)
