"""The pinhole camera and the drawing primitives every part of a synthetic scene uses.

Scenes are laid out in metric street coordinates (X right, Y up, Z forward, metres) and
projected here, so sizes, perspective and occlusion stay consistent at any resolution.
"""

from __future__ import annotations

import math
import random

import cv2
import numpy as np

NEAR = 1.0  # metres: geometry closer than this is clamped, which keeps pixel coordinates finite

# Box corners are indexed ix + 2*iy + 4*iz; faces list them counter-clockwise on screen.
_BACK, _SIDE_X0, _SIDE_X1, _TOP, _BOTTOM = (0, 1, 3, 2), (0, 4, 6, 2), (1, 5, 7, 3), \
    (2, 3, 7, 6), (0, 1, 5, 4)


_CIRCLE = [(math.cos(2 * math.pi * k / 12), math.sin(2 * math.pi * k / 12)) for k in range(12)]


class Face:
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


class Canvas:
    """One image's camera and its albedo/label canvases; subclasses draw into them far to near.

    Sky and lighting attributes (`haze`, `visibility`, `sun`, `sun_k`) are set by the sky
    drawer before anything is shaded with `tone` or `lit`.
    """

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
                out[name] = Face((x0, y0, z0), (x1 - x0, 0, 0), (0, y1 - y0, 0))
            elif name == "side":
                xs = x0 if x0 > 0 else x1
                out[name] = Face((xs, y0, z0), (0, 0, z1 - z0), (0, y1 - y0, 0))
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

    def face_grid(self, f, u0, u1, v0, v1):
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

    def add(self, items, span, fn, args):
        """Queues a drawer, sorted by its near depth, unless it is outside the view."""
        x0, x1, z0, z1 = span
        if self.in_view(min(x0, x1), max(x0, x1), z0, z1):
            items.append((max(z0, NEAR), fn, args))


def segments(z0, z1):
    """Splits a long structure parallel to the road into depth-sortable pieces."""
    out = []
    z = z0
    while z < z1:
        zn = min(z1, z + max(2.0, 0.15 * z))
        out.append((z, zn))
        z = zn
    return out
