"""torchvision ResNet trunks: parity with torchvision, dilation rules, backbone guard."""

import jax
import jax.numpy as jnp
import pytest
from helpers import tiny_config

from segjax import models, runtime
from segjax.models import resnet


@pytest.mark.parametrize("output_stride, dilate_first, expected", [
    (32, True, ((1, 1, 1), (2, 1, 1), (2, 1, 1), (2, 1, 1))),
    (16, True, ((1, 1, 1), (2, 1, 1), (2, 1, 1), (1, 2, 2))),
    (8, True, ((1, 1, 1), (2, 1, 1), (1, 2, 2), (1, 4, 4))),
    # torchvision's replace_stride_with_dilation: a stage's first block keeps the old rate.
    (8, False, ((1, 1, 1), (2, 1, 1), (1, 1, 2), (1, 2, 4))),
])
def test_stage_dilations(output_stride, dilate_first, expected):
    assert resnet.stage_dilations(output_stride, dilate_first) == expected


def test_unknown_output_stride_is_rejected():
    with pytest.raises(ValueError, match="output_stride must be one of"):
        resnet.stage_dilations(4)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_stride_sets_the_deepest_resolution(output_stride):
    model = models.build("resnet50", 1000, output_stride=output_stride, include_top=False)
    x = jax.ShapeDtypeStruct((1, 128, 192, 3), jnp.float32)
    shapes = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), x)[0]
    assert "classifier" not in shapes
    assert shapes["c2"].shape == (1, 32, 48, 256)
    assert shapes["c5"].shape == (1, 128 // output_stride, 192 // output_stride, 2048)


def test_dilation_rule_changes_the_function_not_the_weights():
    x = jax.random.normal(jax.random.key(1), (1, 64, 64, 3))
    nvidia = models.build("resnet18", 1000, output_stride=8, include_top=False)
    variables = nvidia.init(jax.random.key(0), x)
    torchvision = models.build("resnet18", 1000, output_stride=8, include_top=False,
                               dilate_first_block=False)
    a, b = nvidia.apply(variables, x), torchvision.apply(variables, x)
    assert a["c3"].shape[1:3] == a["c5"].shape[1:3] == (8, 8)
    assert jnp.allclose(a["c3"], b["c3"])
    assert not jnp.allclose(a["c4"], b["c4"], atol=1e-3)


def test_trainer_refuses_a_bare_backbone():
    config = tiny_config(**{"model.name": "resnet18"})
    with pytest.raises(ValueError, match="resnet18 is a backbone"):
        runtime.build_model(config, 19)
