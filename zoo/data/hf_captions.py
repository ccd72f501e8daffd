"""Image-caption sets through Hugging Face ``datasets``: a hub name (pinned with ``revision``),
or a local folder (``name=imagefolder data_dir=...`` with captions in ``metadata.jsonl``),
parquet or arrow files.

A caption column may hold one string or a list of strings per row. Rows that share an image
(one caption per row, as some hub sets have) are grouped into one image with several
references: by the image's path, or, for images stored without one, by a hash of their bytes
(read once at set-up; a row with a list of captions is one image of its own). Splits missing
from the set are cut from ``train`` with a fixed seed.

Set-up reads the captions and the image paths (the index), never the images: each is decoded
from the memory-mapped Arrow rows when a batch needs it (``with_transform``), so memory does not
grow with the number of images. ``check_images=true`` decodes every image once at set-up, so
that a corrupt one is found then (``on_bad=skip`` leaves it out) rather than when it is reached.
"""
from __future__ import annotations

import hashlib

from torch import Tensor

from zoo.data.captioning import CaptioningData, RawSplit
from zoo.data.hf import hub_splits
from zoo.data.images import read_image, to_tensor
from zoo.errors import DataError


def _source(value: dict | None) -> bytes | str | None:
    """An undecoded image ({"bytes", "path"}) as what the zoo's decoder reads: its bytes, or its path."""
    value = value or {}
    return value.get("bytes") or value.get("path")


class _Decode:
    """``with_transform``: a batch of undecoded images -> the zoo's resized, centre-cropped pixels."""

    def __init__(self, column: str, size: int) -> None:
        self.column, self.size = column, size

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out = []
        for value in batch[self.column]:
            source = _source(value)
            if source is None:
                raise DataError("a row without an image (neither bytes nor a path)")
            out.append(read_image(source, self.size))
        return {"pixels": out}


class HFImageStore:
    """The images of a split, decoded from their Arrow rows on access: (3, S, S) float in [0, 1]."""

    def __init__(self, rows, row_of: list[int], size: int, where: str) -> None:
        self.rows, self.row_of = rows.with_transform(_Decode(rows.column_names[0], size)), row_of
        self.where = where

    def __len__(self) -> int:
        return len(self.row_of)

    def __getitem__(self, i: int) -> Tensor:
        try:
            return to_tensor(self.rows[self.row_of[i]]["pixels"])
        except DataError as e:
            raise DataError(f"{self.where} row {self.row_of[i]}: {e}; with data.check_images=true (and "
                            "data.on_bad=skip) such images are found at set-up instead") from e


class _Sources:
    """Each image's bytes or path, read from its row when asked (the set-up checks of data.check_images)."""

    def __init__(self, rows, row_of: list[int]) -> None:
        self.rows, self.row_of = rows, row_of

    def __len__(self) -> int:
        return len(self.row_of)

    def __getitem__(self, i: int) -> bytes | str | None:
        return _source(self.rows[self.row_of[i]][self.rows.column_names[0]])


class HFCaptions(CaptioningData):
    def __init__(
        self,
        *,
        name: str,
        image_column: str = "image",
        caption_column: str = "caption",
        image_size: int = 224,
        check_images: bool = False,
        **kwargs,
    ) -> None:
        self.hf = hub_splits(name, kwargs, (image_column, caption_column))  # config_name, data_dir, revision, ...
        super().__init__(image_size=image_size, **kwargs)
        self.image_column, self.caption_column, self.check_images = image_column, caption_column, check_images

    def read_split(self, split: str) -> RawSplit:
        import datasets

        rows = self.hf.split(split)
        # the image files as stored (bytes and/or path), never decoded here
        images = rows.select_columns([self.image_column]).cast_column(self.image_column, datasets.Image(decode=False))
        paths = images.flatten()[f"{self.image_column}.path"]  # the paths alone: no image bytes are read
        captions = rows.select_columns([self.caption_column])[self.caption_column]
        one_per_row = not isinstance(rows.features[self.caption_column], datasets.Value)  # a list per row
        groups: dict[object, int] = {}
        row_of, names, caps = [], [], []
        for k, (path, text) in enumerate(zip(paths, captions)):
            if path:
                key = path
            elif one_per_row:
                key = k
            else:  # rows of one caption each, images without a path: the same bytes are the same image
                source = _source(images[k][self.image_column])
                if source is None:
                    raise DataError(f"{self.hf.name} [{split}] row {k}: no image")
                key = hashlib.sha1(source).hexdigest()
            texts = list(text) if isinstance(text, (list, tuple)) else [text]
            if key in groups:
                caps[groups[key]].extend(texts)
                continue
            groups[key] = len(row_of)
            row_of.append(k)
            names.append(str(path or f"{split}[{k}]"))
            caps.append(texts)
        pinned = f"@{self.hf.revision}" if self.hf.revision else ""
        fp = hashlib.sha256((self.hf.name + pinned + str(self.hf.data_dir) + rows._fingerprint).encode()).hexdigest()
        return RawSplit(HFImageStore(images, row_of, self.image_size, f"{self.hf.name} [{split}]"), names, caps,
                        sources=_Sources(images, row_of) if self.check_images else None, fingerprint=f"hf|{fp}")
