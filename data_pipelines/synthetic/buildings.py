"""Facades along the street: building blocks with windows, free-standing walls and parks."""

from __future__ import annotations

import cv2
import numpy as np

from data_pipelines.synthetic.camera import NEAR, Canvas, segments
from data_pipelines.synthetic.palette import BUILDING, CLOTH, CONCRETE, FACADE, WALL, jitter, pick


class Buildings(Canvas):
    """Plans and draws the facade row on each side; parks use the `tree` and `fence` drawers."""

    def plan_facades(self):
        """Queues both facade rows and records the cast shadows for `draw_shadows`."""
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
                kind = 1 if all_park else pick(r, (0.8, 0.1, 0.1))
                if kind == 0:
                    x = xf + (r.uniform(0, 1.5) if r.random() < 0.3 else 0.0)
                    floors = r.randrange(2, 9)
                    floor_h = r.uniform(2.9, 3.6)
                    hb = floors * floor_h + r.uniform(0.3, 1.5)
                    depth = r.uniform(40, 80) if after_junction else r.uniform(10, 20)
                    hidden = prev is not None and prev[0] <= x and prev[1] >= hb
                    self.add(items, (s * x, s * (x + depth), z, z1), self._building,
                             (s, x, z, z1, hb, depth, floors, floor_h, hidden))
                    prev = (x, hb)
                    if s == self.sun:
                        d = hb * length_k
                        self.shadow_polys.append(self.poly([
                            (s * x, 0, z), (s * (x - d), 0, z + skew * d),
                            (s * (x - d), 0, z1 + skew * d), (s * x, 0, z1)]))
                elif kind == 2:
                    self.add(items, (s * xf, s * (xf + 0.4), z, z1), self._wall_segment,
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
            self.add(items, (xt - 7, xt + 7, zt, zt), self.tree, (xt, zt))
        if r.random() < 0.35:
            x, h = xf + r.uniform(25, 40), r.uniform(8, 25)
            self.add(items, (s * x, s * (x + 15), z0, z1 + 10), self._building,
                     (s, x, z0, z1 + 10, h, 15.0, max(1, int(h / 3.2)), 3.2, False))
        if fence:
            style = self.fence_style()
            for za, zb in segments(max(z0, NEAR), z1):
                self.add(items, (s * xf - 0.1, s * xf + 0.1, za, zb), self.fence,
                         (s * xf, za, zb, style))

    def _building(self, s, x, z0, z1, hb, depth, floors, floor_h, front_hidden):
        """A block with a window grid; `front_hidden`: the face towards the camera is behind
        the previous, taller building, so its details are not drawn."""
        r = self.r
        col = jitter(r, FACADE)
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
        sign = jitter(r, CLOTH)
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
                quads = self.face_grid(f, uc - 0.5 * ww / nc, uc + 0.5 * ww / nc, v0,
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

    def _wall_segment(self, s, xf, z0, z1):
        r = self.r
        h = r.uniform(1.8, 4.5)
        col = jitter(r, CONCRETE)
        xa, xb = (xf, xf + 0.4) if s > 0 else (-xf - 0.4, -xf)
        f = self.box(xa, xb, 0, h, z0, z1, WALL, col, faces=True).get("side")
        if f is not None:
            segs = [self.poly([f.pt(0, v), f.pt(1, v)]) for v in np.arange(0.6, h, 0.6) / h]
            segs += [self.poly([f.pt(u, 0), f.pt(u, 1)])
                     for u in np.arange(0, 1, 3.0 / max(f.lu, 1.0))]
            cv2.polylines(self.img, segs, False, self.tone(col, z0, 0.75), 1)
