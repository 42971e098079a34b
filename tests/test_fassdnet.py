"""FC-HarDNet-70 and FASSD-Net / -L1 / -L2: parity, shapes, align-corners resize, the
bootstrapped CE, legacy checkpoint names and initialising training from a checkpoint."""

import functools
import json
import pathlib
import re
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import StepSpy, max_abs_diff, stub_training, tiny_config
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from segjax import checkpoint, convert, losses, models, runtime, train
from segjax.models import fassdnet, hardnet, layers
from segjax.tools import parity

# name: (parameters, finalConv map (H, W) at 1024x2048 and at 513x1025).
MODELS = {
    "fchardnet70": (4_119_257, (256, 512), (129, 257)),
    "fassdnet": (2_845_351, (256, 512), (129, 257)),
    "fassdnet_l1": (2_845_351, (171, 342), (86, 171)),
    "fassdnet_l2": (2_289_454, (128, 256), (65, 129)),
}


# --------------------------------------------------------------------------- parity


@functools.cache
def _converted(manifest_path):
    """(model, variables) from a fixture manifest through the real checkpoint converter."""
    meta = json.loads(pathlib.Path(manifest_path).read_text())
    return convert.convert_for_model(meta["model"], parity.make_state_dict(meta["manifest"]),
                                     meta["num_classes"])


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_at_full_and_odd_resolution(name):
    model = models.build(name, 19)
    for size, final in [((1024, 2048), MODELS[name][1]), ((513, 1025), MODELS[name][2])]:
        x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
        out, state = jax.eval_shape(functools.partial(
            model.init_with_output, jax.random.key(0), train=False,
            capture_intermediates=lambda mdl, _: mdl.name == "finalConv"), x)
        assert out["logits"].shape == (1, *size, 19) and out["logits"].dtype == jnp.float32
        captured = state["intermediates"]["finalConv"]["__call__"][0]
        assert captured.shape == (1, *final, 19), (size, captured.shape)
        assert convert.count_params(state) == MODELS[name][0]


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="too small"):
        convert.model_template(models.build("fassdnet", 19), (1, 24, 64, 3))


def test_hardblock_links_and_widths_follow_the_official_rule():
    assert [hardnet.harmonic_links(k) for k in (1, 2, 3, 4, 6, 8)] == [
        [0], [1, 0], [2], [3, 2, 0], [5, 4], [7, 6, 4, 0]]
    assert [hardnet.harmonic_width(k, 24) for k in range(1, 9)] == [
        24, 40, 24, 70, 24, 40, 24, 118]
    assert hardnet.hardblock_output_nodes(8) == [1, 3, 5, 7, 8]
    assert [hardnet.hardblock_out_channels(g, n) for g, n in
            zip(hardnet.GROWTH_RATES, hardnet.BLOCK_LAYERS)] == [48, 78, 160, 214, 286]


def test_mda_widths_floor_odd_channels():
    variables = jax.eval_shape(lambda: fassdnet.MDA(4).init(
        jax.random.key(0), jnp.zeros((1, 8, 8, 63)), train=False))
    stage = variables["params"]
    assert stage["bn_relu_1"]["acti"]["alpha"].shape == (63,)
    assert stage["conv3x3"]["conv"]["kernel"].shape == (3, 3, 63, 31)
    assert stage["parallel_ddconv3x1"]["conv"]["kernel"].shape == (3, 1, 31, 31)
    assert stage["parallel_ddconv1x3"]["conv"]["kernel"].shape == (1, 3, 31, 31)
    assert stage["conv1x1"]["conv"]["kernel"].shape == (1, 1, 31, 63)


def test_mda_activation_is_bn_eps_1e3_then_per_channel_prelu():
    x = jnp.asarray([[[[2.0, -2.0, -2.0]]]])
    variables = {
        "params": {"bn": {"scale": jnp.ones(3), "bias": jnp.zeros(3)},
                   "acti": {"alpha": jnp.asarray([0.0, 0.25, 0.5])}},
        "batch_stats": {"bn": {"mean": jnp.zeros(3), "var": jnp.zeros(3)}},
    }
    out = fassdnet.BNPReLU().apply(variables, x, train=False)
    np.testing.assert_allclose(out.ravel(), np.array([2.0, -0.5, -1.0]) / np.sqrt(1e-3),
                               rtol=1e-6)


# --------------------------------------------------------------------------- resize


def _align_corners_reference(x, size):
    """F.interpolate(mode='bilinear', align_corners=True) on NHWC, pixel by pixel."""

    def taps(n_in, n_out):
        rows = []
        for o in range(n_out):
            src = o * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            lo = min(int(np.floor(src)), n_in - 1)
            hi = min(lo + 1, n_in - 1)
            rows.append((lo, hi, src - lo))
        return rows

    x = x.astype(np.float64)
    out = np.zeros((x.shape[0], size[0], size[1], x.shape[3]))
    for i, (y0, y1, fy) in enumerate(taps(x.shape[1], size[0])):
        for j, (x0, x1, fx) in enumerate(taps(x.shape[2], size[1])):
            top = (1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1]
            bottom = (1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]
            out[:, i, j] = (1 - fy) * top + fy * bottom
    return out


@pytest.mark.parametrize("n_in,n_out", [(1, 5), (5, 1), (21, 42), (42, 85), (85, 42), (7, 7)])
@pytest.mark.parametrize("axis", ["h", "w", "both"])
def test_align_corners_resize_matches_reference(n_in, n_out, axis):
    other = 3
    in_shape = {"h": (n_in, other), "w": (other, n_in), "both": (n_in, n_in + 1)}[axis]
    size = {"h": (n_out, other), "w": (other, n_out), "both": (n_out, n_out + 2)}[axis]
    x = np.random.default_rng(n_in * 100 + n_out).standard_normal((2, *in_shape, 3))
    got = layers.resize_bilinear(jnp.asarray(x, jnp.float32), size, align_corners=True)
    want = _align_corners_reference(x, size)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)
    # The corners are sampled exactly; that is what align_corners means.
    np.testing.assert_allclose(np.asarray(got)[:, 0, 0], x[:, 0, 0], atol=1e-6)


# --------------------------------------------------------------------------- bootstrapped CE


def _bootstrap_reference(logits, labels, min_kept, thresh, ignore=255):
    """The official bootstrapped_cross_entropy2d, image by image, with a real sort."""
    per_image = []
    for lg, lb in zip(logits.astype(np.float64), labels):
        lg, lb = lg.reshape(-1, lg.shape[-1]), lb.reshape(-1)
        logp = lg - lg.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        loss = np.where(lb == ignore, 0.0, -logp[np.arange(len(lb)), np.where(lb == ignore, 0, lb)])
        ordered = np.sort(loss)[::-1]
        if len(ordered) > min_kept and ordered[min_kept] > thresh:
            per_image.append(ordered[ordered > thresh].mean())
        else:
            per_image.append(ordered[:min_kept].mean())
    return np.mean(per_image), per_image


def _bootstrap_case():
    """Four 12x16 images: from mostly confident to mostly wrong, with ignored pixels."""
    rng = np.random.default_rng(5)
    n, h, w, c = 4, 12, 16, 5
    labels = rng.integers(0, c, (n, h, w))
    logits = rng.standard_normal((n, h, w, c))
    confident = rng.random((n, h, w)) < np.array([0.97, 0.7, 0.3, 0.0])[:, None, None]
    logits += 8.0 * confident[..., None] * np.eye(c)[labels]
    labels[rng.random((n, h, w)) < 0.15] = 255
    labels[3, :6] = 255  # image 3: half ignored
    return logits.astype(np.float32), labels.astype(np.int32)


@pytest.mark.parametrize("min_kept", [20, 100, 150, 180, 400])
def test_bootstrapped_ce_matches_official(min_kept):
    logits, labels = _bootstrap_case()
    want, per_image = _bootstrap_reference(logits, labels, min_kept, 0.3)
    got = losses.bootstrapped_cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                            thresh=0.3, min_kept=min_kept)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_bootstrapped_ce_cases_cover_both_branches():
    logits, labels = _bootstrap_case()
    loss = np.asarray(losses.pixelwise_cross_entropy(jnp.asarray(logits),
                                                     jnp.asarray(labels))[0])
    above = (loss > 0.3).reshape(4, -1).sum(1)
    valid = (labels != 255).reshape(4, -1).sum(1)
    # min_kept=100 mixes: some images keep all losses above 0.3, others their top 100;
    # min_kept=150 exceeds image 3's valid pixels, so ignored zeros enter its mean.
    assert (above > 100).any() and (above <= 100).any(), above
    assert valid[3] < 150 and above[3] <= 150, (valid, above)


def test_bootstrapped_ce_sharded_jit_and_gradient():
    logits, labels = _bootstrap_case()
    logits, labels = np.concatenate([logits, logits[::-1]]), np.concatenate([labels, labels[::-1]])
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    cfg = {"name": "bootstrap", "bootstrap": {"thresh": 0.3, "min_kept": 100}}
    fn = jax.jit(jax.value_and_grad(lambda lg, lb: losses.pixel_loss(lg, lb, cfg)))
    value, grad = fn(jax.device_put(logits, sharding), jax.device_put(labels, sharding))
    np.testing.assert_allclose(float(value), _bootstrap_reference(logits, labels, 100, 0.3)[0],
                               rtol=1e-5)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    assert not np.abs(grad).sum(-1)[labels == 255].any()


def test_bootstrapped_ce_rejects_empty_floor():
    logits, labels = _bootstrap_case()
    with pytest.raises(ValueError, match="min_kept"):
        losses.bootstrapped_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), min_kept=0)
    with pytest.raises(ValueError, match="'bootstrap'"):
        losses.pixel_loss(jnp.asarray(logits), jnp.asarray(labels), {"name": "bootstrapped"})


# --------------------------------------------------------------------------- converter


def _legacy_name(key):
    """A key as saved before FASSD-Net's module rename, behind a DataParallel prefix."""
    key = re.sub(r"^DAPF\.pyBranch(\d)\.", r"aspp.aspp\1.", key)
    key = re.sub(r"^DAPF\.", "aspp.", key)
    key = re.sub(r"^mda\.", "Dab_leo.", key)
    key = re.sub(r"\.parallel_ddconv(3x1|1x3)\.", r".ddconv\1.", key)
    return "module." + key


def _fixture_state_dict(manifest_path):
    meta = json.loads(pathlib.Path(manifest_path).read_text())
    return parity.make_state_dict(meta["manifest"])


@pytest.mark.parametrize("name", ["fassdnet", "fassdnet_l2"])
def test_legacy_and_prefixed_keys_convert(parity_dir, name):
    manifest = str(parity_dir / f"{name}.json")
    legacy = {_legacy_name(k): v for k, v in _fixture_state_dict(manifest).items()}
    for old in ("aspp.aspp2.", "aspp.bn1.", "Dab_leo.0.", ".ddconv3x1.", ".ddconv1x3."):
        assert any(old in k for k in legacy), old
    assert not any("DAPF" in k or "mda." in k or "parallel_dd" in k for k in legacy)
    _, want = _converted(manifest)
    _, got = convert.convert_for_model(name, legacy, 19, template=want)
    assert max_abs_diff(got, want) == 0.0
    assert convert.count_params(got) == MODELS[name][0]


# --------------------------------------------------------------------------- init_checkpoint


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A workdir trained for one (stubbed) step: its params are the fresh ones plus 1."""
    spy = StepSpy()
    workdir = tmp_path_factory.mktemp("init_checkpoint") / "source"
    with pytest.MonkeyPatch.context() as mp:
        stub_training(mp, spy)
        result = train.train_and_evaluate(tiny_config(num_train_steps=1), workdir)
    (fresh,) = spy.starts
    return SimpleNamespace(workdir=workdir, state=jax.device_get(result["state"]), fresh=fresh)


@pytest.fixture
def step_spy(monkeypatch):
    spy = StepSpy()
    stub_training(monkeypatch, spy)
    return spy


def test_init_checkpoint_from_workdir_then_resume_wins(source_run, tmp_path, step_spy):
    source = source_run.state
    config = tiny_config(num_train_steps=1, init_checkpoint=str(source_run.workdir))
    train.train_and_evaluate(config, tmp_path / "b")
    (start,) = step_spy.starts
    assert int(start.step) == 0
    assert max_abs_diff(start.params, source.params) == 0.0
    assert max_abs_diff(start.params, source_run.fresh.params) == 1.0
    assert max_abs_diff(start.batch_stats, source.batch_stats) == 0.0
    assert max_abs_diff(start.batch_stats, source_run.fresh.batch_stats) == 1.0
    # The optimizer state is the fresh one, not the source's.
    assert max_abs_diff(start.opt_state, source_run.fresh.opt_state) == 0.0
    assert max_abs_diff(source.opt_state, source_run.fresh.opt_state) == 1.0
    # A workdir with a checkpoint of its own resumes from it: step 1 of b, init ignored.
    resumed = train.train_and_evaluate(
        tiny_config(num_train_steps=2, init_checkpoint=str(source_run.workdir)), tmp_path / "b")
    assert sorted(resumed["history"]) == [2]
    start = step_spy.starts[-1]
    assert int(start.step) == 1
    assert max_abs_diff(start.params, source.params) == 1.0


def test_init_checkpoint_reads_step_and_checkpoints_directories(source_run):
    fresh, meta = source_run.fresh, checkpoint.describe(tiny_config(), 19)
    for path in (source_run.workdir / "checkpoints", source_run.workdir / "checkpoints" / "1"):
        got = runtime.load_variables(str(path), fresh.variables(), meta)
        assert max_abs_diff(got["params"], source_run.state.params) == 0.0


def test_init_checkpoint_errors_name_the_path_and_the_fix(source_run, tmp_path, step_spy):
    state, meta = source_run.fresh, checkpoint.describe(tiny_config(), 19)
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ".*does not exist"):
        train.train_and_evaluate(tiny_config(num_train_steps=1, init_checkpoint=str(missing)),
                                 tmp_path / "b")
    assert not step_spy.starts
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no segjax checkpoint"):
        runtime.load_variables(str(tmp_path / "empty"), state.variables(), meta)
    with pytest.raises(checkpoint.CheckpointMismatchError, match="different model.*fassdnet"):
        runtime.load_variables(str(source_run.workdir), state.variables(),
                               dict(meta, model="fassdnet"))
    (tmp_path / "w.txt").write_text("")
    with pytest.raises(ValueError, match="expected a checkpoint directory, an .npz"):
        runtime.load_variables(str(tmp_path / "w.txt"), state.variables(), meta)


def test_init_checkpoint_from_official_state_dict(parity_dir, tmp_path, monkeypatch):
    name = "fassdnet_l2"
    manifest = str(parity_dir / f"{name}.json")
    state_dict = _fixture_state_dict(manifest)
    _, want = _converted(manifest)
    meta = {"model": name, "num_classes": 19}
    zeros = jax.tree.map(jnp.zeros_like, want)
    npz = tmp_path / "fassdnet_l2.npz"
    np.savez(npz, **{_legacy_name(k): v for k, v in state_dict.items()})
    got = runtime.load_variables(str(npz), zeros, meta)
    assert max_abs_diff(got, want) == 0.0
    # Weights of another model are refused with the path in the message.
    other = tmp_path / "hardnet.npz"
    np.savez(other, **_fixture_state_dict(str(parity_dir / "fchardnet70.json")))
    with pytest.raises(convert.ConversionError, match=re.escape(str(other))):
        runtime.load_variables(str(other), zeros, meta)
    # Without torch, a .pth is refused with the conversion recipe.
    monkeypatch.setitem(sys.modules, "torch", None)
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="Convert it to .npz"):
        runtime.load_variables(str(tmp_path / "w.pth"), zeros, meta)
