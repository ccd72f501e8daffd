"""Image-caption sets through Hugging Face ``datasets``: a hub name, or a local folder
(``name=imagefolder data_dir=...`` with captions in ``metadata.jsonl``).

A caption column may hold one string or a list of strings per row; rows that share an
image (one caption per row, as some hub sets have) are grouped into one image with several
references. Splits missing from the set are cut from ``train`` with a fixed seed.
"""
from __future__ import annotations

import hashlib
import logging

from zoo.data.captioning import SPLITS, CaptioningData, RawSplit
from zoo.data.images import FileStore
from zoo.errors import DataError

log = logging.getLogger(__name__)
LOCAL = ("imagefolder", "parquet", "json", "csv", "arrow", "webdataset")


class HFCaptions(CaptioningData):
    def __init__(
        self,
        *,
        name: str,
        data_dir: str | None = None,
        config_name: str | None = None,
        image_column: str = "image",
        caption_column: str = "caption",
        splits: dict | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        image_size: int = 224,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, **kwargs)
        self.name, self.data_dir, self.config_name = name, data_dir, config_name
        self.image_column, self.caption_column = image_column, caption_column
        self.split_names = {"train": "train", "val": "validation", "test": "test", **(splits or {})}
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self._data = None

    def _load(self):
        if self._data is not None:
            return self._data
        import datasets

        try:
            dd = datasets.load_dataset(self.name, self.config_name, data_dir=self.data_dir)
        except Exception as e:
            where = f"data.name={self.name}" + (f" data.data_dir={self.data_dir}" if self.data_dir else "")
            hint = ("Check the folder: images plus a metadata.jsonl whose lines hold file_name and a caption "
                    "column of one type (a string, or a list of strings)" if self.data_dir or self.name in LOCAL else
                    "Offline, a hub set must already be in the cache; or use local files: "
                    "data.name=imagefolder data.data_dir=<folder with images and metadata.jsonl>")
            raise DataError(f"cannot load the Hugging Face data set {where}: {type(e).__name__}: {e}. {hint}") from e
        for split in dd.values():
            for col in (self.image_column, self.caption_column):
                if col not in split.column_names:
                    raise DataError(f"{self.name}: no column {col!r} (columns: {split.column_names}); "
                                    "set data.image_column / data.caption_column")
        dd = {k: v.cast_column(self.image_column, datasets.Image(decode=False)) for k, v in dd.items()}
        out = {s: dd.get(self.split_names[s]) for s in SPLITS}
        if out["train"] is None:
            raise DataError(f"{self.name}: no split {self.split_names['train']!r} (has {list(dd)}); set data.splits.train")
        rest = out["train"]
        for s, frac in (("test", self.test_fraction), ("val", self.val_fraction)):
            if out[s] is None:  # cut it from train, the same way every time
                parts = rest.train_test_split(test_size=frac, seed=self.split_seed)
                rest, out[s] = parts["train"], parts["test"]
                log.info("data: %s has no %s split; using %.0f%% of train (seed %d)", self.name, s, 100 * frac, self.split_seed)
        out["train"] = rest
        self._data = out
        return out

    def read_split(self, split: str) -> RawSplit:
        rows = self._load()[split]
        groups: dict[str, int] = {}
        sources, names, caps = [], [], []
        for k, row in enumerate(rows):
            img = row[self.image_column] or {}
            key = img.get("path") or hashlib.sha1(img.get("bytes") or b"").hexdigest()
            src = img.get("bytes") or img.get("path")
            if src is None:
                raise DataError(f"{self.name} [{split}] row {k}: no image")
            text = row[self.caption_column]
            texts = list(text) if isinstance(text, (list, tuple)) else [text]
            if key in groups:
                caps[groups[key]].extend(texts)
                continue
            groups[key] = len(sources)
            sources.append(src)
            names.append(str(img.get("path") or f"{split}[{k}]"))
            caps.append(texts)
        fp = hashlib.sha256((self.name + str(self.data_dir) + rows._fingerprint).encode()).hexdigest()
        return RawSplit(FileStore(sources, self.image_size), names, caps, sources=sources, fingerprint=f"hf|{fp}")
