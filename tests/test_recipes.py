"""Recipes train on real data: a few CamVid frames, 30 steps, the loss goes down."""

import numpy as np
import pytest
from test_train import override

import data_pipelines
from configs import bcmfnet_camvid
from segjax import train


class FirstFrames:
    """The first `n` examples of a source, so 30 steps revisit the same frames."""

    def __init__(self, source, n):
        self.source, self.n = source, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.source[i]

    def __repr__(self):
        return f"FirstFrames({self.source!r}, {self.n})"


@pytest.mark.parametrize("make_config", [bcmfnet_camvid.get_config], ids=["bcmfnet"])
def test_thirty_camvid_steps_lower_the_loss(make_config, camvid_root, tmp_path, monkeypatch):
    real_build = data_pipelines.build_source
    monkeypatch.setattr(data_pipelines, "build_source",
                        lambda cfg, split: FirstFrames(real_build(cfg, split), 8))
    import data_pipelines.pipeline as pipeline

    monkeypatch.setattr(pipeline, "build_source", data_pipelines.build_source)
    config = override(make_config(), **{
        "dataset.root": str(camvid_root), "data.crop_size": (96, 128),
        "data.scale_range": (0.5, 0.75), "global_batch_size": 8, "eval_batch_size": 8,
        "num_train_steps": 30, "log_every_steps": 1, "eval_every_steps": 1000,
        "checkpoint_every_steps": 1000, "optimizer.learning_rate": 0.01})
    result = train.train_and_evaluate(config, tmp_path)
    losses = [result["history"][s] for s in sorted(result["history"])]
    assert len(losses) == 30 and np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
