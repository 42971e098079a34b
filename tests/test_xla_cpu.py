"""config.cpu_kernels: which kernels XLA compiles convolutions to on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import override, tiny_config

from segjax import inference, models, train, xla_cpu


def _compiled_text(kernels):
    def conv_and_matmul(x, kernel, a):
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y, a @ a

    args = (jnp.ones((8, 45, 60, 64)), jnp.ones((3, 3, 64, 64)), jnp.ones((512, 512)))
    jitted = jax.jit(conv_and_matmul, compiler_options=xla_cpu.compiler_options(kernels))
    return jitted.lower(*args).compile().as_text()


def test_eigen_takes_convolutions_off_ynnpack_and_keeps_matmuls_on_it():
    def library_calls(text):
        return {line.split("calls=")[1].split(",")[0] for line in text.splitlines()
                if "ynn_fusion" in line and "calls=" in line}

    assert len(library_calls(_compiled_text("ynnpack"))) == 2  # the convolution and the dot
    eigen = _compiled_text("eigen")
    assert len(library_calls(eigen)) == 1 and "convolution(" in eigen


def test_both_kernels_give_the_same_logits():
    model = models.build("fassdnet_l2", 19)
    shape = (1, 64, 128, 3)
    variables = inference.random_variables(model, shape, seed=0, scale=None)
    forward = inference.make_forward(model)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    eigen, ynnpack = (
        jax.jit(forward, compiler_options=xla_cpu.compiler_options(k))(variables, x)
        for k in ("eigen", "ynnpack"))
    scale = float(jnp.max(jnp.abs(ynnpack)))
    assert float(jnp.max(jnp.abs(eigen - ynnpack))) <= 1e-4 * max(scale, 1.0)


def test_an_unknown_choice_fails_before_the_run_writes_anything(tmp_path):
    config = override(tiny_config(), **{"cpu_kernels.train": "onednn"})
    with pytest.raises(ValueError, match=r"config.cpu_kernels.train='onednn'; choose eigen"):
        train.train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "config.json").exists()
