"""Inference path: BatchNorm folding, serialized export, and the speed benchmark."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from segjax import benchmark, convert, export, inference, models
from segjax.tools import parity

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _ddrnet_with_parity_weights(parity_dir):
    meta = json.loads((parity_dir / "ddrnet23_slim.json").read_text())
    return convert.convert_for_model("ddrnet23_slim", parity.make_state_dict(meta["manifest"]),
                                     19, aux_head=True)


def test_folded_ddrnet_matches_official_outputs(parity_dir):
    model, variables = _ddrnet_with_parity_weights(parity_dir)
    fixture = np.load(parity_dir / "ddrnet23_slim_120x200.npz")
    x = jnp.asarray(np.transpose(fixture["input"], (0, 2, 3, 1)))
    folded, folded_vars = inference.fold_batchnorm(model, variables, x.shape)
    with jax.default_matmul_precision("highest"):
        got = folded.apply(folded_vars, x)
    for name in ("logits", "aux_logits"):
        want = np.transpose(fixture[name], (0, 2, 3, 1))
        assert np.max(np.abs(np.asarray(got[name]) - want)) <= 1e-4
    # Every conv-fed BatchNorm is gone; pre-activation ones (DAPPM, heads' inputs) remain.
    before = traverse_util.flatten_dict(variables["batch_stats"])
    remaining = traverse_util.flatten_dict(folded_vars["batch_stats"])
    assert len(folded.pairs) == 44
    assert {path[0] for path in remaining} == {"spp", "final_layer", "seghead_extra"}
    assert len(before) - len(remaining) == 2 * len(folded.pairs)


def _perturbed(variables, seed=0):
    """Non-trivial BatchNorm statistics and affine params, so folding has work to do."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        last = path[-1].key
        if last == "var":
            return jnp.asarray(0.5 + rng.uniform(0, 1, leaf.shape), leaf.dtype)
        if last in ("mean", "bias"):
            return jnp.asarray(0.1 * rng.standard_normal(leaf.shape), leaf.dtype)
        if last == "scale":
            return jnp.asarray(1 + 0.1 * rng.standard_normal(leaf.shape), leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(draw, variables)


@pytest.mark.parametrize("name, every_norm_follows_a_conv", [
    ("bcmfnet", False), ("resnet18", True), ("synergy_deeplabv3plus_r50", True)])
def test_folding_preserves_the_function(name, every_norm_follows_a_conv):
    kwargs = {"include_top": False} if name == "resnet18" else {}
    model = models.build(name, 19, **kwargs)
    x = jax.random.normal(jax.random.key(1), (2, 64, 96, 3))
    variables = _perturbed(inference.random_variables(model, x.shape))
    folded, folded_vars = inference.fold_batchnorm(model, variables, x.shape)
    assert folded.pairs
    if every_norm_follows_a_conv:  # also in the network the synergy model calls twice
        assert not folded_vars["batch_stats"]
    with jax.default_matmul_precision("highest"):
        want, got = model.apply(variables, x), folded.apply(folded_vars, x)
    # The synergy model's fused outputs are softmaxes of ~1e3-sized logits from random
    # weights, which magnify rounding; folding changes its networks' logits, checked here.
    want, got = (want["scale_logits"], got["scale_logits"]) if "scale_logits" in want else (
        want, got)
    for (key, w), g in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got)):
        scale = float(jnp.max(jnp.abs(w)))
        assert float(jnp.max(jnp.abs(w - g))) <= 1e-5 * max(scale, 1.0), key


def test_folding_a_conv_with_bias_keeps_its_bias():
    # DDRNet's stem convs are biased: dropping the bias would shift every feature.
    model = models.build("ddrnet23_slim", 19, aux_head=False)
    x = jax.random.normal(jax.random.key(1), (1, 64, 64, 3))
    variables = _perturbed(inference.random_variables(model, x.shape))
    folded, folded_vars = inference.fold_batchnorm(model, variables, x.shape)
    assert (("conv1", "0"), ("conv1", "1")) in folded.pairs
    want = model.apply(variables, x)["logits"]
    broken = jax.tree_util.tree_map_with_path(
        lambda p, leaf: jnp.zeros_like(leaf) if jax.tree_util.keystr(p) ==
        "['params']['conv1']['0']['bias']" else leaf, folded_vars)
    assert np.allclose(folded.apply(folded_vars, x)["logits"], want, atol=1e-4, rtol=1e-4)
    assert not np.allclose(folded.apply(broken, x)["logits"], want, atol=1e-4, rtol=1e-4)


def test_export_round_trip_with_symbolic_batch():
    model = models.build("bcmfnet", 11, aux_head=False)
    variables = _perturbed(inference.random_variables(model, (1, 64, 96, 3)))
    label_fn = export.make_label_fn(inference.Predictor.for_model(model), variables)
    exported = jax.export.deserialize(bytearray(export.export_labels(label_fn, 64, 96)))
    for batch in (1, 3):
        frames = jax.random.randint(jax.random.key(batch), (batch, 64, 96, 3), 0, 256
                                    ).astype(jnp.uint8)
        got, want = exported.call(frames), jax.jit(label_fn)(frames)
        assert got.shape == (batch, 64, 96) and got.dtype == jnp.uint8
        assert float(jnp.mean(got == want)) > 0.999
    with pytest.raises(ValueError, match="Shape mismatch"):  # resolution is fixed
        exported.call(jnp.zeros((1, 64, 64, 3), jnp.uint8))


@pytest.mark.parametrize("runtime_name", ["onnxruntime", "litert"])
def test_benchmark_through_other_runtimes(runtime_name):
    lines = []
    result = benchmark.run_benchmark("fassdnet_l2", 19, resolution="64x128", warmup=1,
                                     time_budget_s=0.2, min_iterations=3,
                                     runtime_name=runtime_name, printer=lines.append)
    assert result["runtime"] == runtime_name and result["fps"] > 0
    assert f"through {runtime_name}" in lines[0] and "convert to" in lines[1]
    with pytest.raises(ValueError, match="config.benchmark.runtime"):
        benchmark.run_benchmark("fassdnet_l2", 19, resolution="64x128", dtype="bfloat16",
                                runtime_name=runtime_name)


def test_bench_models_sweeps_each_runtime(tmp_path):
    out = tmp_path / "rows.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "segjax.tools.bench_models", "--models=fassdnet_l2",
         "--resolutions=64x128", "--runtimes=xla,onnxruntime", "--warmup=0",
         "--min_iterations=1", "--time_budget_s=0.1", f"--json_out={out}"],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["runtime"] for r in rows] == ["xla", "onnxruntime"]
    assert "| fassdnet_l2 | fassdnet_l2_cityscapes.py | onnxruntime | 64x128 |" in done.stdout


def test_benchmark_prints_the_protocol_figures():
    lines = []
    result = benchmark.run_benchmark("ddrnet23_slim", 19, resolution="64x128", batch_size=2,
                                     warmup=1, time_budget_s=0.2, min_iterations=3,
                                     printer=lines.append)
    last = json.loads(lines[-1])
    assert last == result
    for key in ("model", "device", "resolution", "batch_size", "dtype", "fps",
                "latency_ms_p50", "gmacs", "params"):
        assert key in last
    assert last["resolution"] == "64x128" and last["batch_size"] == 2
    assert last["fps"] > 0 and last["latency_ms_p90"] >= last["latency_ms_p50"] > 0
    assert last["params"] == 5_695_987  # inference graph: aux head dropped
    assert last["iterations"] >= 3 and last["folded_batchnorms"] == 43
    assert last["cpu_kernels"] == "eigen" and "compile (eigen convolutions)" in lines[1]
    # 1024x2048 costs 36.35 GMACs; 64x128 is 1/256 of the pixels.
    assert 36.35 / 256 * 0.8 < last["gmacs"] < 36.35 / 256 * 1.3


@pytest.mark.parametrize("text, expected", [("1024x2048", (1024, 2048)),
                                            ((512, 1024), (512, 1024))])
def test_parse_resolution(text, expected):
    assert benchmark.parse_resolution(text) == expected


@pytest.mark.parametrize("bad", ["1024", "axb", "1024*2048"])
def test_bad_resolution_names_the_field(bad):
    with pytest.raises(ValueError, match="config.benchmark.resolution"):
        benchmark.parse_resolution(bad)


def test_device_peaks():
    assert benchmark.device_peak("NVIDIA H100 80GB HBM3")["hbm_tbps"] == 3.35
    assert benchmark.device_peak("NVIDIA H200")["hbm_tbps"] == 4.8
    assert benchmark.device_peak("cpu") is None


def test_random_variables_fill_every_leaf_with_the_init_shapes():
    model = models.build("resnet18", 10, include_top=True)
    x = jnp.zeros((1, 32, 32, 3))
    want = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    got = inference.random_variables(model, x.shape, seed=3)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), got) == jax.tree.map(
        lambda a: (a.shape, a.dtype), want)
    assert float(jnp.std(got["params"]["conv1"]["kernel"])) > 0.01
    assert np.all(np.asarray(got["batch_stats"]["bn1"]["var"]) == 1)
    again = inference.random_variables(model, x.shape, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got),
                                                     jax.tree.leaves(again)))


@pytest.mark.slow
def test_benchmark_mode_from_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "run.py", "--config=configs/bcmfnet_camvid.py", "--mode=benchmark",
         f"--workdir={tmp_path}", "--config.benchmark.resolution=64x96",
         "--config.benchmark.dtype=bfloat16", "--config.benchmark.time_budget_s=0.2",
         "--config.benchmark.warmup=1", "--config.benchmark.min_iterations=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model"] == "bcmfnet" and result["dtype"] == "bfloat16"
    assert result["resolution"] == "64x96"


def test_input_norm_normalises_uint8_on_the_device_and_passes_floats():
    """Pipelines and predict ship uint8 frames; the jitted step normalises them."""
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    mean, std = np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.3, 0.4])
    want = (frames / 255.0 - mean) / std
    got = np.asarray(jax.jit(inference.InputNorm(tuple(mean), tuple(std)))(frames))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # BGR weights: the frame's channels are reversed, then mean/std (given in BGR) apply.
    bgr = np.asarray(inference.InputNorm(tuple(mean), tuple(std), "bgr")(frames))
    np.testing.assert_allclose(bgr, (frames[..., ::-1] / 255.0 - mean) / std, rtol=1e-5,
                               atol=1e-5)
    normalised = jnp.asarray(want, jnp.float32)
    np.testing.assert_array_equal(inference.InputNorm()(normalised), normalised)
    with pytest.raises(TypeError, match="uint8"):
        inference.InputNorm()(jnp.zeros((1, 2, 2, 3), jnp.int32))
    with pytest.raises(ValueError, match="channel_order"):
        inference.InputNorm(channel_order="rgba")
