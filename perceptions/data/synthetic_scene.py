"""Draw one synthetic street scene (400x300 RGB) from its latent attributes.

The scene is a street seen from a camera 1.6 m above the road, looking down the street: a road in the
middle, pavements and verges, facades on both sides, objects in between. Everything is a flat-coloured
shape in 3-D street coordinates (X across, Y up, Z along the street, metres) projected by a pin-hole
camera, so near things are big and far things small, as in a street-view photograph.

Each attribute is drawn large on purpose, because a network sees the scene at 224 px:
light (sky colour, overall tint, lit windows and street lamps, fog that swallows the distance), greenery
(trees with big canopies, verges, hedges, sometimes a park instead of buildings), building height,
condition (broken and boarded windows, stains, boarded or shuttered shop fronts, dirty facades),
graffiti (thick bright tags and filled pieces on ground floors), litter (bags, papers, cans and piles),
road width and state (faded asphalt, cracks, potholes, patches, worn markings), cars, people (on the pavements
and crossing the street), shops (awnings, lit display windows, bunting across the street) and colour variety
(grey facades, white frames and greyish paint vs a different bright colour per house, on awnings and cars).
Small things are put where a centre crop keeps them, at the nearest depth at which they are in view.

Only the renderer's own random stream decides the layout, so a scene is a pure function of
(attributes, rng state).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from perceptions.data.scene_canvas import (BLACK, BRIGHT, CAR, CLOTHES, END, EYE, FLOOR, FOCAL, GLASS, GOLDEN, HAZE,
                                           HEIGHT, LAMP, NEAR, PLYWOOD, SPRAY, WIDTH, Canvas, mix, sky, skyline,
                                           vivid)


def _road(c: Canvas, a, half, rng):
    asphalt = mix((52, 54, 58), (128, 124, 118), a["road_damage"])
    c.ground(-half, half, NEAR, 400, asphalt)
    for _ in range(int(a["road_damage"] * 9)):               # patches of newer or older asphalt
        z, x = rng.uniform(3, 40), rng.uniform(-half, half - 1)
        c.ground(x, x + rng.uniform(1, 3), z, z + rng.uniform(1, 5), mix(asphalt, (40, 40, 44), 0.5))
    paint = mix((235, 235, 225), asphalt, a["road_damage"] * 0.8)
    z = NEAR + rng.uniform(0, 3)
    while z < 120:                                           # dashed centre line, missing dashes when worn
        if rng.random() > a["road_damage"] * 0.6:
            c.ground(-0.1, 0.1, z, z + 3, paint)
        z += 6
    for _ in range(int(a["road_damage"] ** 1.3 * 40)):      # cracks: random walks on the road
        x, z = rng.uniform(-half, half), NEAR + 30 * rng.random() ** 1.5
        pts = []
        for _ in range(6):
            pts.append(c.xy(x, 0, z))
            x, z = x + rng.uniform(-0.6, 0.6), max(NEAR, z + rng.uniform(-0.5, 1.2))
        c.draw.line(pts, fill=c.paint((25, 25, 25)), width=2)
    for _ in range(int(a["road_damage"] ** 1.5 * 12)):      # potholes with muddy water
        x, z, r = rng.uniform(-half + 0.5, half - 0.5), rng.uniform(3, 25), rng.uniform(0.3, 0.9)
        cx, cy = c.xy(x, 0, z)
        px, py = FOCAL * r / z, FOCAL * EYE * r / (z * z)
        c.draw.ellipse((cx - px, cy - py, cx + px, cy + py), fill=c.paint((35, 32, 28)))
        c.draw.ellipse((cx - px * 0.6, cy - py * 0.5, cx + px * 0.6, cy + py * 0.5), fill=c.paint((85, 80, 70)))


def _window(c: Canvas, x, y, z, width, state, lit, rng, frame):
    y2, z2 = y + 1.6, z + width
    if z > 30:  # a few pixels wide: one flat patch says as much
        colour = PLYWOOD if state == "boarded" else BLACK if state == "broken" else \
            LAMP if lit else (30, 34, 50) if c.night else GLASS
        c.wall(x, y, y2, z, z2, colour, emit=lit)
        return
    if state == "boarded":
        c.wall(x, y, y2, z, z2, PLYWOOD)
        for k in (0.4, 0.8, 1.2):
            c.wall(x, y + k, y + k + 0.06, z, z2, (120, 85, 45))
        return
    c.wall(x, y - 0.15, y2 + 0.15, z - 0.15, z2 + 0.15, frame)
    if state == "broken":
        c.wall(x, y, y2, z, z2, BLACK)
        # jagged shards of glass left in the frame
        pts = [(x, y2, z), (x, y2, z2), (x, y2 - rng.uniform(0.2, 0.8), z + width * rng.uniform(0.5, 1.0)),
               (x, y2 - rng.uniform(0.6, 1.4), z + width * rng.uniform(0.2, 0.5)), (x, y2 - rng.uniform(0.2, 0.9), z)]
        c.poly(pts, (170, 190, 205))
        return
    if lit:
        c.wall(x, y, y2, z, z2, LAMP, emit=True)
    else:
        c.wall(x, y, y2, z, z2, GLASS if not c.night else (30, 34, 50))
        c.wall(x, y + 0.9, y2, z + width * 0.15, z + width * 0.45, (190, 215, 235))  # reflection


def _tag(c: Canvas, x, z1, z2, rng, big: bool):
    """One graffiti tag (thick bright scribble) or, when big, a filled outlined piece."""
    colour = SPRAY[int(rng.integers(len(SPRAY)))]
    z = rng.uniform(z1, max(z1 + 0.1, z2 - 2.5))
    if big:
        length = rng.uniform(2.0, 4.0)
        pts = [(x, rng.uniform(0.3, 0.8), z + k * length / 5) for k in range(6)]
        pts += [(x, rng.uniform(1.8, 2.9), z + k * length / 5) for k in range(5, -1, -1)]
        outline = SPRAY[int(rng.integers(len(SPRAY)))]
        screen = [c.xy(*p) for p in pts]
        c.draw.polygon(screen, fill=c.paint(colour), outline=c.paint(outline), width=3)
        return
    pts, y = [], rng.uniform(0.6, 2.0)
    for _ in range(int(rng.integers(5, 9))):
        pts.append(c.xy(x, y, z))
        y, z = min(max(y + rng.uniform(-0.7, 0.7), 0.3), 2.5), z + rng.uniform(0.1, 0.5)
    width = max(2, int(FOCAL * 0.15 / max(z, NEAR)))
    c.draw.line(pts, fill=c.paint(colour), width=width, joint="curve")


def _building(c: Canvas, a, x, side, z1, z2, rng, lit_share, strata):
    """One building; `strata` are two numbers in 0..1 that decide, evenly along the street, whether it has a
    shop and whether it carries graffiti, so the share seen follows the attribute closely."""
    floors = int(np.clip(round(1 + a["height"] * 13 + rng.normal(0, 1.5)), 1, 22))
    top = floors * FLOOR
    # Colour variety: how far every facade moves from a dull tone toward its own bright hue.
    grey = rng.uniform(125, 175)
    bright = BRIGHT[int(rng.integers(len(BRIGHT)))]
    wall = mix(mix((grey, grey, grey + 4), bright, a["colour"]), (85, 75, 62), a["decay"] * 0.55)
    # Window frames and doors: white or a second bright hue.
    frame = mix((235, 235, 230), BRIGHT[int(rng.integers(len(BRIGHT)))], a["colour"])
    c.wall(x, 0, top, max(z1, NEAR), z2, wall)
    c.wall(x, top - 0.3, top, max(z1, NEAR), z2, mix(wall, (40, 40, 40), 0.4))  # cornice
    decay = a["decay"]
    for _ in range(int(decay * 7 * rng.uniform(0.5, 1.5))):  # rain stains and damp
        zs, ys = rng.uniform(z1, z2 - 0.8), rng.uniform(1.0, top)
        c.wall(x, max(0.0, ys - rng.uniform(1.5, 5)), ys, max(zs, NEAR), zs + rng.uniform(0.4, 1.6),
               mix(wall, (30, 28, 22), 0.55))
    p_broken, p_boarded = 0.55 * decay ** 1.3, 0.4 * decay ** 1.3
    z = z1 + 0.8
    while z + 1.3 < z2:
        far = z + 1.3
        off_side = c.x0 + FOCAL * x / far
        if z > NEAR and 0 <= off_side <= WIDTH:  # a column wholly beside the frame is skipped
            for f in range(1, floors):
                y = f * FLOOR + 0.8
                if c.y0 + FOCAL * (EYE - y) / far < 0:  # this floor and those above are over the frame
                    break
                r = rng.random()
                state = "broken" if r < p_broken else "boarded" if r < p_broken + p_boarded else "clean"
                _window(c, x, y, z, 1.3, state, c.night and rng.random() < lit_share, rng, frame)
        z += 2.6
    _ground_floor(c, a, x, side, z1, z2, frame, rng, shop=strata[0] < a["shops"])
    if strata[1] < a["graffiti"] * 1.3:
        for _ in range(int(1 + a["graffiti"] * (z2 - z1) * 0.5)):
            _tag(c, x, max(z1, NEAR), z2, rng, big=rng.random() < a["graffiti"] * 0.7)


def _ground_floor(c: Canvas, a, x, side, z1, z2, door_colour, rng, shop: bool):
    z1 = max(z1, NEAR)
    if z2 - z1 < 2.5:
        return
    if shop:
        if rng.random() < a["decay"] ** 1.2:                  # closed-down shop: boarded or shuttered
            colour = PLYWOOD if rng.random() < 0.5 else (120, 122, 125)
            c.wall(x, 0.2, 2.7, z1 + 0.3, z2 - 0.3, colour)
            for k in np.arange(0.5, 2.6, 0.35):
                c.wall(x, k, k + 0.05, z1 + 0.3, z2 - 0.3, mix(colour, (40, 40, 40), 0.4))
            return
        c.wall(x, 0.2, 2.6, z1 + 0.3, z2 - 0.3, (250, 235, 190) if c.night else (175, 200, 215), emit=c.night)
        goods = vivid(BRIGHT[int(rng.integers(len(BRIGHT)))], a["colour"])
        c.wall(x, 0.4, 1.2, z1 + 0.6, z2 - 0.6, goods)
        awning = vivid(BRIGHT[int(rng.integers(len(BRIGHT)))], a["colour"])
        out = x - side * 1.8                                    # the awning leans out over the pavement
        c.poly([(x, 3.2, z1 + 0.2), (x, 3.2, z2 - 0.2), (out, 2.6, z2 - 0.2), (out, 2.6, z1 + 0.2)], awning)
        c.wall(x, 3.3, 3.9, z1 + 0.3, z2 - 0.3, mix(awning, (255, 255, 255), 0.5))  # sign band
        return
    door = rng.uniform(z1 + 0.5, z2 - 1.6)
    c.wall(x, 0, 2.2, door, door + 1.1, mix(door_colour, (50, 35, 25), 0.3))
    if a["decay"] > 0.5 and rng.random() < a["decay"]:
        c.wall(x, 0.9, 2.5, z1 + 0.4, min(door - 0.3, z1 + 2.0), PLYWOOD)


def _facades(c: Canvas, a, x, side, rng):
    """Buildings along one side of the street, drawn far to near (a park instead, in very green places)."""
    if a["green"] > 0.65 and rng.random() < (a["green"] - 0.65) * 2.0:
        c.ground(x, x + side * 60, NEAR, 300, (70, 140, 55))
        for z in np.arange(90, 8, -rng.uniform(7, 12)):
            _tree(c, x + side * rng.uniform(2, 12), z + rng.uniform(-2, 2), rng, scale=1.3)
        return
    cuts = [NEAR - 6]
    while cuts[-1] < END:
        cuts.append(cuts[-1] + rng.uniform(7, 18))
    lit_share = 0.15 + 0.5 * (1 - a["decay"])
    phases = rng.random(2)
    spans = list(zip(cuts[:-1], cuts[1:]))
    for k in range(len(spans) - 1, -1, -1):
        z1, z2 = spans[k]
        if z2 > NEAR:
            _building(c, a, x, side, z1, z2, rng, lit_share, (phases + k * GOLDEN) % 1.0)


def _tree(c: Canvas, x, z, rng, scale=1.0):
    if z < NEAR + 0.5:
        return
    h, r = rng.uniform(3.5, 5.5) * scale, rng.uniform(2.0, 3.2) * scale
    c.poly([(x - 0.18, 0, z), (x + 0.18, 0, z), (x + 0.14, h, z), (x - 0.14, h, z)], (90, 65, 40))
    greens = [(40, 110, 40), (60, 140, 50), (30, 90, 35), (85, 160, 60)]
    g = greens[int(rng.integers(len(greens)))]
    for dx, dy, k in ((-0.5, 0.0, 0.8), (0.5, 0.3, 0.8), (0.0, 0.8, 0.85), (0.0, 0.2, 1.0)):
        c.blob(x + dx * r, h + dy * r, z, r * k, r * k * 0.9, mix(g, (20, 60, 20), rng.uniform(0, 0.4)))


def _car(c: Canvas, x, z, rng, parked_side, colour):
    body = vivid(CAR[int(rng.integers(len(CAR)))], colour)
    if parked_side:                                           # the side of a parked car, seen in perspective
        inner = x - parked_side * 0.9
        c.wall(inner, 0.25, 1.05, z, z + 4.3, body)
        c.wall(inner, 1.05, 1.5, z + 1.0, z + 3.2, (40, 50, 60))
        for zw in (z + 0.8, z + 3.5):
            c.wall(inner, 0.0, 0.6, zw - 0.35, zw + 0.35, (15, 15, 15))
    c.front(x - 0.9, x + 0.9, 0.25, 1.1, z, body)
    c.front(x - 0.75, x + 0.75, 1.1, 1.5, z, (40, 50, 60))
    c.front(x - 0.9, x - 0.6, 0.0, 0.35, z, (15, 15, 15))
    c.front(x + 0.6, x + 0.9, 0.0, 0.35, z, (15, 15, 15))
    lamp = (255, 40, 30) if c.night else (180, 20, 20)
    c.front(x - 0.85, x - 0.6, 0.8, 1.0, z, lamp, emit=c.night)
    c.front(x + 0.6, x + 0.85, 0.8, 1.0, z, lamp, emit=c.night)


def _person(c: Canvas, x, z, rng):
    h = rng.uniform(1.55, 1.9)
    k = h / 1.75
    legs = CLOTHES[int(rng.integers(len(CLOTHES)))]
    c.front(x - 0.2, x - 0.03, 0, 0.85 * k, z, mix(legs, (20, 20, 40), 0.5))
    c.front(x + 0.03, x + 0.2, 0, 0.85 * k, z, mix(legs, (20, 20, 40), 0.5))
    c.front(x - 0.28, x + 0.28, 0.85 * k, 1.45 * k, z, CLOTHES[int(rng.integers(len(CLOTHES)))])
    skin = [(240, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 40)][int(rng.integers(4))]
    c.blob(x, 1.58 * k, z, 0.13, 0.15, skin)


def _bunting(c: Canvas, facade, z, rng, colour):
    """A string of coloured pennants hung from facade to facade, sagging in the middle."""
    top = rng.uniform(6.0, 8.5)
    n = 14
    points = [(-facade + 2 * facade * k / n, top - 1.2 * (1 - (2 * k / n - 1) ** 2)) for k in range(n + 1)]
    c.draw.line([c.xy(x, y, z) for x, y in points], fill=c.paint((60, 60, 60)), width=1)
    for (xa, ya), (xb, yb) in zip(points[:-1], points[1:]):
        pennant = vivid(SPRAY[int(rng.integers(len(SPRAY) - 2))], colour)
        c.poly([(xa, ya, z), (xb, yb, z), ((xa + xb) / 2, (ya + yb) / 2 - 0.7, z)], pennant)


def _litter(c: Canvas, x, z, rng):
    kind = rng.random()
    if kind < 0.35:                                           # bin bag
        c.blob(x, 0.3, z, 0.45, 0.35, (25, 25, 25) if rng.random() < 0.7 else (220, 220, 215))
    elif kind < 0.7:                                          # paper and wrappers
        c.front(x - 0.3, x + 0.3, 0, 0.14, z, (240, 240, 235))
    else:                                                     # cans and bottles
        c.front(x - 0.08, x + 0.08, 0, 0.3, z, SPRAY[int(rng.integers(len(SPRAY)))])


def _lamp_post(c: Canvas, x, z):
    c.front(x - 0.07, x + 0.07, 0, 6.0, z, (60, 60, 65))
    if c.night:
        c.blob(x, 5.9, z, 1.4, 1.4, (120, 100, 60), emit=True)
        c.blob(x, 5.9, z, 0.7, 0.7, (200, 175, 110), emit=True)
        c.blob(x, 5.9, z, 0.3, 0.3, (255, 245, 210), emit=True)
    else:
        c.blob(x, 5.9, z, 0.3, 0.15, (200, 200, 190))


def _haze(image: Image.Image, light: str, x0, y0, facade_x) -> Image.Image:
    """Blend toward the haze colour with depth; depth is guessed from the distance to the vanishing point."""
    colour, distance = HAZE[light]
    step = 4
    xs = np.arange(0, WIDTH, step, dtype=np.float32) + step / 2
    ys = np.arange(0, HEIGHT, step, dtype=np.float32) + step / 2
    dx = np.abs(xs[None, :] - x0) + 1e-3
    dy = ys[:, None] - y0
    # The street as a box: facades at +-facade_x, the road below and, so that the open sky above the street
    # is not hazed like the far distance, a pretend ceiling 25 m up.
    ground_or_ceiling = np.where(dy > 0, FOCAL * EYE / np.maximum(dy, 1e-3), FOCAL * 25 / np.maximum(-dy, 1e-3))
    depth = np.minimum(FOCAL * facade_x / dx, ground_or_ceiling)
    alpha = (1 - np.exp(-depth / distance)) * 255
    mask = Image.fromarray(alpha.astype(np.uint8), "L").resize((WIDTH, HEIGHT), Image.BILINEAR)
    return Image.composite(Image.new("RGB", (WIDTH, HEIGHT), colour), image, mask)


def draw_scene(a: dict, rng: np.random.Generator) -> Image.Image:
    """Render the scene for attribute dict `a` (keys as in synthetic.ATTRIBUTES; values 0..1 except light)."""
    light = a["light"]
    x0, y0 = WIDTH / 2 + rng.uniform(-30, 30), 128 + rng.uniform(-10, 10)
    image = sky(light, y0, rng)
    c = Canvas(image, light, x0, y0)
    haze = HAZE[light][0]
    skyline(c, rng, haze)
    half = 3.0 + 6.0 * a["road_width"]
    pavement = rng.uniform(2.8, 4.2)
    facade = half + pavement
    c.ground(-facade - 80, facade + 80, NEAR, 400, mix((165, 162, 155), (120, 112, 100), a["decay"] * 0.6))
    _road(c, a, half, rng)
    verge = 1.4 * a["green"]
    for side in (-1, 1):
        c.ground(side * half, side * (half + 0.25), NEAR, 400, (200, 200, 195), y=0.0)   # kerb
        if verge > 0.25:
            c.ground(side * (half + 0.25), side * (half + 0.25 + verge), NEAR, 400, (80, 150, 60))
    for side in (-1, 1):
        _facades(c, a, side * facade, side, rng)

    # Free-standing things, far to near so near ones cover far ones.
    things = []
    n_trees = int(round(a["green"] ** 1.2 * 9))
    for side in (-1, 1):
        for z in rng.uniform(4, 70, n_trees):
            things.append((z, "tree", side * (half + 0.25 + max(verge, 0.5) * 0.6)))
        if a["green"] > 0.5:                                  # hedges along the front gardens
            c.wall(side * (facade - 0.4), 0, 1.1 * a["green"], NEAR, 120, (50, 115, 45))
    for z in np.arange(rng.uniform(6, 14), 90, 22):
        things.append((z, "lamp", -(half + 0.5)))
    for _ in range(int(round(a["cars"] * 12))):
        side = 1 if rng.random() < 0.5 else -1
        if rng.random() < 0.5:
            x = side * (half - 1.1)
            things.append((c.nearest_in_view(x) + 2 + 25 * rng.random() ** 1.3, "parked", x))
        else:
            things.append((rng.uniform(6, 28), "car", side * half / 2))
    for _ in range(int(round(a["people"] * 30))):
        if rng.random() < 0.5:                                # on the pavements, near enough to be seen
            x = (1 if rng.random() < 0.5 else -1) * (half + rng.uniform(0.6, pavement - 0.3))
            things.append((c.nearest_in_view(x) + 12 * rng.random() ** 1.3, "person", x))
        else:                                                 # crossing the street
            things.append((rng.uniform(5, 18), "person", rng.uniform(-half, half)))
    for _ in range(int(round(a["litter"] ** 1.2 * 90))):
        x = (1 if rng.random() < 0.5 else -1) * (half + rng.uniform(-0.6, pavement - 0.1))
        things.append((c.nearest_in_view(x) + 18 * rng.random() ** 1.5, "litter", x))
    if a["litter"] > 0.55:                                    # dumped piles against the walls
        for _ in range(int((a["litter"] - 0.5) * 8)):
            x = (1 if rng.random() < 0.5 else -1) * (facade - rng.uniform(0.3, 1.2))
            z = c.nearest_in_view(x) + rng.uniform(0, 12)
            for _ in range(6):
                things.append((z + rng.uniform(0, 1.2), "litter", x + rng.uniform(-0.4, 0.4)))
    for _ in range(int(a["shops"] * 7)):                      # festive bunting across shopping streets
        things.append((rng.uniform(8, 45), "bunting", facade))
    things.sort(key=lambda t: -t[0])
    for z, kind, x in things:
        if kind == "tree":
            _tree(c, x, z, rng)
        elif kind == "lamp":
            _lamp_post(c, x, z)
        elif kind in ("parked", "car"):
            _car(c, x, z, rng, (1 if x > 0 else -1) if kind == "parked" else 0, a["colour"])
        elif kind == "person":
            _person(c, x, z, rng)
        elif kind == "bunting":
            _bunting(c, x, z, rng, a["colour"])
        else:
            _litter(c, x, z, rng)
    return _haze(image, light, x0, y0, facade)
