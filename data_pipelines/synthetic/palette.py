"""What the synthetic scenes label and paint: Cityscapes class ids and colour families.

Class ids are looked up by name in the dataset's table (`metadata.get_info("synthetic")`,
the Cityscapes classes), so labels and the table cannot drift apart. Colours are
families, not fixed values: `jitter` varies each instance, so the task is not a colour lookup.
"""

from __future__ import annotations

import math

from data_pipelines import metadata

INFO = metadata.get_info("synthetic")
CLASS_ID = {c.name: c.train_id for c in INFO.classes}
IGNORE = INFO.ignore_label

ROAD = CLASS_ID["road"]
SIDEWALK = CLASS_ID["sidewalk"]
BUILDING = CLASS_ID["building"]
WALL = CLASS_ID["wall"]
FENCE = CLASS_ID["fence"]
POLE = CLASS_ID["pole"]
LIGHT = CLASS_ID["traffic light"]
SIGN = CLASS_ID["traffic sign"]
VEG = CLASS_ID["vegetation"]
TERRAIN = CLASS_ID["terrain"]
SKY = CLASS_ID["sky"]
PERSON = CLASS_ID["person"]
RIDER = CLASS_ID["rider"]
CAR = CLASS_ID["car"]
TRUCK = CLASS_ID["truck"]
BUS = CLASS_ID["bus"]
TRAIN = CLASS_ID["train"]
MOTORCYCLE = CLASS_ID["motorcycle"]
BICYCLE = CLASS_ID["bicycle"]

FACADE = [(200, 188, 165), (172, 160, 148), (150, 82, 62), (212, 206, 194), (118, 110, 102),
          (182, 152, 112), (140, 150, 160), (192, 172, 140), (165, 120, 100), (222, 214, 180)]
CONCRETE = [(150, 150, 144), (126, 121, 114), (170, 161, 150), (138, 86, 66), (110, 112, 110)]
PAINT = [(232, 232, 228), (28, 28, 32), (162, 166, 170), (98, 102, 108), (38, 50, 92),
         (150, 28, 30), (58, 82, 60), (122, 92, 62), (200, 200, 190), (20, 40, 70),
         (90, 20, 30), (180, 140, 40)]
BUS_PAINT = [(226, 190, 30), (196, 40, 36), (232, 232, 226), (40, 90, 170), (40, 130, 80)]
TRAM_PAINT = [(230, 230, 225), (200, 40, 40), (230, 200, 40), (40, 100, 170)]
CLOTH = [(25, 25, 30), (40, 45, 70), (180, 40, 40), (230, 230, 225), (90, 90, 95),
         (60, 90, 140), (150, 120, 80), (40, 80, 50), (200, 160, 60), (120, 50, 90)]
TROUSERS = [(30, 35, 60), (25, 25, 28), (70, 70, 75), (160, 140, 110), (50, 60, 90)]
SKIN = [(224, 188, 160), (198, 150, 120), (150, 105, 75), (100, 70, 50), (236, 200, 175)]
HAIR = [(30, 25, 20), (80, 55, 35), (170, 140, 90), (120, 120, 120), (60, 40, 30)]
GREEN = [(52, 82, 38), (40, 68, 34), (70, 92, 48), (84, 98, 44), (60, 78, 52), (46, 60, 30)]
GRASS = [(112, 138, 66), (138, 146, 78), (128, 112, 78), (96, 126, 58), (150, 140, 90)]
PAVING = [(150, 150, 146), (168, 130, 118), (190, 180, 160), (120, 120, 124), (176, 170, 168)]
METAL = [(110, 110, 110), (70, 75, 80), (60, 80, 64), (150, 150, 150)]
TYRE = (26, 26, 28)


def jitter(r, choices, spread=0.12, shift=10.0):
    """A colour near a random choice: the class stays recognisable, the instance does not repeat."""
    base = choices[int(r.random() * len(choices))]
    k = r.uniform(1 - spread, 1 + spread)
    return tuple(min(255.0, max(0.0, c * k + r.uniform(-shift, shift))) for c in base)


def pick(r, probs):
    """Index drawn with the given probabilities."""
    u, acc = r.random(), 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return len(probs) - 1


def poisson(r, lam):
    """Poisson count from `random.Random` draws, so one generator drives the whole layout."""
    limit, k, p = math.exp(-lam), 0, r.random()
    while p > limit:
        k += 1
        p *= r.random()
    return k
