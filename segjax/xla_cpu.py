"""Which kernels XLA runs convolutions on when it compiles for CPU.

XLA hands convolutions to YNNPACK by default; the alternative is its own Eigen kernels. On a
2-core x86 CPU neither wins everywhere (batch 1, 512×1024 inference; batch 8, 360×480 train
steps):

| | YNNPACK | Eigen |
|---|---:|---:|
| FASSD-Net-L2 inference | 80 ms | 53 ms |
| FC-HarDNet-70 inference | 245 ms | 181 ms |
| DDRNet-23-slim inference | 146 ms | 128 ms |
| DeepLabv3+ R50 inference | 5.3 s | 3.9 s |
| FASSD-Net train step | 3.9 s | 2.5 s |
| FC-HarDNet-70 train step | 4.0 s | 2.8 s |
| DDRNet-23-slim train step | 1.96 s | 2.00 s |
| MSFNet train step | 5.4 s | 7.7 s |

so inference and training choose apart (`config.cpu_kernels.inference` / `.train`). Matmuls
stay on YNNPACK either way. The choice is a per-computation compiler option, not a process
flag, so a notebook can mix both; off CPU it is a no-op.
"""

from __future__ import annotations

import jax

CPU_KERNELS = ("eigen", "ynnpack")
# XLA's default YNNPACK fusions are convolutions and matmuls; "eigen" keeps only the matmuls.
_EIGEN_CONVOLUTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compiler_options(kernels: str, field: str = "cpu_kernels", platform: str | None = None
                     ) -> dict[str, str]:
    """`jax.jit(..., compiler_options=...)` for `kernels` on `platform` (default: JAX's
    default backend); `field` names the config field in the error for an unknown choice."""
    if kernels not in CPU_KERNELS:
        raise ValueError(f"config.{field}={kernels!r}; choose {' or '.join(CPU_KERNELS)}")
    if kernels == "ynnpack" or (platform or jax.default_backend()) != "cpu":
        return {}
    return dict(_EIGEN_CONVOLUTIONS)


def for_config(config, use: str, platform: str | None = None) -> dict[str, str]:
    """`compiler_options` of `config.cpu_kernels.<use>` ("train" or "inference")."""
    return compiler_options(config.cpu_kernels[use], f"cpu_kernels.{use}", platform)
