"""Image classification data, for models that read an image as a sequence (rows, glimpses).

Sources: the built-in ``Digits`` (zoo.data.digits: scikit-learn's bundled 8x8 digits) and
``HFImageClassification`` (Hugging Face sets with an image and a label column: MNIST, ...,
or a local ``imagefolder`` with one sub-folder per class).

Batches: images (B, C, H, W) float in [0, 1], labels (B,).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from zoo.data.classification import label_set
from zoo.data.sequences import SPLITS, SequenceData
from zoo.data.spec import DataSpec
from zoo.errors import DataError


class Picture(NamedTuple):
    pixels: np.ndarray  # (H, W, C) uint8
    label: str
    where: str


class ImageClassificationData(SequenceData):
    label_mode = "many_to_one"  # a label per sequence: the head must be many_to_one
    provides = "image"

    def __init__(self, *, labels: list[str] | None = None, **kwargs) -> None:
        super().__init__(bucket=False, **kwargs)  # all images have one size
        self.fixed_labels = labels

    def encode(self, raw: dict[str, list[Picture]]) -> DataSpec:
        labels = label_set(self, lambda: sorted({p.label for p in raw["train"]}, key=_natural))
        index = {label: i for i, label in enumerate(labels)}
        shape = raw["train"][0].pixels.shape if raw["train"] else None
        for split in SPLITS:
            out = []
            for p in raw[split]:
                if p.pixels.shape != shape:
                    raise DataError(f"{p.where}: image of shape {p.pixels.shape}, but training images are {shape}")
                if p.label not in index:
                    self.bad(f"{p.where}: label {p.label!r} is not among the training labels", "unknown labels")
                    continue
                out.append((p.pixels, index[p.label]))
            self.data[split] = out
        h, w, c = shape
        return DataSpec(labels=labels, image_shape=(c, h, w))

    def length(self, item) -> int:
        return 1

    def collate(self, items):
        pix = torch.from_numpy(np.stack([p for p, _ in items])).permute(0, 3, 1, 2).float().div_(255.0)
        return {"images": pix, "labels": torch.tensor([y for _, y in items])}


def _natural(label: str):
    return (0, int(label)) if label.isdigit() else (1, label)
