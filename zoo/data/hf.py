"""Hugging Face ``datasets`` access shared by the hub-backed sources: load once (a hub set at
``revision`` when pinned), name clear errors, and cut missing val/test splits from train with a
fixed seed.

With ``streaming=True`` the splits are ``IterableDataset``s, read as they are iterated. A split
the set lacks is then cut from train by a hash of each row's content (and the seed), so that
membership does not depend on the order rows arrive in, on DataLoader workers or on DDP ranks,
and the same row is always in the same split; the fractions hold on average. Image columns of
a stream come undecoded (``{"bytes", "path"}``): the hash reads the bytes, and only the rows a
split keeps are decoded, by its user (``datasets.Image().decode_example``).
"""
from __future__ import annotations

import hashlib
import logging

from zoo.errors import DataError

log = logging.getLogger(__name__)
LOCAL_BUILDERS = ("imagefolder", "parquet", "json", "csv", "text", "arrow", "webdataset")
SPLITS = ("train", "val", "test")
# where a hub-backed data module's set comes from: the same keys in every conf/data/hf_*.yaml
HUB_OPTIONS = ("config_name", "data_dir", "data_files", "revision", "splits", "val_fraction", "test_fraction",
               "split_seed", "streaming")


def hub_splits(name: str, options: dict, columns: tuple[str, ...], **defaults) -> "HFSplits":
    """The :class:`HFSplits` of a hub-backed data module, from the hub options popped out of its
    constructor's keywords (``options``, changed in place: the rest go to its base class).
    ``defaults`` are the module's own defaults for options its config does not set."""
    picked = {k: options.pop(k) for k in HUB_OPTIONS if k in options}
    return HFSplits(name, columns=columns, **{**defaults, **picked})


class HFSplits:
    def __init__(self, name: str, *, config_name: str | None = None, data_dir: str | None = None,
                 data_files=None, splits: dict | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 split_seed: int = 0, columns: tuple[str, ...] = (), revision: str | None = None,
                 streaming: bool = False) -> None:
        self.name, self.config_name, self.data_dir, self.data_files = name, config_name, data_dir, data_files
        self.revision, self.streaming = revision, streaming
        self.split_names = {"train": "train", "val": "validation", "test": "test", **(splits or {})}
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.columns = columns
        self._splits = None
        self._features = None

    def load_dict(self):
        """The data set's own splits, as loaded (a DatasetDict), after the column checks."""
        import datasets

        try:
            files = dict(self.data_files) if self.data_files else None
            dd = datasets.load_dataset(self.name, self.config_name, data_dir=self.data_dir, data_files=files,
                                       revision=self.revision, streaming=self.streaming)
        except Exception as e:
            where = (f"data.name={self.name}" + (f" data.data_dir={self.data_dir}" if self.data_dir else "")
                     + (f" data.revision={self.revision}" if self.revision else ""))
            local = self.data_dir or self.data_files or self.name in LOCAL_BUILDERS
            hint = ("Check the files and their format" if local else
                    "Offline, a hub set must already be in the cache (HF_HOME); or point data.name at a "
                    "local builder (parquet, json, csv, imagefolder) with data.data_dir or data.data_files")
            raise DataError(f"cannot load the Hugging Face data set {where}: {type(e).__name__}: {e}. {hint}") from e
        if self.streaming:
            dd = {split: undecoded(part) for split, part in dd.items()}
        for part in dd.values():
            names = part.column_names
            if names is None:  # a stream whose features are not known before it is read: look at a row
                names = list(next(iter(part), {}).keys())
            missing = [c for c in self.columns if c not in names]
            if missing:
                raise DataError(f"{self.name}: no column {missing} (columns: {names}); "
                                "name the right ones in the data config (e.g. data.text_column=...)")
        return dd

    def _load(self):
        dd = self.load_dict()
        out = {s: dd.get(self.split_names[s]) for s in SPLITS}
        if out["train"] is None:
            raise DataError(f"{self.name}: no split {self.split_names['train']!r} (it has {list(dd)}); set data.splits.train")
        rest, low = out["train"], 0.0
        for s, frac in (("test", self.test_fraction), ("val", self.val_fraction)):
            if out[s] is None:  # cut it from train, the same way every time
                if self.streaming:
                    out[s] = rest.filter(RowHash(self.split_seed, low, low + frac))
                    low += frac
                else:
                    parts = rest.train_test_split(test_size=frac, seed=self.split_seed)
                    rest, out[s] = parts["train"], parts["test"]
                log.info("data: %s has no %s split; using %.0f%% of train (seed %d)", self.name, s, 100 * frac,
                         self.split_seed)
        out["train"] = rest.filter(RowHash(self.split_seed, low, 1.0)) if self.streaming and low else rest
        self._features = rest.features
        return out

    def split(self, split: str):
        if self._splits is None:
            self._splits = self._load()
        return self._splits[split]

    def label_names(self, column: str) -> list[str] | None:
        """The names of a ClassLabel column (or of the ClassLabel inside a sequence column), else None."""
        self.split("train")
        feature = self._features[column]
        feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) -> ClassLabel
        return list(feature.names) if hasattr(feature, "names") else None


def undecoded(stream):
    """A stream whose image columns come as ``{"bytes", "path"}`` (decoded by whoever uses them)."""
    import datasets

    for column, feature in (stream.features or {}).items():
        if isinstance(feature, datasets.Image) and feature.decode:
            stream = stream.cast_column(column, datasets.Image(decode=False))
    return stream


class RowHash:
    """Whether a row's content hashes into [low, high) of [0, 1): a split cut from a stream."""

    def __init__(self, seed: int, low: float, high: float) -> None:
        self.seed, self.low, self.high = seed, low, high

    def __call__(self, row: dict) -> bool:
        h = hashlib.blake2b(str(self.seed).encode(), digest_size=8)
        for column in sorted(row):
            value = row[column]
            if isinstance(value, dict) and ("bytes" in value or "path" in value):  # an undecoded image
                value = value.get("bytes") or value.get("path")
            h.update(column.encode())
            h.update(value if isinstance(value, bytes) else repr(value).encode())
        return self.low <= int.from_bytes(h.digest(), "big") / 2.0 ** 64 < self.high
