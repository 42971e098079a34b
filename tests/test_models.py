"""DDRNet-23-slim port, shared layers, registry, converter and the parity/summary tools."""

import json
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import param_count

from segjax import convert, models
from segjax.models import layers
from segjax.models.ddrnet import DDRNet
from segjax.tools import parity, summary

MODEL = "ddrnet23_slim"


# --------------------------------------------------------------------------- parity


def test_parity_cli_fails_above_tolerance(parity_dir, capsys):
    args = ["--model", MODEL, "--fixture", str(parity_dir / f"{MODEL}_120x200.npz"),
            "--manifest", str(parity_dir / f"{MODEL}.json")]
    assert parity.main(args + ["--tol", "1e-12"]) == 1
    assert parity.main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"max_abs_err=\S+", last) and float(last.split("=")[1]) <= 1e-4


def test_parity_cli_subprocess(parity_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "segjax.tools.parity", "--model", MODEL,
         "--fixture", str(parity_dir / f"{MODEL}_128x256.npz"),
         "--manifest", str(parity_dir / f"{MODEL}.json"), "--tol", "1e-4"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "num_parameters=5734342 expected=5734342" in lines
    assert any(line.startswith("aux_logits (1, 19, 16, 32) max_abs_err=") for line in lines)
    assert float(lines[-1].removeprefix("max_abs_err=")) <= 1e-4


def test_make_state_dict_follows_the_documented_rule(parity_dir):
    manifest = json.loads((parity_dir / f"{MODEL}.json").read_text())["manifest"]
    sd = parity.make_state_dict(manifest)
    assert len(sd) == 346 and parity.manifest_param_count(manifest) == 5734342
    assert sd["conv1.1.num_batches_tracked"].dtype == np.int64
    var = sd["spp.scale0.0.running_var"]
    assert var.dtype == np.float32 and 0.5 <= var.min() and var.max() <= 1.5
    w = sd["layer4.0.conv1.weight"]  # std sqrt(1/fan_in), fan_in = 128*3*3
    assert w.shape == (256, 128, 3, 3) and abs(w.std() * np.sqrt(128 * 9) - 1) < 0.02


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("aux_head, num_classes, expected", [
    (False, 19, 5695987), (True, 19, 5734342), (False, 11, 5695467), (True, 11, 5733302)])
def test_param_counts(aux_head, num_classes, expected):
    assert param_count(models.build(MODEL, num_classes, aux_head=aux_head)) == expected


def test_per_module_param_counts_match_official():
    model = models.build(MODEL, 19)
    table = summary.param_table(convert.model_template(model, (1, 64, 64, 3))["params"])
    assert table == {
        "conv1": 10272, "layer1": 37120, "layer2": 131712, "layer3": 525568,
        "layer4": 2099712, "compression3": 8320, "compression4": 16512, "down3": 73984,
        "down4": 369408, "layer3_": 147968, "layer4_": 147968, "layer5_": 58112,
        "layer5": 920576, "spp": 1073408, "final_layer": 75347, "seghead_extra": 38355}


@pytest.mark.parametrize("size, out", [((720, 960), (90, 120)), ((120, 200), (15, 25)),
                                       ((1024, 2048), (128, 256)), ((64, 72), (8, 9))])
def test_output_shapes_stay_at_one_eighth(size, out):
    model = models.build(MODEL, 19)
    x = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
    variables = convert.model_template(model, (2, *size, 3))
    y = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    assert set(y) == {"logits", "aux_logits"}
    assert y["logits"].shape == y["aux_logits"].shape == (2, *out, 19)
    no_aux = models.build(MODEL, 19, aux_head=False)
    y = jax.eval_shape(lambda v, x: no_aux.apply(v, x), convert.model_template(no_aux), x)
    assert set(y) == {"logits"}


def test_state_dict_keys_map_onto_flax_paths(parity_dir):
    manifest = json.loads((parity_dir / f"{MODEL}.json").read_text())["manifest"]
    template = convert.model_template(models.build(MODEL, 19))
    params, stats = template["params"], template["batch_stats"]
    assert params["layer3_"]["1"]["bn2"]["scale"].shape == (64,)
    assert stats["layer3_"]["1"]["bn2"]["var"].shape == (64,)
    assert params["conv1"]["0"]["kernel"].shape == (3, 3, 3, 32)
    assert params["spp"]["scale1"]["3"]["kernel"].shape == (1, 1, 512, 128)
    assert params["final_layer"]["conv2"]["bias"].shape == (19,)
    assert "bias" not in params["final_layer"]["conv1"]
    trainable = {k for k, _, kind in manifest if kind not in parity.BUFFER_KINDS}
    flax_paths = {".".join(p) for p in _flat(params)}
    torch_paths = {re.sub(r"\.(weight|bias)$", "", k) for k in trainable}
    assert {p.rsplit(".", 1)[0] for p in flax_paths} == torch_paths


def _flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, (*prefix, k))
        else:
            yield (*prefix, k)


def test_sizes_not_divisible_by_8_are_rejected_clearly():
    model = models.build(MODEL, 19)
    with pytest.raises(ValueError, match="divisible by 8"):
        convert.model_template(model, (1, 100, 128, 3))


def test_bf16_compute_keeps_float32_params_and_stats():
    model = models.build(MODEL, 19, dtype=jnp.bfloat16)
    variables = convert.model_template(model, (1, 64, 64, 3))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype("float32")}
    y = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                       jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    assert y["logits"].dtype == jnp.float32


def test_train_mode_updates_batch_stats():
    model = models.build(MODEL, 19)
    variables = convert.model_template(model, (2, 64, 64, 3))
    out, updates = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables,
        jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32))
    assert out["logits"].shape == (2, 8, 8, 19)
    assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(
        variables["batch_stats"])


class _TinyContext(nn.Module):
    branch_planes: int = 128
    out_planes: int = 128
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train=False):
        return layers.conv2d(self.out_planes, 1, dtype=self.dtype, name="proj")(x)


def test_context_module_is_swappable():
    base = param_count(DDRNet(19, aux_head=False))
    swapped = DDRNet(19, aux_head=False, context=_TinyContext)
    assert param_count(swapped) == base - 1073408 + 512 * 128
    template = convert.model_template(swapped, (1, 64, 64, 3))
    assert set(template["params"]["spp"]) == {"proj"}


# --------------------------------------------------------------------------- registry


def test_registry_lists_and_builds():
    assert MODEL in models.available()
    assert models.traits(MODEL)["aux_heads"] == 1
    model = models.build(MODEL, 11, aux_head=False)
    assert isinstance(model, DDRNet) and model.num_classes == 11 and not model.aux_head


def test_registry_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'ddrnet99'.*ddrnet23_slim"):
        models.build("ddrnet99", 19)
    with pytest.raises(ValueError, match="ddrnet23_slim"):
        models.traits("nope")


def test_registry_unknown_kwarg_names_model_and_fields():
    with pytest.raises(TypeError, match=r"ddrnet23_slim.*num_poolings.*accepted:.*aux_head"):
        models.build(MODEL, 19, num_poolings=4)


# --------------------------------------------------------------------------- converter


class _Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = layers.conv2d(4, 3, 2, use_bias=True, name="conv")(x)
        x = layers.BatchNorm(use_running_average=not train, name="bn")(x)
        x = layers.PReLU(name="act")(x)
        return nn.Dense(5, name="fc")(jnp.mean(x, axis=(1, 2)))


def _tiny_state_dict():
    rng = np.random.default_rng(0)
    return {
        "module.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "module.conv.bias": rng.standard_normal(4).astype(np.float32),
        "module.bn.weight": rng.standard_normal(4).astype(np.float32),
        "module.bn.bias": rng.standard_normal(4).astype(np.float32),
        "module.bn.running_mean": rng.standard_normal(4).astype(np.float32),
        "module.bn.running_var": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "module.bn.num_batches_tracked": np.zeros((), np.int64),
        "module.act.weight": rng.uniform(0.1, 0.3, 4).astype(np.float32),
        "module.fc.weight": rng.standard_normal((5, 4)).astype(np.float32),
        "module.fc.bias": rng.standard_normal(5).astype(np.float32),
    }


def _tiny_template():
    return convert.model_template(_Tiny(), (1, 6, 8, 3))


def test_converter_layouts_and_forward():
    sd = _tiny_state_dict()
    v = convert.torch_to_flax(sd, _tiny_template())
    np.testing.assert_array_equal(v["params"]["conv"]["kernel"][1, 2, 0, 3],
                                  sd["module.conv.weight"][3, 0, 1, 2])
    np.testing.assert_array_equal(v["params"]["fc"]["kernel"], sd["module.fc.weight"].T)
    np.testing.assert_array_equal(v["params"]["bn"]["scale"], sd["module.bn.weight"])
    np.testing.assert_array_equal(v["batch_stats"]["bn"]["var"], sd["module.bn.running_var"])
    np.testing.assert_array_equal(v["params"]["act"]["alpha"], sd["module.act.weight"])

    # PyTorch forward in NumPy: symmetric pad 1, stride 2 on an even input, NCHW/OIHW.
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 8))
    w, b = sd["module.conv.weight"].astype(np.float64), sd["module.conv.bias"]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.array([[np.einsum("cij,ocij->o", xp[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3], w)
                      + b for j in range(4)] for i in range(3)])  # (H, W, O)
    conv = conv.transpose(2, 0, 1)[None]
    shape = (1, 4, 1, 1)
    bn = ((conv - sd["module.bn.running_mean"].reshape(shape))
          / np.sqrt(sd["module.bn.running_var"].reshape(shape) + 1e-5)
          * sd["module.bn.weight"].reshape(shape) + sd["module.bn.bias"].reshape(shape))
    act = np.where(bn >= 0, bn, sd["module.act.weight"].reshape(shape) * bn)
    want = act.mean(axis=(2, 3)) @ sd["module.fc.weight"].T + sd["module.fc.bias"]
    with jax.default_matmul_precision("highest"):
        got = _Tiny().apply(v, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_converter_raises_on_missing_key():
    sd = _tiny_state_dict()
    del sd["module.bn.running_var"]
    missing = r"not in the state dict:\s+batch_stats/bn/var"
    with pytest.raises(convert.ConversionError, match=missing):
        convert.torch_to_flax(sd, _tiny_template())


def test_converter_raises_on_shape_mismatch_and_unknown_key():
    sd = _tiny_state_dict()
    sd["module.fc.weight"] = np.zeros((5, 3), np.float32)
    sd["model.head.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(convert.ConversionError) as err:
        convert.torch_to_flax(sd, _tiny_template())
    message = str(err.value)
    assert "module.fc.weight: shape (3, 5)" in message and "(4, 5)" in message
    assert "model.head.weight" in message and "params/fc/kernel" in message


def test_converter_non_strict_reports_and_keeps_template():
    sd = _tiny_state_dict()
    del sd["module.fc.bias"]
    sd["module.fc.weight"] = np.zeros((5, 3), np.float32)
    sd["aux.weight"] = np.zeros(3, np.float32)
    template = jax.jit(_Tiny().init)(jax.random.key(0), jnp.zeros((1, 6, 8, 3)))
    variables, report = convert.torch_to_flax(sd, template, strict=False)
    assert set(report.skipped) == {"module.fc.weight", "aux.weight"}
    assert set(report.missing) == {"params/fc/kernel", "params/fc/bias"}
    assert "module.conv.weight" in report.loaded and len(report.loaded) == 7
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"],
                                  template["params"]["fc"]["kernel"])


def test_converter_renames_hook():
    sd = {k.replace("module.conv.", "module.stem.").replace("fc.", "classifier."): v
          for k, v in _tiny_state_dict().items()}
    renames = [(r"^stem\.", "conv."), (r"^classifier\.", "fc.")]
    v = convert.torch_to_flax(sd, _tiny_template(), renames=renames)
    np.testing.assert_array_equal(v["params"]["fc"]["bias"], sd["module.classifier.bias"])


# --------------------------------------------------------------------------- layers


def _torch_bilinear_1d(x, out_size, align_corners):
    """Scalar re-statement of PyTorch's upsample_bilinear2d index/weight rule along axis 0."""
    in_size = x.shape[0]
    out = np.empty((out_size, *x.shape[1:]))
    for d in range(out_size):
        if align_corners:
            s = d * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        else:
            s = max(in_size / out_size * (d + 0.5) - 0.5, 0.0)
        i0 = int(s)
        step = 1 if i0 < in_size - 1 else 0
        lam = s - i0
        out[d] = (1 - lam) * x[i0] + lam * x[i0 + step]
    return out


def _reference_resize(x, size, align_corners):
    y = np.stack([_torch_bilinear_1d(img, size[0], align_corners) for img in x])
    y = np.stack([_torch_bilinear_1d(img.swapaxes(0, 1), size[1], align_corners)
                  .swapaxes(0, 1) for img in y])
    return y


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_hw, out_hw", [
    ((21, 21), (42, 42)), ((42, 42), (85, 85)), ((1, 5), (4, 9)), ((3, 1), (7, 6)),
    ((4, 6), (1, 3)), ((15, 25), (120, 200)), ((9, 7), (4, 5)), ((5, 5), (5, 8))])
def test_resize_bilinear_matches_pytorch_rule(align_corners, in_hw, out_hw):
    x = np.random.default_rng(0).standard_normal((2, *in_hw, 3))
    got = layers.resize_bilinear(jnp.asarray(x, jnp.float32), out_hw, align_corners)
    np.testing.assert_allclose(np.asarray(got), _reference_resize(x, out_hw, align_corners),
                               atol=2e-6)


def test_resize_bilinear_known_values():
    x = jnp.asarray([0.0, 1.0]).reshape(1, 2, 1, 1)
    resize = lambda x, n, ac: np.asarray(layers.resize_bilinear(x, (n, 1), ac)).ravel()
    np.testing.assert_allclose(resize(x, 4, False), [0, 0.25, 0.75, 1])
    np.testing.assert_allclose(resize(x, 4, True), [0, 1 / 3, 2 / 3, 1], rtol=1e-6)
    x3 = jnp.asarray([0.0, 4.0, 8.0]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(resize(x3, 2, False), [1.0, 7.0])  # no antialiasing
    np.testing.assert_allclose(resize(x3, 1, True), [0.0])


def test_resize_bilinear_upsampling_equals_jax_image_resize():
    x = jax.random.normal(jax.random.key(0), (1, 8, 13, 4))
    ours = layers.resize_bilinear(x, (30, 45))
    ref = jax.image.resize(x, (1, 30, 45, 4), "bilinear")
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)


@pytest.mark.parametrize("kernel, stride, pad, hw", [(5, 2, 2, (7, 9)), (9, 4, 4, (8, 16)),
                                                      (17, 8, 8, (2, 3)), (2, 2, 0, (5, 7))])
def test_avg_pool_counts_padding_and_floors(kernel, stride, pad, hw):
    x = np.random.default_rng(0).standard_normal((1, *hw, 2))
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = [(n + 2 * pad - kernel) // stride + 1 for n in hw]
    want = np.array([[xp[0, i * stride:i * stride + kernel, j * stride:j * stride + kernel]
                      .sum((0, 1)) / kernel ** 2 for j in range(ow)] for i in range(oh)])[None]
    got = layers.avg_pool(jnp.asarray(x, jnp.float32), kernel, stride, pad)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


def test_max_pool_pads_with_minus_infinity():
    x = -np.arange(1.0, 17.0).reshape(1, 4, 4, 1)
    got = np.asarray(layers.max_pool(jnp.asarray(x, jnp.float32), 3, 2, 1))[0, :, :, 0]
    np.testing.assert_array_equal(got, [[-1, -2], [-5, -6]])


@pytest.mark.parametrize("pool, args, windows", [(layers.avg_pool, (2, 2), 1),
                                                  (layers.avg_pool, (5, 2, 2), 2),
                                                  (layers.max_pool, (3, 2, 1), 1)])
def test_litert_lowering_writes_pools_as_one_window(pool, args, windows):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 9, 12, 3)), jnp.float32)
    with layers.lowering_for("tflite"):  # padded average pools keep their two 1-D passes
        lowered = jax.make_jaxpr(lambda x: pool(x, *args))(x)
        got = pool(x, *args)
    assert str(lowered).count("reduce_window") == windows
    np.testing.assert_allclose(got, pool(x, *args), atol=1e-5)
    with pytest.raises(ValueError, match="lowering 'tensorrt'"):
        with layers.lowering_for("tensorrt"):
            pass


def test_litert_lowering_writes_prelu_without_a_select():
    prelu = layers.PReLU()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 4, 4, 3)), jnp.float32)
    variables = {"params": {"alpha": jnp.asarray([0.1, -0.2, 0.3])}}
    with layers.lowering_for("tflite"):
        lowered, got = jax.make_jaxpr(prelu.apply)(variables, x), prelu.apply(variables, x)
    assert "select" not in str(lowered) and "select" in str(jax.make_jaxpr(prelu.apply)(
        variables, x))
    np.testing.assert_array_equal(got, prelu.apply(variables, x))


def test_stride2_conv_pads_symmetrically():
    conv = layers.conv2d(1, 3, 2)
    x = jnp.zeros((1, 6, 6, 1)).at[0, 0, 0, 0].set(1.0)
    kernel = jnp.arange(9.0).reshape(3, 3, 1, 1)
    y = conv.apply({"params": {"kernel": kernel}}, x)
    assert y.shape == (1, 3, 3, 1)
    assert float(y[0, 0, 0, 0]) == 4.0  # the (1, 1) tap: one row/col of padding on top-left


@pytest.mark.parametrize("kernel, padding", [(3, None), ((3, 1), None), (5, 1)])
def test_depthwise_conv_as_taps_equals_the_grouped_convolution(kernel, padding):
    conv = layers.conv2d(6, kernel, padding=padding, groups=6, use_bias=True)
    grouped = nn.Conv(6, conv.kernel_size, padding=conv.padding, feature_group_count=6)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 7, 9, 6)), jnp.float32)
    variables = conv.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
        jnp.shape, grouped.init(jax.random.key(0), x))
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # a non-zero bias

    def loss(module, v, x):
        return jnp.sum(jnp.sin(module.apply(v, x)))

    taps = jax.make_jaxpr(lambda v, x: conv.apply(v, x))(variables, x)
    assert "conv_general_dilated" not in str(taps)
    np.testing.assert_allclose(conv.apply(variables, x), grouped.apply(variables, x),
                               atol=1e-5)
    for got, want in zip(jax.grad(loss, (1, 2))(conv, variables, x),
                         jax.grad(loss, (1, 2))(grouped, variables, x)):
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, atol=1e-4), got, want)
    with layers.lowering_for("onnx"):  # exported files keep the op their runtimes accelerate
        assert "conv_general_dilated" in str(jax.make_jaxpr(conv.apply)(variables, x))
    strided = layers.conv2d(6, 3, 2, groups=6)
    assert "conv_general_dilated" in str(jax.make_jaxpr(strided.apply)(
        strided.init(jax.random.key(0), x), x))


@pytest.mark.parametrize("kind", ["unbiased", "biased"])
def test_batchnorm_uses_pytorch_momentum_eps_and_running_variance(kind):
    bn = layers.BatchNorm(use_running_average=False)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3, 3, 2)) * 3 + 1, jnp.float32)
    variables = bn.init(jax.random.key(0), x)
    with layers.running_variance(kind):
        y, updates = bn.apply(variables, x, mutable=["batch_stats"])
    mean = np.asarray(x).mean((0, 1, 2))
    var = np.asarray(x).var((0, 1, 2))
    n = 4 * 3 * 3
    folded = var * n / (n - 1) if kind == "unbiased" else var  # PyTorch: unbiased
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 + 0.1 * folded, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(y), (np.asarray(x) - mean) / np.sqrt(var + 1e-5),
                               atol=1e-4)


def test_float64_compute_makes_params_stats_and_logits_float64():
    with jax.enable_x64(True):
        model = models.build(MODEL, 19, dtype=jnp.float64)
        variables = convert.model_template(model, (1, 64, 64, 3))
        y = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                           jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype("float64")}
    assert {y["logits"].dtype, y["aux_logits"].dtype} == {jnp.dtype("float64")}


def test_unknown_running_variance_is_rejected():
    with pytest.raises(ValueError, match="unbiased"):
        with layers.running_variance("sample"):
            pass


# --------------------------------------------------------------------------- summary


def test_summary_gmacs_at_cityscapes_resolution():
    result = summary.summarize(MODEL, 19, (1024, 2048))
    assert result["params"] == 5695987
    assert abs(result["gmacs"] - 36.28) / 36.28 < 0.01, result["gmacs"]
    assert result["conv_gmacs"] == pytest.approx(36.28, abs=0.01)  # the spec's hook count


def test_summary_cli_last_line(capsys):
    assert summary.main(["--model", MODEL, "--num_classes", "11", "--resolution", "64x128",
                         "--set", "planes=32", "--set", "aux_head=True"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"params=(\d+) gmacs=(\S+) conv_gmacs=(\S+)", last)
    assert match and int(match[1]) == 5733302 and float(match[2]) > 0
    # Hook-style counting includes padded taps, so it is never below XLA's convolutions.
    assert float(match[3]) > 0.9 * float(match[2])

