"""Sky, road cross-section and ground of a synthetic street: what every scene stands on.

The ground is labelled before anything stands on it: road, sidewalk, verges, yards and the
cross street of a junction, plus the distant skyline and the buildings' cast shadows.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from data_pipelines.synthetic.camera import NEAR, Canvas
from data_pipelines.synthetic.palette import (
    BUILDING,
    FACADE,
    GRASS,
    GREEN,
    PAVING,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    VEG,
    jitter,
    pick,
)


class Ground(Canvas):
    """Sky, lighting, road layout and ground; `plan_layout` sets the geometry others use."""

    def draw_sky(self):
        """Sky and clouds, and the weather that lights the rest: haze, visibility, sun side."""
        r = self.r
        kind = pick(r, (0.45, 0.3, 0.15, 0.1))
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

    def plan_layout(self):
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

    def blocked(self, z0, z1, margin=0.0):
        """Whether [z0, z1] overlaps the cross street (plus its sidewalks)."""
        if self.junction is None:
            return False
        zi0, zi1, cw = self.junction
        return z1 > zi0 - cw - margin and z0 < zi1 + cw + margin

    def draw_ground(self):
        """Terrain, skyline, road, sidewalks, verges, yards, the cross street and markings."""
        r = self.r
        horizon = min(self.h, int(self.yh * self.h))
        self.img[horizon:] = self.tone(jitter(r, GRASS), 400)
        self.lab[horizon:] = TERRAIN
        self._backdrop()
        asphalt = (r.uniform(62, 118),) * 3
        asphalt = tuple(c + r.uniform(-6, 6) for c in asphalt)
        kerb = (r.uniform(150, 200),) * 3
        zmax = self.z_end
        self.ground(-self.sides[-1]["edge"], self.sides[1]["edge"], NEAR, zmax, ROAD, asphalt)
        for s in (-1, 1):
            sd = self.sides[s]
            paving, verge, yard = jitter(r, PAVING), jitter(r, GRASS), jitter(r, GRASS)
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
            paving = jitter(r, PAVING)
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
            self.fill(self.ground_quad(xa, xb, a, b), None, self.tone(color, 0.5 * (a + b)))
        cv2.fillConvexPoly(self.lab, self.ground_quad(xa, xb, za, zb), cls)

    def ground_quad(self, xa, xb, za, zb):
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
            if not self.blocked(z, z):
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
                polys.append(self.ground_quad(x - 0.08, x + 0.08, NEAR, zmax))
                continue
            period = r.uniform(8, 14)
            dash = period * r.uniform(0.25, 0.5)
            z = NEAR + r.uniform(0, period)
            while z < zmax:
                if not self.blocked(z, z + dash):
                    polys.append(self.ground_quad(x - 0.07, x + 0.07, z, z + dash))
                z += period
        if r.random() < 0.5:
            for s in (-1, 1):
                x = s * (self.sides[s]["edge"] - 0.3)
                for za, zb in self._ground_spans(zmax):
                    polys.append(self.ground_quad(x - 0.07, x + 0.07, za, zb))
        if self.junction is not None:
            zi0, _, cw = self.junction
            x = -self.sides[-1]["edge"] + 0.3
            while x < self.sides[1]["edge"] - 0.8:
                polys.append(self.ground_quad(x, x + 0.5, zi0 - cw - 3.5, zi0 - cw - 0.5))
                x += 1.0
            polys.append(self.ground_quad(0.0, self.sides[1]["edge"], zi0 - cw - 5.0,
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
            self.fill(self.ground_quad(xc - w, xc + w, z, z + d), None,
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
                          BUILDING, self.tone(jitter(r, FACADE), zb))
            else:
                self._treeline(x, x + w, zb, r.uniform(0.012, 0.045) * zb)
            x += w

    def _treeline(self, x0, x1, z, h):
        r = self.r
        col = jitter(r, GREEN)
        self.fill(self.poly([(x0, 0, z), (x1, 0, z), (x1, h, z), (x0, h, z)]), VEG,
                  self.tone(col, z))
        sx, sy = self.scale(z)
        for _ in range(r.randrange(3, 9)):
            rad = r.uniform(0.3, 0.7) * h
            self.ellipse(self.P(r.uniform(x0, x1), h, z), (rad * sx, rad * sy), VEG,
                         self.tone(col, z, r.uniform(0.8, 1.15)))

    def draw_shadows(self):
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
