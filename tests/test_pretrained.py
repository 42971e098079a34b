"""Pretrained weights (config.model.pretrained), the state-dict reader (.npz, .safetensors,
.pth) and `python -m segjax.tools.convert` (official state dict -> weights-only workdir)."""

import importlib.util
import json
import pathlib
import re
import struct
import sys

import jax
import ml_collections
import numpy as np
import pytest
from conftest import PARITY
from flax import traverse_util
from helpers import StepSpy, max_abs_diff, stub_training, tiny_config

from segjax import checkpoint, convert, models, pretrained, runtime, train
from segjax.tools import convert as convert_tool

SHARED_TOOLS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tools"


@pytest.fixture(scope="module")
def parity_weights():
    path = SHARED_TOOLS / "parity_weights.py"
    if not path.exists():
        pytest.skip(f"{path} not found")
    spec = importlib.util.spec_from_file_location("parity_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_state_dict(parity_weights, parity_dir, name):
    return parity_weights.make_state_dict(
        parity_weights.load_manifest(str(parity_dir / f"{name}.json")))


ST_NAMES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32",
            np.dtype(np.float16): "F16", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
            np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def write_safetensors(path, tensors, bf16=()):
    """A minimal safetensors writer; keys in `bf16` are stored as bfloat16 (truncated)."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for key, value in tensors.items():
        value = np.ascontiguousarray(value)
        if key in bf16:
            raw = (value.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
            dtype = "BF16"
        else:
            raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
            dtype = ST_NAMES[value.dtype]
        header[key] = {"dtype": dtype, "shape": list(value.shape),
                       "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    pathlib.Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def test_safetensors_round_trip_with_half_precision(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "half": rng.standard_normal((5, 2)).astype(np.float16),
        "brain": rng.standard_normal((3, 7)).astype(np.float32),
        "double": rng.standard_normal(3),
        "bn.num_batches_tracked": np.array(12, np.int64),
        "ids": np.arange(6, dtype=np.int32).reshape(2, 3),
        "bytes": np.arange(4, dtype=np.uint8),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
    }
    path = tmp_path / "w.safetensors"
    write_safetensors(path, tensors, bf16={"brain"})
    got = pretrained.read_safetensors(path)
    assert set(got) == set(tensors)
    for key, want in tensors.items():
        if key == "brain":  # bfloat16 keeps the top 16 bits of the float32
            want = (want.view(np.uint32) & 0xFFFF0000).view(np.float32)
        if key in ("half", "brain"):
            assert got[key].dtype == np.float32
            want = want.astype(np.float32)
        else:
            assert got[key].dtype == want.dtype
        np.testing.assert_array_equal(got[key], want, err_msg=key)
    assert got["brain"] == pytest.approx(tensors["brain"], rel=1e-2)
    # The same through the shared reader; truncated and non-safetensors files are refused.
    assert set(pretrained.read_state_dict(path)) == set(tensors)
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="config.model.pretrained=.*cut.safetensors"):
        pretrained.read_state_dict(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not a safetensors file"):
        pretrained.read_safetensors(tmp_path / "junk.safetensors")


def test_reader_unwraps_checkpoints_and_names_the_field(tmp_path, monkeypatch):
    weights = {"module.conv1.weight": np.ones((2, 3, 1, 1), np.float32),
               "module.model.bn1.running_var": np.ones(2, np.float32)}
    np.savez(tmp_path / "w.npz", **weights)
    assert set(pretrained.read_state_dict(tmp_path / "w.npz")) == {"conv1.weight",
                                                                     "bn1.running_var"}
    nested = {"epoch": 3, "optimizer": {"lr": 0.1}, "model_state": weights}
    assert set(pretrained.unwrap_state_dict(nested)) == {"conv1.weight", "bn1.running_var"}
    assert set(pretrained.unwrap_state_dict({"state_dict": weights, "meta": {}})) == {
        "conv1.weight", "bn1.running_var"}
    with pytest.raises(FileNotFoundError, match=r"config.model.pretrained=.*nope.npz.*exist"):
        pretrained.read_state_dict(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"config.model.pretrained=.*bad.npz.*could not be read"):
        pretrained.read_state_dict(tmp_path / "bad.npz")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"expected an .npz, .safetensors or .pth"):
        pretrained.read_state_dict(tmp_path / "w.h5")
    monkeypatch.setitem(sys.modules, "torch", None)
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"config.model.pretrained=.*torch is not installed.*"
                                         r"Convert it to .npz"):
        pretrained.read_state_dict(tmp_path / "w.pth")


def _msfnet_fill(value):
    template = convert.model_template(models.build("msfnet", 19), (1, 64, 64, 3))
    return jax.tree.map(lambda s: np.full(s.shape, value, s.dtype), template)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_torchvision_resnet18_fills_msfnet_backbone_only(parity_weights, parity_dir, tmp_path,
                                                         fmt):
    official = official_state_dict(parity_weights, parity_dir, "resnet18")
    assert any(k.startswith("fc.") for k in official)
    path = tmp_path / f"resnet18.{fmt}"
    wrapped = {f"module.{k}": v for k, v in official.items()}
    if fmt == "npz":
        np.savez(path, **wrapped)
    else:
        write_safetensors(path, wrapped)
    initial = _msfnet_fill(7.0)
    variables, report = pretrained.load_pretrained(
        pretrained.read_state_dict(path), initial, "msfnet", source=str(path))
    # Exactly what the parity-tested converter makes of the torchvision keys.
    want = convert.torch_to_flax(official, initial, strict=False,
                                 renames=models.key_renames("msfnet"))[0]
    for collection in ("params", "batch_stats"):
        assert max_abs_diff(variables[collection]["backbone"],
                            want[collection]["backbone"]) == 0.0
        assert max_abs_diff(variables[collection]["backbone"],
                            initial[collection]["backbone"]) > 0.1
        for module in initial[collection]:
            if module != "backbone":  # the decoder keeps its initialisation
                assert max_abs_diff(variables[collection][module],
                                    initial[collection][module]) == 0.0, module
    assert report.prefix == ""
    assert sorted(report.skipped) == ["fc.bias", "fc.weight"]
    assert len(report.loaded) == len(official) - 2 - sum(
        k.endswith("num_batches_tracked") for k in official)
    assert report.missing and all("/backbone/" not in m for m in report.missing)
    assert "params/classifier/kernel" in report.missing
    text = report.summary(limit=5)
    assert "skipped 2" in text and "fc.weight: dropped by renames" in text
    assert "params/boundary_head/kernel" in text and "... and" in text


@pytest.mark.parametrize("model, source, prefix, fits", [
    # HarDNet's ImageNet trunk file (keys `0.conv.weight`, ... `17.*`) -> FASSD-Net's `base`.
    ("fassdnet", "hardnet_trunk", "base.", lambda p: p[1] == "base"),
    # DDRNet-23-slim everything except DAPPM -> BCMFNet (LMFM in its place).
    ("bcmfnet", "ddrnet23_slim", "", lambda p: True),
    # torchvision ResNet-50 -> the synergy model's trunk (renames put it in `backbone`).
    ("synergy_deeplabv3plus_r50", "resnet50", "", lambda p: p[1] == "backbone"),
])
def test_placement_is_found(parity_weights, parity_dir, model, source, prefix, fits):
    if source == "hardnet_trunk":
        official = {k[len("base."):]: v for k, v in official_state_dict(
            parity_weights, parity_dir, "fchardnet70").items() if k.startswith("base.")}
    else:
        official = official_state_dict(parity_weights, parity_dir, source)
    template = convert.model_template(models.build(model, 19), (1, 64, 64, 3))
    initial = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
    variables, report = pretrained.load_pretrained(official, initial, model)
    assert report.prefix == prefix
    missing = set(report.missing)
    filled = [path for path in ("/".join(p) for p in traverse_util.flatten_dict(variables))
              if path not in missing]
    assert len(filled) == len(set(report.loaded) - {
        k for k in official if k.endswith("num_batches_tracked")})
    assert all(fits(path.split("/")) for path in filled)
    if model == "bcmfnet":  # every DDRNet module but the context module loads in full
        assert not [m for m in report.missing if "/spp/" not in m]
        assert all(k.startswith("spp.") for k in report.skipped)
    if model == "fassdnet":  # the trunk is base.0..14; HarDNet-70's 15-17 have no place
        assert not [m for m in report.missing if "/base/" in m]
        assert {k.split(".")[0] for k in report.skipped} == {"16", "17"}


def test_a_wrong_model_file_is_refused(parity_weights, parity_dir, tmp_path):
    hardnet = {k[len("base."):]: v for k, v in official_state_dict(
        parity_weights, parity_dir, "fchardnet70").items() if k.startswith("base.")}
    with pytest.raises(convert.ConversionError,
                       match=r"config.model.pretrained='h.npz': no entry of the file fits "
                             r"model 'msfnet'"):
        pretrained.load_pretrained(hardnet, _msfnet_fill(0.0), "msfnet", source="h.npz")


def _msfnet_config(**overrides):
    config = tiny_config(narrow=False, num_train_steps=1, **overrides)
    with config.unlocked():
        config.model.name = "msfnet"
        config.model.kwargs = ml_collections.ConfigDict({"channels": 32})
    config.optimizer.name = "sgd"  # no optimizer slots: a small checkpoint
    config.optimizer.momentum = 0.0
    return config


def test_pretrained_in_training_then_init_checkpoint(parity_weights, parity_dir, tmp_path,
                                                     monkeypatch, capsys):
    spy = StepSpy()
    stub_training(monkeypatch, spy)
    official = official_state_dict(parity_weights, parity_dir, "resnet18")
    npz = tmp_path / "resnet18.npz"
    np.savez(npz, **official)
    seen = []

    def fake_load_variables(path, template, meta):  # applied after pretrained, on the result
        seen.append((path, jax.device_get(template["params"]["backbone"])))
        return template

    monkeypatch.setattr(runtime, "load_variables", fake_load_variables)
    config = _msfnet_config()
    config.model.pretrained = str(npz)
    config.init_checkpoint = "elsewhere"
    train.train_and_evaluate(config, tmp_path / "run")
    (start,) = spy.starts
    zeros = jax.tree.map(np.zeros_like, jax.device_get(start.variables()))
    want = convert.torch_to_flax(official, zeros, strict=False,
                                 renames=models.key_renames("msfnet"))[0]
    assert max_abs_diff(start.params, want["params"]) == 0.0  # decoder: the (zero) init
    assert max_abs_diff(start.batch_stats, want["batch_stats"]) == 0.0
    assert max_abs_diff(start.params["backbone"], zeros["params"]["backbone"]) > 0.1
    ((path, backbone),) = seen
    assert path == "elsewhere" and max_abs_diff(backbone, want["params"]["backbone"]) == 0.0
    out = capsys.readouterr().out
    assert "Pretrained weights from" in out and "fc.weight: dropped by renames" in out


def test_resume_wins_over_pretrained(tmp_path, monkeypatch):
    spy = StepSpy()
    stub_training(monkeypatch, spy)
    train.train_and_evaluate(tiny_config(num_train_steps=1), tmp_path)
    # The workdir's own checkpoint wins: the pretrained file is not even opened.
    config = tiny_config(num_train_steps=2)
    config.model.pretrained = str(tmp_path / "absent.npz")
    resumed = train.train_and_evaluate(config, tmp_path)
    assert sorted(resumed["history"]) == [2] and int(spy.starts[-1].step) == 1
    with pytest.raises(FileNotFoundError, match=r"config.model.pretrained=.*absent.npz"):
        train.train_and_evaluate(config, tmp_path / "fresh")


# --------------------------------------------------------------------------- tools.convert


@pytest.fixture(scope="module")
def converted(parity_weights, tmp_path_factory):
    """The workdir the CLI writes for an official DDRNet-23-slim state dict whose keys carry
    the Cityscapes file's `model.` prefix."""
    if not PARITY.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY}")
    root = tmp_path_factory.mktemp("convert")
    official = official_state_dict(parity_weights, PARITY, "ddrnet23_slim")
    source = root / "ddrnet23s_cityscapes.npz"
    np.savez(source, **{f"model.{k}": v for k, v in official.items()})
    out = root / "ddrnet_official"
    assert convert_tool.main([str(source), str(out), "--model", "ddrnet23_slim"]) == 0
    return out


def test_convert_cli_output_evaluates_like_the_official_model(converted, parity_dir, capsys):
    step_dir = converted / "checkpoints" / "0"
    assert step_dir.is_dir()
    reader = checkpoint.Checkpointer(converted / "checkpoints", async_save=False)
    meta = reader.read_meta(0)
    reader.close()
    config = tiny_config(narrow=False)  # ddrnet23_slim, kwargs {"aux_head": True}
    restored = runtime.restore(config, converted)
    variables = restored.variables
    assert restored.step == 0 and meta["weights_only"] and meta["model"] == "ddrnet23_slim"
    assert convert.count_params(variables) == 5_734_342
    fixture = np.load(parity_dir / "ddrnet23_slim_120x200.npz")
    x = np.transpose(fixture["input"], (0, 2, 3, 1))
    with jax.default_matmul_precision("highest"):
        outputs = jax.jit(lambda v, x: restored.model.apply(v, x, train=False))(variables, x)
    for name in ("logits", "aux_logits"):
        got = np.transpose(np.asarray(outputs[name]), (0, 3, 1, 2))
        assert float(np.max(np.abs(got - fixture[name]))) < 1e-4, name
    # config.init_checkpoint accepts the same directory (model options left at defaults).
    fresh = jax.tree.map(np.zeros_like, jax.device_get(variables))
    got = runtime.load_variables(str(converted), fresh,
                                 checkpoint.describe(config, restored.info.num_classes))
    assert max_abs_diff(got, variables) == 0.0
    # An existing workdir is not overwritten.
    assert convert_tool.main(["any.npz", str(converted), "--model", "ddrnet23_slim"]) == 1
    assert "already holds checkpoints" in capsys.readouterr().err


def test_convert_cli_refuses_another_model(parity_weights, parity_dir, tmp_path, capsys):
    source = tmp_path / "fassdnet_l2.npz"
    np.savez(source, **official_state_dict(parity_weights, parity_dir, "fassdnet_l2"))
    assert convert_tool.main([str(source), str(tmp_path / "out"),
                              "--model", "fassdnet"]) == 1
    err = capsys.readouterr().err
    assert "not a whole 'fassdnet' state dict" in err and "--num_classes" in err
    assert not (tmp_path / "out" / "checkpoints" / "0").exists()
    assert convert_tool.main([str(source), str(tmp_path / "out"), "--model", "fassdnet_l2",
                              "--set", "alpha=2"]) == 0
    out = capsys.readouterr().out
    assert "params=2289454" in out and "Wrote" in out and "weights only" in out


def _listing(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(pathlib.Path(root).rglob("*"))}


def test_training_in_a_weights_only_workdir_fails_and_changes_nothing(converted, monkeypatch):
    spy = StepSpy()
    stub_training(monkeypatch, spy)
    before = _listing(converted)
    with pytest.raises(checkpoint.CheckpointMismatchError,
                       match=r"converted weights only.*Nothing was changed.*fresh --workdir "
                             rf"with --config.init_checkpoint={re.escape(str(converted))}"):
        train.train_and_evaluate(tiny_config(narrow=False, num_train_steps=1), converted)
    assert not spy.starts
    assert _listing(converted) == before
