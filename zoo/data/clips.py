"""The built-in video data: generated clips of a shape moving, with a label per frame.

A frame's label is how the shape moved since the previous frame: ``left``, ``right``, ``up``,
``down``, or ``still``; the first frame is ``start``. The direction changes during a clip,
and any single frame looks like any other: only the sequence tells the motion, so a
per-frame classifier without recurrence cannot solve it.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from zoo.data.frames import Clip, FramesData
from zoo.data.sequences import SPLITS

LABELS = ("start", "left", "right", "up", "down", "still")
MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
COLOURS = ((215, 40, 40), (40, 160, 60), (45, 85, 215), (225, 195, 30), (135, 60, 175))
SCALE = 4


def make_clip(rng: np.random.Generator, frames: int = 8, size: int = 24, step: float = 2.5) -> tuple[np.ndarray, list[str]]:
    """(frames, size, size, 3) uint8 and the label of each frame."""
    r = rng.uniform(2.5, 4.0)
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    shape = int(rng.integers(3))
    bg = tuple(int(v) for v in rng.integers(215, 250, size=3))
    x, y = rng.uniform(r + 1, size - r - 1, size=2)
    move = str(rng.choice(list(MOVES)))
    images, labels = [], []
    for t in range(frames):
        if t > 0:
            if rng.random() < 0.3:  # change direction now and then
                move = str(rng.choice(list(MOVES)))
            dx, dy = MOVES[move]
            nx, ny = x + dx * step, y + dy * step
            if not (r <= nx <= size - r and r <= ny <= size - r):  # would leave the frame: stay
                move, nx, ny = "still", x, y
            x, y = nx, ny
        img = Image.new("RGB", (size * SCALE, size * SCALE), bg)
        d = ImageDraw.Draw(img)
        box = ((x - r) * SCALE, (y - r) * SCALE, (x + r) * SCALE, (y + r) * SCALE)
        if shape == 0:
            d.ellipse(box, fill=colour)
        elif shape == 1:
            d.rectangle(box, fill=colour)
        else:
            d.polygon([(x * SCALE, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)
        img = img.resize((size, size), Image.Resampling.BOX)
        images.append(np.asarray(img))
        labels.append("start" if t == 0 else move)
    return np.stack(images), labels


def make_clips(n: int, seed: int, frames: int = 8, size: int = 24) -> tuple[np.ndarray, list[list[str]]]:
    rng = np.random.default_rng(seed)
    clips, labels = zip(*(make_clip(rng, frames, size) for _ in range(n)))
    return np.stack(clips), list(labels)


class Clips(FramesData):
    """The built-in video set (``data=clips``)."""

    def __init__(self, *, train_size: int = 2000, val_size: int = 300, test_size: int = 300, frames: int = 8,
                 data_seed: int = 0, image_size: int = 24, **kwargs) -> None:
        super().__init__(image_size=image_size, labels=list(LABELS), **kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.frames, self.data_seed = frames, data_seed

    def read_split(self, split: str) -> list[Clip]:
        clips, labels = make_clips(self.sizes[split], self.data_seed * 1000 + SPLITS.index(split),
                                   self.frames, self.image_size)
        return [Clip(list(c), y, f"clips[{split}] #{i}") for i, (c, y) in enumerate(zip(clips, labels))]
