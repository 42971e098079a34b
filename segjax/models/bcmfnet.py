"""BCMFNet: DDRNet-23-slim with the Low-resolution Multi-scale Fusion Module (LMFM) as its
`spp` context module.

The trunk and heads, module names included, are DDRNet-23-slim's, so the two models'
variables differ only under `spp`. The paper's other addition, the flip boundary corrected
loss, is a training loss and lives with the losses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from segjax.models import register
from segjax.models.ddrnet import DDRNet, pyramid_pooling_fusion
from segjax.models.layers import Dtype

LMFM_CONNECTIONS = ("interval", "alternating")


def check_lmfm_options(connection: str, p4_kernel: int) -> None:
    """Reject unknown LMFM choices at construction, before any tracing."""
    if connection not in LMFM_CONNECTIONS:
        raise ValueError(f"unknown LMFM connection {connection!r}; "
                         f"valid: {', '.join(LMFM_CONNECTIONS)}")
    if not (isinstance(p4_kernel, int) and p4_kernel > 0 and p4_kernel % 2):
        raise ValueError(f"LMFM p4_kernel must be a positive odd int, got {p4_kernel!r}")


class LMFM(nn.Module):
    """Low-resolution Multi-scale Fusion Module, a drop-in for DAPPM.

    The paper's wiring (its Fig. 3(d)) cannot be read off, so this is a reconstruction, the
    one that lands on the paper's 5.6M params. Same pooled branches as DAPPM, but with the
    "interval" connection each refinement reads the branch two steps back
    (y2 = P2(s2+y0), y3 = P3(s3+y1), y4 = P4(s4+y2)), giving two interleaved chains in which
    the smaller pooling kernels are processed deeper; P4 is a 1×1 because the GAP branch is
    spatially flat. `connection="alternating"` (alternative (a)) keeps DAPPM's adjacent
    cascade and alternates 3×3/1×1 refinements; `p4_kernel=3` (alternative (b)) matches
    DAPPM's size.
    """

    branch_planes: int = 128
    out_planes: int = 128
    connection: str = "interval"
    p4_kernel: int = 1
    dtype: Dtype = jnp.float32

    def __post_init__(self):
        check_lmfm_options(self.connection, self.p4_kernel)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.connection == "interval":
            sources, kernels = (0, 0, 1, 2), (3, 3, 3, self.p4_kernel)
        else:
            sources, kernels = (0, 1, 2, 3), (3, 1, 3, self.p4_kernel)
        return pyramid_pooling_fusion(x, train, self.branch_planes, self.out_planes,
                                      sources=sources, kernels=kernels, dtype=self.dtype)


@register("bcmfnet", aux_heads=1, input_multiple=8)
class BCMFNet(DDRNet):
    """BCMFNet: DDRNet-23-slim with LMFM in place of DAPPM as `spp`, everything else as is.

    The LMFM choices are flat fields so configs can set them like any model kwarg.
    """

    context: Callable[..., nn.Module] = LMFM
    lmfm_connection: str = "interval"
    lmfm_p4_kernel: int = 1

    def __post_init__(self):
        check_lmfm_options(self.lmfm_connection, self.lmfm_p4_kernel)
        super().__post_init__()

    def context_module(self, **kwargs: Any) -> nn.Module:
        return self.context(connection=self.lmfm_connection, p4_kernel=self.lmfm_p4_kernel,
                            **kwargs)
