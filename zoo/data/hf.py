"""Hugging Face ``datasets`` access shared by the hub-backed sources: load once, name clear
errors, and cut missing val/test splits from train with a fixed seed."""
from __future__ import annotations

import logging

from zoo.errors import DataError

log = logging.getLogger(__name__)
LOCAL_BUILDERS = ("imagefolder", "parquet", "json", "csv", "text", "arrow", "webdataset")
SPLITS = ("train", "val", "test")


class HFSplits:
    def __init__(self, name: str, *, config_name: str | None = None, data_dir: str | None = None,
                 data_files=None, splits: dict | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 split_seed: int = 0, columns: tuple[str, ...] = ()) -> None:
        self.name, self.config_name, self.data_dir, self.data_files = name, config_name, data_dir, data_files
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
            dd = datasets.load_dataset(self.name, self.config_name, data_dir=self.data_dir, data_files=files)
        except Exception as e:
            where = f"data.name={self.name}" + (f" data.data_dir={self.data_dir}" if self.data_dir else "")
            local = self.data_dir or self.data_files or self.name in LOCAL_BUILDERS
            hint = ("Check the files and their format" if local else
                    "Offline, a hub set must already be in the cache (HF_HOME); or point data.name at a "
                    "local builder (parquet, json, csv, imagefolder) with data.data_dir or data.data_files")
            raise DataError(f"cannot load the Hugging Face data set {where}: {type(e).__name__}: {e}. {hint}") from e
        for part in dd.values():
            missing = [c for c in self.columns if c not in part.column_names]
            if missing:
                raise DataError(f"{self.name}: no column {missing} (columns: {part.column_names}); "
                                "name the right ones in the data config (e.g. data.text_column=...)")
        return dd

    def _load(self):
        dd = self.load_dict()
        out = {s: dd.get(self.split_names[s]) for s in SPLITS}
        if out["train"] is None:
            raise DataError(f"{self.name}: no split {self.split_names['train']!r} (it has {list(dd)}); set data.splits.train")
        rest = out["train"]
        for s, frac in (("test", self.test_fraction), ("val", self.val_fraction)):
            if out[s] is None:  # cut it from train, the same way every time
                parts = rest.train_test_split(test_size=frac, seed=self.split_seed)
                rest, out[s] = parts["train"], parts["test"]
                log.info("data: %s has no %s split; using %.0f%% of train (seed %d)", self.name, s, 100 * frac,
                         self.split_seed)
        out["train"] = rest
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
