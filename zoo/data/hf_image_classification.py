"""Image classification from Hugging Face ``datasets``: an image and a label column (MNIST, ...
from the hub, or a local ``imagefolder`` with one sub-folder per class, parquet, arrow).

Images are decoded when a batch asks for them, never all at set-up: set-up reads the label
column (the index) and one image (its shape). Two ways to the rows:

- a ``datasets.Dataset`` (memory-mapped Arrow on disk) whose images a ``with_transform``
  decodes row by row: shuffled batches, every epoch, resumable mid-epoch;
- ``streaming=true``: an ``IterableDataset`` for sets larger than the disk or not yet
  downloaded; no length, shuffled through a buffer of ``shuffle_buffer`` rows (reseeded each
  epoch), sharded over DataLoader workers and DDP ranks. The label names must be known before
  the stream is read (a ClassLabel column, or ``data.labels``); a split the set lacks is cut
  from train by a hash of each row (see zoo.data.hf).

Batches: images (B, C, H, W) float in [0, 1], labels (B,).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from itertools import islice

import numpy as np
from torch.utils.data import DataLoader, IterableDataset

from zoo.data.batching import dist_rank_world
from zoo.data.classification import label_set
from zoo.data.hf import hub_splits
from zoo.data.image_classification import ImageClassificationData, _natural
from zoo.data.sequences import SPLITS
from zoo.data.spec import DataSpec
from zoo.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class ToPixels:
    """A PIL image -> (H, W, C) uint8: grey or RGB, resized to ``size`` x ``size`` when given.
    Also a batch transform for ``Dataset.with_transform``: {column: [images]} -> {"pixels": [...]}."""

    def __init__(self, column: str, grayscale: bool, size: int | None) -> None:
        self.column, self.grayscale, self.size = column, grayscale, size

    def one(self, image) -> np.ndarray:
        image = image.convert("L" if self.grayscale else "RGB")
        if self.size:
            image = image.resize((self.size, self.size))
        pixels = np.asarray(image)
        return pixels[:, :, None] if pixels.ndim == 2 else pixels

    def __call__(self, batch: dict[str, list]) -> dict[str, list[np.ndarray]]:
        return {"pixels": [self.one(image) for image in batch[self.column]]}


def _bad_image(where: str, e: Exception, streamed: bool = False) -> DataError:
    hint = "" if streamed else ("; or set data.check_images=true data.on_bad=skip to find such images at set-up "
                                "and leave them out")
    return DataError(f"{where}: cannot decode the image ({type(e).__name__}: {e}). Fix or remove it{hint}")


class LazyImages:
    """A split of a ``datasets.Dataset`` as (pixels, label index) pairs, decoded on access."""

    def __init__(self, rows, labels: np.ndarray, where: str, shape: tuple[int, ...] | None = None) -> None:
        self.rows, self.labels, self.where, self.shape = rows, labels, where, shape

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int | slice):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        try:
            pixels = self.rows[int(i)]["pixels"]
        except Exception as e:  # PIL raises many kinds for a bad image
            raise _bad_image(f"{self.where} row {i}", e) from e
        if self.shape is not None and pixels.shape != self.shape:
            raise DataError(f"{self.where} row {i}: image of shape {pixels.shape}, but the training images are "
                            f"{self.shape}; set data.image_size=N to resize every image to N x N")
        return pixels, int(self.labels[i])

class _LabelOf:
    """A label value as read -> its index in the label set; unknown: bad input (None when skipped)."""

    def __init__(self, column: str, names: list[str] | None, index: dict[str, int], bad) -> None:
        self.column, self.names, self.index, self.bad = column, names, index, bad

    def text(self, value) -> str | None:
        if self.names is None:
            return str(value)
        return self.names[value] if 0 <= value < len(self.names) else None  # ClassLabel: -1 is "no label"

    def __call__(self, value, where: str) -> int | None:
        text = self.text(value)
        if text not in self.index:
            self.bad(f"{where}: label {value!r} is not among the training labels", "unknown labels")
            return None
        return self.index[text]



class StreamedImages(IterableDataset):
    """A streamed split as (pixels, label index) pairs, decoded as they arrive (images come undecoded)."""

    def __init__(self, rows, to_pixels: ToPixels, label_of: _LabelOf, where: str,
                 shape: tuple[int, ...] | None) -> None:
        super().__init__()
        self.rows, self.to_pixels, self.label_of, self.where, self.shape = rows, to_pixels, label_of, where, shape

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        import datasets

        decoder = datasets.Image()
        for k, row in enumerate(self.rows):
            where = f"{self.where} streamed row {k}"
            label = self.label_of(row[self.label_of.column], where)
            if label is None:
                continue
            try:
                pixels = self.to_pixels.one(decoder.decode_example(row[self.to_pixels.column]))
            except Exception as e:  # PIL raises many kinds for a bad image
                raise _bad_image(where, e, streamed=True) from e
            if self.shape is not None and pixels.shape != self.shape:
                raise DataError(f"{where}: image of shape {pixels.shape}, but the training images are {self.shape}; "
                                "set data.image_size=N to resize every image to N x N")
            yield pixels, label

    def __getitem__(self, part: slice) -> list[tuple[np.ndarray, int]]:
        """The first ``n`` examples (``[:n]``: the sample pictures some tasks draw)."""
        if not isinstance(part, slice) or part.start not in (None, 0) or part.step not in (None, 1):
            raise TypeError("a streamed split has no random access: only [:n] (its first n examples)")
        with closing(iter(self)) as rows:  # closed at once: the reader under it lets go of its buffers
            return list(islice(rows, part.stop))



class _EpochLoader(DataLoader):
    """Reseeds the stream's shuffle buffer at each epoch (``IterableDataset.set_epoch``): the
    trainer's epoch, or without a trainer the number of epochs this loader has begun."""

    def __init__(self, dataset: StreamedImages, epoch_of: Callable[[], int | None], **kwargs) -> None:
        super().__init__(dataset, **kwargs)
        self.epoch_of, self.begun = epoch_of, 0

    def __iter__(self):
        epoch = self.epoch_of()
        self.dataset.rows.set_epoch(self.begun if epoch is None else epoch)
        self.begun += 1
        return super().__iter__()


class HFImageClassification(ImageClassificationData):
    def __init__(self, *, name: str, streaming: bool = False, shuffle_buffer: int = 1000, image_column: str = "image",
                 label_column: str = "label", grayscale: bool = True, image_size: int | None = None,
                 check_images: bool = False, **kwargs) -> None:
        # config_name, data_dir, data_files, revision, splits, val/test fractions, split_seed
        self.hf = hub_splits(name, kwargs, (image_column, label_column), streaming=streaming)
        super().__init__(**kwargs)
        self.image_column, self.label_column = image_column, label_column
        self.to_pixels = ToPixels(image_column, grayscale, image_size)
        self.streaming, self.shuffle_buffer, self.check_images = streaming, shuffle_buffer, check_images
        if streaming and check_images:
            raise ConfigError("data.check_images=true reads every image at set-up, which a stream cannot: "
                            "set data.check_images=false with data.streaming=true")

    def source(self, split: str) -> str:
        return f"{self.hf.name} [{split}]"

    def setup(self, stage: str | None = None) -> None:
        if self.data:
            return
        names = self.hf.label_names(self.label_column)
        if self.streaming:
            self._spec = self._setup_stream(names)
        else:
            self._spec = self._setup_rows(names)
        self.bad.report()

    # -- a Dataset on disk: the label column is read, the images when a batch needs them -------------
    def _setup_rows(self, names: list[str] | None) -> DataSpec:
        values = {s: self.hf.split(s).select_columns([self.label_column]).with_format("numpy")[self.label_column]
                  for s in SPLITS}
        text = _LabelOf(self.label_column, names, {}, self.bad).text
        labels = label_set(self, lambda: sorted({t for t in map(text, values["train"]) if t is not None},
                                                key=_natural))
        label_of = _LabelOf(self.label_column, names, {label: i for i, label in enumerate(labels)}, self.bad)
        shape = None
        for split in SPLITS:
            rows = self.hf.split(split)
            index = [label_of(v, f"{self.source(split)} row {k}") for k, v in enumerate(values[split])]
            keep = [k for k, i in enumerate(index) if i is not None]
            if len(keep) < len(index):
                rows = rows.select(keep)
            view = rows.select_columns([self.image_column]).with_transform(self.to_pixels)
            split_data = LazyImages(view, np.asarray([index[k] for k in keep], dtype=np.int64), self.source(split))
            if self.check_images:
                split_data = self._checked(split_data)
            if split == "train" and len(split_data):
                shape = split_data[0][0].shape  # one image decoded: the shape every image must have
            split_data.shape = shape
            self.data[split] = split_data
            if not len(split_data):
                raise DataError(f"{self.source(split)}: the {split} split has no usable examples")
        log.info("data: %s (images decoded as batches need them)",
                 ", ".join(f"{s} {len(self.data[s])}" for s in SPLITS))
        h, w, c = shape
        return DataSpec(labels=labels, image_shape=(c, h, w))

    def _checked(self, split_data: LazyImages) -> LazyImages:
        """Every image decoded once (and dropped again): unreadable ones are bad input."""
        keep = []
        for k in range(len(split_data)):
            try:
                split_data.rows[k]
                keep.append(k)
            except Exception as e:  # PIL raises many kinds for a bad image
                self.bad(f"{split_data.where} row {k}: cannot decode the image ({type(e).__name__}: {e})",
                         "unreadable images")
        if len(keep) == len(split_data):
            return split_data
        rows = split_data.rows
        return LazyImages(rows.select(keep), split_data.labels[keep], split_data.where)

    # -- a stream: nothing is read at set-up but the first training row ----------------------------------
    def _setup_stream(self, names: list[str] | None) -> DataSpec:
        def unknown() -> list[str]:
            raise DataError(f"{self.hf.name}: with data.streaming=true the label names must be known before the "
                            f"stream is read, but column {self.label_column!r} is not a ClassLabel: name them with "
                            "data.labels=[...] (in the order of the label values when they are numbers)")

        labels = label_set(self, lambda: sorted(names, key=_natural) if names else unknown())
        self._label_of = _LabelOf(self.label_column, names, {label: i for i, label in enumerate(labels)}, self.bad)
        first = StreamedImages(self.hf.split("train"), self.to_pixels, self._label_of, self.source("train"), None)
        head = first[:1]
        if not head:
            raise DataError(f"{self.source('train')}: the stream has no usable examples")
        self._shape = head[0][0].shape
        for split in SPLITS:
            self.data[split] = self._stream(split)
        log.info("data: %s streamed (images decoded as they arrive)", self.hf.name)
        h, w, c = self._shape
        return DataSpec(labels=labels, image_shape=(c, h, w))

    def _stream(self, split: str, rows=None) -> StreamedImages:
        rows = self.hf.split(split) if rows is None else rows
        rank, world = dist_rank_world()
        if world > 1:
            from datasets.distributed import split_dataset_by_node

            rows = split_dataset_by_node(rows, rank=rank, world_size=world)
        return StreamedImages(rows, self.to_pixels, self._label_of, self.source(split), self._shape)

    def _loader(self, split: str, train: bool) -> DataLoader:
        if not self.streaming:
            return super()._loader(split, train)
        if train:
            rows = self.hf.split("train").shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            epoch_of = lambda: self.trainer.current_epoch if self.trainer is not None else None
            return _EpochLoader(self._stream("train", rows), epoch_of, batch_size=self.batch_size,
                                num_workers=self.num_workers, collate_fn=self.collate)
        return DataLoader(self._stream(split), batch_size=self.eval_batch_size, num_workers=self.num_workers,
                          collate_fn=self.collate)
