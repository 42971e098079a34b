"""Forward parity with the official PyTorch code: every model and size with a fixture, through
the same path as `python -m segjax.tools.parity` (regenerated weights, the real converter)."""

import pytest

from segjax.tools import parity

# (registry name, fixture size, parameters, outputs compared)
CASES = [
    ("ddrnet23_slim", "128x256", 5_734_342, {"logits", "aux_logits"}),
    ("ddrnet23_slim", "120x200", 5_734_342, {"logits", "aux_logits"}),
    ("fchardnet70", "120x200", 4_119_257, {"logits"}),
    ("fassdnet", "120x200", 2_845_351, {"logits"}),
    ("fassdnet_l1", "120x200", 2_845_351, {"logits"}),
    ("fassdnet_l2", "120x200", 2_289_454, {"logits"}),
    ("deeplabv3plus_r50", "120x200", 40_351_040, {"logits"}),
    ("resnet18", "128x256", 11_689_512, {"c2", "c3", "c4", "c5"}),
    ("resnet18", "120x200", 11_689_512, {"c2", "c3", "c4", "c5"}),
    ("resnet50", "120x200", 25_557_032, {"c2", "c3", "c4", "c5"}),
]


@pytest.mark.parametrize("model, size, params, outputs", CASES,
                         ids=[f"{m}-{s}" for m, s, _, _ in CASES])
def test_forward_parity_with_the_official_code(parity_dir, model, size, params, outputs):
    result = parity.run_parity(model, parity_dir / f"{model}_{size}.npz",
                               parity_dir / f"{model}.json", fast_compile=True)
    assert set(result.errors) == outputs
    assert result.max_abs_err <= 1e-4, result.errors
    assert result.num_parameters == result.expected_parameters == params
