"""Evaluation views: sliding windows, multi-scale and flip test-time augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import override, tiny_config

from segjax import evaluate, inference, runtime, sharding

# A pointwise "network": per-pixel linear class scores. Sliding windows and flips cannot
# change its output, which makes exact reference checks possible.
WEIGHTS = jnp.asarray(np.random.default_rng(0).standard_normal((3, 5)), jnp.float32)


def pointwise(variables, x):
    return {"logits": jnp.einsum("nhwc,ck->nhwk", x, WEIGHTS)}


def strided(variables, x):
    """Scores at 1/4 resolution that depend on the position inside the window."""
    h, w = x.shape[1:3]
    if h % 4 or w % 4:
        raise ValueError(f"input {h}x{w} is not a multiple of 4")
    pooled = x.reshape(x.shape[0], h // 4, 4, w // 4, 4, 3).mean(axis=(2, 4))
    ramp = jnp.linspace(0.0, 1.0, h // 4)[None, :, None, None]
    return {"logits": jnp.einsum("nhwc,ck->nhwk", pooled, WEIGHTS) + ramp}


IMAGES = jax.random.normal(jax.random.key(0), (2, 37, 53, 3))


@pytest.mark.parametrize("size, window, stride, expected", [
    (100, 100, 60, [0]),
    (80, 100, 60, [0]),
    (1024, 512, 341, [0, 341, 512]),
    (2048, 1024, 768, [0, 768, 1024]),
])
def test_window_grid_covers_the_image(size, window, stride, expected):
    starts = inference._window_starts(size, window, stride)
    assert starts == expected
    assert starts[-1] + min(window, size) >= size


def test_single_view_is_the_plain_forward():
    want = pointwise(None, IMAGES)["logits"]
    got = inference.class_scores(pointwise, None, IMAGES, (37, 53))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_slide_equals_whole_for_a_pointwise_network():
    view = inference.ViewConfig(mode="slide", window=(16, 24), stride=(10, 17))
    got = inference.class_scores(pointwise, None, IMAGES, (37, 53), view)
    want = jax.nn.softmax(pointwise(None, IMAGES)["logits"], axis=-1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_slide_averages_overlapping_windows():
    """Each pixel's logits are the mean over the windows that contain it (NumPy reference)."""
    view = inference.ViewConfig(mode="slide", window=(16, 24), stride=(12, 16))
    got = np.asarray(inference._slide(strided, None, IMAGES[:, :32, :48], view))
    x = np.asarray(IMAGES[:, :32, :48])
    total, count = np.zeros((2, 32, 48, 5)), np.zeros((32, 48, 1))
    for y in (0, 12, 16):
        for xx in (0, 16, 24):
            logits = np.asarray(strided(None, jnp.asarray(x[:, y:y + 16, xx:xx + 24]))["logits"])
            up = np.asarray(inference.resize_bilinear(jnp.asarray(logits), (16, 24)))
            total[:, y:y + 16, xx:xx + 24] += up
            count[y:y + 16, xx:xx + 24] += 1
    np.testing.assert_allclose(got, total / count, atol=1e-5)


def test_flip_averages_the_mirrored_prediction():
    view = inference.ViewConfig(flip=True, input_multiple=4)
    got = inference.class_scores(strided, None, IMAGES[:, :32, :48], (32, 48), view)
    x = IMAGES[:, :32, :48]
    plain = inference.resize_bilinear(strided(None, x)["logits"], (32, 48))
    mirrored = inference.resize_bilinear(strided(None, x[:, :, ::-1])["logits"], (32, 48))
    want = (jax.nn.softmax(plain, -1) + jax.nn.softmax(mirrored[:, :, ::-1], -1)) / 2
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_multiscale_pads_each_view_to_the_networks_multiple():
    view = inference.ViewConfig(scales=(0.5, 0.75, 1.25), flip=True, input_multiple=4)
    got = inference.class_scores(strided, None, IMAGES, (37, 53), view)
    assert got.shape == (2, 37, 53, 5)
    np.testing.assert_allclose(np.sum(np.asarray(got), -1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 4"):
        inference.class_scores(strided, None, IMAGES, (37, 53),
                               inference.ViewConfig(scales=(0.5, 1.0)))


@pytest.mark.parametrize("field, value, match", [
    ("mode", "sliding", "config.eval_mode"),
    ("scales", (), "config.eval_scales"),
    ("scales", (0.0, 1.0), "config.eval_scales"),
])
def test_bad_view_settings_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        inference.ViewConfig(**{field: value})


def test_describe_says_which_views_produced_a_number():
    assert inference.ViewConfig().describe() == "whole"
    view = inference.ViewConfig(mode="slide", window=(512, 512), stride=(256, 384),
                                scales=(0.5, 1.0), flip=True)
    assert view.describe() == "slide 512x512/256x384, scales 0.5,1, flip"


@pytest.mark.slow
def test_evaluation_with_test_time_augmentation(tmp_path):
    config = tiny_config(**{"eval_mode": "slide", "eval_window": (64, 64),
                            "eval_stride": (64, 32), "eval_scales": (0.75, 1.0),
                            "eval_flip": True})
    view = runtime.view_config(config)
    assert view.input_multiple == 8  # DDRNet's requirement, from the registry
    model = runtime.build_model(config, 19)
    variables = inference.random_variables(model, (1, 64, 64, 3))
    mesh = sharding.make_mesh(config.mesh.shape, config.mesh.axes)
    result, _ = evaluate.run_evaluation(model, variables, config, mesh,
                                        info=runtime.dataset_info(config))
    assert result["num_images"] == 5
    assert result["mode"] == "slide 64x64/64x32, scales 0.75,1, flip"
    assert int(result["confusion_matrix"].sum()) > 0
    config = override(config, **{"eval_mode": "tiles"})
    with pytest.raises(ValueError, match="config.eval_mode='tiles'"):
        runtime.view_config(config)
