"""Procedural street scenes labelled with Cityscapes train ids: the built-in default dataset.

It lets every pipeline, model and benchmark run end to end without a download. Classes are
told apart by shape, context and texture rather than by a fixed colour: every instance draws
its own colours and every image its own lighting, so the task is not a colour lookup, yet a
small network learns it quickly. Scenes are laid out in metric street coordinates (X right,
Y up, Z forward, metres) and drawn through a pinhole camera far to near, which keeps sizes,
perspective and occlusion consistent at any resolution.

    python -m data_pipelines.synthetic --out /tmp/synth --num 4 --size 256x512
"""

from __future__ import annotations

import argparse
import math
import operator
import pathlib
import random

import cv2
import numpy as np

from data_pipelines import metadata

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEG, TERRAIN, SKY, PERSON, RIDER,
 CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
IGNORE = metadata.IGNORE_LABEL

NEAR = 1.0  # metres: geometry closer than this is clamped, which keeps pixel coordinates finite


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

_FACADE = [(200, 188, 165), (172, 160, 148), (150, 82, 62), (212, 206, 194), (118, 110, 102),
           (182, 152, 112), (140, 150, 160), (192, 172, 140), (165, 120, 100), (222, 214, 180)]
_CONCRETE = [(150, 150, 144), (126, 121, 114), (170, 161, 150), (138, 86, 66), (110, 112, 110)]
_PAINT = [(232, 232, 228), (28, 28, 32), (162, 166, 170), (98, 102, 108), (38, 50, 92),
          (150, 28, 30), (58, 82, 60), (122, 92, 62), (200, 200, 190), (20, 40, 70),
          (90, 20, 30), (180, 140, 40)]
_BUS_PAINT = [(226, 190, 30), (196, 40, 36), (232, 232, 226), (40, 90, 170), (40, 130, 80)]
_TRAM_PAINT = [(230, 230, 225), (200, 40, 40), (230, 200, 40), (40, 100, 170)]
_CLOTH = [(25, 25, 30), (40, 45, 70), (180, 40, 40), (230, 230, 225), (90, 90, 95),
          (60, 90, 140), (150, 120, 80), (40, 80, 50), (200, 160, 60), (120, 50, 90)]
_TROUSERS = [(30, 35, 60), (25, 25, 28), (70, 70, 75), (160, 140, 110), (50, 60, 90)]
_SKIN = [(224, 188, 160), (198, 150, 120), (150, 105, 75), (100, 70, 50), (236, 200, 175)]
_HAIR = [(30, 25, 20), (80, 55, 35), (170, 140, 90), (120, 120, 120), (60, 40, 30)]
_GREEN = [(52, 82, 38), (40, 68, 34), (70, 92, 48), (84, 98, 44), (60, 78, 52), (46, 60, 30)]
_GRASS = [(112, 138, 66), (138, 146, 78), (128, 112, 78), (96, 126, 58), (150, 140, 90)]
_PAVING = [(150, 150, 146), (168, 130, 118), (190, 180, 160), (120, 120, 124), (176, 170, 168)]
_METAL = [(110, 110, 110), (70, 75, 80), (60, 80, 64), (150, 150, 150)]
_TYRE = (26, 26, 28)

# Box corners are indexed ix + 2*iy + 4*iz; faces list them counter-clockwise on screen.
_BACK, _SIDE_X0, _SIDE_X1, _TOP, _BOTTOM = (0, 1, 3, 2), (0, 4, 6, 2), (1, 5, 7, 3), \
    (2, 3, 7, 6), (0, 1, 5, 4)


_CIRCLE = [(math.cos(2 * math.pi * k / 12), math.sin(2 * math.pi * k / 12)) for k in range(12)]


def _jitter(r, choices, spread=0.12, shift=10.0):
    """A colour near a random choice: the class stays recognisable, the instance does not repeat."""
    base = choices[int(r.random() * len(choices))]
    k = r.uniform(1 - spread, 1 + spread)
    return tuple(min(255.0, max(0.0, c * k + r.uniform(-shift, shift))) for c in base)


def _pick(r, probs):
    """Index drawn with the given probabilities."""
    u, acc = r.random(), 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return len(probs) - 1


def _poisson(r, lam):
    limit, k, p = math.exp(-lam), 0, r.random()
    while p > limit:
        k += 1
        p *= r.random()
    return k


class _Face:
    """A planar rectangle o + u*eu + v*ev, u, v in [0, 1]: details are placed in face fractions."""

    __slots__ = ("o", "eu", "ev")

    def __init__(self, o, eu, ev):
        self.o, self.eu, self.ev = o, eu, ev

    def pt(self, u, v):
        o, a, b = self.o, self.eu, self.ev
        return (o[0] + u * a[0] + v * b[0], o[1] + u * a[1] + v * b[1], o[2] + u * a[2] + v * b[2])

    def quad(self, u0, u1, v0, v1):
        return [self.pt(u0, v0), self.pt(u1, v0), self.pt(u1, v1), self.pt(u0, v1)]

    def ring(self, uc, vc, ru, rv):
        return [self.pt(uc + ru * c, vc + rv * s) for c, s in _CIRCLE]

    @property
    def lu(self):
        return math.sqrt(sum(c * c for c in self.eu))

    @property
    def lv(self):
        return math.sqrt(sum(c * c for c in self.ev))


class _Scene:
    """One image: camera, layout, and the albedo/label canvases drawn far to near."""

    def __init__(self, seed, index, height, width):
        state = np.random.SeedSequence([seed, index]).generate_state(2, np.uint64)
        self.r = random.Random(int(state[0]))
        self.noise_rng = np.random.default_rng(int(state[1]))
        self.h, self.w = height, width
        r = self.r
        fx = r.uniform(0.85, 1.15)  # focal length in image widths
        fy = 2.0 * fx  # square pixels at the nominal 1:2 frame; other aspects stretch
        self.cam_h = r.uniform(1.3, 1.8)
        self.yh = r.uniform(0.36, 0.5)
        self.xv = r.uniform(0.4, 0.6)
        self.kx, self.ky = fx * width, fy * height
        self.cx, self.cy = self.xv * width + 0.5, self.yh * height + 0.5  # +0.5: int() rounds
        self.fx = fx
        self.img = np.empty((height, width, 3), np.uint8)
        self.lab = np.empty((height, width), np.uint8)

    # ----------------------------------------------------------------------- primitives

    def P(self, x, y, z):
        """Pixel position (float) of a street point."""
        if z < NEAR:
            z = NEAR
        return self.cx + self.kx * x / z - 0.5, self.cy + self.ky * (self.cam_h - y) / z - 0.5

    def poly(self, pts):
        """int32 (n, 2) pixel polygon of 3-D points."""
        cx, cy, kx, ky, ch = self.cx, self.cy, self.kx, self.ky, self.cam_h
        out = []
        for x, y, z in pts:
            if z < NEAR:
                z = NEAR
            out.append(cx + kx * x / z)
            out.append(cy + ky * (ch - y) / z)
        return np.array(out, np.int32).reshape(-1, 2)

    def scale(self, z):
        """Pixels per metre (horizontal, vertical) at depth z."""
        z = max(z, NEAR)
        return self.kx / z, self.ky / z

    def tone(self, rgb, z=0.0, k=1.0):
        """Colour of a surface at depth z lit by k; haze pulls far colours to the horizon sky."""
        t = 1.0 - math.exp(-z / self.visibility) if z > 0 else 0.0
        hz, s = self.haze, k * (1.0 - t)
        return (rgb[0] * s + hz[0] * t, rgb[1] * s + hz[1] * t, rgb[2] * s + hz[2] * t)

    def in_view(self, x0, x1, z0, z1=None):
        """Whether the lateral span [x0, x1] between depths z0 and z1 can reach the frame.

        A layout-only test (no pixel sizes), so culling never makes the scene depend on the
        resolution.
        """
        xs = []
        for z in (z0, z0 if z1 is None else z1):
            z = max(z, NEAR)
            xs += [self.xv + self.fx * x0 / z, self.xv + self.fx * x1 / z]
        return max(xs) > -0.02 and min(xs) < 1.02

    def fill(self, poly, cls, color):
        """A convex polygon in the image and, unless cls is None, in the label."""
        cv2.fillConvexPoly(self.img, poly, color)
        if cls is not None:
            cv2.fillConvexPoly(self.lab, poly, cls)

    def fill_any(self, poly, cls, color):
        """Like fill, for polygons that may be concave."""
        cv2.fillPoly(self.img, [poly], color)
        cv2.fillPoly(self.lab, [poly], cls)

    def fill_many(self, polys, color):
        """Non-overlapping polygons of one colour in one call (image only: windows, marks)."""
        if len(polys):
            cv2.fillPoly(self.img, polys, color)

    def lines(self, segs, cls, color, thick_m, z):
        """Polylines (pixel coordinates) with a metric thickness of at least one pixel."""
        t = max(1, int(thick_m * self.ky / max(z, NEAR) + 0.5))
        segs = [s if isinstance(s, np.ndarray) and s.dtype == np.int32
                else (np.asarray(s, np.float64).reshape(-1, 2) + 0.5).astype(np.int32)
                for s in segs]
        cv2.polylines(self.img, segs, False, color, t)
        if cls is not None:
            cv2.polylines(self.lab, segs, False, cls, t)

    def ellipse(self, center, axes, cls, color, thickness=-1):
        c = (int(center[0] + 0.5), int(center[1] + 0.5))
        a = (max(0, int(axes[0] + 0.5)), max(0, int(axes[1] + 0.5)))
        cv2.ellipse(self.img, c, a, 0, 0, 360, color, thickness)
        if cls is not None:
            cv2.ellipse(self.lab, c, a, 0, 0, 360, cls, thickness)

    def box(self, x0, x1, y0, y1, z0, z1, cls, color, faces=False):
        """Axis-aligned box: shaded visible faces in the image, its silhouette in the label.

        Returns the camera-facing faces by name ('back' faces the camera, 'side' is the one
        side face that can be seen, 'top'/'bottom') when `faces` is set.
        """
        z0 = max(z0, NEAR)
        z1 = max(z1, z0 + 0.01)
        corners = [(x0, y0, z0), (x1, y0, z0), (x0, y1, z0), (x1, y1, z0),
                   (x0, y0, z1), (x1, y0, z1), (x0, y1, z1), (x1, y1, z1)]
        pix = self.poly(corners)
        visible = [("back", _BACK)]
        if x0 > 0:
            visible.append(("side", _SIDE_X0))
        elif x1 < 0:
            visible.append(("side", _SIDE_X1))
        if y1 < self.cam_h:
            visible.append(("top", _TOP))
        elif y0 > self.cam_h:
            visible.append(("bottom", _BOTTOM))
        for name, idx in visible:
            cv2.fillConvexPoly(self.img, pix[list(idx)], self.tone(color, z0, self.lit(name, x0)))
        if cls is not None:
            if len(visible) == 1:
                cv2.fillConvexPoly(self.lab, pix[list(_BACK)], cls)
            else:
                cv2.fillConvexPoly(self.lab, cv2.convexHull(pix), cls)
        if not faces:
            return None
        out = {}
        for name, _ in visible:
            if name == "back":
                out[name] = _Face((x0, y0, z0), (x1 - x0, 0, 0), (0, y1 - y0, 0))
            elif name == "side":
                xs = x0 if x0 > 0 else x1
                out[name] = _Face((xs, y0, z0), (0, 0, z1 - z0), (0, y1 - y0, 0))
        return out

    def lit(self, face, x0=0.0):
        """Brightness of a face: side faces are lit or shaded depending on the sun's side."""
        if face == "top":
            return 1.0 + 0.4 * self.sun_k
        if face == "bottom":
            return 1.0 - 1.2 * self.sun_k
        if face == "side":
            normal = -1.0 if x0 > 0 else 1.0
            return 1.0 + 0.3 * self.sun_k if normal == self.sun else 1.0 - self.sun_k
        return 1.0 - 0.25 * self.sun_k

    def hull(self, pix, cls, color):
        """Convex hull of pixel points: bodies drawn from a cloud of joints or corners."""
        self.fill(cv2.convexHull(np.asarray(pix, np.int32).reshape(-1, 2)), cls, color)

    # ----------------------------------------------------------------------------- scene

    def render(self):
        self._sky()
        self._layout()
        facades = self._plan_facades()
        objects = self._plan_objects()
        self._ground()
        self._shadows()
        for items in (facades, objects):
            items.sort(key=lambda it: -it[0])
            for _, fn, args in items:
                fn(*args)
        self._hood()
        return self._finish(), self.lab

    def _sky(self):
        r = self.r
        kind = _pick(r, (0.45, 0.3, 0.15, 0.1))
        if kind == 0:  # clear
            top = (r.uniform(40, 95), r.uniform(90, 145), r.uniform(170, 235))
            bottom = (r.uniform(175, 215), r.uniform(195, 228), r.uniform(218, 250))
        elif kind == 1:  # overcast
            g = r.uniform(150, 215)
            top = (g - r.uniform(5, 20), g - r.uniform(0, 12), g + r.uniform(0, 10))
            bottom = tuple(min(250.0, g + 25 + r.uniform(-5, 5)) for _ in range(3))
        elif kind == 2:  # hazy
            g = r.uniform(195, 240)
            top = (g - 40, g - 25, g - 5)
            bottom = (g, g, g - r.uniform(0, 15))
        else:  # dusk
            top = (r.uniform(60, 100), r.uniform(70, 100), r.uniform(120, 170))
            bottom = (r.uniform(220, 250), r.uniform(150, 190), r.uniform(100, 140))
        self.overcast = kind in (1, 2)
        self.haze = bottom
        self.visibility = r.uniform(120, 400) if self.overcast else r.uniform(250, 900)
        self.sun = r.choice((-1.0, 1.0))
        self.sun_k = r.uniform(0.02, 0.12) if self.overcast else r.uniform(0.1, 0.45)
        clouds = [(r.uniform(0, 96), r.uniform(0, 44), r.uniform(6, 30), r.uniform(2, 7),
                   r.uniform(0.4, 1.0)) for _ in range(r.randrange(3, 10) if kind == 1
                                                       else r.randrange(0, 8))]
        opacity, brighter = r.uniform(0.4, 0.9), r.uniform(1.0, 1.12)
        # Sky and clouds are smooth: paint them at 48x96 and stretch, whatever the resolution.
        t = ((np.arange(48, dtype=np.float32) + 0.5) / 48)[:, None, None] ** 0.7
        sky = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
        sky = np.repeat(sky, 96, axis=1)
        if clouds:
            mask = np.zeros((48, 96), np.float32)
            for cx, cy, ax, ay, a in clouds:
                cv2.ellipse(mask, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, a, -1)
            alpha = cv2.GaussianBlur(mask, (0, 0), 3.0)[..., None] * opacity
            sky += (np.asarray(bottom, np.float32) * brighter - sky) * alpha
        horizon = min(self.h, int(math.ceil(self.yh * self.h)))
        if horizon > 0:
            sky = np.clip(sky, 0, 255).astype(np.uint8)
            self.img[:horizon] = cv2.resize(sky, (self.w, horizon), interpolation=cv2.INTER_LINEAR)
        self.lab[:] = SKY

    def _layout(self):
        """Road cross-section (lanes, parking, curbs, verges, sidewalks, yards) and junction."""
        r = self.r
        lw = self.lane_w = r.uniform(2.9, 3.6)
        n = r.choice((1, 2, 2, 3, 4, 4))
        n_toward = 0 if (n == 1 or r.random() < 0.25) else n // 2
        cam_lane = r.randrange(n_toward, n)
        left = -(cam_lane + 0.5 + r.uniform(-0.3, 0.3)) * lw
        self.lanes = [(left + (k + 0.5) * lw, -1 if k < n_toward else 1) for k in range(n)]
        self.lane_lines = [(left + k * lw, k == n_toward) for k in range(1, n)]
        self.parking = {s: r.random() < 0.45 for s in (-1, 1)}
        road = {-1: left - 2.2 * self.parking[-1], 1: left + n * lw + 2.2 * self.parking[1]}
        self.sides = {}
        for s in (-1, 1):
            edge = abs(road[s])
            verge = r.uniform(1.0, 3.0) if r.random() < 0.3 else 0.0
            walk = r.uniform(1.8, 5.0)
            yard = r.uniform(1.0, 6.0) if r.random() < 0.35 else 0.0
            curb = edge + 0.25
            self.sides[s] = {
                "edge": edge, "curb": curb, "verge": curb + verge, "walk": curb + verge + walk,
                "facade": curb + verge + walk + yard, "has_verge": verge > 0, "has_yard": yard > 0,
            }
        self.z_end = r.uniform(120, 320)
        self.junction = None
        if r.random() < 0.45:
            zi = r.uniform(14, 55)
            self.junction = (zi, zi + r.uniform(10, 20), r.uniform(2.0, 4.5))
        self.tram_lane = r.randrange(n) if n >= 2 and r.random() < 0.12 else None

    def _blocked(self, z0, z1, margin=0.0):
        """Whether [z0, z1] overlaps the cross street (plus its sidewalks)."""
        if self.junction is None:
            return False
        zi0, zi1, cw = self.junction
        return z1 > zi0 - cw - margin and z0 < zi1 + cw + margin

    def _ground(self):
        r = self.r
        horizon = min(self.h, int(self.yh * self.h))
        self.img[horizon:] = self.tone(_jitter(r, _GRASS), 400)
        self.lab[horizon:] = TERRAIN
        self._backdrop()
        asphalt = (r.uniform(62, 118),) * 3
        asphalt = tuple(c + r.uniform(-6, 6) for c in asphalt)
        kerb = (r.uniform(150, 200),) * 3
        zmax = self.z_end
        self.ground(-self.sides[-1]["edge"], self.sides[1]["edge"], NEAR, zmax, ROAD, asphalt)
        for s in (-1, 1):
            sd = self.sides[s]
            paving, verge, yard = _jitter(r, _PAVING), _jitter(r, _GRASS), _jitter(r, _GRASS)
            for za, zb in self._ground_spans(zmax):
                self.ground(s * sd["edge"], s * sd["curb"], za, zb, SIDEWALK, kerb)
                if sd["has_verge"]:
                    self.ground(s * sd["curb"], s * sd["verge"], za, zb, TERRAIN, verge)
                self.ground(s * sd["verge"], s * sd["walk"], za, zb, SIDEWALK, paving)
                if sd["has_yard"]:
                    self.ground(s * sd["walk"], s * sd["facade"], za, zb, TERRAIN, yard)
            self._paving_joints(s, sd, paving)
        if self.junction is not None:
            zi0, zi1, cw = self.junction
            self.ground(-500, 500, zi0, zi1, ROAD, asphalt)
            paving = _jitter(r, _PAVING)
            for s in (-1, 1):
                x0 = s * self.sides[s]["edge"]
                self.ground(x0, s * 500, zi0 - cw, zi0, SIDEWALK, paving)
                self.ground(x0, s * 500, zi1, zi1 + cw, SIDEWALK, paving)
        self._road_marks(asphalt)

    def _ground_spans(self, zmax):
        if self.junction is None:
            return [(NEAR, zmax)]
        zi0, zi1, cw = self.junction
        return [(NEAR, zi0 - cw), (zi1 + cw, zmax)]

    def ground(self, xa, xb, za, zb, cls, color):
        """A ground rectangle, split in depth bands so haze grows with distance."""
        edges = [za] + [z for z in (12.0, 30.0, 70.0) if za < z < zb] + [zb]
        for a, b in zip(edges[:-1], edges[1:]):
            self.fill(self._ground_quad(xa, xb, a, b), None, self.tone(color, 0.5 * (a + b)))
        cv2.fillConvexPoly(self.lab, self._ground_quad(xa, xb, za, zb), cls)

    def _ground_quad(self, xa, xb, za, zb):
        return self.poly([(xa, 0, za), (xb, 0, za), (xb, 0, zb), (xa, 0, zb)])

    def _paving_joints(self, s, sd, paving):
        """Tile joints on the sidewalk: a texture cue that separates it from the road."""
        r = self.r
        tile = r.uniform(0.4, 1.5)
        dark = self.tone(paving, 0, r.uniform(0.7, 0.88))
        x0, x1 = s * sd["verge"], s * sd["walk"]
        z = NEAR + r.uniform(0, tile)
        segs = []
        while z < 30.0:
            if not self._blocked(z, z):
                segs.append(self.poly([(x0, 0, z), (x1, 0, z)]))
            z += tile
        n_long = int(abs(x1 - x0) / tile)
        for k in range(1, n_long):
            x = x0 + (x1 - x0) * k / n_long
            segs.append(self.poly([(x, 0, NEAR), (x, 0, 30.0)]))
        if segs:
            cv2.polylines(self.img, segs, False, dark, 1)

    def _road_marks(self, asphalt):
        r = self.r
        paint = self.tone((r.uniform(200, 240), r.uniform(200, 240), r.uniform(180, 230)), 10)
        yellow = r.random() < 0.25
        polys = []
        zmax = min(self.z_end, 150.0)
        for x, centre in self.lane_lines:
            if centre and not yellow:
                polys.append(self._ground_quad(x - 0.08, x + 0.08, NEAR, zmax))
                continue
            period = r.uniform(8, 14)
            dash = period * r.uniform(0.25, 0.5)
            z = NEAR + r.uniform(0, period)
            while z < zmax:
                if not self._blocked(z, z + dash):
                    polys.append(self._ground_quad(x - 0.07, x + 0.07, z, z + dash))
                z += period
        if r.random() < 0.5:
            for s in (-1, 1):
                x = s * (self.sides[s]["edge"] - 0.3)
                for za, zb in self._ground_spans(zmax):
                    polys.append(self._ground_quad(x - 0.07, x + 0.07, za, zb))
        if self.junction is not None:
            zi0, _, cw = self.junction
            x = -self.sides[-1]["edge"] + 0.3
            while x < self.sides[1]["edge"] - 0.8:
                polys.append(self._ground_quad(x, x + 0.5, zi0 - cw - 3.5, zi0 - cw - 0.5))
                x += 1.0
            polys.append(self._ground_quad(0.0, self.sides[1]["edge"], zi0 - cw - 5.0,
                                           zi0 - cw - 4.6))
        self.fill_many(polys, self.tone((220, 180, 40), 10) if yellow else paint)
        if self.tram_lane is not None:
            xc = self.lanes[self.tram_lane][0]
            rail = self.tone(asphalt, 0, 0.55)
            segs = [self.poly([(xc + d, 0, NEAR), (xc + d, 0, zmax)]) for d in (-0.72, 0.72)]
            cv2.polylines(self.img, segs, False, rail, max(1, self.w // 700))
        # repaired patches: the road is not one flat colour
        for _ in range(r.randrange(0, 5)):
            xc = r.uniform(-self.sides[-1]["edge"], self.sides[1]["edge"])
            z, w, d = r.uniform(4, 60), r.uniform(0.5, 3), r.uniform(0.5, 5)
            self.fill(self._ground_quad(xc - w, xc + w, z, z + d), None,
                      self.tone(asphalt, z, r.uniform(0.75, 1.15)))

    def _backdrop(self):
        """Distant skyline across the horizon, so the sky never meets bare ground."""
        r = self.r
        zb = self.z_end
        x = -(self.xv + 0.05) / self.fx * zb
        x_end = (1.05 - self.xv) / self.fx * zb
        buildings = r.uniform(0.3, 0.85)
        while x < x_end:
            w = r.uniform(0.04, 0.15) * zb
            if r.random() < buildings:
                h = r.uniform(0.02, 0.13) * zb
                self.fill(self.poly([(x, 0, zb), (x + w, 0, zb), (x + w, h, zb), (x, h, zb)]),
                          BUILDING, self.tone(_jitter(r, _FACADE), zb))
            else:
                self._treeline(x, x + w, zb, r.uniform(0.012, 0.045) * zb)
            x += w

    def _treeline(self, x0, x1, z, h):
        r = self.r
        col = _jitter(r, _GREEN)
        self.fill(self.poly([(x0, 0, z), (x1, 0, z), (x1, h, z), (x0, h, z)]), VEG,
                  self.tone(col, z))
        sx, sy = self.scale(z)
        for _ in range(r.randrange(3, 9)):
            rad = r.uniform(0.3, 0.7) * h
            self.ellipse(self.P(r.uniform(x0, x1), h, z), (rad * sx, rad * sy), VEG,
                         self.tone(col, z, r.uniform(0.8, 1.15)))

    def _shadows(self):
        """Cast shadows of the sun-side buildings on the street: light varies within a class."""
        k = self.r.uniform(0.45, 0.7)
        if self.overcast or not self.shadow_polys:
            return
        top = max(0, min(self.h, int(self.yh * self.h)))
        shade = np.full((self.h - top, self.w), 255, np.uint8)
        polys = [p - np.array([0, top], np.int32) for p in self.shadow_polys]
        for p in polys:
            cv2.fillPoly(shade, [p], int(255 * k))
        region = self.img[top:]
        self.img[top:] = cv2.multiply(region, cv2.cvtColor(shade, cv2.COLOR_GRAY2RGB),
                                      scale=1 / 255)

    # ------------------------------------------------------------------- facades, parks

    def _plan_facades(self):
        r = self.r
        items = []
        self.shadow_polys = []
        length_k = r.uniform(0.2, 1.0)  # shadow length per metre of height
        skew = r.uniform(-0.8, 0.8)
        for s in (-1, 1):
            xf = self.sides[s]["facade"]
            all_park = r.random() < 0.12
            z = r.uniform(-15, 3)
            after_junction = False
            prev = None  # (x, height) of the building just before, to skip hidden fronts
            while z < self.z_end * 0.92:
                z1 = z + r.uniform(8, 35) * (1 + max(z, 0) / 60)
                if self.junction is not None:
                    zi0, zi1, cw = self.junction
                    if z < zi0 - cw < z1:
                        z1 = zi0 - cw
                    elif zi0 - cw <= z < zi1 + cw:
                        z, after_junction, prev = zi1 + cw, True, None
                        continue
                kind = 1 if all_park else _pick(r, (0.8, 0.1, 0.1))
                if kind == 0:
                    x = xf + (r.uniform(0, 1.5) if r.random() < 0.3 else 0.0)
                    floors = r.randrange(2, 9)
                    floor_h = r.uniform(2.9, 3.6)
                    hb = floors * floor_h + r.uniform(0.3, 1.5)
                    depth = r.uniform(40, 80) if after_junction else r.uniform(10, 20)
                    hidden = prev is not None and prev[0] <= x and prev[1] >= hb
                    self._add(items, (s * x, s * (x + depth), z, z1), self._building,
                              (s, x, z, z1, hb, depth, floors, floor_h, hidden))
                    prev = (x, hb)
                    if s == self.sun:
                        d = hb * length_k
                        self.shadow_polys.append(self.poly([
                            (s * x, 0, z), (s * (x - d), 0, z + skew * d),
                            (s * (x - d), 0, z1 + skew * d), (s * x, 0, z1)]))
                elif kind == 2:
                    self._add(items, (s * xf, s * (xf + 0.4), z, z1), self._wall_segment,
                              (s, xf, z, z1))
                    self._plan_park(items, s, xf + 0.4, z, z1, fence=False)
                    prev = None
                else:
                    self._plan_park(items, s, xf, z, z1, fence=r.random() < 0.5)
                    prev = None
                after_junction = False
                z = z1
        return items

    def _plan_park(self, items, s, xf, z0, z1, fence):
        r = self.r
        for _ in range(max(1, int((z1 - z0) / 8 * r.uniform(0.4, 1.4)))):
            zt = r.uniform(max(z0, 4.0), max(z1, 5.0))
            xt = s * (xf + r.uniform(1.5, 25))
            self._add(items, (xt - 7, xt + 7, zt, zt), self._tree, (xt, zt))
        if r.random() < 0.35:
            x, h = xf + r.uniform(25, 40), r.uniform(8, 25)
            self._add(items, (s * x, s * (x + 15), z0, z1 + 10), self._building,
                      (s, x, z0, z1 + 10, h, 15.0, max(1, int(h / 3.2)), 3.2, False))
        if fence:
            style = self._fence_style()
            for za, zb in self._segments(max(z0, NEAR), z1):
                self._add(items, (s * xf - 0.1, s * xf + 0.1, za, zb), self._fence,
                          (s * xf, za, zb, style))

    def _segments(self, z0, z1):
        """Splits a long structure parallel to the road into depth-sortable pieces."""
        out = []
        z = z0
        while z < z1:
            zn = min(z1, z + max(2.0, 0.15 * z))
            out.append((z, zn))
            z = zn
        return out

    def _building(self, s, x, z0, z1, hb, depth, floors, floor_h, front_hidden):
        """A block with a window grid; `front_hidden`: the face towards the camera is behind
        the previous, taller building, so its details are not drawn."""
        r = self.r
        col = _jitter(r, _FACADE)
        xa, xb = (x, x + depth) if s > 0 else (-x - depth, -x)
        faces = self.box(xa, xb, 0, hb, z0, z1, BUILDING, col, faces=True)
        frame = self.tone(col, z0, r.uniform(0.6, 1.3))
        glass = [(r.uniform(30, 70), r.uniform(40, 80), r.uniform(55, 95)), self.haze,
                 (r.uniform(90, 140),) * 3]
        shades = [r.uniform(0.7, 1.2) for _ in range(3)]
        col_w = r.uniform(2.2, 4.0)
        ww, wh = r.uniform(0.35, 0.65), r.uniform(0.4, 0.62)
        shop = r.random() < 0.45
        dark = (r.uniform(25, 60),) * 3
        sign = _jitter(r, _CLOTH)
        seed = r.randrange(1 << 30)
        for name in ("side",) if front_hidden else ("side", "back"):
            f = faces.get(name)
            if f is None:
                continue
            zf = max(z0, NEAR) if name == "back" else 0.5 * (max(z0, NEAR) + z1)
            lu, lv = f.lu, f.lv
            nc = max(1, int(lu / col_w))
            first = 1 if shop else 0
            z_near = max(z0, NEAR)
            if floors > first and wh * floor_h * self.ky / z_near >= 1.5:  # else sub-pixel
                uc = (np.arange(nc) + 0.5) / nc
                v0 = (np.arange(first, floors) + 0.5 * (1 - wh)) * floor_h / lv
                quads = self._face_grid(f, uc - 0.5 * ww / nc, uc + 0.5 * ww / nc, v0,
                                        v0 + wh * floor_h / lv)
                pad = 0.1 * self.ky / zf
                if pad >= 0.5:
                    dx = pad if quads[0, 1, 0] >= quads[0, 0, 0] else -pad
                    frames = quads + np.array([[-dx, pad], [dx, pad], [dx, -pad], [-dx, -pad]],
                                              np.int32).round().astype(np.int32)
                    self.fill_many(frames, frame)
                group = ((np.arange(len(quads)) * 2654435761 + seed) >> 11) % 3
                for g in range(3):
                    self.fill_many(quads[group == g], self.tone(glass[g], zf, shades[g]))
            if shop:
                self.fill(self.poly(f.quad(0.03, 0.97, 0.15 / lv, 2.5 / lv)), None,
                          self.tone(dark, zf))
                self.fill(self.poly(f.quad(0.03, 0.97, 2.6 / lv, 3.0 / lv)), None,
                          self.tone(sign, zf))
            self.fill(self.poly(f.quad(0, 1, 1 - 0.5 / lv, 1)), None,
                      self.tone(col, zf, self.lit(name, xa) * 0.7))

    def _face_grid(self, f, u0, u1, v0, v1):
        """int32 (rows * cols, 4, 2) pixel quads of the rectangles [u0_j, u1_j] x [v0_i, v1_i]
        on a vertical face.

        A vertical face projects separably (x and depth depend on u only), so a whole grid of
        windows costs a handful of array ops.
        """
        uu = np.stack([u0, u1])
        z = np.maximum(f.o[2] + uu * f.eu[2], NEAR)
        iz = self.ky / z
        xp = self.cx + self.kx * (f.o[0] + uu * f.eu[0]) / z
        yv = self.cam_h - (f.o[1] + np.stack([v0, v1]) * f.ev[1])
        q = np.empty((len(v0), len(u0), 4, 2))
        q[..., 0] = xp[[0, 1, 1, 0]].T
        q[..., 1] = self.cy + yv[[0, 0, 1, 1]].T[:, None, :] * iz[[0, 1, 1, 0]].T[None]
        return q.astype(np.int32).reshape(-1, 4, 2)

    def _wall_segment(self, s, xf, z0, z1):
        r = self.r
        h = r.uniform(1.8, 4.5)
        col = _jitter(r, _CONCRETE)
        xa, xb = (xf, xf + 0.4) if s > 0 else (-xf - 0.4, -xf)
        f = self.box(xa, xb, 0, h, z0, z1, WALL, col, faces=True).get("side")
        if f is not None:
            segs = [self.poly([f.pt(0, v), f.pt(1, v)]) for v in np.arange(0.6, h, 0.6) / h]
            segs += [self.poly([f.pt(u, 0), f.pt(u, 1)])
                     for u in np.arange(0, 1, 3.0 / max(f.lu, 1.0))]
            cv2.polylines(self.img, segs, False, self.tone(col, z0, 0.75), 1)

    # ------------------------------------------------------------- objects in the street

    def _plan_objects(self):
        r = self.r
        items = []
        zmax = min(self.z_end * 0.7, 110.0)
        for s in (-1, 1):
            sd = self.sides[s]
            if sd["has_yard"]:
                self._plan_yard_edge(items, s * (sd["walk"] + 0.15), zmax)
            if r.random() < (0.75 if sd["has_verge"] else 0.3):
                x = s * (0.5 * (sd["curb"] + sd["verge"]) if sd["has_verge"] else sd["curb"] + 0.8)
                z, step = r.uniform(2, 10), r.uniform(7, 15)
                while z < zmax:
                    if not self._blocked(z - 2, z + 2):
                        self._add(items, (x - 7, x + 7, z, z), self._tree, (x, z))
                    z += step * r.uniform(0.8, 1.2)
            if r.random() < 0.8:
                x = s * (sd["curb"] + 0.4)
                z, step, lamp_h = r.uniform(3, 20), r.uniform(18, 35), r.uniform(5, 9)
                while z < zmax:
                    if not self._blocked(z - 1, z + 1):
                        sign = self._sign_params() if r.random() < 0.3 else None
                        self._add(items, (x - 2, x + 2, z, z), self._pole,
                                  (s, x, z, lamp_h, True, sign))
                    z += step
        for _ in range(_poisson(r, 1.3)):
            s = r.choice((-1, 1))
            z = r.uniform(4, 60)
            x = s * (self.sides[s]["curb"] + r.uniform(0.3, 0.7))
            self._add(items, (x - 1, x + 1, z, z), self._pole,
                      (s, x, z, r.uniform(2.6, 3.4), False, self._sign_params()))
        self._plan_lights(items)
        self._plan_people(items)
        self._plan_vehicles(items)
        return items

    def _plan_yard_edge(self, items, x, zmax):
        """Hedge, fence or low wall between a sidewalk and a front yard."""
        r = self.r
        kind = _pick(r, (0.35, 0.35, 0.2, 0.1))
        if kind == 3:
            return
        if kind == 0:
            fn, extra = self._hedge, (r.uniform(0.7, 1.8), _jitter(r, _GREEN))
        elif kind == 1:
            fn, extra = self._fence, (self._fence_style(),)
        else:
            fn, extra = self._low_wall, (r.uniform(0.5, 1.2), _jitter(r, _CONCRETE))
        for za, zb in self._segments(NEAR, zmax):
            if not self._blocked(za, zb):
                self._add(items, (x - 0.5, x + 0.5, za, zb), fn, (x, za, zb, *extra))

    def _add(self, items, span, fn, args):
        """Queues a drawer, sorted by its near depth, unless it is outside the view."""
        x0, x1, z0, z1 = span
        if self.in_view(min(x0, x1), max(x0, x1), z0, z1):
            items.append((max(z0, NEAR), fn, args))

    def _sign_params(self):
        r = self.r
        return (r.randrange(5), r.uniform(0.28, 0.45), r.uniform(2.1, 2.8), r.random() < 0.25)

    def _fence_style(self):
        r = self.r
        return (r.randrange(2), r.uniform(0.9, 2.0),
                _jitter(r, [(90, 95, 100), (120, 90, 60), (60, 90, 70), (160, 160, 160)]))

    def _plan_lights(self, items):
        r = self.r
        if self.junction is not None:
            zi0, zi1, cw = self.junction
            for s in (-1, 1):
                x = s * (self.sides[s]["edge"] + 0.6)
                z = zi1 + cw * 0.5
                self._add(items, (x - 1, x + 1, z, z), self._light_pole, (x, z, True))
                if r.random() < 0.5:
                    z = zi0 - cw * 0.5
                    self._add(items, (x - 1, x + 1, z, z), self._light_pole, (x, z, False))
            if r.random() < 0.4:
                x = self.sides[1]["edge"] + 0.6
                z = zi1 + cw * 0.6
                self._add(items, (x - 10, x + 1, z, z), self._mast_arm, (x, z))
        elif r.random() < 0.3:
            z = r.uniform(10, 50)
            for s in (-1, 1):
                x = s * (self.sides[s]["edge"] + 0.6)
                self._add(items, (x - 1, x + 1, z, z), self._light_pole, (x, z, True))

    def _plan_people(self, items):
        r = self.r
        for _ in range(_poisson(r, 5.0)):
            s = r.choice((-1, 1))
            sd = self.sides[s]
            z = 4.5 + 60 * r.random() ** 1.5
            if self._blocked(z, z):
                continue
            for k in range(r.choice((1, 1, 1, 2, 3))):
                x = s * r.uniform(sd["verge"] + 0.3, sd["walk"] - 0.3)
                zk = z + k * r.uniform(0.3, 1.2)
                theta = r.choice((0.0, math.pi)) + r.gauss(0, 0.3)
                if r.random() < 0.15:
                    theta = r.uniform(0, 2 * math.pi)
                self._add(items, (x - 1, x + 1, zk, zk), self._person, (x, zk, theta))
        if self.junction is not None and r.random() < 0.5:
            zi0, _, cw = self.junction
            lo, hi = -self.sides[-1]["edge"], self.sides[1]["edge"]
            for _ in range(r.randrange(1, 5)):
                z = zi0 - cw - r.uniform(0.6, 3.4)
                theta = math.pi / 2 + r.choice((0.0, math.pi))
                x = r.uniform(lo, hi)
                self._add(items, (x - 1, x + 1, z, z), self._person, (x, z, theta))
        for _ in range(_poisson(r, 0.6)):  # parked bicycles
            s = r.choice((-1, 1))
            z = r.uniform(4, 40)
            if not self._blocked(z, z):
                x = s * (self.sides[s]["walk"] - 0.5)
                self._add(items, (x - 1, x + 1, z, z), self._two_wheeler,
                          (x, z, math.pi / 2 + r.gauss(0, 0.2), None))
        for _ in range(_poisson(r, 0.8)):
            moto = r.random() < 0.4
            heading = 1 if r.random() < 0.8 else -1
            lanes = [c for c, h in self.lanes if h == heading] or [self.lanes[-1][0]]
            if moto:
                x = r.choice(lanes) + r.uniform(-0.8, 0.8)
            elif heading > 0:
                x = self.sides[1]["edge"] - 0.8
            else:
                x = -self.sides[-1]["edge"] + 0.8
            z = r.uniform(5, 50)
            theta = (0.0 if heading > 0 else math.pi) + r.gauss(0, 0.15)
            self._add(items, (x - 1, x + 1, z, z), self._two_wheeler, (x, z, theta, moto))
        if self.junction is not None and r.random() < 0.25:
            zi0, zi1, _ = self.junction
            z = r.uniform(zi0 + 1, zi1 - 1)
            theta = math.pi / 2 + r.choice((0.0, math.pi))
            x = r.uniform(-10, 10)
            self._add(items, (x - 1, x + 1, z, z), self._two_wheeler,
                      (x, z, theta, r.random() < 0.4))

    def _plan_vehicles(self, items):
        r = self.r
        for k, (xc, heading) in enumerate(self.lanes):
            z = r.uniform(8, 30) if abs(xc) < self.lane_w / 2 else r.uniform(4, 25)
            while z < 120:
                if r.random() < 0.55:
                    if k == self.tram_lane and r.random() < 0.6:
                        kind = "tram"
                    else:
                        kind = ("car", "truck", "bus")[_pick(r, (0.82, 0.1, 0.08))]
                    x = xc + r.uniform(-0.3, 0.3)
                    length = {"car": 5.0, "truck": 9.0, "bus": 13.0, "tram": 32.0}[kind]
                    self._add(items, (x - 1.3, x + 1.3, z, z + length), self._vehicle,
                              (kind, x, z, heading))
                    z += length + r.uniform(3, 25)
                else:
                    z += r.uniform(5, 20)
        for s in (-1, 1):
            if not self.parking[s]:
                continue
            x = s * (self.sides[s]["edge"] - 1.1)
            z, stop = r.uniform(1, 8), r.uniform(40, 90)
            heading = 1 if s > 0 or r.random() < 0.5 else -1
            while z < stop:
                if self._blocked(z - 5, z + 5, 2):
                    z += 5
                elif r.random() < 0.8:
                    kind = "truck" if r.random() < 0.05 else "car"
                    self._add(items, (x - 1.3, x + 1.3, z, z + 9), self._vehicle,
                              (kind, x, z, heading))
                    z += (9.0 if kind == "truck" else 5.0) + r.uniform(0.5, 3)
                else:
                    z += r.uniform(3, 8)
        if self.junction is not None:
            zi0, zi1, _ = self.junction
            for _ in range(r.randrange(0, 3)):
                z = r.uniform(zi0 + 0.5, zi1 - 2.5)
                x = r.uniform(-40, 40)
                self._add(items, (x - 3, x + 3, z, z), self._crossing_car,
                          (x, z, r.choice((-1, 1))))

    # ------------------------------------------------------------------ object drawers

    def _tree(self, x, z):
        r = self.r
        h = r.uniform(5, 12)
        trunk_h = h * r.uniform(0.25, 0.45)
        tw = r.uniform(0.2, 0.4)
        bark = _jitter(r, [(90, 72, 55), (110, 100, 90), (70, 60, 50)])
        self.box(x - tw / 2, x + tw / 2, 0, trunk_h + 0.5, z, z + tw, VEG, bark)
        green = _jitter(r, _GREEN)
        if r.random() < 0.2:  # conifer
            w = r.uniform(1.2, 2.2)
            for k in range(3):
                b = trunk_h + k * (h - trunk_h) / 4
                t, wk = b + (h - trunk_h) / 2, w * (1 - 0.25 * k)
                self.fill(self.poly([(x - wk, b, z), (x + wk, b, z), (x, t, z)]), VEG,
                          self.tone(green, z, r.uniform(0.7, 1.0)))
            return
        rad = 0.5 * (h - trunk_h) * r.uniform(0.8, 1.2)
        n = r.randrange(5, 9)
        blobs = [(0.0, 0.0, 0.6 * rad, 0.75)]
        for _ in range(n):
            a, d = r.uniform(0, 2 * math.pi), r.uniform(0.2, 0.75) * rad
            blobs.append((d * math.cos(a), 0.85 * d * math.sin(a), rad * r.uniform(0.3, 0.55),
                          r.uniform(0.6, 1.25)))
        sx, sy = self.scale(z)
        cx, cy = self.P(x, trunk_h + rad * 0.9, z)
        for bx, by, br, k in blobs:  # shaded leaf clumps: the crown's outline and texture
            self.ellipse((cx + bx * sx, cy - by * sy), (br * sx, br * sy), VEG,
                         self.tone(green, z, k))

    def _hedge(self, x, z0, z1, h, col):
        self.box(x - 0.4, x + 0.4, 0, h, z0, z1, VEG, col)
        zz = z0 + 0.4
        while zz < z1:
            sx, sy = self.scale(zz)
            self.ellipse(self.P(x, h, zz), (0.45 * sx, 0.22 * sy), VEG,
                         self.tone(col, zz, 0.9 + 0.2 * ((zz * 7.3) % 1)))
            zz += 0.8

    def _low_wall(self, x, z0, z1, h, col):
        self.box(x - 0.15, x + 0.15, 0, h, z0, z1, WALL, col)

    def _fence(self, x, z0, z1, style):
        kind, h, col = style
        if kind == 0:  # opaque panels with slats
            f = self.box(x - 0.03, x + 0.03, 0, h, z0, z1, FENCE, col, faces=True).get("side")
            if f is not None:
                n = max(1, int((z1 - z0) / 0.25))
                segs = [self.poly([f.pt(k / n, 0), f.pt(k / n, 1)]) for k in range(n)]
                cv2.polylines(self.img, segs, False, self.tone(col, z0, 0.6), 1)
            return
        # railing: posts, rails and bars; only the metal is labelled
        c = self.tone(col, z0, self.lit("side", x))
        segs = [self.poly([(x, h, z0), (x, h, z1)]), self.poly([(x, 0.15, z0), (x, 0.15, z1)])]
        zz = np.maximum(np.arange(z0, z1, 0.18), NEAR)
        px = self.cx + self.kx * x / zz
        bars = np.stack([np.stack([px, self.cy + self.ky * self.cam_h / zz], -1),
                         np.stack([px, self.cy + self.ky * (self.cam_h - h) / zz], -1)], 1)
        self.lines([*segs, *bars.astype(np.int32)], FENCE, c, 0.04, z1)
        self.lines([self.poly([(x, 0, z0), (x, h + 0.05, z0)])], FENCE, c, 0.08, z0)

    def _pole(self, s, x, z, h, lamp, sign):
        r = self.r
        col = _jitter(r, _METAL)
        self.box(x - 0.08, x + 0.08, 0, h, z, z + 0.16, POLE, col)
        if lamp:
            xe = x - s * r.uniform(0.8, 2.0)
            self.lines([self.poly([(x, h - 0.1, z), (xe, h + 0.2, z)])], POLE, self.tone(col, z),
                       0.08, z)
            self.box(xe - 0.35, xe + 0.35, h + 0.05, h + 0.25, z - 0.15, z + 0.15, POLE,
                     _jitter(r, [(80, 80, 85), (160, 160, 150)]))
        if sign is not None:
            self._sign(x, z - 0.05, sign)

    def _sign(self, x, z, params):
        shape, size, y, back = params
        f = _Face((x - size, y - size, z), (2 * size, 0, 0), (0, 2 * size, 0))
        if back:
            outer = inner = self.tone(_jitter(self.r, [(140, 140, 140), (170, 170, 165)]), z)
        else:
            outer, inner = (((200, 30, 35), (235, 235, 230)), ((30, 70, 170), (40, 90, 190)),
                            ((200, 30, 35), (235, 235, 230)), ((230, 190, 30), (240, 200, 40)),
                            ((30, 110, 70), (240, 240, 240)))[shape]
            outer, inner = self.tone(outer, z), self.tone(inner, z)
        if shape in (0, 1):  # round
            self.fill(self.poly(f.ring(0.5, 0.5, 0.5, 0.5)), SIGN, outer)
            self.fill(self.poly(f.ring(0.5, 0.5, 0.36, 0.36)), None, inner)
            if shape == 1 and not back:
                self.fill(self.poly(f.quad(0.22, 0.78, 0.42, 0.58)), None, self.tone((235,) * 3, z))
        elif shape == 2:  # triangle
            self.fill(self.poly([f.pt(0, 0.1), f.pt(1, 0.1), f.pt(0.5, 0.97)]), SIGN, outer)
            self.fill(self.poly([f.pt(0.2, 0.22), f.pt(0.8, 0.22), f.pt(0.5, 0.72)]), None, inner)
        elif shape == 3:  # diamond
            self.fill(self.poly([f.pt(0.5, 0), f.pt(1, 0.5), f.pt(0.5, 1), f.pt(0, 0.5)]), SIGN,
                      self.tone((235, 235, 230), z))
            self.fill(self.poly([f.pt(0.5, 0.15), f.pt(0.85, 0.5), f.pt(0.5, 0.85),
                                 f.pt(0.15, 0.5)]), None, outer)
        else:  # rectangular information sign
            self.fill(self.poly(f.quad(-0.4, 1.4, 0.15, 0.85)), SIGN, outer)
            self.fill(self.poly(f.quad(-0.3, 1.3, 0.45, 0.55)), None, inner)

    def _light_pole(self, x, z, facing):
        r = self.r
        y0 = r.uniform(2.3, 3.2)
        self.box(x - 0.07, x + 0.07, 0, y0 + 0.2, z, z + 0.14, POLE, _jitter(r, _METAL))
        self._light_box(x, y0, z - 0.2, facing)

    def _mast_arm(self, x, z):
        r = self.r
        col = _jitter(r, _METAL)
        h = r.uniform(5.2, 6.2)
        self.box(x - 0.12, x + 0.12, 0, h, z, z + 0.24, POLE, col)
        span = r.uniform(4, max(4.5, min(10, x + self.sides[-1]["edge"])))
        self.box(x - span, x, h - 0.2, h, z, z + 0.15, POLE, col)
        for k in range(r.randrange(1, 3)):
            self._light_box(x - span * (0.5 + 0.4 * k), h - 1.1, z - 0.05, True)

    def _light_box(self, x, y0, z, facing):
        r = self.r
        body = _jitter(r, [(35, 35, 35), (50, 55, 45), (70, 65, 30)], shift=6)
        faces = self.box(x - 0.17, x + 0.17, y0, y0 + 0.85, z, z + 0.25, LIGHT, body, faces=True)
        if not facing:
            return
        f = faces["back"]
        on = r.randrange(3)
        colours = ((255, 60, 40), (255, 190, 40), (60, 255, 140))
        for k in range(3):
            c = colours[k] if k == on else tuple(v * 0.25 + 20 for v in colours[k])
            self.fill(self.poly(f.ring(0.5, 0.82 - 0.32 * k, 0.3, 0.1)), None,
                      self.tone(c, z))

    def _person(self, x, z, theta, cls=PERSON, seat=None):
        """A pedestrian, or with `seat` a rider whose pose follows the vehicle's controls.

        Body parts live in a local frame (a: heading, b: lateral, v: up, metres) that is
        turned by theta against the camera, so front, back and side views all come out.
        """
        r = self.r
        h = r.uniform(1.5, 1.95) if seat is None else r.uniform(1.65, 1.85)
        k = h / 1.75
        sx, sy = self.scale(z)
        x0, y0 = self.P(x, 0, z)
        st, ct = math.sin(theta), math.cos(theta)

        def P(a, b, v):
            return (x0 + (a * st + b * ct) * sx, y0 - v * sy)

        top = self.tone(_jitter(r, _CLOTH), z)
        legs = self.tone(_jitter(r, _TROUSERS), z)
        skin = self.tone(_jitter(r, _SKIN, shift=5), z)
        hair = self.tone(_jitter(r, _HAIR), z)
        sleeve = top if r.random() < 0.6 else skin
        if seat is None:
            swing = r.uniform(-0.35, 0.35) * k
            hip, shoulder, a_hip, lean = 0.52 * h, 0.81 * h, 0.0, 0.0
            limbs = [[P(0, -0.09 * k, hip), P(swing, -0.1 * k, 0.02)],
                     [P(0, 0.09 * k, hip), P(-swing, 0.1 * k, 0.02)]]
            hands = (P(-swing * 0.7, -0.25 * k, 0.45 * h), P(swing * 0.7, 0.25 * k, 0.45 * h))
        else:
            hip, lean, hand_a, hand_v, helmet_col = seat
            shoulder, a_hip = hip + 0.55, -0.2
            limbs = [[P(-0.2, -0.12, hip), P(0.2, -0.2, hip - 0.25), P(0.05, -0.22, 0.35)],
                     [P(-0.2, 0.12, hip), P(0.15, 0.2, hip - 0.3), P(-0.1, 0.22, 0.3)]]
            hands = (P(hand_a, -0.28, hand_v), P(hand_a, 0.28, hand_v))
        self.lines(limbs, cls, legs, 0.14 * k, z)
        torso = []
        for a in (-0.11, 0.11):
            torso += [P(a_hip + a, -0.16 * k, hip), P(a_hip + a, 0.16 * k, hip),
                      P(lean + a, -0.21 * k, shoulder), P(lean + a, 0.21 * k, shoulder)]
        self.hull(np.array(torso) + 0.5, cls, top)
        arms = [[P(lean, b * k, shoulder - 0.04), hand] for b, hand in zip((-0.2, 0.2), hands)]
        self.lines(arms, cls, sleeve, 0.085 * k, z)
        head_r = 0.11 * k
        hx, hy = P(lean + 0.03, 0, shoulder + 0.05 + head_r)
        if seat is not None and helmet_col is not None:
            self.ellipse((hx, hy), (head_r * sx * 0.95, head_r * sy * 1.05), cls,
                         self.tone(helmet_col, z))
            return
        self.ellipse((hx, hy), (head_r * sx * 0.85, head_r * sy), cls, skin)
        self.ellipse((hx, hy - 0.3 * head_r * sy), (head_r * sx * 0.9, head_r * sy * 0.75), cls,
                     hair)

    def _two_wheeler(self, x, z, theta, moto):
        """A bicycle or motorcycle with its rider; `moto` None is a parked bicycle."""
        r = self.r
        sx, sy = self.scale(z)
        x0, y0 = self.P(x, 0, z)
        st, ct = math.sin(theta), math.cos(theta)

        def P(a, b, v):
            return (x0 + (a * st + b * ct) * sx, y0 - v * sy)

        tyre = self.tone((r.uniform(20, 40),) * 3, z)
        if moto:
            cls, rad, hub = MOTORCYCLE, 0.31, 0.68
            paint = _jitter(r, _PAINT)
            for a in (-hub, hub):
                self.ellipse(P(a, 0, rad), (max(rad * abs(st), 0.08) * sx, rad * sy), cls, tyre)
            body = [P(a, b, v) for b in (-0.22, 0.22) for a, v in
                    ((-0.55, 0.45), (0.45, 0.4), (0.62, 0.78), (0.3, 0.95), (-0.25, 0.9),
                     (-0.72, 0.8))]
            self.hull(np.array(body) + 0.5, cls, self.tone(paint, z))
            self.lines([[P(0.5, -0.38, 1.05), P(0.5, 0.38, 1.05)]], cls, tyre, 0.05, z)
            lamp = (255, 70, 50) if ct > 0 else (250, 245, 210)
            self.ellipse(P(-0.7 if ct > 0 else 0.7, 0, 0.8), (0.06 * sx, 0.05 * sy), cls,
                         self.tone(lamp, z))
            seat = (0.92, 0.05, 0.48, 1.08, _jitter(r, _PAINT))
        else:
            cls, rad, hub = BICYCLE, 0.34, 0.52
            frame = self.tone(_jitter(r, _PAINT + _CLOTH), z)
            thick = max(1, int(0.06 * sy + 0.5))
            for a in (-hub, hub):
                self.ellipse(P(a, 0, rad), (max(rad * abs(st), 0.03) * sx, rad * sy), cls, tyre,
                             thick)
            pts = {"rh": (-hub, 0, rad), "fh": (hub, 0, rad), "st": (-0.22, 0, 0.85),
                   "bb": (0.0, 0, 0.3), "ht": (0.42, 0, 0.85)}
            chain = (("rh", "st"), ("st", "bb"), ("bb", "rh"), ("bb", "ht"), ("ht", "fh"),
                     ("st", "ht"))
            self.lines([[P(*pts[a]), P(*pts[b])] for a, b in chain], cls, frame, 0.045, z)
            self.lines([[P(0.42, -0.28, 0.98), P(0.42, 0.28, 0.98)],
                        [P(0.42, 0, 0.85), P(0.42, 0, 0.98)],
                        [P(-0.3, 0, 0.9), P(-0.12, 0, 0.9)]], cls, tyre, 0.05, z)
            seat = (0.95, 0.2, 0.42, 0.98, _jitter(r, _PAINT) if r.random() < 0.4 else None)
        if moto is not None:
            self._person(x, z - 0.01, theta, cls=RIDER, seat=seat)

    def _vehicle(self, kind, xc, z0, heading):
        """A vehicle driving along the road; `heading` -1 shows its front to the camera."""
        r = self.r
        if kind == "car":
            style = _pick(r, (0.4, 0.3, 0.2, 0.1))
            length = r.uniform(3.9, 4.9) if style < 3 else r.uniform(4.8, 5.4)
            width = r.uniform(1.68, 1.9)
            waist = (r.uniform(0.85, 1.0), r.uniform(0.85, 1.0), 1.05, 1.1)[style]
            roof = (r.uniform(1.38, 1.5), r.uniform(1.42, 1.55), r.uniform(1.65, 1.8),
                    r.uniform(1.9, 2.1))[style]
            cab = ((0.28, 0.78), (0.08, 0.7), (0.06, 0.72), (0.02, 0.8))[style]
            self._car(xc, z0, heading, length, width, waist, roof, cab,
                      _jitter(r, _PAINT, spread=0.08))
        elif kind == "truck":
            self._truck(xc, z0, heading)
        elif kind == "bus":
            self._long_vehicle(BUS, xc, z0, heading, r.uniform(10.5, 13), 2.55,
                               r.uniform(2.9, 3.2), _jitter(r, _BUS_PAINT, spread=0.08))
        else:
            self._long_vehicle(TRAIN, xc, z0, heading, r.uniform(20, 32), 2.4, 3.4,
                               _jitter(r, _TRAM_PAINT, spread=0.08))

    def _shadow(self, x0, x1, z0, z1):
        self.fill(self._ground_quad(x0 - 0.1, x1 + 0.1, z0 - 0.15, z1), None,
                  self.tone((18, 18, 20), z0))

    def _wheels(self, cls, xc, z0, length, width, rad):
        """Tyres and the shadowed underbody as one dark box under the body."""
        self.box(xc - width / 2 + 0.02, xc + width / 2 - 0.02, 0, 2 * rad, z0 + 0.6,
                 z0 + length - 0.6, cls, _TYRE)

    def _side_wheels(self, cls, f, length, rad, z):
        """Tyres and rims on a side face whose u axis runs along the vehicle."""
        for u in (0.6 + rad, length - 0.6 - rad):
            self.fill(self.poly(f.ring(u / length, rad, rad / length, rad)), cls,
                      self.tone(_TYRE, z))
            self.fill(self.poly(f.ring(u / length, rad, 0.55 * rad / length, 0.55 * rad)),
                      None, self.tone((150, 150, 150), z))

    def _lamps(self, f, z, v0, v1, front):
        c = self.tone((250, 245, 215) if front else (200, 30, 30), z)
        self.fill(self.poly(f.quad(0.03, 0.18, v0, v1)), None, c)
        self.fill(self.poly(f.quad(0.82, 0.97, v0, v1)), None, c)

    def _car(self, xc, z0, heading, length, width, waist, roof, cab, paint):
        r = self.r
        x0, x1, z1 = xc - width / 2, xc + width / 2, z0 + length
        glass = self.tone((r.uniform(30, 60), r.uniform(38, 68), r.uniform(48, 80)), z0)
        detailed = roof * self.ky / max(z0, NEAR) >= 12  # far cars: silhouette and glass only
        self._shadow(x0, x1, z0, z1)
        if detailed:
            self._wheels(CAR, xc, z0, length, width, 0.33)
        body = self.box(x0, x1, 0.22 if detailed else 0.0, waist, z0, z1, CAR, paint,
                        faces=True)
        f0, f1 = cab if heading > 0 else (1 - cab[1], 1 - cab[0])
        cabin = self.box(x0 + 0.1, x1 - 0.1, waist, roof, z0 + f0 * length, z0 + f1 * length,
                         CAR, paint, faces=True)
        self.fill(self.poly(cabin["back"].quad(0.06, 0.94, 0.08, 0.9)), None, glass)
        if not detailed:
            return
        if "side" in cabin:
            f = cabin["side"]
            self.fill(self.poly(f.quad(0.05, 0.47, 0.1, 0.88)), None, glass)
            self.fill(self.poly(f.quad(0.53, 0.95, 0.1, 0.88)), None, glass)
        if "side" in body:
            side = body["side"]
            self._side_wheels(CAR, _Face((side.o[0], 0.0, side.o[2]), side.eu, (0, 1, 0)),
                              length, 0.33, z0)
        back = body["back"]
        self._lamps(back, z0, 0.55, 0.8, front=heading < 0)
        plate, grille = self.tone((220, 220, 210), z0), self.tone((30, 30, 32), z0)
        self.fill(self.poly(back.quad(0.38, 0.62, 0.15, 0.38)), None, plate)
        if heading < 0:
            self.fill(self.poly(back.quad(0.25, 0.75, 0.42, 0.6)), None, grille)

    def _crossing_car(self, xc, z0, heading):
        """A car on the cross street, seen from the side."""
        r = self.r
        length, width = r.uniform(3.9, 4.9), r.uniform(1.68, 1.9)
        waist, roof = r.uniform(0.85, 1.0), r.uniform(1.4, 1.6)
        paint = _jitter(r, _PAINT, spread=0.08)
        glass = self.tone((r.uniform(30, 60), r.uniform(38, 68), r.uniform(48, 80)), z0)
        x0, x1 = xc - length / 2, xc + length / 2
        self._shadow(x0, x1, z0, z0 + width)
        self.box(x0, x1, 0.22, waist, z0, z0 + width, CAR, paint)
        f0, f1 = (0.25, 0.75) if heading > 0 else (0.3, 0.8)
        cabin = self.box(x0 + f0 * length, x0 + f1 * length, waist, roof, z0 + 0.1,
                         z0 + width - 0.1, CAR, paint, faces=True)
        self.fill(self.poly(cabin["back"].quad(0.06, 0.94, 0.08, 0.92)), None, glass)
        self._side_wheels(CAR, _Face((x0, 0.0, z0), (length, 0, 0), (0, 1, 0)), length, 0.33,
                          z0)

    def _truck(self, xc, z0, heading):
        r = self.r
        paint = _jitter(r, [(230, 230, 230), (200, 60, 40), (40, 80, 150), (220, 200, 60)])
        cargo = _jitter(r, [(225, 225, 220), (180, 180, 185), (60, 100, 160), (200, 50, 45)])
        lc, hc, hcab = r.uniform(5, 8.5), r.uniform(3.2, 3.9), r.uniform(2.6, 3.1)
        cab_z = z0 + lc + 0.2 if heading > 0 else z0
        cargo_z = z0 if heading > 0 else z0 + 2.4
        x0, x1 = xc - 1.22, xc + 1.22
        self._shadow(x0, x1, z0, z0 + lc + 2.4)
        parts = [(cab_z, 2.2, hcab, paint, True), (cargo_z, lc, hc, cargo, False)]
        for zp, lp, hp, col, is_cab in sorted(parts, key=lambda p: -p[0]):
            self._wheels(TRUCK, xc, zp, lp, 2.45, 0.5)
            faces = self.box(x0, x1, 0.55, hp, zp, zp + lp, TRUCK, col, faces=True)
            back = faces["back"]
            if is_cab and heading < 0:
                self.fill(self.poly(back.quad(0.06, 0.94, 0.55, 0.88)), None,
                          self.tone((40, 50, 60), zp))
                self._lamps(back, zp, 0.1, 0.2, front=True)
            elif not is_cab and heading > 0:
                self.lines([self.poly([back.pt(0.5, 0.03), back.pt(0.5, 0.97)])], None,
                           self.tone(col, zp, 0.6), 0.04, zp)
                self._lamps(back, zp, 0.05, 0.12, front=False)
            if "side" in faces and not is_cab and r.random() < 0.5:
                self.fill(self.poly(faces["side"].quad(0.15, 0.85, 0.35, 0.75)), None,
                          self.tone(_jitter(r, _CLOTH), zp))

    def _long_vehicle(self, cls, xc, z0, heading, length, width, height, paint):
        """Bus or tram: a long box with a window band and doors."""
        r = self.r
        x0, x1 = xc - width / 2, xc + width / 2
        self._shadow(x0, x1, z0, z0 + length)
        self._wheels(cls, xc, z0, length, width, 0.5)
        faces = self.box(x0, x1, 0.35, height, z0, z0 + length, cls, paint, faces=True)
        glass = self.tone((r.uniform(30, 60), r.uniform(40, 65), r.uniform(50, 80)), z0)
        lv = height - 0.35
        if "side" in faces:
            f = faces["side"]
            n = int(length / 1.5)
            u0 = (np.arange(n) + 0.1) / n
            self.fill_many(self._face_grid(f, u0, u0 + 0.8 / n, np.array([0.9 / lv]),
                                           np.array([2.5 / lv])),
                           self.tone(glass, z0 + length / 2))
            for u in (0.08, 0.5):
                self.fill(self.poly(f.quad(u, u + 1.2 / length, 0.05, 2.6 / lv)), None,
                          self.tone(paint, z0, 0.6))
        back = faces["back"]
        if heading < 0:
            self.fill(self.poly(back.quad(0.05, 0.95, 0.3, 0.85)), None, glass)
            self.fill(self.poly(back.quad(0.15, 0.85, 0.88, 0.96)), None,
                      self.tone((240, 150, 40), z0))
            self._lamps(back, z0, 0.08, 0.16, front=True)
        else:
            self.fill(self.poly(back.quad(0.1, 0.9, 0.6, 0.88)), None, glass)
            self._lamps(back, z0, 0.1, 0.25, front=False)
        if cls == TRAIN:
            zt = z0 + length * 0.4
            self.lines([self.poly([(xc - 0.6, height, zt), (xc, height + 1.0, zt + 0.8),
                                   (xc + 0.6, height + 1.6, zt + 1.6)])], cls,
                       self.tone((50, 50, 50), z0), 0.05, zt)

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
    return _Scene(seed, index, height, width).render()


class SyntheticStreetScenes:
    """Random-access source of procedural street scenes in Cityscapes train ids.

    Example i is a pure function of (seed, i, height, width), so any worker can produce any
    example in any order and runs are reproducible; give each split its own seed.
    """

    def __init__(self, num_images: int, height: int, width: int, seed: int = 0):
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if height < 8 or width < 8:
            raise ValueError(f"image size {height}x{width} is too small (min 8x8)")
        self.num_images = int(num_images)
        self.height = int(height)
        self.width = int(width)
        self.seed = int(seed)
        self.info = metadata.CITYSCAPES

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index) -> dict[str, np.ndarray]:
        i = operator.index(index)
        if i < 0:
            i += self.num_images
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        image, label = render_scene(self.seed, i, self.height, self.width)
        return {"image": image, "label": label}

    def __repr__(self) -> str:
        return (f"SyntheticStreetScenes(num_images={self.num_images}, height={self.height}, "
                f"width={self.width}, seed={self.seed})")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write synthetic street scenes as PNGs.")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--num", type=int, default=4)
    parser.add_argument("--size", default="256x512", help="HxW")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.lower().split("x"))
    source = SyntheticStreetScenes(args.num, height, width, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(len(source)):
        ex = source[i]
        colour = metadata.colorize(ex["label"], source.info)
        cv2.imwrite(str(args.out / f"{i:04d}_image.png"), ex["image"][..., ::-1])
        cv2.imwrite(str(args.out / f"{i:04d}_label.png"), colour[..., ::-1])
    print(f"wrote {len(source)} image/label pairs to {args.out}")


if __name__ == "__main__":
    main()
