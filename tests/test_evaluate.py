"""Evaluation counts every image exactly once, at full resolution, on a sharded batch."""

import jax
import numpy as np
import pytest
from helpers import tiny_config

from data_pipelines import build_source, pipeline
from segjax import evaluate, inference, losses, metrics, runtime, sharding, train


@pytest.mark.parametrize("num_devices", [1, 8])
def test_run_evaluation_equals_per_image_numpy_confusion(num_devices):
    config = tiny_config(**{"dataset.num_eval": 11, "eval_batch_size": 8})
    info = pipeline.dataset_info(config)
    mesh = sharding.make_mesh((-1,), ("data",), devices=jax.devices()[:num_devices])
    model = runtime.build_model(config, info.num_classes)
    tx, _ = train.make_optimizer(config.optimizer, config.num_train_steps)
    state = train.init_state(model, tx, jax.random.key(1), (1, 64, 64, 3), mesh)
    variables = state.variables()

    result, panels = evaluate.run_evaluation(model, variables, config, mesh, info=info,
                                             num_images_to_log=2)

    # Reference: one image at a time, no padding, no sharding, confusion built with NumPy.
    source = build_source(config.dataset, config.dataset.eval_split)
    norm = inference.InputNorm.from_config(config.data)
    expected = np.zeros((info.num_classes,) * 2, np.int64)
    apply = jax.jit(lambda v, x: model.apply(v, norm(x), train=False)["logits"])
    for i in range(len(source)):
        example = source[i]
        logits = apply(variables, example["image"][None])
        label = np.asarray(example["label"])
        pred = np.asarray(losses.upsample_logits(logits, label.shape).argmax(-1))[0]
        valid = label < info.num_classes
        np.add.at(expected, (label[valid], pred[valid]), 1)
    found = result["confusion_matrix"]
    # Every valid pixel of every image once: padding and masked examples add nothing.
    assert found.sum() == expected.sum()
    # Batched and single-image convolutions may round differently; argmax may flip on near-ties.
    assert np.abs(found - expected).sum() <= 1e-3 * expected.sum()
    np.testing.assert_allclose(result["miou"], metrics.compute_iou(expected)["miou"], atol=1e-3)
    assert result["num_images"] == 11
    assert panels.shape == (2, 64, 3 * 96, 3) and panels.dtype == np.uint8
