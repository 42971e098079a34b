"""Every recipe builds, locked; the CamVid CPU protocol keeps each recipe's loss."""

import importlib
import pathlib

import pytest

from configs import common

RECIPES = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
                 if p.stem not in ("__init__", "default", "common"))
CPU_VARIANTS = {"ddrnet23slim_camvid": "ohem", "bcmfnet_camvid": "ohem",
                "fassdnet_l2_camvid": "bootstrap", "fassdnet_camvid": "bootstrap",
                "msfnet_camvid": "ce"}


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_builds_locked(recipe):
    config = importlib.import_module(f"configs.{recipe}").get_config()
    assert config.is_locked
    with pytest.raises(AttributeError):
        config.no_such_field = 1


@pytest.mark.parametrize("recipe,loss", sorted(CPU_VARIANTS.items()))
def test_camvid_cpu_variant_keeps_the_recipe_loss(recipe, loss):
    module = importlib.import_module(f"configs.{recipe}")
    full, cpu = module.get_config(), module.get_config("cpu")
    assert (cpu.global_batch_size, cpu.num_train_steps, tuple(cpu.data.crop_size)) == (
        8, 2400, (360, 480))
    assert cpu.loss.name == full.loss.name == loss
    assert cpu.model.name == full.model.name and cpu.loss.bcl.weight == full.loss.bcl.weight
    assert cpu.loss.cbs.weight == full.loss.cbs.weight and cpu.data.resize_long_edge == 0
    assert cpu.optimizer.learning_rate == full.optimizer.learning_rate
    weights = dict(zip(range(11), cpu.loss.class_weights))
    assert weights[10] > weights[2] > 1 > weights[3]  # Bicyclist > Pole > 1 > Road


def test_sqrt_median_frequency_weights_average_one_over_pixels():
    shares = common.CAMVID_CLASS_SHARES
    weights = common.sqrt_median_frequency_weights(shares)
    assert sum(w * s for w, s in zip(weights, shares)) / sum(shares) == pytest.approx(1, abs=1e-3)
    median = sorted(shares)[len(shares) // 2]
    ratio = weights[2] / weights[shares.index(median)]
    assert ratio == pytest.approx((median / shares[2]) ** 0.5, rel=1e-3)


def test_unknown_variant_names_the_file_and_the_choices():
    module = importlib.import_module("configs.ddrnet23slim_camvid")
    with pytest.raises(ValueError, match=r"configs/ddrnet23slim_camvid.py:gpu: unknown variant; "
                                         r"choose one of cpu"):
        module.get_config("gpu")
