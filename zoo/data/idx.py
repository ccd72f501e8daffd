"""Image classification from the IDX files of the MNIST family (MNIST, Fashion-MNIST, KMNIST):
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` in one folder, each gzipped (``.gz``) or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian 32-bit size per dimension, then the values, big-endian, in C order.

Splits: test is the ``t10k`` files; validation is ``val_size`` images cut from the training
files with ``split_seed``; ``train_size`` / ``test_size`` keep at most that many (tiny runs).

Batches: images (B, 1, H, W) float in [0, 1], labels (B,).
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from zoo.data.image_classification import ImageClassificationData, Picture
from zoo.errors import DataError

#: IDX type codes -> big-endian numpy types
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: the four files of a set, by what they hold
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped when its name ends in .gz) as an array of its own shape and type."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a broken gzip stream: BadGzipFile, EOFError, zlib.error
        raise DataError(f"{path}: cannot read the file ({type(e).__name__}: {e})") from e
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, not even the 4-byte IDX magic number")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\0\0" or code not in IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file: its magic number is 0x{data[:4].hex()}; an IDX file starts with "
                        f"two zero bytes, a type code ({', '.join(f'0x{c:02x}' for c in IDX_TYPES)}) and the number "
                        "of dimensions (MNIST images: 0x00000803, labels: 0x00000801)")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{path}: truncated: the header of {ndim} dimensions needs {start} bytes, the file has "
                        f"{len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:start])
    dtype = np.dtype(IDX_TYPES[code])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - start != need:
        problem = "truncated" if len(data) - start < need else "longer than its header says"
        raise DataError(f"{path}: {problem}: the header says {' x '.join(map(str, shape))} values of {dtype.name} "
                        f"({need} bytes), but {len(data) - start} bytes follow it")
    return np.frombuffer(data, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def find_file(root: Path, name: str) -> Path:
    """``name`` or ``name.gz`` in ``root`` (also with a dot before ``idx``, as some copies name them)."""
    stems = [name, name.replace("-idx", ".idx")]
    candidates = [root / (stem + ext) for stem in stems for ext in ("", ".gz")]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"data.root={root}: no {name} file; looked for {', '.join(p.name for p in candidates)}. data=idx "
                    f"reads the MNIST-family files {', '.join(FILES.values())} (each raw or .gz) from one folder")


def read_pair(images_at: Path, labels_at: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (N, H, W, C) uint8 and labels (N,) int64 of an images file and its labels file, checked."""
    images, labels = read_idx(images_at), read_idx(labels_at)
    channels = images.shape[3] if images.ndim == 4 else 1
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or channels not in (1, 3):
        raise DataError(f"{images_at}: expected images as unsigned bytes (N, H, W) or (N, H, W, 1|3), got "
                        f"{images.dtype.name} of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{labels_at}: expected one integer label per image, got {labels.dtype.name} of "
                        f"shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_at} holds {len(images)} images but {labels_at} holds {len(labels)} labels: "
                        "they must be the images and labels of one set")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{labels_at}: negative label {int(labels.min())}")
    return (images[..., None] if images.ndim == 3 else images), labels.astype(np.int64)


def find_files(root: Path) -> dict[str, Path]:
    """The four files of an MNIST-family folder, by what they hold (clear errors for what is missing)."""
    if not root.is_dir():
        raise DataError(f"data.root={root}: no such folder (it should hold {', '.join(FILES.values())}, "
                        "each raw or .gz)")
    return {key: find_file(root, name) for key, name in FILES.items()}


class IDXImages(ImageClassificationData):
    def __init__(self, *, root: str, val_size: int = 5000, train_size: int | None = None,
                 test_size: int | None = None, split_seed: int = 0, labels: list[str] | None = None,
                 **kwargs) -> None:
        super().__init__(labels=labels, **kwargs)
        self.root = Path(root).expanduser()
        self.val_size, self.train_size, self.test_size, self.split_seed = val_size, train_size, test_size, split_seed
        self.class_names = list(labels) if labels else None
        self.paths: dict[str, Path] = {}
        self._splits: dict[str, list[Picture]] = {}

    def source(self, split: str) -> str:
        return str(self.paths.get("test_images" if split == "test" else "train_images", self.root))

    def _pair(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        return read_pair(self.paths[f"{kind}_images"], self.paths[f"{kind}_labels"])

    def _load(self) -> None:
        self.paths = find_files(self.root)
        train_images, train_labels = self._pair("train")
        test_images, test_labels = self._pair("test")
        n = len(train_images)
        if n < 2:
            raise DataError(f"{self.paths['train_images']}: {n} images; data=idx needs at least two (one is cut "
                            "for validation)")
        if not 1 <= self.val_size < n:
            raise DataError(f"data.val_size={self.val_size}: the validation images are cut from the {n} training "
                            f"images of {self.paths['train_images']}; set data.val_size between 1 and {n - 1}")
        if self.class_names is None and self.fixed is None:  # the label values 0..K-1 of the training files
            self.fixed_labels = [str(k) for k in range(int(train_labels.max()) + 1)]
        order = np.random.default_rng(self.split_seed).permutation(n)
        cut = {"val": order[:self.val_size], "train": order[self.val_size:][:self.train_size],
               "test": np.arange(len(test_images))[:self.test_size]}
        for split, index in cut.items():
            kind = "test" if split == "test" else "train"
            images, labels = (test_images, test_labels) if kind == "test" else (train_images, train_labels)
            where, labels_at = self.paths[f"{kind}_images"], self.paths[f"{kind}_labels"]
            self._splits[split] = [Picture(images[i], self._name(int(labels[i]), labels_at), f"{where} #{i}")
                                   for i in index]

    def _name(self, label: int, where: Path) -> str:
        if self.class_names is None:
            return str(label)
        if label >= len(self.class_names):
            raise DataError(f"{where}: label {label}, but data.labels names {len(self.class_names)} classes "
                            f"({self.class_names}); name one class per label value 0..K-1")
        return self.class_names[label]

    def read_split(self, split: str) -> list[Picture]:
        if not self._splits:
            self._load()
        return self._splits[split]
