"""A harder built-in captioning set: cluttered scenes of 1-4 objects with relations and occlusion.

``data=shapes`` is solved by every reasonable model (test BLEU-4 about 0.94), so it cannot
show which model is better. ``data=scenes`` has headroom, and it is still generated, offline
and deterministic from ``data_seed``:

- 1-4 objects, each a shape (circle, square, triangle, star, diamond, cross), a colour and a
  size, a little rotated, with a jittered shade; they may overlap and are drawn in depth
  order (the list order of a scene, back to front), so a front object hides part of another;
- the background is plain, a gradient, smooth blotches, stripes or a checkerboard, in muted
  colours, with sensor noise over everything;
- five different captions per image, in varied phrasing: synonyms, word orders, counts ("two
  red squares"), relations (left of, right of, above, below, next to, in front of, behind),
  groups ("two triangles above a star"), the background, and sometimes only the salient
  (largest, front) objects. Every caption is true of the image: the colours, shapes, sizes,
  counts and relations it names are the scene's (tests check a sample).

Each image keeps its scene (:class:`Thing` list, pixels), so tests can compare the words with
what was drawn. Rendering is vectorised over images: a signed distance per shape gives each
object's coverage (anti-aliased over one pixel), composited back to front.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zoo.data.captioning import SPLITS, CaptioningData, RawSplit
from zoo.data.images import ArrayStore

# well apart in RGB so that a shade jitter never makes one look like another
COLOURS = {
    "red": (210, 35, 35),
    "orange": (240, 130, 20),
    "yellow": (230, 210, 30),
    "green": (40, 165, 55),
    "blue": (40, 80, 220),
    "purple": (135, 50, 170),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
_COLOUR_NAMES = tuple(COLOURS)
SIZES = ("small", "large")
RADIUS = {"small": 0.105, "large": 0.165}  # an object's radius, as a fraction of the image side
BACKGROUNDS = ("plain", "gradient", "blotchy", "striped", "checkered")

# the words people use for each thing, with weights: (word, weight), plural beside singular
SHAPE_WORDS = {
    "circle": (("circle", 5), ("disk", 1), ("ball", 1)),
    "square": (("square", 4), ("box", 1)),
    "triangle": (("triangle", 1),),
    "star": (("star", 1),),
    "diamond": (("diamond", 4), ("rhombus", 1)),
    "cross": (("cross", 4), ("plus sign", 1)),
}
PLURAL = {"circle": "circles", "disk": "disks", "ball": "balls", "square": "squares", "box": "boxes",
          "triangle": "triangles", "star": "stars", "diamond": "diamonds", "rhombus": "rhombuses",
          "cross": "crosses", "plus sign": "plus signs"}
SIZE_WORDS = {"large": (("large", 3), ("big", 2)), "small": (("small", 3), ("little", 1), ("tiny", 1))}
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
THING_WORDS = (("shapes", 3), ("objects", 2), ("things", 1))
BACKGROUND_WORDS = {
    "plain": (("a plain background", 3), ("an even background", 1)),
    "gradient": (("a gradient background", 2), ("a shaded background", 1)),
    "blotchy": (("a blotchy background", 2), ("a mottled background", 1)),
    "striped": (("a striped background", 3), ("stripes", 1)),
    "checkered": (("a checkered background", 2), ("a checkerboard", 1)),
}
# a relation of a to b -> ways to say "a <rel> b"
RELATION_WORDS = {
    "left": (("to the left of", 3), ("left of", 2)),
    "right": (("to the right of", 3), ("right of", 2)),
    "above": (("above", 3), ("over", 1)),
    "below": (("below", 3), ("under", 1), ("beneath", 1)),
    "next": (("next to", 3), ("beside", 1)),
    "front": (("in front of", 3),),
    "behind": (("behind", 3),),
}
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above", "next": "next",
           "front": "behind", "behind": "front"}
POSITIONS = {  # (column, row) of a 3 x 3 grid -> ways to say it
    (0, 0): (("in the top left corner", 3), ("at the top left", 1)),
    (1, 0): (("at the top", 3), ("near the top", 1)),
    (2, 0): (("in the top right corner", 3), ("at the top right", 1)),
    (0, 1): (("on the left", 3), ("on the left side", 1)),
    (1, 1): (("in the middle", 3), ("in the center", 1)),
    (2, 1): (("on the right", 3), ("on the right side", 1)),
    (0, 2): (("in the bottom left corner", 3), ("at the bottom left", 1)),
    (1, 2): (("at the bottom", 3), ("near the bottom", 1)),
    (2, 2): (("in the bottom right corner", 3), ("at the bottom right", 1)),
}
OBJECT_COUNTS = (1, 2, 3, 4)
COUNT_WEIGHTS = (0.3, 0.3, 0.25, 0.15)
# a relation is said only where it is clear: the centres differ by more than this (fraction of
# the side) along the relation's axis, and by more along it than across it
CLEAR = 0.12
NEAR = 0.42  # "next to": side by side, centres closer than this
EDGE = 0.04  # a place in the 3 x 3 grid is said only if the centre is this far from its lines


@dataclass(frozen=True)
class Thing:
    """One object of a scene, in pixels: centre (x right, y down), radius, rotation (radians)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    r: float
    angle: float


@dataclass
class Scene:
    """What an image shows: its objects back to front, its background, and which pairs overlap
    (``overlaps[i][j]``: pixels that both object i and j cover, measured on the drawn masks)."""

    things: list[Thing]
    background: str
    overlaps: np.ndarray  # (n, n) int


def _pick(rng: random.Random, options):
    """One of ``options`` ((thing, weight), ...), by weight. Scenes and captions are drawn with a
    ``random.Random`` per split (seeded from the numpy stream): a Python-level draw costs far less
    there than in numpy, and captions are many small draws."""
    words, weights = zip(*options)
    return rng.choices(words, weights)[0]


# -- scenes ------------------------------------------------------------------------------------

def sample_things(rng: random.Random, size: int) -> list[Thing]:
    """1-4 objects placed so that each stays mostly visible; some repeat another's shape (and
    colour), so that captions can count ("two red squares")."""
    n = rng.choices(OBJECT_COUNTS, COUNT_WEIGHTS)[0]
    things: list[Thing] = []
    for _ in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(_COLOUR_NAMES)
        if things and rng.random() < 0.35:  # a group: the same shape, often the same colour
            other = rng.choice(things)
            shape = other.shape
            colour = other.colour if rng.random() < 0.6 else colour
        sz = rng.choice(SIZES)
        r = RADIUS[sz] * size * rng.uniform(0.9, 1.1)
        angle = rng.uniform(-0.26, 0.26)  # +-15 degrees: a square never turns into a diamond
        lo, hi = r + 1.0, size - r - 1.0
        for _ in range(30):
            x, y = rng.uniform(lo, hi), rng.uniform(lo, hi)
            # overlap is allowed, but a centre never lies under another object, and the two
            # radii overlap by at most 40%: every object keeps a good part of itself visible
            if all(math.hypot(x - t.x, y - t.y) > max(0.6 * (r + t.r), max(r, t.r) + 0.25 * min(r, t.r))
                   for t in things):
                things.append(Thing(shape, colour, sz, x, y, r, angle))
                break
    return things


def _convex_sdf(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside, exact near the edges) to a convex polygon ``vertices``
    (V, 2), in either winding; px, py (M, P)."""
    x, y = vertices[:, 0], vertices[:, 1]
    if (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() < 0:  # make the inside lie left of every edge
        vertices = vertices[::-1]
    out = None
    for (ax, ay), (bx, by) in zip(vertices, np.roll(vertices, -1, axis=0)):
        ex, ey = bx - ax, by - ay
        norm = math.hypot(ex, ey)
        d = ((px - ax) * ey - (py - ay) * ex) / norm  # > 0 on the outer side of the edge
        out = d if out is None else np.maximum(out, d)
    return out


def _regular(n: int, radius: float, start: float) -> np.ndarray:
    a = start + np.arange(n) * 2 * math.pi / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


_TRIANGLE = _regular(3, 1.15, -math.pi / 2)  # point up (y runs down)
_STAR_TIPS = _regular(5, 1.2, -math.pi / 2)
_STAR_INNER = _regular(5, 0.5, -math.pi / 2 + math.pi / 5)
# a star is five convex kites: the centre, an inner corner, a tip, the next inner corner
_STAR_KITES = [np.array([[0, 0], _STAR_INNER[i - 1], _STAR_TIPS[i], _STAR_INNER[i]]) for i in range(5)]
_DIAMOND = np.array([[0, -1.1], [0.8, 0], [0, 1.1], [-0.8, 0]])


def shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance to ``shape`` of radius 1 at the origin, in its own coordinates u, v (M, P)."""
    if shape == "circle":
        return np.sqrt(u * u + v * v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85
    if shape == "triangle":
        return _convex_sdf(u, v, _TRIANGLE)
    if shape == "star":
        return np.minimum.reduce([_convex_sdf(u, v, k) for k in _STAR_KITES])
    if shape == "diamond":
        return _convex_sdf(u, v, _DIAMOND)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return np.minimum(np.maximum(au - 1.0, av - 0.33), np.maximum(au - 0.33, av - 1.0))
    raise ValueError(f"unknown shape {shape!r}; the shapes are {SHAPES}")


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N,) each in [0, 1] -> (N, 3) in [0, 255]."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table[i, np.arange(len(h))] * 255.0


def _backgrounds(rng: np.random.Generator, kinds: np.ndarray, size: int) -> np.ndarray:
    """Muted (low saturation, mid lightness) backgrounds (N, S, S, 3) float, one per kind."""
    n = len(kinds)
    hue = rng.uniform(0, 1, n)
    value = rng.uniform(0.35, 0.75, n)
    # the second colour differs in lightness by 0.12-0.25, so that stripes, checks, blotches and
    # gradients are visible (a caption that says "striped" must be true of the image)
    step = rng.uniform(0.12, 0.25, n)
    other = np.where(value + step <= 0.8, value + step, value - step)
    a = _hsv_to_rgb(hue, rng.uniform(0, 0.25, n), value)  # (N, 3)
    b = _hsv_to_rgb((hue + rng.uniform(-0.15, 0.15, n)) % 1, rng.uniform(0, 0.25, n), other)
    coords = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")  # (S, S)
    mix = np.zeros((n, size, size))  # 0: colour a, 1: colour b
    theta = rng.uniform(0, math.pi, n)[:, None, None]
    along = xx * np.cos(theta) + yy * np.sin(theta)  # (N, S, S): a direction per image
    period = rng.uniform(0.12, 0.3, n)[:, None, None]
    for k, kind in enumerate(BACKGROUNDS):
        idx = np.flatnonzero(kinds == k)
        if not len(idx):
            continue
        if kind == "gradient":
            m = along[idx] - along[idx].min(axis=(1, 2), keepdims=True)
            mix[idx] = m / m.max(axis=(1, 2), keepdims=True)
        elif kind == "blotchy":  # smooth noise: a coarse random grid, bilinearly upsampled
            coarse = rng.uniform(0, 1, (len(idx), 5, 5))
            g = coords * 4
            i0 = np.minimum(g.astype(int), 3)
            f = g - i0
            rows = coarse[:, i0] * (1 - f)[None, :, None] + coarse[:, i0 + 1] * f[None, :, None]  # (n, S, 5)
            mix[idx] = rows[:, :, i0] * (1 - f) + rows[:, :, i0 + 1] * f
        elif kind == "striped":
            mix[idx] = (np.floor(along[idx] / period[idx]) % 2).astype(float)
        elif kind == "checkered":
            p = period[idx] * 1.2
            mix[idx] = ((np.floor(xx / p) + np.floor(yy / p)) % 2).astype(float)
    return a[:, None, None, :] * (1 - mix[..., None]) + b[:, None, None, :] * mix[..., None]


def render(scenes: list[list[Thing]], kinds: np.ndarray, size: int, rng: np.random.Generator,
           noise: float = 6.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw scenes over their backgrounds: images (N, S, S, 3) uint8 and, per scene, the pixels
    each pair of its objects both cover (n, n)."""
    n = len(scenes)
    img = _backgrounds(rng, kinds, size).astype(np.float32)  # (N, S, S, 3)
    centres = np.arange(size) + 0.5
    py, px = np.meshgrid(centres, centres, indexing="ij")  # (S, S)
    px, py = px.reshape(1, -1).astype(np.float32), py.reshape(1, -1).astype(np.float32)  # (1, P)
    masks = np.zeros((n, max(map(len, scenes), default=0), size * size), dtype=bool)
    depth = max(map(len, scenes), default=0)
    for k in range(depth):  # back to front: slot k of every scene at once, one shape at a time
        for shape in SHAPES:
            idx = [i for i, s in enumerate(scenes) if len(s) > k and s[k].shape == shape]
            if not idx:
                continue
            t = [scenes[i][k] for i in idx]
            x, y, r, a = (np.array([getattr(o, f) for o in t], dtype=np.float32)[:, None] for f in ("x", "y", "r", "angle"))
            dx, dy = px - x, py - y  # (M, P)
            cos, sin = np.cos(a), np.sin(a)
            u, v = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r  # the object's own frame
            cover = np.clip(0.5 - shape_sdf(shape, u, v) * r, 0.0, 1.0)  # (M, P): one pixel of anti-aliasing
            base = np.array([COLOURS[o.colour] for o in t], dtype=np.float32)  # (M, 3)
            shade = base[:, None, :] * (1.0 - 0.12 * np.clip(v, -1, 1))[..., None]  # lit from above
            jitter = rng.uniform(-10, 10, (len(t), 1, 3)).astype(np.float32)
            colour = np.clip(shade + jitter, 0, 255)  # (M, P, 3)
            sub = img[idx].reshape(len(idx), -1, 3)
            img[idx] = (sub * (1 - cover[..., None]) + colour * cover[..., None]).reshape(len(idx), size, size, 3)
            masks[idx, k] = cover > 0.5
    img += rng.normal(0.0, noise, img.shape).astype(np.float32)
    overlaps = [(masks[i, : len(s), None, :] & masks[i, None, : len(s), :]).sum(-1) for i, s in enumerate(scenes)]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), overlaps


# -- captions ----------------------------------------------------------------------------------

def relation(a: Thing, b: Thing, size: int) -> str | None:
    """The clear spatial relation of a to b (left, right, above, below), or None."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) > max(CLEAR * size, abs(dy)):
        return "left" if dx > 0 else "right"
    if abs(dy) > max(CLEAR * size, abs(dx)):
        return "above" if dy > 0 else "below"
    return None


def grid_cell(t: Thing, size: int) -> tuple[int, int] | None:
    """The (column, row) of a 3 x 3 grid that t's centre lies in, or None when it lies within
    ``EDGE`` of a grid line (then "on the left" and "in the middle" would both be a guess)."""
    cell = []
    for c in (t.x, t.y):
        k = min(int(3 * c / size), 2)
        if min(abs(c - size * line / 3) for line in (1, 2)) < EDGE * size:
            return None
        cell.append(k)
    return cell[0], cell[1]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class _Speaker:
    """One person describing one scene: picks words (synonyms, how much detail) at random."""

    def __init__(self, rng: random.Random, scene: Scene, size: int) -> None:
        self.rng, self.scene, self.size = rng, scene, size
        self.things = scene.things
        self.options = self._options()

    def _count(self, **want) -> int:
        return sum(all(getattr(t, k) == v for k, v in want.items()) for t in self.things)

    def one(self, t: Thing, detail: str | None = None) -> str:
        """'a small red circle': colour nearly always; size sometimes, or when it tells apart."""
        rng = self.rng
        if detail is None:
            same_kind = self._count(shape=t.shape, colour=t.colour) > 1
            detail = _pick(rng, (("colour", 4), ("size colour", 4 if same_kind else 3), ("size", 1), ("shape", 1)))
        words = []
        if "size" in detail:
            words.append(_pick(rng, SIZE_WORDS[t.size]))
        if "colour" in detail:
            words.append(t.colour)
        words.append(_pick(rng, SHAPE_WORDS[t.shape]))
        return _article(" ".join(words))

    def group(self, members: list[Thing], with_colour: bool) -> str:
        """'two red squares', 'three stars': every object of that kind in the scene, counted."""
        shape = PLURAL[_pick(self.rng, SHAPE_WORDS[members[0].shape])]
        return " ".join([NUMBERS[len(members)]] + ([members[0].colour] if with_colour else []) + [shape])

    def relate(self, a: Thing, b: Thing) -> str | None:
        """'a red circle to the left of a blue square', from a's or b's side, or None if unclear."""
        i, j = self.things.index(a), self.things.index(b)
        rel = relation(a, b, self.size)
        if self.scene.overlaps[i, j] >= 3 and (rel is None or self.rng.random() < 0.5):
            rel = "front" if i > j else "behind"  # drawn later: in front
        elif rel in ("left", "right") and math.hypot(a.x - b.x, a.y - b.y) < NEAR * self.size and self.rng.random() < 0.3:
            rel = "next"
        if rel is None:
            return None
        # most people name the left, upper or front object first ("a circle left of a square"),
        # some the other way round
        first = rel in ("left", "above", "front") or (rel == "next" and a.x < b.x)
        if self.rng.random() < (0.25 if first else 0.75):
            a, b, rel = b, a, INVERSE[rel]
        return f"{self.one(a)} {_pick(self.rng, RELATION_WORDS[rel])} {self.one(b)}"

    def listing(self, things: list[Thing]) -> str:
        """'a red circle a blue square and a green star': left to right (as one reads)."""
        things = sorted(things, key=lambda t: t.x)
        names = [self.one(t, "colour" if self.rng.random() < 0.7 else None) for t in things]
        return " ".join(names[:-1]) + " and " + names[-1]

    def _groups(self) -> list[tuple[list[Thing], bool]]:
        """Kinds with two or more members: (members, counted by colour too)."""
        out = []
        for shape in SHAPES:
            same = [t for t in self.things if t.shape == shape]
            if len(same) >= 2:
                out.append((same, False))
            for colour in COLOURS:
                alike = [t for t in same if t.colour == colour]
                if len(alike) >= 2:
                    out.append((alike, True))
        return out

    def _options(self) -> list[tuple[Callable[[], str | None], float]]:
        """What one might say about this scene, as (how to say it, weight); built once per scene,
        worded anew on each call (a caption is drawn by weight, then only it is worded)."""
        rng, things, n = self.rng, self.things, len(self.things)
        bg = lambda: _pick(rng, BACKGROUND_WORDS[self.scene.background])  # noqa: E731
        if n == 1:
            t = things[0]
            options = [
                (lambda: self.one(t), 2),
                (lambda: f"{self.one(t)} on {bg()}", 2),
                (lambda: f"one {t.colour} {_pick(rng, SHAPE_WORDS[t.shape])} on {bg()}", 1),
            ]
            cell = grid_cell(t, self.size)
            if cell is not None:  # its place is said only where it is clear
                pos = lambda: _pick(rng, POSITIONS[cell])  # noqa: E731
                options += [
                    (lambda: f"{self.one(t)} {pos()}", 4),
                    (lambda: f"there is {self.one(t)} {pos()}", 2),
                    (lambda: f"{pos()} there is {self.one(t)}", 1),
                    (lambda: f"a picture of {self.one(t)} {pos()}", 1),
                ]
            return options
        pairs = [(a, b) for i, a in enumerate(things) for b in things[i + 1:]]
        big = max(things, key=lambda t: (t.size == "large", things.index(t)))  # the salient one: large, in front
        rest = [t for t in things if t is not big]
        kinds = lambda: _pick(rng, THING_WORDS)  # noqa: E731
        others = f"{NUMBERS[n - 1]} other " if n > 2 else "one other "
        options = [
            (lambda: self.relate(*rng.choice(pairs)), 6.0 if n == 2 else 1.5),
            (lambda: self.listing(things), 2.0),
            (lambda: f"{NUMBERS[n]} {kinds()} {self.listing(things)}", 1.0),
            (lambda: f"{NUMBERS[n]} {kinds()} on {bg()}", 1.0),
            (lambda: f"{self.one(big)} and {others}{'shape' if n == 2 else kinds()}", 1.0),
        ]
        if n > 2:  # only the salient objects: the big one and its nearest neighbour
            near = min(rest, key=lambda t: math.hypot(t.x - big.x, t.y - big.y))
            options.append((lambda: self.relate(big, near), 3.0))
        for members, with_colour in self._groups():
            counted = lambda m=members, c=with_colour: self.group(m, c)  # noqa: E731
            left = [t for t in things if t not in members]
            if not left:
                options += [(counted, 3.0), (lambda c=counted: f"{c()} on {bg()}", 1.0)]
                continue
            options.append((lambda c=counted, o=left: f"{c()} and {self.listing(o) if len(o) > 1 else self.one(o[0])}", 2.0))
            for o in left:  # a group's relation holds for every member
                rels = {relation(m, o, self.size) for m in members}
                if len(rels) == 1 and None not in rels:
                    rel = rels.pop()
                    options.append((lambda c=counted, r=rel, o=o: f"{c()} {_pick(rng, RELATION_WORDS[r])} {self.one(o)}", 3.0))
        return options

    def caption(self) -> str | None:
        """One caption, or None when the option drawn has nothing to say (an unclear relation)."""
        return _pick(self.rng, self.options)()


def describe(rng: random.Random, scene: Scene, size: int, n: int = 5, max_words: int = 16) -> list[str]:
    """``n`` different captions of a scene of at most ``max_words`` words each (fewer captions
    only if the scene allows no more)."""
    speaker = _Speaker(rng, scene, size)
    out: list[str] = []
    for _ in range(40 * n):
        text = speaker.caption()
        if text and text not in out and len(text.split()) <= max_words:
            out.append(text)
            if len(out) == n:
                break
    return out


def make_split(n_images: int, seed: int, size: int = 32, n_captions: int = 5, max_words: int = 16
               ) -> tuple[np.ndarray, list[list[str]], list[Scene]]:
    """``n_images`` scenes: images (N, size, size, 3) uint8, their captions (at most ``max_words``
    words each), and what they show. The images do not depend on ``n_captions`` or ``max_words``."""
    rng = np.random.default_rng(seed)  # pixels (backgrounds, shades, noise)
    draw = random.Random(int(rng.integers(2**62)))  # scenes and words
    things = [sample_things(draw, size) for _ in range(n_images)]
    kinds = rng.integers(len(BACKGROUNDS), size=n_images)
    images = np.empty((n_images, size, size, 3), dtype=np.uint8)
    overlaps: list[np.ndarray] = []
    for lo in range(0, n_images, 1000):  # chunks: the float buffers stay small
        part, ov = render(things[lo: lo + 1000], kinds[lo: lo + 1000], size, rng)
        images[lo: lo + 1000] = part
        overlaps += ov
    scenes = [Scene(t, BACKGROUNDS[k], o) for t, k, o in zip(things, kinds, overlaps)]
    captions = [describe(draw, s, size, n_captions, max_words) for s in scenes]
    return images, captions, scenes


class ScenesCaptions(CaptioningData):
    """The harder built-in data set (``data=scenes``): generated, deterministic from ``data_seed``.
    ``scenes[split]`` keeps what each image shows."""

    def __init__(self, *, train_images: int = 4000, val_images: int = 300, test_images: int = 300,
                 data_seed: int = 0, captions_per_image: int = 5, image_size: int = 32, **kwargs) -> None:
        super().__init__(image_size=image_size, **kwargs)
        self.sizes = {"train": train_images, "val": val_images, "test": test_images}
        self.data_seed = data_seed
        self.captions_per_image = captions_per_image
        self.scenes: dict[str, list[Scene]] = {}

    def read_split(self, split: str) -> RawSplit:
        seed = self.data_seed * 1000 + SPLITS.index(split)  # disjoint random streams per split
        pixels, captions, self.scenes[split] = make_split(self.sizes[split], seed=seed, size=self.image_size,
                                                          n_captions=self.captions_per_image, max_words=self.max_len)
        names = [f"{split}-{i:05d}" for i in range(len(pixels))]
        fp = f"scenes-v1|{seed}|{self.sizes[split]}|{self.captions_per_image}"
        return RawSplit(ArrayStore(pixels), names, captions, fingerprint=fp)
