"""Vehicles: cars, trucks, buses and trams in the lanes, parked, or on the cross street."""

from __future__ import annotations

import numpy as np

from data_pipelines.synthetic.camera import NEAR, Canvas, Face
from data_pipelines.synthetic.palette import (
    BUS,
    BUS_PAINT,
    CAR,
    CLOTH,
    PAINT,
    TRAIN,
    TRAM_PAINT,
    TRUCK,
    TYRE,
    jitter,
    pick,
)


class Vehicles(Canvas):
    """Plans and draws motor traffic; each vehicle is boxes with shaded faces and details."""

    def plan_vehicles(self, items):
        """Queues lane traffic, parked cars and cars on the cross street."""
        r = self.r
        for k, (xc, heading) in enumerate(self.lanes):
            z = r.uniform(8, 30) if abs(xc) < self.lane_w / 2 else r.uniform(4, 25)
            while z < 120:
                if r.random() < 0.55:
                    if k == self.tram_lane and r.random() < 0.6:
                        kind = "tram"
                    else:
                        kind = ("car", "truck", "bus")[pick(r, (0.82, 0.1, 0.08))]
                    x = xc + r.uniform(-0.3, 0.3)
                    length = {"car": 5.0, "truck": 9.0, "bus": 13.0, "tram": 32.0}[kind]
                    self.add(items, (x - 1.3, x + 1.3, z, z + length), self._vehicle,
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
                if self.blocked(z - 5, z + 5, 2):
                    z += 5
                elif r.random() < 0.8:
                    kind = "truck" if r.random() < 0.05 else "car"
                    self.add(items, (x - 1.3, x + 1.3, z, z + 9), self._vehicle,
                             (kind, x, z, heading))
                    z += (9.0 if kind == "truck" else 5.0) + r.uniform(0.5, 3)
                else:
                    z += r.uniform(3, 8)
        if self.junction is not None:
            zi0, zi1, _ = self.junction
            for _ in range(r.randrange(0, 3)):
                z = r.uniform(zi0 + 0.5, zi1 - 2.5)
                x = r.uniform(-40, 40)
                self.add(items, (x - 3, x + 3, z, z), self._crossing_car,
                         (x, z, r.choice((-1, 1))))

    def _vehicle(self, kind, xc, z0, heading):
        """A vehicle driving along the road; `heading` -1 shows its front to the camera."""
        r = self.r
        if kind == "car":
            style = pick(r, (0.4, 0.3, 0.2, 0.1))
            length = r.uniform(3.9, 4.9) if style < 3 else r.uniform(4.8, 5.4)
            width = r.uniform(1.68, 1.9)
            waist = (r.uniform(0.85, 1.0), r.uniform(0.85, 1.0), 1.05, 1.1)[style]
            roof = (r.uniform(1.38, 1.5), r.uniform(1.42, 1.55), r.uniform(1.65, 1.8),
                    r.uniform(1.9, 2.1))[style]
            cab = ((0.28, 0.78), (0.08, 0.7), (0.06, 0.72), (0.02, 0.8))[style]
            self._car(xc, z0, heading, length, width, waist, roof, cab,
                      jitter(r, PAINT, spread=0.08))
        elif kind == "truck":
            self._truck(xc, z0, heading)
        elif kind == "bus":
            self._long_vehicle(BUS, xc, z0, heading, r.uniform(10.5, 13), 2.55,
                               r.uniform(2.9, 3.2), jitter(r, BUS_PAINT, spread=0.08))
        else:
            self._long_vehicle(TRAIN, xc, z0, heading, r.uniform(20, 32), 2.4, 3.4,
                               jitter(r, TRAM_PAINT, spread=0.08))

    def _shadow(self, x0, x1, z0, z1):
        self.fill(self.ground_quad(x0 - 0.1, x1 + 0.1, z0 - 0.15, z1), None,
                  self.tone((18, 18, 20), z0))

    def _wheels(self, cls, xc, z0, length, width, rad):
        """Tyres and the shadowed underbody as one dark box under the body."""
        self.box(xc - width / 2 + 0.02, xc + width / 2 - 0.02, 0, 2 * rad, z0 + 0.6,
                 z0 + length - 0.6, cls, TYRE)

    def _side_wheels(self, cls, f, length, rad, z):
        """Tyres and rims on a side face whose u axis runs along the vehicle."""
        for u in (0.6 + rad, length - 0.6 - rad):
            self.fill(self.poly(f.ring(u / length, rad, rad / length, rad)), cls,
                      self.tone(TYRE, z))
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
            self._side_wheels(CAR, Face((side.o[0], 0.0, side.o[2]), side.eu, (0, 1, 0)),
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
        paint = jitter(r, PAINT, spread=0.08)
        glass = self.tone((r.uniform(30, 60), r.uniform(38, 68), r.uniform(48, 80)), z0)
        x0, x1 = xc - length / 2, xc + length / 2
        self._shadow(x0, x1, z0, z0 + width)
        self.box(x0, x1, 0.22, waist, z0, z0 + width, CAR, paint)
        f0, f1 = (0.25, 0.75) if heading > 0 else (0.3, 0.8)
        cabin = self.box(x0 + f0 * length, x0 + f1 * length, waist, roof, z0 + 0.1,
                         z0 + width - 0.1, CAR, paint, faces=True)
        self.fill(self.poly(cabin["back"].quad(0.06, 0.94, 0.08, 0.92)), None, glass)
        self._side_wheels(CAR, Face((x0, 0.0, z0), (length, 0, 0), (0, 1, 0)), length, 0.33,
                          z0)

    def _truck(self, xc, z0, heading):
        r = self.r
        paint = jitter(r, [(230, 230, 230), (200, 60, 40), (40, 80, 150), (220, 200, 60)])
        cargo = jitter(r, [(225, 225, 220), (180, 180, 185), (60, 100, 160), (200, 50, 45)])
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
                          self.tone(jitter(r, CLOTH), zp))

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
            self.fill_many(self.face_grid(f, u0, u0 + 0.8 / n, np.array([0.9 / lv]),
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
