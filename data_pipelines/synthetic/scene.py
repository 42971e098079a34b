"""One synthetic street scene: the drawers in depth order, then sensor and optics.

Everything is planned first and drawn far to near, so nearer objects occlude farther ones
without a depth buffer; the random draws happen in a fixed order, which makes a scene a
pure function of (seed, index) and its layout independent of the resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

from data_pipelines.synthetic.buildings import Buildings
from data_pipelines.synthetic.ground import Ground
from data_pipelines.synthetic.palette import (
    BUILDING,
    FENCE,
    IGNORE,
    PERSON,
    RIDER,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRUCK,
    VEG,
    WALL,
)
from data_pipelines.synthetic.people import People
from data_pipelines.synthetic.street_furniture import StreetFurniture
from data_pipelines.synthetic.vehicles import Vehicles


def _texture_table():
    """Per-class amplitude of (mid-scale, per-pixel) multiplicative noise.

    Texture is part of what distinguishes classes (grass is grainy, paint is smooth), so it
    is tied to the label; colours vary per instance.
    """
    amp = np.full((2, 256), 0.02, np.float32)
    for cls, mid, fine in [
        (ROAD, 0.06, 0.07), (SIDEWALK, 0.05, 0.05), (BUILDING, 0.06, 0.03), (WALL, 0.10, 0.07),
        (FENCE, 0.03, 0.03), (VEG, 0.22, 0.12), (TERRAIN, 0.14, 0.16), (SKY, 0.015, 0.0),
        (PERSON, 0.04, 0.03), (RIDER, 0.04, 0.03), (TRUCK, 0.03, 0.02),
    ]:
        amp[:, cls] = mid, fine
    return amp


_TEXTURE = _texture_table()


class Scene(Ground, Buildings, StreetFurniture, People, Vehicles):
    """One image: sky and layout, ground, planned facades and objects, bonnet, sensor."""

    def render(self):
        self.draw_sky()
        self.plan_layout()
        facades = self.plan_facades()
        objects = self._plan_objects()
        self.draw_ground()
        self.draw_shadows()
        for items in (facades, objects):
            items.sort(key=lambda it: -it[0])
            for _, fn, args in items:
                fn(*args)
        self._hood()
        return self._finish(), self.lab

    def _plan_objects(self):
        """Furniture, then people, then vehicles: this order fixes the random draws."""
        items = []
        self.plan_street_furniture(items)
        self.plan_people(items)
        self.plan_vehicles(items)
        return items

    def _hood(self):
        """Ego-vehicle bonnet in some images, ignored as in Cityscapes."""
        r = self.r
        if r.random() > 0.35:
            return
        d = r.uniform(0.03, 0.08)
        col = (r.uniform(15, 70),) * 3
        xs = np.linspace(0, 1, 17)
        ys = 1 - d * (1 - 0.5 * (2 * xs - 1) ** 2)
        pts = np.concatenate([np.stack([xs * self.w, ys * self.h], -1),
                              [[self.w, self.h], [0, self.h]]])
        self.fill_any((pts + 0.5).astype(np.int32), IGNORE, col)

    def _finish(self):
        """Texture, sensor noise, lighting and optics on the albedo canvas.

        Texture and noise are one multiplicative field (its amplitude looked up per class),
        applied with the per-channel gain on an (H, 3W) view so every op is one pass.
        """
        r, nr = self.r, self.noise_rng
        h, w = self.h, self.w
        gain = r.uniform(0.7, 1.2)
        cast = [gain * r.uniform(0.9, 1.1) for _ in range(3)]
        contrast, gamma = r.uniform(0.75, 1.15), r.uniform(0.8, 1.25)
        sensor = r.uniform(0.01, 0.04)
        blur = r.uniform(0.6, 1.8) * w / 2048  # optics soften the same at every resolution
        mid = cv2.resize(nr.standard_normal((min(h, 96), min(w, 192)), dtype=np.float32),
                         (w, h), interpolation=cv2.INTER_LINEAR)
        fine = np.frombuffer(nr.bytes(h * w), np.uint8).reshape(h, w).astype(np.float32)
        fine -= 127.5  # uniform, standard deviation 73.6
        mod = cv2.LUT(self.lab, _TEXTURE[0])
        mod *= mid
        mod += cv2.LUT(self.lab, (_TEXTURE[1] + np.float32(sensor)) / np.float32(73.6)) * fine
        mod += 1.0
        mod3 = np.repeat(mod, 3, axis=1)
        mod3 *= np.tile(np.asarray(cast, np.float32), w)[None]
        img = cv2.multiply(self.img.reshape(h, 3 * w), mod3, dtype=cv2.CV_8U)
        x = 255.0 * (np.arange(256) / 255.0) ** gamma
        lut = np.clip((x - 110.0) * contrast + 110.0 + 0.5, 0, 255).astype(np.uint8)
        img = cv2.LUT(img, lut).reshape(h, w, 3)
        if blur >= 0.3:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        return img


def render_scene(seed: int, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3) RGB, label uint8 (H, W)) for one scene; a pure function of its args.

    The layout is drawn in metric coordinates, so the same (seed, index) gives the same scene
    at every resolution; only the noise differs.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed}, {index}")
    if height < 8 or width < 8:
        raise ValueError(f"image size {height}x{width} is too small (min 8x8)")
    return Scene(seed, index, height, width).render()
