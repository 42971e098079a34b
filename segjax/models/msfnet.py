"""MSFNet (Si et al., "Real-Time Semantic Segmentation via Multiply Spatial Fusion Network").

No code was published, so the wiring is reconstructed as the one whose FLOPs reproduce the
paper's three published figures: every ResNet-18 stage output B_i is average-pooled J times
by Spatial Aware Pooling; the maps that share a resolution are concatenated and fused by one
depthwise-separable 3×3 to 256 channels (Multi-features Fusion Module); one or two
independent upsampling branches climb from the coarsest MFM output to 1/8, each stage
concatenating the upsampled features with that level's MFM output. With Class Boundary
Supervision, branch 2 also predicts class boundaries at 1/8, and both branches are fused at
1/8 before the classifier and the ×8 bilinear upsampling.

Levels are strides 2^L: B_i (i = 1..4) sits at L = i+1 and its j-th pooling at L = i+1+j.
B_1 itself (1/4) is not decoded; its poolings are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register
from segjax.models.layers import (
    BatchNorm,
    Dtype,
    avg_pool,
    conv2d,
    max_pool,
    precise_dtype,
    resize_bilinear,
)
from segjax.models.resnet import BasicBlock, ResNet

POOLINGS = ("avg", "max")
STAGE_MERGES = ("concat", "add")
# Stride exponents of the ResNet stage outputs B_1..B_4 (1/4 .. 1/32).
STAGE_LEVELS = (2, 3, 4, 5)
FINEST_LEVEL = 3  # decoding ends at 1/8


def imagenet_trunk_key(key: str) -> str | None:
    """Key renames: MSFNet has no released weights, so a torchvision ImageNet ResNet-18 fills
    `backbone` (its `fc` is dropped) and the decoder keeps its init (convert with strict=False).
    """
    return None if key.startswith("fc.") else re.sub(r"^(conv1|bn1|layer[1-4])\.",
                                                      r"backbone.\1.", key)


class DepthwiseSeparableConv(nn.Module):
    """dw3×3-BN-ReLU-pw1×1-BN-ReLU: the paper's "dwc", cheap on the wide concatenations."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        bn = lambda name: BatchNorm(use_running_average=not train, dtype=self.dtype, name=name)
        channels = x.shape[-1]
        x = conv2d(channels, 3, groups=channels, dtype=self.dtype, name="depthwise")(x)
        x = nn.relu(bn("bn1")(x))
        x = conv2d(self.features, 1, dtype=self.dtype, name="pointwise")(x)
        return nn.relu(bn("bn2")(x))


class SpatialAwarePooling(nn.Module):
    """O^0 = B and O^j = pool_j(B) for j = 1..J, each pooled straight from B (not cascaded).

    Pool j has stride s = 2^j, kernel 2s+1 and padding s, so every pixel falls in several
    overlapping windows and an n-pixel axis gives ceil(n/s), the size the ResNet's own
    stride-2 layers produce at that level, whatever the input size. Average pooling counts
    the zero padding (PyTorch's count_include_pad=True).
    """

    num_poolings: int
    pooling: str = "avg"

    @nn.compact
    def __call__(self, b: jax.Array) -> list[jax.Array]:
        outputs = [b]
        pool = avg_pool if self.pooling == "avg" else max_pool
        for j in range(1, self.num_poolings + 1):
            s = 2 ** j
            # Window sums of up to 65² values: accumulate in at least float32.
            outputs.append(pool(b.astype(precise_dtype(b.dtype)), 2 * s + 1, s, s).astype(b.dtype))
        return outputs


class MultiFeaturesFusion(nn.Module):
    """Concatenates the same-resolution SAP outputs and fuses them to `features` channels."""

    features: int = 256
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, members: Sequence[jax.Array], train: bool = False) -> jax.Array:
        sizes = {m.shape[1:3] for m in members}
        if len(sizes) != 1:
            raise ValueError(f"MFM members differ in size: {sorted(sizes)}")
        x = jnp.concatenate(members, axis=-1)
        return DepthwiseSeparableConv(self.features, self.dtype, name="fuse")(x, train)


class UpsamplingBranch(nn.Module):
    """Coarsest MFM output → 1/8: per finer level, upsample to that level's exact size and
    merge with its MFM output ("concat": dwc 2C→C; "add": sum then dwc C→C)."""

    features: int = 256
    stage_merge: str = "concat"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, mfm: Mapping[int, jax.Array], train: bool = False) -> jax.Array:
        levels = sorted(mfm, reverse=True)
        y = mfm[levels[0]]
        for level in levels[1:]:
            skip = mfm[level]
            y = resize_bilinear(y, skip.shape[1:3])
            y = jnp.concatenate([y, skip], axis=-1) if self.stage_merge == "concat" else y + skip
            y = DepthwiseSeparableConv(self.features, self.dtype,
                                       name=f"stage{2 ** level}")(y, train)
        return y


def check_msfnet_options(num_classes, num_poolings, channels, stage_merge, pooling,
                         num_branches) -> None:
    """Reject bad constructor arguments before any tracing."""
    def positive_int(value):
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if not positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if not (isinstance(num_poolings, int) and not isinstance(num_poolings, bool)
            and num_poolings >= 0):
        raise ValueError(f"num_poolings must be an int >= 0 (5 for 1024x2048, 4 for "
                         f"512x1024, 3 for CamVid), got {num_poolings!r}")
    if not positive_int(channels):
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    if stage_merge not in STAGE_MERGES:
        raise ValueError(f"unknown stage_merge {stage_merge!r}; valid: {', '.join(STAGE_MERGES)}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    if num_branches not in (0, 1, 2):
        raise ValueError(f"num_branches must be 1, 2 or 0 (two with class boundary "
                         f"supervision, one without), got {num_branches!r}")


@register("msfnet", key_renames=imagenet_trunk_key)
class MSFNet(nn.Module):
    """Multiply Spatial Fusion Network on a torchvision-layout ResNet-18 (`backbone`).

    Defaults are the paper's Cityscapes 1024×2048 model (J = 5 SAP poolings, 256-channel
    concat stages, Class Boundary Supervision): 96.8 GFLOPs in the paper. `num_poolings`
    is 4 for 512×1024 and 3 for CamVid. `class_boundary_supervision=False` is the paper's
    "without CBS" model (85.2 GFLOPs): a single upsampling branch and the classifier on its
    output. `num_branches` overrides that pairing for the branch ablation (0 = the paper's
    choice); with one branch and CBS the boundary head sits on that branch.
    `channels` (256 or 128), `stage_merge` ("concat" | "add") and `pooling` ("avg" | "max")
    are left open by the paper; the defaults are the reconstruction described above.

    Returns `logits` (N, H, W, C) at the input size and, with CBS, `boundary_logits`
    (N, ceil(H/8), ceil(W/8), C+1) whose channel C means "not a boundary" (see segjax.losses.cbs);
    both float32 whatever `dtype`.
    """

    num_classes: int
    num_poolings: int = 5
    channels: int = 256
    stage_merge: str = "concat"
    pooling: str = "avg"
    class_boundary_supervision: bool = True
    num_branches: int = 0
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_msfnet_options(self.num_classes, self.num_poolings, self.channels,
                             self.stage_merge, self.pooling, self.num_branches)
        super().__post_init__()

    @property
    def branches(self) -> int:
        if self.num_branches:
            return self.num_branches
        return 2 if self.class_boundary_supervision else 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        size, dt = x.shape[1:3], self.dtype
        features = ResNet(BasicBlock, (2, 2, 2, 2), include_top=False, dtype=dt,
                          name="backbone")(x, train)
        stages = [features[f"c{i}"] for i in range(2, 6)]

        members: dict[int, list[jax.Array]] = {}
        for level, b in zip(STAGE_LEVELS, stages, strict=True):
            outputs = SpatialAwarePooling(self.num_poolings, self.pooling)(b)
            for j, o in enumerate(outputs):
                if level + j >= FINEST_LEVEL:
                    members.setdefault(level + j, []).append(o)
        mfm = {level: MultiFeaturesFusion(self.channels, dt, name=f"mfm{2 ** level}")(m, train)
               for level, m in members.items()}

        branch = lambda i: UpsamplingBranch(self.channels, self.stage_merge, dt,
                                            name=f"branch{i}")(mfm, train)
        outputs = [branch(i) for i in range(1, self.branches + 1)]
        head = lambda features, name: conv2d(features, 1, use_bias=True, dtype=dt, name=name)
        out = {}
        if self.class_boundary_supervision:
            out["boundary_logits"] = head(self.num_classes + 1, "boundary_head")(
                outputs[-1]).astype(precise_dtype(dt))
        y = outputs[0]
        if len(outputs) > 1:
            y = DepthwiseSeparableConv(self.channels, dt, name="fusion")(
                jnp.concatenate(outputs, axis=-1), train)
        logits = head(self.num_classes, "classifier")(y).astype(precise_dtype(dt))
        out["logits"] = resize_bilinear(logits, size)
        return out
