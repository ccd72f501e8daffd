"""The base of every sequence DataModule: splits of examples, vocabularies, bucketed batches.

A data set kind (classification, tagging, parallel text, ...) says how to turn read examples
into encoded ones (:meth:`encode`) and batches (:meth:`collate`); a source of that kind (a
file format, a hub set, a generator) only says how to read one split (:meth:`read_split`).
Vocabularies and label sets come from the training split only.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, ClassVar, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data.bad_input import BadInput
from zoo.data.batching import BucketBatchSampler, StatefulLoader
from zoo.data.spec import DataSpec

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def make_tokenizer(name: str, lowercase: bool) -> Callable[[str], list[str]]:
    """The split of a tokenizer that needs no training (whitespace, words, chars); see
    zoo.data.tokenizers for all of them."""
    from zoo.data.tokenizers import TRAINED, TextTokenizer, check_kind

    if check_kind(name) in TRAINED:
        raise ValueError(f"a {name} tokenizer is trained on the data: take it from the DataSpec")
    return TextTokenizer(name, lowercase=lowercase).split


class _Examples(Dataset):
    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


class SequenceData(pl.LightningDataModule):
    #: what batches carry for the encoder: "tokens", "image" or "frames" (checked against the encoder)
    provides: ClassVar[str] = "tokens"

    def __init__(self, *, batch_size: int = 64, eval_batch_size: int | None = None, num_workers: int = 0,
                 bucket: bool = True, seed: int = 0, on_bad: Literal["error", "skip"] = "error") -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.bucket = bucket
        self.seed = seed
        self.bad = BadInput(on_bad)
        self.data: dict[str, list] = {}
        self._spec: DataSpec | None = None
        self.fixed: DataSpec | None = None  # a trained model's vocabularies/labels (evaluation)

    # -- what kinds and sources implement ---------------------------------------------
    def read_split(self, split: str) -> list:
        """The raw examples of a split, each with a ``where`` (file:line) for messages."""
        raise NotImplementedError

    def encode(self, raw: dict[str, list]) -> DataSpec:
        """Build vocabularies/labels from raw['train'], encode every split into self.data."""
        raise NotImplementedError

    def collate(self, items: list) -> dict[str, Any]:
        raise NotImplementedError

    def source(self, split: str) -> str:
        """Where a split is read from (a file, a folder, a hub set), for messages."""
        return type(self).__name__

    def length(self, item) -> int:
        """The length a batch is bucketed by."""
        return len(item[0])

    # -- shared ----------------------------------------------------------------------------
    def use_spec(self, spec: DataSpec) -> None:
        """Encode with a trained model's vocabularies and labels instead of building new ones."""
        self.fixed = spec

    def eval_dataloader(self, split: str) -> DataLoader:
        return self._loader(split, train=False)

    def setup(self, stage: str | None = None) -> None:
        if len(self.data):
            return
        raw = {s: self.read_split(s) for s in SPLITS}
        self._spec = self.encode(raw)
        self.bad.report()
        for s in SPLITS:
            if s not in self.data or len(self.data[s]) == 0:
                from zoo.errors import DataError

                raise DataError(f"{self.source(s)}: the {s} split has no usable examples")
        log.info("data: %s", ", ".join(f"{s} {len(self.data[s])}" for s in SPLITS))

    @property
    def spec(self) -> DataSpec:
        if self._spec is None:
            raise RuntimeError("call setup() first")
        return self._spec

    def _loader(self, split: str, train: bool) -> DataLoader:
        """Bucketed (or, with ``bucket=False``, plainly shuffled) batches, sharded over ranks."""
        items = self.data[split]
        lengths = [self.length(it) for it in items] if self.bucket else [0] * len(items)
        sampler = BucketBatchSampler(lengths, self.batch_size if train else self.eval_batch_size,
                                     shuffle=train, seed=self.seed)
        return StatefulLoader(_Examples(items), batch_sampler=sampler, num_workers=self.num_workers,
                              collate_fn=self.collate, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def pad_batch(seqs: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Id lists -> (B, T) right-padded with ``value``, and lengths (B,). Padded as Python lists and
    converted once: one tensor call per batch instead of one per row (3x faster for short rows)."""
    lengths = [len(s) for s in seqs]
    T = max(lengths)
    out = torch.tensor([list(s) + [value] * (T - len(s)) for s in seqs], dtype=torch.long)
    return out, torch.tensor(lengths, dtype=torch.long)
