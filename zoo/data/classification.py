"""Sentence classification data (many-to-one): a label per token sequence.

Sources: ``LabelledLines`` (``LABEL SENTENCE`` per line, as SST-2's stsa.binary files),
``DelimitedText`` (CSV/TSV with a text and a label column), ``HFTextClassification``
(Hugging Face sets), and the built-in ``Reviews`` (zoo.data.reviews).

Batches: tokens (B, T) long, lengths (B,), labels (B,).
"""
from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import NamedTuple

import torch

from zoo.data.sequences import SPLITS, SequenceData, make_tokenizer, pad_batch
from zoo.data.spec import DataSpec
from zoo.data.vocab import Vocabulary
from zoo.errors import DataError


class Sentence(NamedTuple):
    tokens: list[str]
    label: str
    where: str


def open_text(path: str | Path):
    """A text file, gzip or not, with a clear error when it is missing."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


class TextClassificationData(SequenceData):
    label_mode = "many_to_one"  # a label per sequence: the head must be many_to_one
    def __init__(self, *, min_count: int = 1, max_len: int | None = None, labels: list[str] | None = None,
                 lowercase: bool = False, tokenizer: str = "whitespace", **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_count, self.max_len, self.fixed_labels = min_count, max_len, labels
        self.tokenize = make_tokenizer(tokenizer, lowercase)

    def encode(self, raw: dict[str, list[Sentence]]) -> DataSpec:
        vocab = self.fixed.vocab if self.fixed else Vocabulary.build((s.tokens for s in raw["train"]), self.min_count)
        labels = label_set(self, lambda: sorted({s.label for s in raw["train"]}))
        index = {label: i for i, label in enumerate(labels)}
        for split in SPLITS:
            out = []
            for s in raw[split]:
                if not s.tokens:
                    self.bad(f"{s.where}: empty sentence", "empty sentences")
                elif s.label not in index:
                    self.bad(f"{s.where}: label {s.label!r} is not among the training labels {labels}", "unknown labels")
                else:
                    ids = vocab.encode(s.tokens[: self.max_len] if self.max_len else s.tokens)
                    out.append((ids, index[s.label]))
            self.data[split] = out
        return DataSpec(vocab=vocab, labels=labels)

    def collate(self, items):
        tokens, lengths = pad_batch([ids for ids, _ in items], Vocabulary.pad_id)
        return {"tokens": tokens, "lengths": lengths, "labels": torch.tensor([y for _, y in items])}


def label_set(data, from_training) -> list[str]:
    """The label set: a trained model's, the configured one, or the training split's."""
    if data.fixed is not None:
        return list(data.fixed.labels)
    return list(data.fixed_labels) if data.fixed_labels else from_training()


def split_paths(root: str | None, **paths: str) -> dict[str, str]:
    """Split files, relative to ``root`` unless absolute."""
    base = Path(root).expanduser() if root else None
    return {k: str(base / v if base is not None and not Path(v).is_absolute() else Path(v).expanduser())
            for k, v in paths.items()}


class LabelledLines(TextClassificationData):
    """``LABEL SENTENCE`` per line (the first whitespace-separated field is the label)."""

    def __init__(self, *, train: str, val: str, test: str, root: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.paths = split_paths(root, train=train, val=val, test=test)

    def read_split(self, split: str) -> list[Sentence]:
        out = []
        with open_text(self.paths[split]) as f:
            for n, line in enumerate(f, 1):
                where = f"{self.paths[split]}:{n}"
                label, _, text = line.strip().partition(" ")
                if not label:
                    self.bad(f"{where}: empty line", "empty lines")
                    continue
                out.append(Sentence(self.tokenize(text), label, where))
        return out


class DelimitedText(TextClassificationData):
    """CSV or TSV files with a header; ``text_column`` and ``label_column`` name the columns."""

    def __init__(self, *, train: str, val: str, test: str, root: str | None = None, text_column: str = "text",
                 label_column: str = "label", delimiter: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.paths = split_paths(root, train=train, val=val, test=test)
        self.text_column, self.label_column, self.delimiter = text_column, label_column, delimiter

    def read_split(self, split: str) -> list[Sentence]:
        path = str(self.paths[split])
        delimiter = self.delimiter or ("\t" if path.endswith((".tsv", ".tsv.gz")) else ",")
        out = []
        with open_text(path) as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            missing = {self.text_column, self.label_column} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: no column {sorted(missing)} (columns: {reader.fieldnames}); "
                                "set data.text_column / data.label_column")
            for n, row in enumerate(reader, 2):
                text, label = row.get(self.text_column), row.get(self.label_column)
                if text is None or label is None:
                    self.bad(f"{path}:{n}: malformed row (expected {len(reader.fieldnames)} fields)", "malformed rows")
                    continue
                out.append(Sentence(self.tokenize(text), label.strip(), f"{path}:{n}"))
        return out


class HFTextClassification(TextClassificationData):
    """A Hugging Face classification set (a hub name, or a local builder with data_dir/data_files)."""

    def __init__(self, *, name: str, config_name: str | None = None, data_dir: str | None = None,
                 data_files: dict | None = None, text_column: str = "text", label_column: str = "label",
                 splits: dict | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 split_seed: int = 0, tokenizer: str = "words", **kwargs) -> None:
        super().__init__(tokenizer=tokenizer, **kwargs)
        from zoo.data.hf import HFSplits

        self.hf = HFSplits(name, config_name=config_name, data_dir=data_dir, data_files=data_files, splits=splits,
                           val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed,
                           columns=(text_column, label_column))
        self.text_column, self.label_column = text_column, label_column

    def read_split(self, split: str) -> list[Sentence]:
        rows = self.hf.split(split)
        names = self.hf.label_names(self.label_column)
        return [Sentence(self.tokenize(row[self.text_column] or ""),
                         names[row[self.label_column]] if names else str(row[self.label_column]),
                         f"{self.hf.name} [{split}] row {k}") for k, row in enumerate(rows)]
