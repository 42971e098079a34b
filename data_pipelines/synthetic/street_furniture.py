"""Street furniture: trees, hedges, low walls, fences, poles, signs and traffic lights."""

from __future__ import annotations

import math

import cv2
import numpy as np

from data_pipelines.synthetic.camera import NEAR, Canvas, Face, segments
from data_pipelines.synthetic.palette import (
    CONCRETE,
    FENCE,
    GREEN,
    LIGHT,
    METAL,
    POLE,
    SIGN,
    VEG,
    WALL,
    jitter,
    pick,
    poisson,
)


class StreetFurniture(Canvas):
    """Plans and draws the static objects between the road and the facades."""

    def plan_street_furniture(self, items):
        """Queues yard edges, street trees, lamp posts, sign posts and traffic lights."""
        r = self.r
        zmax = min(self.z_end * 0.7, 110.0)
        for s in (-1, 1):
            sd = self.sides[s]
            if sd["has_yard"]:
                self._plan_yard_edge(items, s * (sd["walk"] + 0.15), zmax)
            if r.random() < (0.75 if sd["has_verge"] else 0.3):
                x = s * (0.5 * (sd["curb"] + sd["verge"]) if sd["has_verge"] else sd["curb"] + 0.8)
                z, step = r.uniform(2, 10), r.uniform(7, 15)
                while z < zmax:
                    if not self.blocked(z - 2, z + 2):
                        self.add(items, (x - 7, x + 7, z, z), self.tree, (x, z))
                    z += step * r.uniform(0.8, 1.2)
            if r.random() < 0.8:
                x = s * (sd["curb"] + 0.4)
                z, step, lamp_h = r.uniform(3, 20), r.uniform(18, 35), r.uniform(5, 9)
                while z < zmax:
                    if not self.blocked(z - 1, z + 1):
                        sign = self._sign_params() if r.random() < 0.3 else None
                        self.add(items, (x - 2, x + 2, z, z), self._pole,
                                 (s, x, z, lamp_h, True, sign))
                    z += step
        for _ in range(poisson(r, 1.3)):
            s = r.choice((-1, 1))
            z = r.uniform(4, 60)
            x = s * (self.sides[s]["curb"] + r.uniform(0.3, 0.7))
            self.add(items, (x - 1, x + 1, z, z), self._pole,
                     (s, x, z, r.uniform(2.6, 3.4), False, self._sign_params()))
        self._plan_lights(items)

    def _plan_yard_edge(self, items, x, zmax):
        """Hedge, fence or low wall between a sidewalk and a front yard."""
        r = self.r
        kind = pick(r, (0.35, 0.35, 0.2, 0.1))
        if kind == 3:
            return
        if kind == 0:
            fn, extra = self._hedge, (r.uniform(0.7, 1.8), jitter(r, GREEN))
        elif kind == 1:
            fn, extra = self.fence, (self.fence_style(),)
        else:
            fn, extra = self._low_wall, (r.uniform(0.5, 1.2), jitter(r, CONCRETE))
        for za, zb in segments(NEAR, zmax):
            if not self.blocked(za, zb):
                self.add(items, (x - 0.5, x + 0.5, za, zb), fn, (x, za, zb, *extra))

    def _sign_params(self):
        r = self.r
        return (r.randrange(5), r.uniform(0.28, 0.45), r.uniform(2.1, 2.8), r.random() < 0.25)

    def fence_style(self):
        r = self.r
        return (r.randrange(2), r.uniform(0.9, 2.0),
                jitter(r, [(90, 95, 100), (120, 90, 60), (60, 90, 70), (160, 160, 160)]))

    def _plan_lights(self, items):
        r = self.r
        if self.junction is not None:
            zi0, zi1, cw = self.junction
            for s in (-1, 1):
                x = s * (self.sides[s]["edge"] + 0.6)
                z = zi1 + cw * 0.5
                self.add(items, (x - 1, x + 1, z, z), self._light_pole, (x, z, True))
                if r.random() < 0.5:
                    z = zi0 - cw * 0.5
                    self.add(items, (x - 1, x + 1, z, z), self._light_pole, (x, z, False))
            if r.random() < 0.4:
                x = self.sides[1]["edge"] + 0.6
                z = zi1 + cw * 0.6
                self.add(items, (x - 10, x + 1, z, z), self._mast_arm, (x, z))
        elif r.random() < 0.3:
            z = r.uniform(10, 50)
            for s in (-1, 1):
                x = s * (self.sides[s]["edge"] + 0.6)
                self.add(items, (x - 1, x + 1, z, z), self._light_pole, (x, z, True))

    def tree(self, x, z):
        r = self.r
        h = r.uniform(5, 12)
        trunk_h = h * r.uniform(0.25, 0.45)
        tw = r.uniform(0.2, 0.4)
        bark = jitter(r, [(90, 72, 55), (110, 100, 90), (70, 60, 50)])
        self.box(x - tw / 2, x + tw / 2, 0, trunk_h + 0.5, z, z + tw, VEG, bark)
        green = jitter(r, GREEN)
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

    def fence(self, x, z0, z1, style):
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
        col = jitter(r, METAL)
        self.box(x - 0.08, x + 0.08, 0, h, z, z + 0.16, POLE, col)
        if lamp:
            xe = x - s * r.uniform(0.8, 2.0)
            self.lines([self.poly([(x, h - 0.1, z), (xe, h + 0.2, z)])], POLE, self.tone(col, z),
                       0.08, z)
            self.box(xe - 0.35, xe + 0.35, h + 0.05, h + 0.25, z - 0.15, z + 0.15, POLE,
                     jitter(r, [(80, 80, 85), (160, 160, 150)]))
        if sign is not None:
            self._sign(x, z - 0.05, sign)

    def _sign(self, x, z, params):
        shape, size, y, back = params
        f = Face((x - size, y - size, z), (2 * size, 0, 0), (0, 2 * size, 0))
        if back:
            outer = inner = self.tone(jitter(self.r, [(140, 140, 140), (170, 170, 165)]), z)
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
        self.box(x - 0.07, x + 0.07, 0, y0 + 0.2, z, z + 0.14, POLE, jitter(r, METAL))
        self._light_box(x, y0, z - 0.2, facing)

    def _mast_arm(self, x, z):
        r = self.r
        col = jitter(r, METAL)
        h = r.uniform(5.2, 6.2)
        self.box(x - 0.12, x + 0.12, 0, h, z, z + 0.24, POLE, col)
        span = r.uniform(4, max(4.5, min(10, x + self.sides[-1]["edge"])))
        self.box(x - span, x, h - 0.2, h, z, z + 0.15, POLE, col)
        for k in range(r.randrange(1, 3)):
            self._light_box(x - span * (0.5 + 0.4 * k), h - 1.1, z - 0.05, True)

    def _light_box(self, x, y0, z, facing):
        r = self.r
        body = jitter(r, [(35, 35, 35), (50, 55, 45), (70, 65, 30)], shift=6)
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
