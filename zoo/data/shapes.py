"""The built-in captioning data: generated scenes of simple shapes with COCO-like captions.

No network, no files: every image and its ~5 captions follow from ``data_seed``. A scene is one
of three kinds, each described by several people would describe it (templates of
different phrasing and synonyms, sampled without repeats):

- one object:  colour, shape, size and one of nine positions
               ("a big red circle in the top left corner", "there is a small blue box on the right")
- two objects: colours, shapes and their left-right order ("a green square to the left of a red triangle")
- a count:     two or three alike objects ("three yellow triangles")

So the words depend on what the image shows, and a model that does not look at the
image (``data.blind=true``) can only guess them.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from zoo.data.captioning import SPLITS, CaptioningData, RawSplit
from zoo.data.images import ArrayStore

COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (45, 85, 215),
    "yellow": (225, 195, 30),
    "purple": (135, 60, 175),
}
SHAPES = ("circle", "square", "triangle")
# synonyms with weights: people do not all say the same word
SHAPE_WORDS = {"circle": (("circle", 3), ("disk", 1)), "square": (("square", 3), ("box", 1)),
               "triangle": (("triangle", 1),)}
PLURAL = {"circle": "circles", "disk": "disks", "square": "squares", "box": "boxes", "triangle": "triangles"}
SIZE_WORDS = {"large": (("large", 3), ("big", 2)), "small": (("small", 3), ("little", 1), ("tiny", 1))}
RADIUS = {"large": 6.5, "small": 3.8}  # in pixels of a 32 x 32 image
POSITIONS = {  # (column, row) in a 3 x 3 grid -> ways to say it
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
NUMBERS = {2: "two", 3: "three"}

SINGLE = (  # (template, weight)
    ("a {size} {colour} {shape} {pos}", 5),
    ("there is a {size} {colour} {shape} {pos}", 2),
    ("a {colour} {shape} {pos}", 2),
    ("a {size} {colour} {shape}", 1),
    ("{pos} there is a {size} {colour} {shape}", 1),
    ("a picture of a {size} {colour} {shape} {pos}", 1),
    ("a {size} {shape} that is {colour}", 1),
    ("a {size} {colour} {shape} sitting {pos}", 1),
)
PAIR = (
    ("a {c1} {s1} and a {c2} {s2}", 4),
    ("a {c1} {s1} to the left of a {c2} {s2}", 3),
    ("a {c2} {s2} to the right of a {c1} {s1}", 2),
    ("a {c1} {s1} next to a {c2} {s2}", 2),
    ("two shapes a {c1} {s1} and a {c2} {s2}", 1),
    ("there is a {c1} {s1} on the left and a {c2} {s2} on the right", 1),
)
COUNT = (
    ("{n} {colour} {shapes}", 4),
    ("there are {n} {colour} {shapes}", 3),
    ("{n} small {colour} {shapes}", 2),
    ("a group of {n} {colour} {shapes}", 1),
    ("{n} {shapes} that are {colour}", 1),
)
KINDS = (("single", 0.5), ("pair", 0.3), ("count", 0.2))
SCALE = 4  # draw at 4x and downsample: smooth edges


def _pick(rng: np.random.Generator, options):
    words, weights = zip(*options)
    p = np.asarray(weights, dtype=float)
    return words[rng.choice(len(words), p=p / p.sum())]


def _draw(draw: ImageDraw.ImageDraw, shape: str, colour: str, cx: float, cy: float, r: float) -> None:
    cx, cy, r = cx * SCALE, cy * SCALE, r * SCALE
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=fill)


def _captions(rng: np.random.Generator, templates, fields: dict, n: int) -> list[str]:
    """``n`` different captions; each samples its own template and synonyms."""
    out: list[str] = []
    for _ in range(50 * n):
        words = {k: (_pick(rng, v) if isinstance(v, tuple) else v) for k, v in fields.items()}
        if "shapes" in words:
            words["shapes"] = PLURAL[words["shapes"]]
        text = _pick(rng, templates).format(**words)
        if text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out


def make_scene(rng: np.random.Generator, size: int = 32, n_captions: int = 5) -> tuple[np.ndarray, list[str]]:
    """One image (size, size, 3) uint8 and its captions."""
    bg = tuple(int(v) for v in rng.integers(215, 250, size=3))
    img = Image.new("RGB", (size * SCALE, size * SCALE), bg)
    draw = ImageDraw.Draw(img)
    margin = size * 7 / 32  # grid centres at 7, 16, 25 px of 32: large shapes stay inside
    step = (size - 2 * margin) / 2
    centre = lambda col, row: (margin + col * step + rng.uniform(-1.5, 1.5), margin + row * step + rng.uniform(-1.5, 1.5))
    kind = _pick(rng, KINDS)
    if kind == "single":
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        sz = rng.choice(["large", "small"])
        col, row = int(rng.integers(3)), int(rng.integers(3))
        _draw(draw, shape, colour, *centre(col, row), RADIUS[sz])
        fields = {"size": SIZE_WORDS[sz], "colour": colour, "shape": SHAPE_WORDS[shape], "pos": POSITIONS[(col, row)]}
        captions = _captions(rng, SINGLE, fields, n_captions)
    elif kind == "pair":
        while True:
            (c1, c2), (s1, s2) = rng.choice(list(COLOURS), 2), rng.choice(SHAPES, 2)
            if (c1, s1) != (c2, s2):
                break
        cols = sorted(rng.choice(3, size=2, replace=False))
        rows = rng.integers(3, size=2)
        for c, s, col, row in ((c1, s1, cols[0], rows[0]), (c2, s2, cols[1], rows[1])):
            _draw(draw, s, c, *centre(col, row), RADIUS["small"] + 1.0)
        fields = {"c1": c1, "s1": SHAPE_WORDS[s1], "c2": c2, "s2": SHAPE_WORDS[s2]}
        captions = _captions(rng, PAIR, fields, n_captions)
    else:
        n = int(rng.integers(2, 4))
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        for k in rng.choice(9, size=n, replace=False):
            _draw(draw, shape, colour, *centre(k % 3, k // 3), RADIUS["small"])
        fields = {"n": NUMBERS[n], "colour": colour, "shapes": SHAPE_WORDS[shape]}
        captions = _captions(rng, COUNT, fields, n_captions)
    img = img.resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, size=(size, size, 3))  # sensor noise
    return np.clip(pixels, 0, 255).astype(np.uint8), captions


def make_split(n_images: int, seed: int, size: int = 32, n_captions: int = 5) -> tuple[np.ndarray, list[list[str]]]:
    """``n_images`` scenes: images (N, size, size, 3) uint8 and their captions."""
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for _ in range(n_images):
        img, caps = make_scene(rng, size, n_captions)
        images.append(img)
        captions.append(caps)
    return np.stack(images), captions


class ShapesCaptions(CaptioningData):
    """The built-in data set (``data=shapes``): generated, deterministic from ``data_seed``."""

    def __init__(self, *, train_images: int = 4000, val_images: int = 300, test_images: int = 300,
                 data_seed: int = 0, captions_per_image: int = 5, image_size: int = 32, **kwargs) -> None:
        super().__init__(image_size=image_size, **kwargs)
        self.sizes = {"train": train_images, "val": val_images, "test": test_images}
        self.data_seed = data_seed
        self.captions_per_image = captions_per_image

    def read_split(self, split: str) -> RawSplit:
        offset = SPLITS.index(split)  # disjoint random streams per split
        pixels, captions = make_split(self.sizes[split], seed=self.data_seed * 1000 + offset,
                                      size=self.image_size, n_captions=self.captions_per_image)
        names = [f"{split}-{i:05d}" for i in range(len(pixels))]
        fp = f"shapes-v1|{self.data_seed * 1000 + offset}|{self.sizes[split]}|{self.captions_per_image}"
        return RawSplit(ArrayStore(pixels), names, captions, fingerprint=fp)
