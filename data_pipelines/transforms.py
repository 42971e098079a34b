"""Segmentation augmentations on numpy arrays (HxWx3 uint8 image, HxW uint8 label).

Random functions take a `np.random.Generator` so that grain's `random_map`, which
seeds one per element from the pipeline seed and the element index, makes every
augmentation reproducible and resumable.
"""

import dataclasses
import os

import cv2
import numpy as np

from data_pipelines.metadata import IGNORE_LABEL

_cv2_single_threaded_pid = None


def use_single_threaded_cv2():
    """Stops OpenCV's own thread pool from oversubscribing the cores grain already uses.

    Called per process (grain threads or mp workers) so that forked or spawned workers
    are covered too without a worker init hook.
    """
    global _cv2_single_threaded_pid
    pid = os.getpid()
    if _cv2_single_threaded_pid != pid:
        cv2.setNumThreads(1)
        _cv2_single_threaded_pid = pid


def resize_long_edge(image, label, long_edge):
    """Resizes so the longer side is `long_edge` pixels (aspect kept; labels nearest).

    Datasets whose frames vary in size (Mapillary Vistas) are brought to one scale this way
    before scale augmentation and for evaluation. `long_edge` 0 returns the inputs.
    """
    height, width = label.shape
    if not long_edge or max(height, width) == long_edge:
        return image, label
    scale = long_edge / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    return image, label


def random_scale(image, label, rng, scale_range):
    """Resizes by a factor drawn uniformly from `scale_range`; labels use nearest."""
    scale = rng.uniform(*scale_range)
    height, width = label.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    return image, label


def pad_to_size(image, label, size):
    """Pads bottom/right to at least `size` (h, w): image with 0, label with ignore."""
    height, width = label.shape
    pad_h, pad_w = max(size[0] - height, 0), max(size[1] - width, 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_LABEL)
    return image, label


def random_crop(image, label, rng, size):
    """Crops a random `size` (h, w) window; inputs must already be at least that big."""
    height, width = label.shape
    if height < size[0] or width < size[1]:
        raise ValueError(f"cannot crop {size} from {height}x{width}; pad first")
    top = int(rng.integers(0, height - size[0] + 1))
    left = int(rng.integers(0, width - size[1] + 1))
    return (
        image[top : top + size[0], left : left + size[1]],
        label[top : top + size[0], left : left + size[1]],
    )


def random_scale_crop(image, label, rng, scale_range, size):
    """`random_scale` -> `pad_to_size` -> `random_crop` in one resampling of the crop only.

    Draws the same random numbers as the three steps and picks the same window, but maps
    the `size` output pixels straight back to the source with one `cv2.warpAffine` (the
    pixel-centre convention of `cv2.resize`), instead of resizing the whole frame first: a
    2x scale of a 1024x2048 frame is 8M pixels resampled to keep 1M. Images may differ
    from the three-step path by one grey level (fixed-point weights); labels use nearest.
    """
    scale = rng.uniform(*scale_range)
    height, width = label.shape
    scaled_h, scaled_w = max(1, round(height * scale)), max(1, round(width * scale))
    out_h, out_w = size
    top = int(rng.integers(0, max(scaled_h, out_h) - out_h + 1))
    left = int(rng.integers(0, max(scaled_w, out_w) - out_w + 1))
    fx, fy = width / scaled_w, height / scaled_h
    if fx == 1.0 and fy == 1.0:
        image = image[top : top + out_h, left : left + out_w]
        label = label[top : top + out_h, left : left + out_w]
        return pad_to_size(image, label, size)
    flags = cv2.WARP_INVERSE_MAP
    # Bilinear: source x = (x + left + 0.5) * fx - 0.5, as cv2.resize samples.
    to_source = np.array([[fx, 0.0, (left + 0.5) * fx - 0.5],
                          [0.0, fy, (top + 0.5) * fy - 0.5]])
    image = _warp_bilinear(image, to_source, (out_h, out_w))
    # Nearest: cv2.resize takes floor(x * fx); warpAffine rounds in 1/1024 steps, hence
    # the shift of just under half a pixel (exact at the integer ratios of a 2x scale).
    shift = 0.5 - 1.0 / 2048
    to_source = np.array([[fx, 0.0, left * fx - shift], [0.0, fy, top * fy - shift]])
    label = cv2.warpAffine(label, to_source, (out_w, out_h), flags=flags | cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_REPLICATE)
    valid_h, valid_w = scaled_h - top, scaled_w - left
    if valid_h < out_h or valid_w < out_w:  # beyond the scaled frame: padding
        image[valid_h:], label[valid_h:] = 0, IGNORE_LABEL
        image[:, valid_w:], label[:, valid_w:] = 0, IGNORE_LABEL
    return image, label


def _warp_bilinear(image, to_source, size):
    """`cv2.warpAffine(..., WARP_INVERSE_MAP | INTER_LINEAR, BORDER_REPLICATE)` of an HxWx3
    image, computed on RGBA.

    OpenCV's bilinear remap has vector code for 1 and 4 channels but not 3; going through
    RGBA is ~3x faster, within one grey level (the vector path's fixed-point rounding). Only
    the source rectangle the window samples (with a margin for that rounding) is converted.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        return cv2.warpAffine(image, to_source, size[::-1],
                              flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    height, width = image.shape[:2]
    bounds = []
    for axis, (extent, out) in enumerate(((width, size[1]), (height, size[0]))):
        scale, offset = to_source[axis, axis], to_source[axis, 2]
        first = min(max(int(np.floor(offset)) - 1, 0), extent - 1)
        last = min(max(int(np.floor(offset + scale * (out - 1))) + 3, first + 1), extent)
        bounds.append((first, last))
    (x0, x1), (y0, y1) = bounds
    shifted = to_source.copy()
    shifted[:, 2] -= (x0, y0)
    rgba = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2RGBA)
    warped = cv2.warpAffine(rgba, shifted, size[::-1],
                            flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB)


def random_hflip(image, label, rng, prob=0.5):
    """Mirrors image and label together with probability `prob` (contiguous copies:
    cv2.flip is several times faster than copying a negative-stride numpy view)."""
    if rng.random() < prob:
        return cv2.flip(image, 1), cv2.flip(label, 1)
    return image, label


def mean_color(mean, channel_order="rgb"):
    """The uint8 RGB colour that normalises to 0: padding that looks like no signal."""
    rgb = np.asarray(mean, np.float64)
    if channel_order == "bgr":
        rgb = rgb[::-1]
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class TrainAugment:
    """Scale -> pad -> crop -> flip, as one grain `random_map` callable.

    Returns uint8 RGB image and uint8 label: normalisation happens on the device
    (`segjax.inference.InputNorm`), so the host neither converts nor copies floats.
    """

    crop_size: tuple
    scale_range: tuple = (0.5, 2.0)
    hflip: bool = True
    long_edge: int = 0

    def __call__(self, example, rng):
        use_single_threaded_cv2()
        image, label = example["image"], example["label"]
        image, label = resize_long_edge(image, label, self.long_edge)
        image, label = random_scale_crop(image, label, rng, self.scale_range, self.crop_size)
        if self.hflip:
            image, label = random_hflip(image, label, rng)
        return {"image": np.ascontiguousarray(image, np.uint8),
                "label": np.ascontiguousarray(label, np.uint8)}


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """The stored frames as uint8 (at `long_edge` if set, labels too); normalised on device."""

    long_edge: int = 0

    def __call__(self, example):
        image, label = example["image"], np.asarray(example["label"])
        if self.long_edge:
            use_single_threaded_cv2()
            image, label = resize_long_edge(image, label, self.long_edge)
        return {"image": np.ascontiguousarray(image, np.uint8),
                "label": np.ascontiguousarray(label, np.uint8)}
