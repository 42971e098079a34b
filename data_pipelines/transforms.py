"""Segmentation augmentations on numpy arrays (HxWx3 uint8 image, HxW uint8 label).

Random functions take a `np.random.Generator` so that grain's `random_map`, which
seeds one per element from the pipeline seed and the element index, makes every
augmentation reproducible and resumable.
"""

import dataclasses
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


def random_hflip(image, label, rng, prob=0.5):
    """Mirrors image and label together with probability `prob`."""
    if rng.random() < prob:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def normalize(image, mean, std, channel_order="rgb"):
    """RGB uint8 -> float32 `(x/255 - mean)/std`, with mean/std given in `channel_order`.

    BGR exists because weights ported from Caffe/OpenCV-trained models expect it.
    """
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if channel_order == "bgr":
        image = image[..., ::-1]
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return (image.astype(np.float32) * scale - mean) / std


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
        image, label = random_scale(image, label, rng, self.scale_range)
        image, label = pad_to_size(image, label, self.crop_size)
        image, label = random_crop(image, label, rng, self.crop_size)
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
