"""The synthetic street scene's camera, palette and canvas: what every object in synthetic_scene.py is drawn with.

A pin-hole camera 1.6 m above the road looks down the street (X across, Y up, Z along, metres); `Canvas`
projects flat-coloured shapes in those coordinates to pixels, tinted by the light. The sky and the far skyline
are drawn here too, as the backdrop everything else is painted over.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 400, 300
LIGHTS = ("day", "dusk", "night", "fog")

FOCAL = 260.0          # pixels: a street-view-like ~75 degree horizontal field of view
EYE = 1.6              # camera height above the road, metres
NEAR, END = 2.2, 110.0  # nearest drawn depth; where the street's buildings stop
FLOOR = 3.2            # storey height, metres
VIEW_LEFT, VIEW_RIGHT = 70, 330  # the columns a centre crop to a square keeps
GOLDEN = 0.6180339887  # stratified choices: building k takes (phase + k * golden) mod 1

# Light: multiplier applied to every painted (non-emissive) colour; the colour and the 1/e distance (m) of
# the haze that fills the distance (dense only in fog).
TINT = {"day": (1.0, 1.0, 1.0), "dusk": (0.92, 0.68, 0.6), "night": (0.3, 0.32, 0.45), "fog": (0.9, 0.9, 0.92)}
HAZE = {"day": ((200, 218, 240), 260.0), "dusk": ((235, 150, 110), 200.0),
         "night": ((12, 14, 30), 90.0), "fog": ((198, 200, 204), 35.0)}
SKY = {"day": ((70, 130, 215), (185, 212, 240)), "dusk": ((60, 50, 110), (250, 140, 70)),
        "night": ((4, 6, 18), (22, 26, 52)), "fog": ((192, 194, 198), (200, 202, 206))}

DULL = [(150, 150, 150), (175, 165, 150), (135, 130, 125), (190, 185, 175), (160, 155, 160), (120, 118, 115)]
BRIGHT = [(225, 95, 80), (240, 200, 70), (70, 170, 190), (235, 140, 170), (120, 190, 100), (90, 120, 210),
           (245, 150, 60), (180, 110, 200), (40, 160, 150), (200, 60, 60)]
SPRAY = [(255, 0, 170), (0, 230, 90), (0, 200, 255), (255, 140, 0), (255, 235, 0), (240, 30, 30),
          (150, 60, 255), (255, 255, 255), (20, 20, 20)]
CLOTHES = [(200, 40, 40), (40, 80, 190), (240, 200, 40), (40, 150, 80), (235, 235, 235), (30, 30, 35),
            (230, 110, 30), (150, 50, 150), (90, 170, 220)]
CAR = [(200, 30, 30), (230, 230, 235), (25, 25, 30), (40, 70, 160), (150, 155, 160), (240, 190, 30),
        (60, 120, 70)]
GLASS, PLYWOOD, BLACK = (120, 160, 200), (196, 150, 90), (14, 14, 16)
LAMP = (255, 225, 150)


def mix(a, b, t):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def vivid(rgb, colour: float):
    """Painted things (awnings, pennants, cars) follow the street's colour variety: grey of the same
    lightness when it is 0, full colour when it is 1."""
    grey = 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2]
    return mix((grey, grey, grey), rgb, 0.15 + 0.85 * colour)


class Canvas:
    """Projection plus a paint pot that applies the scene's light to every colour."""

    def __init__(self, image: Image.Image, light: str, x0: float, y0: float):
        self.draw = ImageDraw.Draw(image)
        self.tint = TINT[light]
        self.night = light == "night"
        self.x0, self.y0 = x0, y0

    def xy(self, x, y, z):
        return (self.x0 + FOCAL * x / z, self.y0 + FOCAL * (EYE - y) / z)

    def paint(self, rgb, emit=False):
        if emit:
            return tuple(int(c) for c in rgb)
        t = self.tint
        return (int(rgb[0] * t[0]), int(rgb[1] * t[1]), int(rgb[2] * t[2]))

    def nearest_in_view(self, x) -> float:
        """Smallest depth at which lateral position x falls inside the middle of the frame (what a
        centre-cropped 224 px view keeps), so small things are put where a viewer sees them."""
        room = (VIEW_RIGHT - self.x0) if x > 0 else (self.x0 - VIEW_LEFT)
        return max(NEAR + 0.3, FOCAL * abs(x) / room)

    def poly(self, points, rgb, emit=False):
        self.draw.polygon([self.xy(*p) for p in points], fill=self.paint(rgb, emit))

    def wall(self, x, y1, y2, z1, z2, rgb, emit=False):
        """Rectangle in a facade plane x = const (the part behind the camera's near plane is cut off)."""
        z1, z2 = max(z1, NEAR), max(z2, NEAR)
        if z2 - z1 < 1e-3:
            return
        self.poly([(x, y1, z1), (x, y2, z1), (x, y2, z2), (x, y1, z2)], rgb, emit)

    def ground(self, x1, x2, z1, z2, rgb, y=0.0):
        self.poly([(x1, y, z1), (x2, y, z1), (x2, y, z2), (x1, y, z2)], rgb)

    def front(self, x1, x2, y1, y2, z, rgb, emit=False):
        """Rectangle facing the camera at depth z."""
        (a, b), (c, d) = self.xy(x1, y2, z), self.xy(x2, y1, z)
        self.draw.rectangle((a, b, c, d), fill=self.paint(rgb, emit))

    def blob(self, x, y, z, rx, ry, rgb, emit=False):
        cx, cy = self.xy(x, y, z)
        px, py = FOCAL * rx / z, FOCAL * ry / z
        self.draw.ellipse((cx - px, cy - py, cx + px, cy + py), fill=self.paint(rgb, emit))


def sky(light: str, y0: float, rng) -> Image.Image:
    top, bottom = (np.array(c, dtype=np.float32) for c in SKY[light])
    t = np.clip(np.arange(HEIGHT, dtype=np.float32) / max(y0, 1.0), 0, 1)[:, None]
    column = (top * (1 - t) + bottom * t).astype(np.uint8)[:, None, :]
    image = Image.fromarray(column, "RGB").resize((WIDTH, HEIGHT), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    if light == "day":
        for _ in range(int(rng.integers(2, 6))):
            cx, cy, r = rng.uniform(0, WIDTH), rng.uniform(5, y0 * 0.7), rng.uniform(15, 35)
            for dx in (-r, 0, r):
                draw.ellipse((cx + dx - r, cy - r * 0.5, cx + dx + r, cy + r * 0.5), fill=(245, 247, 250))
    elif light == "night":
        for _ in range(40):
            x, y = rng.uniform(0, WIDTH), rng.uniform(0, y0)
            draw.point((x, y), fill=(230, 230, 255))
        mx, my = rng.uniform(40, 360), rng.uniform(10, 50)
        draw.ellipse((mx - 9, my - 9, mx + 9, my + 9), fill=(245, 245, 225))
    elif light == "dusk":
        sx = rng.uniform(60, 340)
        draw.ellipse((sx - 22, y0 - 30, sx + 22, y0 + 14), fill=(255, 200, 120))
    return image


def skyline(c: Canvas, rng, haze):
    """Distant blocks at the end of the street, already faded into the haze."""
    x = -60.0
    while x < 60:
        w, h = rng.uniform(4, 12), rng.uniform(6, 40)
        c.front(x, x + w, 0, h, 180.0, mix((90, 95, 105), haze, 0.55))
        x += w
