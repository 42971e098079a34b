"""DeepLabv3+ with a ResNet-50 trunk, as NVIDIA's `DeepV3PlusR50` (semantic-segmentation).

Also the network the multi-scale synergy model (synergy.py) shares across its scales. The
NVIDIA variant differs from the common VainF/jfzhang95 ports in ways that change the
weights' meaning, so they are kept: output stride 8 with every 3×3 of layer3/layer4 dilated
(first blocks included), ASPP concatenated as [image-pool, 1×1, r12, r24, r36] with no
projection inside, bare 1×1 `bot_aspp`/`bot_fine` (no BN/ReLU), two 3×3 decoder convs and a
bias-free classifier. Module names mirror NVIDIA's state-dict keys (`aspp.features.1.0`,
`final.3`, ...); only the trunk stem differs (`backbone.layer0.{0,1}` is our
`backbone.conv1`/`bn1`), which `KEY_RENAMES` maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register
from segjax.models.layers import (
    BatchNorm,
    ConvBN,
    Dtype,
    conv2d,
    global_avg_pool,
    precise_dtype,
    resize_bilinear,
)
from segjax.models.resnet import Bottleneck, ResNet

# ASPP rates at output stride 16; NVIDIA (and DeepLab) double them at output stride 8.
ASPP_RATES_OS16 = (6, 12, 18)
OUTPUT_STRIDES = (8, 16)

# NVIDIA's trunk wraps torchvision's conv1/bn1 as `layer0.{0,1}`. A bare torchvision ImageNet
# ResNet-50 (`conv1.`, `layer1.`, ...) lands in `backbone`; its `fc` is skipped (convert it
# with strict=False).
KEY_RENAMES = (
    (r"^backbone\.layer0\.0\.", "backbone.conv1."),
    (r"^backbone\.layer0\.1\.", "backbone.bn1."),
    (r"^(conv1|bn1|layer[1-4])\.", r"backbone.\1."),
)


def aspp_rates(output_stride: int) -> tuple[int, ...]:
    """The dilation rates that keep ASPP's field of view fixed in input pixels."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"DeepLabv3+ output_stride must be one of {OUTPUT_STRIDES}, "
                         f"got {output_stride!r}")
    return tuple(r * 16 // output_stride for r in ASPP_RATES_OS16)


class ASPPBranches(nn.Module):
    """The 1×1 and dilated 3×3 conv-BN-ReLU branches (NVIDIA's ModuleList `features`)."""

    features: int
    rates: Sequence[int]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> list[jax.Array]:
        outs = [ConvBN(self.features, 1, dtype=self.dtype, name="0")(x, train)]
        for i, rate in enumerate(self.rates, start=1):
            outs.append(ConvBN(self.features, 3, dilation=rate, dtype=self.dtype,
                               name=str(i))(x, train))
        return outs


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling: parallel 1×1, dilated 3×3s and image pooling.

    The dilated branches see the 1/8 map at several fields of view and the pooled branch
    adds global context; their concatenation (5 × `features`) is returned unprojected,
    image pooling first, because the projection (`bot_aspp`) lives in the decoder.
    """

    features: int = 256
    rates: Sequence[int] = (12, 24, 36)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        pooled = ConvBN(self.features, 1, dtype=self.dtype,
                        name="img_conv")(global_avg_pool(x), train)
        # Bilinear upsampling of a 1×1 map is a broadcast.
        pooled = jnp.broadcast_to(pooled, (*x.shape[:3], self.features))
        branches = ASPPBranches(self.features, tuple(self.rates), self.dtype,
                                name="features")(x, train)
        return jnp.concatenate([pooled, *branches], axis=-1)


class DecoderHead(nn.Module):
    """NVIDIA's `final` Sequential: two 3×3 conv-BN-ReLU, then a bias-free 1×1 to classes."""

    num_classes: int
    features: int = 256
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for conv, bn in (("0", "1"), ("3", "4")):
            x = conv2d(self.features, 3, dtype=self.dtype, name=conv)(x)
            x = nn.relu(BatchNorm(use_running_average=not train, dtype=self.dtype, name=bn)(x))
        return conv2d(self.num_classes, 1, dtype=self.dtype, name="6")(x)


@register("deeplabv3plus_r50", key_renames=KEY_RENAMES, aux_heads=0)
class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ R50 (NVIDIA `DeepV3PlusR50`): logits at the input size, float32.

    The ASPP output is projected (`bot_aspp`), upsampled to the stride-4 layer1 map and
    concatenated after its 48-channel projection (`bot_fine`) as [fine, aspp]; `final`
    predicts at 1/4 and the logits are resized to the input (align_corners=False).
    `output_stride=16` (layer4 dilated only, ASPP rates 6/12/18) is the cheaper option, about
    3× fewer MACs. `predict` exposes the stride-4 decoder features for multi-scale heads.
    """

    num_classes: int
    output_stride: int = 8
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        aspp_rates(self.output_stride)  # reject an unsupported stride before any tracing
        super().__post_init__()

    def setup(self):
        rates = aspp_rates(self.output_stride)
        self.backbone = ResNet(Bottleneck, (3, 4, 6, 3), output_stride=self.output_stride,
                               dilate_first_block=True, include_top=False, dtype=self.dtype)
        self.aspp = ASPP(256, rates, self.dtype)
        self.bot_fine = conv2d(48, 1, dtype=self.dtype)
        self.bot_aspp = conv2d(256, 1, dtype=self.dtype)
        self.final = DecoderHead(self.num_classes, 256, self.dtype)

    def predict(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """(logits at x's size in float32, the 304-channel stride-4 decoder input)."""
        features = self.backbone(x.astype(self.dtype), train)
        fine = self.bot_fine(features["c2"])
        aspp = self.bot_aspp(self.aspp(features["c5"], train))
        aspp = resize_bilinear(aspp, fine.shape[1:3])
        decoder_in = jnp.concatenate([fine, aspp], axis=-1)
        logits = self.final(decoder_in, train).astype(precise_dtype(self.dtype))
        return resize_bilinear(logits, x.shape[1:3]), decoder_in

    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        return {"logits": self.predict(x, train)[0]}
