"""The `spatial` mesh axis: bands of image rows per device give the same train and eval steps
as pure data parallelism and as one device."""

import jax
import numpy as np
import pytest
from helpers import assert_trees_close, tiny_config

from segjax import benchmark, evaluate, inference, losses, runtime, sharding, train

# Tall and narrow: DDRNet's 1/64 maps keep 2 rows per device on the spatial axis of 2, the
# thinnest band `sharding.MIN_ROWS_PER_DEVICE` allows (single-row bands partition 3x3
# convolutions wrongly in XLA).
CROP = (256, 64)
NUM_CLASSES = 19


def _mesh(shape, axes=("data", "spatial"), devices=None):
    return sharding.make_mesh(shape, axes, devices=devices)


MESHES = {
    "1 device": lambda: _mesh((1,), ("data",), jax.devices()[:1]),
    "data 8": lambda: _mesh((8,), ("data",)),
    "data 4 x spatial 2": lambda: _mesh((4, 2)),
    "data 2 x spatial 4": lambda: _mesh((2, 4)),
}


@pytest.fixture(scope="module")
def setup():
    """A narrow DDRNet-23-slim with DDRNet's OHEM + aux loss, its state and one batch."""
    config = tiny_config(**{"loss.name": "ohem", "optimizer.name": "sgd",
                            "optimizer.learning_rate": 0.01, "optimizer.warmup_steps": 0,
                            "data.crop_size": CROP})
    model = runtime.build_model(config, NUM_CLASSES)
    tx, schedule = train.make_optimizer(config.optimizer, config.num_train_steps)
    # NumPy-filled variables: compiling model.init would cost more than the steps under test.
    v = inference.random_variables(model, (1, *CROP, 3))
    state = jax.device_get(train.TrainState(step=np.int32(0), params=v["params"],
                                            batch_stats=v["batch_stats"],
                                            opt_state=tx.init(v["params"])))
    rng = np.random.default_rng(0)
    label = rng.integers(0, NUM_CLASSES, (8, *CROP)).astype(np.int32)
    label[:, :5] = 255  # some ignored rows
    batch = {"image": rng.standard_normal((8, *CROP, 3)).astype(np.float32), "label": label}
    return config, model, tx, schedule, state, batch


@pytest.fixture(scope="module")
def train_results(setup):
    config, model, tx, schedule, state, batch = setup
    results = {}
    for name in ("1 device", "data 4 x spatial 2"):  # 1 vs data 8: tests/test_train.py
        mesh = MESHES[name]()
        loss_cfg = losses.for_global_batch(config.loss, config.global_batch_size)
        step = train.make_train_step(model, tx, schedule, loss_cfg, mesh)
        global_batch = sharding.to_global(batch, mesh)
        new_state, scalars = step(jax.device_put(state, sharding.replicated(mesh)), global_batch)
        results[name] = (jax.device_get(new_state), jax.device_get(scalars), global_batch)
    return results


def test_spatial_batch_holds_bands_of_rows(train_results):
    _, _, global_batch = train_results["data 4 x spatial 2"]
    image, label = global_batch["image"], global_batch["label"]
    assert image.sharding.spec == jax.sharding.PartitionSpec("data", "spatial")
    assert {s.data.shape for s in image.addressable_shards} == {(2, 128, 64, 3)}
    assert {s.data.shape for s in label.addressable_shards} == {(2, 128, 64)}
    np.testing.assert_array_equal(sharding.process_local(image), np.asarray(image))


def test_one_train_step_matches_one_device(train_results):
    state1, scalars1, _ = train_results["1 device"]
    state, scalars, _ = train_results["data 4 x spatial 2"]
    assert set(scalars) == set(scalars1)
    for key in scalars1:
        assert scalars[key] == pytest.approx(scalars1[key], abs=1e-5, rel=1e-5), key
    assert_trees_close(state1.params, state.params, 1e-5)
    assert_trees_close(state1.batch_stats, state.batch_stats, 1e-5)
    # SGD momentum = this step's raw gradients: summed over 131k pixels in another order.
    assert_trees_close(state1.opt_state, state.opt_state, 1e-4)


def test_eval_step_and_logits_match_one_device(setup):
    config, model, _, _, state, batch = setup
    variables = state.variables()
    eval_batch = {**batch, "mask": np.array([True] * 7 + [False])}
    forward = inference.make_forward(model)
    results = {}
    for name in ("1 device", "data 4 x spatial 2"):
        mesh = MESHES[name]()
        repl, pixels = sharding.replicated(mesh), sharding.batch_sharding(mesh, ndim=4)
        v = jax.device_put(variables, repl)
        global_batch = sharding.to_global(eval_batch, mesh)
        eval_step = evaluate.make_eval_step(inference.Predictor.for_model(model), NUM_CLASSES,
                                            mesh)
        cm, pred = eval_step(v, global_batch)
        logits = jax.jit(forward, in_shardings=(repl, pixels))(v, global_batch["image"])
        assert pred.sharding.spec == pixels.spec
        results[name] = (np.asarray(cm), sharding.process_local(pred), np.asarray(logits))
    cm1, pred1, logits1 = results["1 device"]
    assert cm1.sum() == 7 * (CROP[0] - 5) * CROP[1]  # masked example and ignored rows left out
    for name in ("data 4 x spatial 2",):
        cm, pred, logits = results[name]
        np.testing.assert_allclose(logits, logits1, atol=1e-5, rtol=1e-5, err_msg=name)
        np.testing.assert_array_equal(cm, cm1, err_msg=name)
        np.testing.assert_array_equal(pred, pred1, err_msg=name)


def test_height_not_divisible_by_the_spatial_axis_is_a_clear_error():
    mesh = MESHES["data 2 x spatial 4"]()
    with pytest.raises(ValueError, match=r"height 62 \(config.data.crop_size\).*4 devices of "
                                         r"the mesh's 'spatial' axis.*mesh.shape=\(2, 4\)"):
        sharding.check_batch_size(8, mesh, height=62)
    with pytest.raises(ValueError, match="not divisible by the 4 devices of the mesh's 'spatial'"):
        sharding.to_global({"image": np.zeros((8, 62, 16, 3), np.float32)}, mesh)
    config = tiny_config(**{"data.crop_size": (62, 64), "mesh.shape": (2, 4),
                            "mesh.axes": ("data", "spatial")})
    with pytest.raises(ValueError, match=r"config.data.crop_size"):
        train.setup(config, "/nonexistent-unused")


def test_bands_thinner_than_the_minimum_are_refused():
    mesh = MESHES["data 2 x spatial 4"]()
    sharding.check_height(4 * sharding.MIN_ROWS_PER_DEVICE, mesh)
    with pytest.raises(ValueError, match=r"height 256 \(config.data.crop_size\).*leaves 64 rows "
                                         r"per device; at least 128"):
        sharding.check_batch_size(8, mesh, height=256)
    with pytest.raises(ValueError, match="leaves 64 rows per device"):
        sharding.to_global({"image": np.zeros((8, 256, 16, 3), np.float32)}, mesh)


def test_global_batch_must_divide_the_data_axis_only():
    mesh = MESHES["data 4 x spatial 2"]()
    assert sharding.check_batch_size(4, mesh, height=256) == 4  # 4 images on 8 devices
    with pytest.raises(ValueError, match="not divisible by the 4 devices of the mesh's 'data'"):
        sharding.check_batch_size(6, mesh)
    with pytest.raises(ValueError, match=r"mesh.shape=\(-1, 2\)"):  # the hint for data-only
        sharding.check_batch_size(12, MESHES["data 8"]())


def test_benchmark_on_a_spatial_mesh():
    kwargs = dict(model_kwargs={"planes": 8, "spp_planes": 16, "head_planes": 16},
                  resolution="512x64", warmup=1, time_budget_s=0.1, min_iterations=2,
                  printer=lambda _: None)
    P = jax.sharding.PartitionSpec
    banded = benchmark.run_benchmark("ddrnet23_slim", NUM_CLASSES, batch_size=2,
                                     mesh=_mesh((2, 4)), **kwargs)
    assert banded["mesh"] == "data=2,spatial=4" and banded["input_sharding"] == str(
        P("data", "spatial"))
    assert banded["fps"] > 0 and banded["gmacs"] > 0 and banded["folded_batchnorms"] > 0
    # Batch 1 cannot split over 2 data indices: bands only, the same image on both.
    assert benchmark._input_spec(_mesh((2, 4)), 1, 512) == P(None, "spatial")
    assert benchmark._input_spec(_mesh((8,), ("data",)), 8, 64) == P("data")
    with pytest.raises(ValueError, match="config.benchmark.resolution"):
        benchmark.run_benchmark("ddrnet23_slim", NUM_CLASSES, mesh=_mesh((1, 8)),
                                **{**kwargs, "resolution": "60x128"})
