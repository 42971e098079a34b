"""Layers shared by every model family, written to reproduce PyTorch numerics.

Ported checkpoints only give the published accuracy if padding, pooling, resizing and
BatchNorm behave exactly as in PyTorch, so those semantics live here once (NHWC layout).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
IntPair = int | Sequence[int]

# kaiming_normal(mode='fan_out', nonlinearity='relu'), the init of the official convs.
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def precise_dtype(dtype: Dtype) -> Any:
    """The dtype of params, BatchNorm statistics and logits for compute in `dtype`.

    float32 under float32 or bfloat16 compute (mixed precision keeps the master weights
    and the loss in float32); float64 under float64 compute, so that a float64 run is
    float64 end to end (forward, loss, gradients, update).
    """
    return jnp.promote_types(dtype, jnp.float32)


@contextlib.contextmanager
def _setting(variable: contextvars.ContextVar, value: str, choices: tuple[str, ...],
             what: str) -> Iterator[None]:
    """`variable` = `value` for the duration; a value outside `choices` is refused."""
    if value not in choices:
        raise ValueError(f"{what} {value!r}; choose one of {choices}")
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


RUNNING_VARIANCES = ("unbiased", "biased")
_running_variance = contextvars.ContextVar("running_variance", default="unbiased")


def running_variance(kind: str) -> contextlib.AbstractContextManager:
    """Which batch variance train-mode BatchNorms fold into their running `var`.

    "unbiased" (the default) is PyTorch's BatchNorm2d: var·n/(n−1), n the values per
    channel, which every official trainer of these models used. "biased" is Flax's
    `nn.BatchNorm`. Read when the forward is traced, so wrap the traced code.
    """
    return _setting(_running_variance, kind, RUNNING_VARIANCES, "running variance")


LOWERINGS = ("jax", "onnx", "tflite")
_lowering = contextvars.ContextVar("lowering", default="jax")


def lowering_for(fmt: str) -> contextlib.AbstractContextManager:
    """Trace layers as the ops the runtime of `fmt` (a `deploy` format) runs fastest.

    "jax" (the default): depthwise convs as fused taps, pools as two 1-D window passes.
    "onnx" and "tflite": depthwise convs stay convolution ops, which ONNX Runtime and XNNPACK
    run natively; "tflite" also writes max pools and unpadded average pools as one 2-D
    window, which the TFLite converter turns into MAX_POOL_2D / AVERAGE_POOL_2D (it keeps a
    1-D pass as an op XNNPACK does not run), and PReLU without a select. Read when the
    forward is traced.
    """
    return _setting(_lowering, fmt, LOWERINGS, "lowering")


def _pair(v: IntPair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def torch_padding(kernel_size: IntPair, dilation: IntPair = 1) -> tuple[tuple[int, int], ...]:
    """Symmetric 'same-size' padding d*(k//2) per axis, as PyTorch models spell it.

    JAX 'SAME' pads (0, 1) for stride 2 on even inputs where PyTorch pads (1, 1).
    """
    (kh, kw), (dh, dw) = _pair(kernel_size), _pair(dilation)
    return ((dh * (kh // 2),) * 2, (dw * (kw // 2),) * 2)


def conv2d(
    features: int,
    kernel_size: IntPair,
    stride: IntPair = 1,
    *,
    padding: IntPair | None = None,
    dilation: IntPair = 1,
    groups: int = 1,
    use_bias: bool = False,
    dtype: Dtype = jnp.float32,
    kernel_init: nn.initializers.Initializer = kaiming_fan_out,
    bias_init: nn.initializers.Initializer = nn.initializers.zeros,
    name: str | None = None,
) -> nn.Conv:
    """An `nn.Conv` with PyTorch Conv2d semantics: explicit symmetric padding; params in
    `precise_dtype(dtype)`.

    `padding=None` means d*(k//2) per axis; an int or pair is used as given on both sides.
    The initialisers default to the official DDRNet ones; recipes that re-initialise their
    convs (e.g. FASSD-Net's xavier) pass their own.
    """
    if padding is None:
        pad = torch_padding(kernel_size, dilation)
    else:
        ph, pw = _pair(padding)
        pad = ((ph, ph), (pw, pw))
    return (DepthwiseConv if groups > 1 and groups == features else nn.Conv)(
        features,
        _pair(kernel_size),
        strides=_pair(stride),
        padding=pad,
        kernel_dilation=_pair(dilation),
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=precise_dtype(dtype),
        kernel_init=kernel_init,
        bias_init=bias_init,
        name=name,
    )


class DepthwiseConv(nn.Conv):
    """`nn.Conv` with one filter per channel (same params), run as kh·kw shifted multiply-adds.

    XLA's CPU grouped convolution ran MSFNet's 3×3 depthwise convs at 0.6 GFLOP/s (110 ms
    for one 64×128×512 map; 5.5 ms as taps, which XLA fuses into one loop). Strided, dilated
    or channel-multiplying uses, and traces for other runtimes (`lowering_for`), stay convolutions.
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        channels = inputs.shape[-1]
        padding = self.padding
        if (_lowering.get() != "jax" or inputs.ndim != 4 or self.mask is not None
                or not channels == self.features == self.feature_group_count
                or tuple(_pair(self.strides or 1)) != (1, 1)
                or tuple(_pair(self.kernel_dilation or 1)) != (1, 1)
                or self.input_dilation not in (None, 1, (1, 1))
                or isinstance(padding, str) or not all(len(p) == 2 for p in padding)):
            return super().__call__(inputs)
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, 1, channels), self.param_dtype)
        bias = (self.param("bias", self.bias_init, (channels,), self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
        out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
        out = sum(x[:, i:i + out_h, j:j + out_w] * kernel[i, j, 0]
                  for i in range(kh) for j in range(kw))
        return out if bias is None else out + bias


class BatchNorm(nn.BatchNorm):
    """PyTorch's BatchNorm2d: momentum 0.1 (Flax's 0.9), eps 1e-5, `running_variance`.

    Pass `use_running_average=not train`. Statistics and affine params are kept in
    `precise_dtype(dtype)`. The variance is two-pass: E[x²]−E[x]² cancels digits, which
    made gradients depend on how the global batch was split over devices. A subclass of
    Flax's, so tools that find BatchNorms by type (folding) see it.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    param_dtype: Dtype | None = None  # None: precise_dtype(dtype)
    use_fast_variance: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average)
        dtype = self.dtype or x.dtype
        stat_dtype = self.param_dtype or precise_dtype(dtype)
        features = (x.shape[-1],)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, stat_dtype)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, stat_dtype)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            wide = x.astype(jnp.promote_types(x.dtype, stat_dtype))
            mean = jnp.mean(wide, axes)
            var = jnp.mean(jnp.square(wide - mean), axes)
            if not self.is_initializing():
                n = math.prod(x.shape[:-1])
                bessel = n / (n - 1) if _running_variance.get() == "unbiased" and n > 1 else 1.0
                keep = self.momentum
                ra_mean.value = (keep * ra_mean.value + (1 - keep) * mean).astype(stat_dtype)
                ra_var.value = (keep * ra_var.value
                                + (1 - keep) * bessel * var).astype(stat_dtype)
        y = x - mean
        mul = jax.lax.rsqrt(var + self.epsilon)
        if self.use_scale:
            mul = mul * self.param("scale", self.scale_init, features, stat_dtype)
        y = y * mul
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, features, stat_dtype)
        return y.astype(dtype)


class ConvBN(nn.Module):
    """conv → BN (→ ReLU), with child names chosen to mirror a PyTorch Sequential."""

    features: int
    kernel_size: IntPair = 3
    stride: IntPair = 1
    padding: IntPair | None = None
    dilation: IntPair = 1
    groups: int = 1
    use_bias: bool = False
    relu: bool = True
    conv_name: str = "0"
    bn_name: str = "1"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = conv2d(self.features, self.kernel_size, self.stride, padding=self.padding,
                   dilation=self.dilation, groups=self.groups, use_bias=self.use_bias,
                   dtype=self.dtype, name=self.conv_name)(x)
        x = BatchNorm(use_running_average=not train, dtype=self.dtype, name=self.bn_name)(x)
        return nn.relu(x) if self.relu else x


class BNReLUConv(nn.Module):
    """Pre-activation BN → ReLU → conv (bias-free), the unit of DAPPM-style context modules."""

    features: int
    kernel_size: IntPair = 1
    bn_name: str = "0"
    conv_name: str = "2"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = BatchNorm(use_running_average=not train, dtype=self.dtype, name=self.bn_name)(x)
        return conv2d(self.features, self.kernel_size, dtype=self.dtype,
                      name=self.conv_name)(nn.relu(x))


class PReLU(nn.Module):
    """Per-channel PReLU (torch `nn.PReLU(C)`); the slope is the param `alpha`.

    Flax's own PReLU has a single scalar slope, which cannot hold a per-channel checkpoint.
    """

    init_value: float = 0.25
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        alpha = self.param("alpha", nn.initializers.constant(self.init_value),
                           (x.shape[-1],), precise_dtype(self.dtype))
        x, alpha = x.astype(self.dtype), alpha.astype(self.dtype)
        if _lowering.get() == "tflite":  # max/min/mul/add run in XNNPACK; a select does not
            return jnp.maximum(x, 0) + alpha * jnp.minimum(x, 0)
        return jnp.where(x >= 0, x, alpha * x)


def _window(x: jax.Array, init: float, op, kernel_size: IntPair, stride: IntPair | None,
            padding: IntPair) -> jax.Array:
    """A kh×kw window reduction in one pass."""
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    return jax.lax.reduce_window(x, init, op, (1, kh, kw, 1), (1, sh, sw, 1),
                                 ((0, 0), (ph, ph), (pw, pw), (0, 0)))


def _separable_window(x: jax.Array, init: float, op, kernel_size: IntPair,
                      stride: IntPair | None, padding: IntPair, rank3: bool = False
                      ) -> jax.Array:
    """A kh×kw window reduction as a kh×1 pass then a 1×kw pass (same output size).

    A box sum or max is separable, so each output reads kh + kw values instead of kh·kw:
    32× fewer for MSFNet's 65×65 pools, 4× for DAPPM's 17×17. A Python-scalar init lets
    JAX use the differentiable reduce_window_sum/max primitives. `rank3` reduces each axis
    of a 3-D view instead (free reshapes): an exported max pool then has the at most three
    spatial dimensions ONNX Runtime's MaxPool accepts; XLA runs box sums of 4-D windows up
    to 2× faster, so sums keep them.
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    if not rank3:
        x = jax.lax.reduce_window(x, init, op, (1, kh, 1, 1), (1, sh, 1, 1),
                                  ((0, 0), (ph, ph), (0, 0), (0, 0)))
        return jax.lax.reduce_window(x, init, op, (1, 1, kw, 1), (1, 1, sw, 1),
                                     ((0, 0), (0, 0), (pw, pw), (0, 0)))
    n, h, w, c = x.shape
    x = jax.lax.reduce_window(x.reshape(n, h, w * c), init, op, (1, kh, 1), (1, sh, 1),
                              ((0, 0), (ph, ph), (0, 0)))
    h = x.shape[1]
    x = jax.lax.reduce_window(x.reshape(n * h, w, c), init, op, (1, kw, 1), (1, sw, 1),
                              ((0, 0), (pw, pw), (0, 0)))
    return x.reshape(n, h, x.shape[1], c)


def avg_pool(x: jax.Array, kernel_size: IntPair, stride: IntPair | None = None,
             padding: IntPair = 0) -> jax.Array:
    """AvgPool2d(count_include_pad=True, ceil_mode=False): zero padding counts, sizes floor."""
    kh, kw = _pair(kernel_size)
    if _lowering.get() == "tflite" and _pair(padding) == (0, 0):
        summed = _window(x, 0.0, jax.lax.add, kernel_size, stride, padding)
    else:
        summed = _separable_window(x, 0.0, jax.lax.add, kernel_size, stride, padding)
    return summed / jnp.asarray(kh * kw, x.dtype)


def max_pool(x: jax.Array, kernel_size: IntPair, stride: IntPair | None = None,
             padding: IntPair = 0) -> jax.Array:
    """MaxPool2d(ceil_mode=False): padding acts as -inf, sizes floor."""
    if _lowering.get() == "tflite":
        return _window(x, -jnp.inf, jax.lax.max, kernel_size, stride, padding)
    return _separable_window(x, -jnp.inf, jax.lax.max, kernel_size, stride, padding,
                             rank3=True)


def global_avg_pool(x: jax.Array) -> jax.Array:
    """AdaptiveAvgPool2d(1): mean over H, W, kept as a 1×1 map."""
    return jnp.mean(x, axis=(1, 2), keepdims=True)


def linear_taps(in_size: int, out_size: int, align_corners: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's bilinear source taps along one axis: lower and upper index, weight of the upper."""
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    return lo, np.minimum(lo + 1, in_size - 1), src - lo


def _linear_axis(x: jax.Array, out_size: int, axis: int, align_corners: bool) -> jax.Array:
    """Two-tap linear interpolation along one axis, with PyTorch's source coordinates."""
    if x.shape[axis] == out_size:
        return x
    lo, hi, upper = linear_taps(x.shape[axis], out_size, align_corners)
    shape = [1] * x.ndim
    shape[axis] = out_size
    frac = jnp.asarray(upper.reshape(shape), x.dtype)
    a, b = take_rows(x, lo, axis), take_rows(x, hi, axis)
    return a + (b - a) * frac


def take_rows(x: jax.Array, index: np.ndarray, axis: int) -> jax.Array:
    """`jnp.take(x, index, axis)` for sorted, in-bounds constant indices.

    `jnp.take` guards every read against out-of-range indices (a select over the whole
    output); these indices are known in range, and the exported ONNX graph loses a
    full-size `Where` per tap.
    """
    dims = jax.lax.GatherDimensionNumbers(
        offset_dims=tuple(d for d in range(x.ndim) if d != axis),
        collapsed_slice_dims=(axis,), start_index_map=(axis,))
    sizes = tuple(1 if d == axis else n for d, n in enumerate(x.shape))
    return jax.lax.gather(x, jnp.asarray(index[:, None]), dims, sizes, indices_are_sorted=True,
                          mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def resize_bilinear(x: jax.Array, size: Sequence[int], align_corners: bool = False) -> jax.Array:
    """Bilinear resize of an NHWC batch to `size` = (H, W), as `F.interpolate(mode='bilinear')`.

    Source coordinates follow PyTorch: align_corners=False samples at (dst+0.5)*in/out-0.5
    (clamped at 0), True at dst*(in-1)/(out-1); a size-1 source axis replicates. Like
    PyTorch it never antialiases. For upsampling with align_corners=False this equals
    `jax.image.resize(..., 'bilinear')`, but gathering the two taps per axis costs
    O(1) per output instead of jax's dense O(in) weight matrix: 5-8x faster on CPU, no
    matmul-precision dependence, and FLOP counts that reflect the convolutions.
    """
    out_h, out_w = int(size[0]), int(size[1])
    x = _linear_axis(x, out_h, 1, align_corners)
    return _linear_axis(x, out_w, 2, align_corners)
