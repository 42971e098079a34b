"""Segmentation augmentations on numpy arrays (HxWx3 uint8 image, HxW uint8 label).

Random functions take a `np.random.Generator` so that grain's `random_map`, which
seeds one per element from the pipeline seed and the element index, makes every
augmentation reproducible and resumable.
"""

import dataclasses
import functools
import os

import cv2
import numpy as np

IGNORE_LABEL = 255

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
    image = cv2.warpAffine(image, to_source, (out_w, out_h), flags=flags | cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
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


def random_hflip(image, label, rng, prob=0.5):
    """Mirrors image and label together with probability `prob`."""
    if rng.random() < prob:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def normalize(image, mean, std, channel_order="rgb"):
    """RGB uint8 -> float32 `(x/255 - mean)/std`, with mean/std given in `channel_order`.

    BGR exists because weights ported from Caffe/OpenCV-trained models expect it. One
    table lookup per pixel (256 values per channel) instead of four float passes.
    """
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    image = np.asarray(image)
    if channel_order == "bgr":
        image = image[..., ::-1]
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        scale = np.float32(1.0 / 255.0)
        return (image.astype(np.float32) * scale - np.asarray(mean, np.float32)) \
            / np.asarray(std, np.float32)
    table = _normalize_table(tuple(map(float, mean)), tuple(map(float, std)))
    return cv2.LUT(np.ascontiguousarray(image), table)


@functools.lru_cache(maxsize=16)
def _normalize_table(mean, std):
    """(1, 256, 3) float32: the normalised value of every uint8 level of each channel."""
    levels = np.arange(256, dtype=np.float32)[:, None] * np.float32(1.0 / 255.0)
    table = (levels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(table[None], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class TrainAugment:
    """Scale -> pad -> crop -> flip -> normalise, as one grain `random_map` callable."""

    crop_size: tuple
    scale_range: tuple = (0.5, 2.0)
    hflip: bool = True
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    channel_order: str = "rgb"
    long_edge: int = 0

    def __call__(self, example, rng):
        use_single_threaded_cv2()
        image, label = example["image"], example["label"]
        image, label = resize_long_edge(image, label, self.long_edge)
        image, label = random_scale_crop(image, label, rng, self.scale_range, self.crop_size)
        if self.hflip:
            image, label = random_hflip(image, label, rng)
        return {
            "image": normalize(image, self.mean, self.std, self.channel_order),
            "label": label.astype(np.int32),
        }


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """Normalisation only, so eval sees the stored frames (at `long_edge` if set, labels too)."""

    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    channel_order: str = "rgb"
    long_edge: int = 0

    def __call__(self, example):
        image, label = example["image"], np.asarray(example["label"])
        if self.long_edge:
            use_single_threaded_cv2()
            image, label = resize_long_edge(image, label, self.long_edge)
        return {
            "image": normalize(image, self.mean, self.std, self.channel_order),
            "label": label.astype(np.int32),
        }
