"""People: pedestrians, and riders on bicycles and motorcycles (parked bicycles too).

Riders are labelled `rider` and their vehicles `bicycle`/`motorcycle`, as in Cityscapes.
"""

from __future__ import annotations

import math

import numpy as np

from data_pipelines.synthetic.camera import Canvas
from data_pipelines.synthetic.palette import (
    BICYCLE,
    CLOTH,
    HAIR,
    MOTORCYCLE,
    PAINT,
    PERSON,
    RIDER,
    SKIN,
    TROUSERS,
    jitter,
    poisson,
)


class People(Canvas):
    """Plans and draws pedestrians and two-wheelers on sidewalks, lanes and crossings."""

    def plan_people(self, items):
        """Queues pedestrians, people on the crossing, parked bicycles and ridden two-wheelers."""
        r = self.r
        for _ in range(poisson(r, 5.0)):
            s = r.choice((-1, 1))
            sd = self.sides[s]
            z = 4.5 + 60 * r.random() ** 1.5
            if self.blocked(z, z):
                continue
            for k in range(r.choice((1, 1, 1, 2, 3))):
                x = s * r.uniform(sd["verge"] + 0.3, sd["walk"] - 0.3)
                zk = z + k * r.uniform(0.3, 1.2)
                theta = r.choice((0.0, math.pi)) + r.gauss(0, 0.3)
                if r.random() < 0.15:
                    theta = r.uniform(0, 2 * math.pi)
                self.add(items, (x - 1, x + 1, zk, zk), self._person, (x, zk, theta))
        if self.junction is not None and r.random() < 0.5:
            zi0, _, cw = self.junction
            lo, hi = -self.sides[-1]["edge"], self.sides[1]["edge"]
            for _ in range(r.randrange(1, 5)):
                z = zi0 - cw - r.uniform(0.6, 3.4)
                theta = math.pi / 2 + r.choice((0.0, math.pi))
                x = r.uniform(lo, hi)
                self.add(items, (x - 1, x + 1, z, z), self._person, (x, z, theta))
        for _ in range(poisson(r, 0.6)):  # parked bicycles
            s = r.choice((-1, 1))
            z = r.uniform(4, 40)
            if not self.blocked(z, z):
                x = s * (self.sides[s]["walk"] - 0.5)
                self.add(items, (x - 1, x + 1, z, z), self._two_wheeler,
                         (x, z, math.pi / 2 + r.gauss(0, 0.2), None))
        for _ in range(poisson(r, 0.8)):
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
            self.add(items, (x - 1, x + 1, z, z), self._two_wheeler, (x, z, theta, moto))
        if self.junction is not None and r.random() < 0.25:
            zi0, zi1, _ = self.junction
            z = r.uniform(zi0 + 1, zi1 - 1)
            theta = math.pi / 2 + r.choice((0.0, math.pi))
            x = r.uniform(-10, 10)
            self.add(items, (x - 1, x + 1, z, z), self._two_wheeler,
                     (x, z, theta, r.random() < 0.4))

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

        top = self.tone(jitter(r, CLOTH), z)
        legs = self.tone(jitter(r, TROUSERS), z)
        skin = self.tone(jitter(r, SKIN, shift=5), z)
        hair = self.tone(jitter(r, HAIR), z)
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
            paint = jitter(r, PAINT)
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
            seat = (0.92, 0.05, 0.48, 1.08, jitter(r, PAINT))
        else:
            cls, rad, hub = BICYCLE, 0.34, 0.52
            frame = self.tone(jitter(r, PAINT + CLOTH), z)
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
            seat = (0.95, 0.2, 0.42, 0.98, jitter(r, PAINT) if r.random() < 0.4 else None)
        if moto is not None:
            self._person(x, z - 0.01, theta, cls=RIDER, seat=seat)
