"""Recipes train on real data: a few CamVid frames, a few steps, the loss goes down."""

import numpy as np
import pytest
from helpers import override

import data_pipelines
from configs import bcmfnet_camvid, fassdnet_l2_camvid, msfnet_camvid, synergy_cityscapes
from segjax import train


class FirstFrames:
    """The first `n` examples of a source, so the steps revisit the same frames."""

    def __init__(self, source, n):
        self.source, self.n = source, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.source[i]

    def __repr__(self):
        return f"FirstFrames({self.source!r}, {self.n})"


CAMVID_CASES = [
    pytest.param(bcmfnet_camvid.get_config, 30, {}, id="bcmfnet", marks=pytest.mark.slow),
    # Bootstrapped CE, frames at a 256-pixel long edge for the final evaluation. ~230
    # CPU-seconds, most of it compiling the ~120 random initialisers and the backward pass.
    pytest.param(fassdnet_l2_camvid.get_config, 30, {"data.resize_long_edge": 256},
                 id="fassdnet_l2", marks=pytest.mark.slow),
    # Frames at a 256-pixel long edge (the recipe brings them to 1024) keep the evaluation
    # cheap; compiling the many small decoder stages still takes ~200 CPU-seconds.
    pytest.param(msfnet_camvid.get_config, 30, {"data.resize_long_edge": 256}, id="msfnet",
                 marks=pytest.mark.slow),
    # Two ResNet-50 passes per step: 10 steps, frames brought to a 128-pixel long edge so the
    # final evaluation stays cheap too. ~260 CPU-seconds.
    pytest.param(synergy_cityscapes.get_config, 10, {
        "dataset.name": "camvid", "data.resize_long_edge": 128, "data.crop_size": (64, 96),
        "data.scale_range": (1.0, 1.5)}, id="synergy", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make_config, steps, overrides", CAMVID_CASES)
def test_camvid_steps_lower_the_loss(make_config, steps, overrides, camvid_root, tmp_path,
                                     monkeypatch):
    real_build = data_pipelines.build_source
    monkeypatch.setattr(data_pipelines, "build_source",
                        lambda cfg, split: FirstFrames(real_build(cfg, split), 8))
    import data_pipelines.pipeline as pipeline

    monkeypatch.setattr(pipeline, "build_source", data_pipelines.build_source)
    config = override(make_config(), **{
        "dataset.root": str(camvid_root), "data.crop_size": (96, 128),
        "data.scale_range": (0.5, 0.75), "global_batch_size": 8, "eval_batch_size": 8,
        "num_train_steps": steps, "log_every_steps": 1, "eval_every_steps": 1000,
        "checkpoint_every_steps": 1000, "optimizer.learning_rate": 0.01, **overrides})
    result = train.train_and_evaluate(config, tmp_path)
    losses = [result["history"][s] for s in sorted(result["history"])]
    window = 5 if steps >= 20 else 3
    assert len(losses) == steps and np.all(np.isfinite(losses))
    assert np.mean(losses[-window:]) < 0.8 * np.mean(losses[:window]), losses
