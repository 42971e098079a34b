"""ResNet-18/50 trunks in torchvision's layout, with dilation for dense prediction.

Module names are torchvision's (`conv1`, `bn1`, `layer3.1.conv2`, `layer1.0.downsample.0`,
`fc`), so ImageNet checkpoints convert by path. The residual blocks are shared with DDRNet,
whose blocks are these with a different Bottleneck expansion and ReLU placement.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register
from segjax.models.layers import BatchNorm, ConvBN, Dtype, conv2d, max_pool, precise_dtype


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN with identity (or 1×1 projection) shortcut; `no_relu` ends a layer."""

    planes: int
    stride: int = 1
    downsample: bool = False
    no_relu: bool = False
    dilation: int = 1
    dtype: Dtype = jnp.float32

    expansion = 1
    default_no_relu = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        bn = lambda name: BatchNorm(use_running_average=not train, dtype=self.dtype, name=name)
        d = self.dilation
        out = conv2d(self.planes, 3, self.stride, dilation=d, dtype=self.dtype, name="conv1")(x)
        out = nn.relu(bn("bn1")(out))
        out = conv2d(self.planes, 3, dilation=d, dtype=self.dtype, name="conv2")(out)
        out = bn("bn2")(out)
        if self.downsample:
            x = ConvBN(self.planes * self.expansion, 1, self.stride, relu=False,
                       dtype=self.dtype, name="downsample")(x, train)
        out = out + x
        return out if self.no_relu else nn.relu(out)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided, dilated: ResNet v1.5) → 1×1 expanding ×4, then ReLU."""

    planes: int
    stride: int = 1
    downsample: bool = False
    no_relu: bool = False
    dilation: int = 1
    dtype: Dtype = jnp.float32

    expansion = 4
    default_no_relu = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        bn = lambda name: BatchNorm(use_running_average=not train, dtype=self.dtype, name=name)
        out = conv2d(self.planes, 1, dtype=self.dtype, name="conv1")(x)
        out = nn.relu(bn("bn1")(out))
        out = conv2d(self.planes, 3, self.stride, dilation=self.dilation, dtype=self.dtype,
                     name="conv2")(out)
        out = nn.relu(bn("bn2")(out))
        out = conv2d(self.planes * self.expansion, 1, dtype=self.dtype, name="conv3")(out)
        out = bn("bn3")(out)
        if self.downsample:
            x = ConvBN(self.planes * self.expansion, 1, self.stride, relu=False,
                       dtype=self.dtype, name="downsample")(x, train)
        out = out + x
        return out if self.no_relu else nn.relu(out)


Block = type[BasicBlock] | type[Bottleneck]


class ResLayer(nn.Module):
    """One stage (`_make_layer`): blocks named '0', '1', ...; only the first may stride.

    The first block ends as the block class defaults; `end_without_relu` drops the ReLU of
    the last of several blocks, as DDRNet does. torchvision keeps every ReLU.
    """

    block: Block
    in_planes: int
    planes: int
    num_blocks: int
    stride: int = 1
    first_dilation: int = 1
    dilation: int = 1
    end_without_relu: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        out_planes = self.planes * self.block.expansion
        downsample = self.stride != 1 or self.in_planes != out_planes
        x = self.block(self.planes, self.stride, downsample, no_relu=self.block.default_no_relu,
                       dilation=self.first_dilation, dtype=self.dtype, name="0")(x, train)
        last = self.num_blocks - 1
        for i in range(1, self.num_blocks):
            x = self.block(self.planes, no_relu=self.end_without_relu and i == last,
                           dilation=self.dilation, dtype=self.dtype, name=str(i))(x, train)
        return x


OUTPUT_STRIDES = (8, 16, 32)


def stage_dilations(output_stride: int, dilate_first_block: bool = True):
    """(stride, first-block dilation, other-blocks dilation) for layer1..layer4.

    Dilation replaces the stride of layer4 (OS16) or layers 3 and 4 (OS8). DeepLab codebases
    such as NVIDIA's dilate every 3×3 of a dilated stage; torchvision's
    `replace_stride_with_dilation` keeps the previous dilation in each stage's first block
    (`dilate_first_block=False`).
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
    stages, dilation = [], 1
    for index, stride in enumerate((1, 2, 2, 2)):
        previous = dilation
        if stride == 2 and 4 * 2 ** index > output_stride:
            dilation, stride = dilation * 2, 1
        stages.append((stride, dilation if dilate_first_block else previous, dilation))
    return tuple(stages)


class ResNet(nn.Module):
    """torchvision ResNet returning the stage outputs c2..c5 (1/4 .. 1/output_stride).

    `include_top` adds the ImageNet `fc` (output `classifier`), so an ImageNet checkpoint
    converts strictly; segmentation models build the trunk without it.
    """

    block: Block
    stage_sizes: Sequence[int]
    num_classes: int = 1000
    output_stride: int = 32
    dilate_first_block: bool = True
    include_top: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        x = conv2d(64, 7, 2, dtype=self.dtype, name="conv1")(x.astype(self.dtype))
        x = nn.relu(BatchNorm(use_running_average=not train, dtype=self.dtype, name="bn1")(x))
        x = max_pool(x, 3, 2, 1)
        in_planes, outputs = 64, {}
        stages = stage_dilations(self.output_stride, self.dilate_first_block)
        for index, (blocks, (stride, first_dilation, dilation)) in enumerate(
                zip(self.stage_sizes, stages, strict=True)):
            planes = 64 * 2 ** index
            x = ResLayer(self.block, in_planes, planes, blocks, stride, first_dilation,
                         dilation, dtype=self.dtype, name=f"layer{index + 1}")(x, train)
            in_planes = planes * self.block.expansion
            outputs[f"c{index + 2}"] = x
        if self.include_top:
            pooled = jnp.mean(x, axis=(1, 2))
            outputs["classifier"] = nn.Dense(
                self.num_classes, dtype=self.dtype, param_dtype=precise_dtype(self.dtype),
                name="fc")(pooled)
        return outputs


def _register_resnet(name: str, block: Block, stage_sizes: Sequence[int]):
    @register(name, backbone=True)
    def factory(num_classes: int = 1000, output_stride: int = 32,
                dilate_first_block: bool = True, include_top: bool = True,
                dtype: Dtype = jnp.float32) -> ResNet:
        return ResNet(block, tuple(stage_sizes), num_classes, output_stride,
                      dilate_first_block, include_top, dtype)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"torchvision `{name}`: stage outputs c2..c5 (+ `classifier`)."
    return factory


resnet18 = _register_resnet("resnet18", BasicBlock, (2, 2, 2, 2))
resnet50 = _register_resnet("resnet50", Bottleneck, (3, 4, 6, 3))
