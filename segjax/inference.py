"""The deployable forward pass: BatchNorm folding, input normalisation, evaluation views and
the Predictor that evaluation, prediction, export and notebooks share.

Imports only jax/flax/numpy so that it runs on accelerator hosts without TensorFlow,
grain or clu.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from segjax.models.layers import resize_bilinear

__all__ = [
    "EVAL_MODES",
    "random_variables",
    "FoldedModel",
    "InputNorm",
    "Predictor",
    "ViewConfig",
    "class_scores",
    "fold_batchnorm",
    "foldable_pairs",
    "make_forward",
]

FOLD_COLLECTION = "batchnorm_fold"
Path = tuple[str, ...]


def _path(module: nn.Module) -> Path:
    return tuple(module.scope.path)


def random_variables(model: nn.Module, input_shape: Sequence[int], seed: int = 0,
                     scale: float | None = 0.05) -> dict[str, Any]:
    """Variables of the right shapes filled from NumPy (params ~ N(0, scale²), BatchNorm
    scale 1, running mean 0, var 1), for timing, export and shape checks.

    `scale=None` draws He-normal kernels (N(0, 2 / fan_in)) and zero biases instead, so
    activations keep their size through a deep network. Compiling `model.init` costs tens
    of seconds on CPU (one threefry program per initializer) and speed does not depend on
    the values.
    """
    rng = np.random.default_rng(seed)
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    abstract = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)

    def fill(path, leaf):
        name = getattr(path[-1], "key", "")
        if name == "var" or (name == "scale" and len(leaf.shape) == 1):
            return jnp.ones(leaf.shape, leaf.dtype)
        if name == "mean" or (scale is None and name != "kernel"):
            return jnp.zeros(leaf.shape, leaf.dtype)
        std = np.sqrt(2 / np.prod(leaf.shape[:-1])) if scale is None else scale
        return jnp.asarray(std * rng.standard_normal(leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def foldable_pairs(model: nn.Module, variables: Mapping[str, Any],
                   input_shape: Sequence[int]) -> list[tuple[Path, Path]]:
    """(conv path, BatchNorm path) for every BatchNorm that reads a conv output directly.

    Found by tracing the inference forward once and matching each BatchNorm's input
    to the conv call that produced it, so no model needs to declare its pairs. A module
    called more than once (the synergy model's network at two scales) pairs when every
    call pairs the same way; a conv feeding more than one BatchNorm, or a BatchNorm that
    also reads something else, is left alone.
    """
    produced: dict[int, tuple[Path, Any]] = {}  # id -> (conv, output kept alive: ids unique)
    norm_inputs: dict[Path, set] = {}  # BatchNorm -> conv paths (None: not a conv) it read
    conv_outputs: dict[Path, set] = {}  # conv -> BatchNorms that read it

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__":
            if isinstance(context.module, nn.Conv):
                produced[id(out)] = (_path(context.module), out)
            elif isinstance(context.module, nn.BatchNorm):
                bn, conv = _path(context.module), produced.get(id(args[0]), (None,))[0]
                norm_inputs.setdefault(bn, set()).add(conv)
                if conv is not None:
                    conv_outputs.setdefault(conv, set()).add(bn)
        return out

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    return [(next(iter(convs)), bn) for bn, convs in norm_inputs.items()
            if len(convs) == 1 and None not in convs and conv_outputs[next(iter(convs))] == {bn}]


@dataclasses.dataclass(frozen=True)
class FoldedModel:
    """`model` with each folded BatchNorm replaced by a per-channel shift after its conv.

    The conv kernels carry the BN scale; the shifts live in the `batchnorm_fold`
    collection keyed by conv path; the folded BatchNorms' variables are dropped.
    `apply(variables, x)` has the model's inference signature.
    """

    model: nn.Module
    pairs: tuple[tuple[Path, Path], ...]

    def apply(self, variables: Mapping[str, Any], x: jax.Array, **kwargs: Any):
        convs = {conv for conv, _ in self.pairs}
        norms = {bn for _, bn in self.pairs}

        def folded(next_fun, args, kwargs_, context):
            if context.method_name != "__call__":
                return next_fun(*args, **kwargs_)
            path = _path(context.module)
            if isinstance(context.module, nn.BatchNorm) and path in norms:
                return args[0]
            out = next_fun(*args, **kwargs_)
            if isinstance(context.module, nn.Conv) and path in convs:
                shift = context.module.get_variable(FOLD_COLLECTION, "shift")
                out = out + shift.astype(out.dtype)
            return out

        kwargs.setdefault("train", False)
        with nn.intercept_methods(folded):
            return self.model.apply(variables, x, **kwargs)


def fold_batchnorm(model: nn.Module, variables: Mapping[str, Any],
                   input_shape: Sequence[int] = (1, 128, 128, 3)):
    """Fold inference BatchNorm into the preceding convs: `(FoldedModel, variables)`.

    y = γ (conv(x) + b − μ)/√(σ²+ε) + β becomes conv(x; W·s) + (b·s + β − μ·s) with
    s = γ/√(σ²+ε), computed in float64. BatchNorms not fed by a conv (pre-activation
    units) stay as they are. Equal to the unfolded model up to float rounding.
    """
    pairs = foldable_pairs(model, variables, input_shape)
    flat_params = traverse_util.flatten_dict(dict(variables["params"]))
    flat_stats = traverse_util.flatten_dict(dict(variables.get("batch_stats", {})))
    eps = _batchnorm_eps(model, variables, input_shape)
    shifts = {}
    for conv, bn in pairs:
        gamma = np.asarray(flat_params.pop((*bn, "scale")), np.float64)
        beta = np.asarray(flat_params.pop((*bn, "bias")), np.float64)
        mean = np.asarray(flat_stats.pop((*bn, "mean")), np.float64)
        var = np.asarray(flat_stats.pop((*bn, "var")), np.float64)
        scale = gamma / np.sqrt(var + eps[bn])
        kernel = np.asarray(flat_params[(*conv, "kernel")], np.float64)
        flat_params[(*conv, "kernel")] = jnp.asarray(kernel * scale, jnp.float32)
        shift = beta - mean * scale
        if (*conv, "bias") in flat_params:
            bias = np.asarray(flat_params[(*conv, "bias")], np.float64)
            flat_params[(*conv, "bias")] = jnp.asarray(bias * scale, jnp.float32)
        shifts[(*conv, "shift")] = jnp.asarray(shift, jnp.float32)
    folded = {
        "params": traverse_util.unflatten_dict(flat_params),
        "batch_stats": traverse_util.unflatten_dict(flat_stats),
        FOLD_COLLECTION: traverse_util.unflatten_dict(shifts),
    }
    return FoldedModel(model, tuple(pairs)), folded


def _batchnorm_eps(model, variables, input_shape) -> dict[Path, float]:
    """Each BatchNorm's epsilon (1e-5 in most models, 1e-3 in FASSD-Net's MDA)."""
    eps: dict[Path, float] = {}

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            eps[_path(context.module)] = float(context.module.epsilon)
        return next_fun(*args, **kwargs)

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    return eps


def make_forward(model: nn.Module, *, output: str = "logits",
                 apply: Callable | None = None) -> Callable:
    """`forward(variables, images) -> outputs[output]` for inference (no aux heads used).

    `apply` substitutes a folded model's apply; images are NHWC, already normalised.
    """
    apply = apply or (lambda v, x: model.apply(v, x, train=False))

    def forward(variables, images):
        return apply(variables, images)[output]

    return forward


EVAL_MODES = ("whole", "slide")
CHANNEL_ORDERS = ("rgb", "bgr")


@dataclasses.dataclass(frozen=True)
class InputNorm:
    """uint8 RGB frames -> network input `(x / 255 - mean) / std`, computed on the device.

    The input pipeline ships uint8 images: a quarter of the host copies and host->device
    bytes of float32, and the normalisation fuses into the first convolution's input.
    Floating-point images are taken as already normalised and pass through unchanged.
    `mean`/`std` are given in `channel_order`; 'bgr' serves weights trained on BGR input.
    """

    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channel_order: str = "rgb"

    def __post_init__(self):
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"config.data.channel_order={self.channel_order!r}; choose "
                             f"{' or '.join(CHANNEL_ORDERS)}")

    @classmethod
    def from_config(cls, data_cfg) -> InputNorm:
        return cls(mean=tuple(float(v) for v in data_cfg.mean),
                   std=tuple(float(v) for v in data_cfg.std),
                   channel_order=str(data_cfg.channel_order))

    def __call__(self, images: jax.Array) -> jax.Array:
        if jnp.issubdtype(images.dtype, jnp.floating):
            return images
        if images.dtype != jnp.uint8:
            raise TypeError(f"images must be uint8 frames or normalised floats, got "
                            f"{images.dtype}")
        x = images.astype(jnp.float32) * jnp.float32(1.0 / 255.0)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """How an image is looked at: whole or by sliding windows, at several scales, flipped.

    Scales and windows are static, so each (scale, flip, window) compiles once.
    `input_multiple` pads every view at the bottom/right to a size the network accepts.
    """

    mode: str = "whole"
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    window: tuple[int, int] = (1024, 1024)
    stride: tuple[int, int] = (768, 768)
    input_multiple: int = 1

    def __post_init__(self):
        if self.mode not in EVAL_MODES:
            raise ValueError(f"config.eval_mode={self.mode!r}; choose {' or '.join(EVAL_MODES)}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"config.eval_scales={self.scales!r}: need positive scales")
        if self.mode == "slide" and (min(self.window) <= 0 or min(self.stride) <= 0):
            raise ValueError(f"config.eval_window={self.window} / eval_stride={self.stride} "
                             "must be positive")

    @property
    def is_single_view(self) -> bool:
        return self.mode == "whole" and tuple(self.scales) == (1.0,) and not self.flip

    def describe(self) -> str:
        """What produced a number, for reports: e.g. 'slide 1024x1024/768, scales 0.5-1.75,
        flip'."""
        parts = [self.mode if self.mode == "whole" else
                 f"slide {self.window[0]}x{self.window[1]}/{self.stride[0]}x{self.stride[1]}"]
        if tuple(self.scales) != (1.0,):
            parts.append("scales " + ",".join(f"{s:g}" for s in self.scales))
        if self.flip:
            parts.append("flip")
        return ", ".join(parts)

    @classmethod
    def from_config(cls, config, input_multiple: int = 1) -> ViewConfig:
        return cls(mode=config.eval_mode, scales=tuple(float(s) for s in config.eval_scales),
                   flip=bool(config.eval_flip), window=tuple(int(v) for v in config.eval_window),
                   stride=tuple(int(v) for v in config.eval_stride),
                   input_multiple=int(input_multiple))


def _logits_at_input(apply, variables, images, multiple: int):
    """Logits resized to the input's size; the input is padded to `multiple` first."""
    h, w = images.shape[1:3]
    ph, pw = -h % multiple, -w % multiple
    padded = jnp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0))) if ph or pw else images
    logits = apply(variables, padded)["logits"].astype(jnp.float32)
    logits = resize_bilinear(logits, padded.shape[1:3])
    return logits[:, :h, :w]


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    """mmseg's grid: windows every `stride`, the last one flush with the far edge."""
    if size <= window:
        return [0]
    count = -(-(size - window) // stride) + 1
    return [min(i * stride, size - window) for i in range(count)]


def _slide(apply, variables, images, view: ViewConfig):
    """Logits averaged over overlapping windows; images smaller than a window are padded."""
    h, w = images.shape[1:3]
    wh, ww = min(view.window[0], h), min(view.window[1], w)
    total = jnp.zeros((*images.shape[:3], 0), jnp.float32)
    count = np.zeros((h, w), np.float32)
    for y in _window_starts(h, wh, view.stride[0]):
        for x in _window_starts(w, ww, view.stride[1]):
            crop = images[:, y:y + wh, x:x + ww]
            logits = _logits_at_input(apply, variables, crop, view.input_multiple)
            if total.shape[-1] == 0:
                total = jnp.zeros((*images.shape[:3], logits.shape[-1]), jnp.float32)
            total = total.at[:, y:y + wh, x:x + ww].add(logits)
            count[y:y + wh, x:x + ww] += 1
    return total / jnp.asarray(count)[None, :, :, None]


def class_scores(apply: Callable, variables, images: jax.Array, out_size: Sequence[int],
                 view: ViewConfig | None = None) -> jax.Array:
    """Per-class scores at `out_size` whose argmax is the prediction.

    A single whole-image view returns its logits (as the papers evaluate); with several
    views (scales, flips, windows within a view excepted) the softmax probabilities are
    averaged, as mmseg's test-time augmentation does. `apply(variables, x)` returns the
    model's output dict.
    """
    view = view or ViewConfig()
    out_size = (int(out_size[0]), int(out_size[1]))
    if view.is_single_view:
        logits = _logits_at_input(apply, variables, images, view.input_multiple)
        return resize_bilinear(logits, out_size)
    h, w = images.shape[1:3]
    total = None
    for scale in view.scales:
        size = (max(int(round(h * scale)), 1), max(int(round(w * scale)), 1))
        scaled = resize_bilinear(images, size) if size != (h, w) else images
        for flipped in (False, True) if view.flip else (False,):
            x = scaled[:, :, ::-1] if flipped else scaled
            if view.mode == "slide":
                logits = _slide(apply, variables, x, view)
            else:
                logits = _logits_at_input(apply, variables, x, view.input_multiple)
            if flipped:
                logits = logits[:, :, ::-1]
            probs = jax.nn.softmax(resize_bilinear(logits, out_size), axis=-1)
            total = probs if total is None else total + probs
    return total / (len(view.scales) * (2 if view.flip else 1))


@dataclasses.dataclass(frozen=True)
class Predictor:
    """uint8 frames → normalised input → views → class scores → labels: the one prediction
    path of evaluation, `--mode=predict`, export and notebooks, so they cannot disagree.

    Every view is zero-padded after normalisation (the mean colour) at the bottom/right to
    `view.input_multiple` and the logits are cropped back: the only padding rule.
    """

    apply: Callable  # (variables, x) -> the model's output dict
    norm: InputNorm = InputNorm()
    view: ViewConfig = ViewConfig()

    @classmethod
    def for_model(cls, model, norm: InputNorm | None = None,
                  view: ViewConfig | None = None) -> Predictor:
        """`model` is a Flax module or a `FoldedModel`."""
        return cls(lambda v, x: model.apply(v, x, train=False), norm or InputNorm(),
                   view or ViewConfig())

    def scores(self, variables, frames: jax.Array, out_size: Sequence[int] | None = None
               ) -> jax.Array:
        """Per-class scores at `out_size` (default: the frames' size)."""
        out_size = frames.shape[1:3] if out_size is None else out_size
        return class_scores(self.apply, variables, self.norm(frames), out_size, self.view)

    def labels(self, variables, frames: jax.Array, out_size: Sequence[int] | None = None
               ) -> jax.Array:
        """uint8 class ids at `out_size` (default: the frames' size)."""
        return jnp.argmax(self.scores(variables, frames, out_size), axis=-1).astype(jnp.uint8)
