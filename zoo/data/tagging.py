"""Token tagging data (synced many-to-many): a tag per token.

Sources: ``CoNLLU`` (Universal Dependencies .conllu; UPOS or XPOS by ``column``), ``CoNLL``
(``TOKEN TAG`` per line, a blank line between sentences), ``HFTokenClassification``
(Hugging Face sets with token and tag sequences), and the built-in ``GrammarTags``
(zoo.data.tag_grammar).

Batches: tokens (B, T), lengths (B,), labels (B, T) with -100 on padding (ignored by the loss
and the metrics).
"""
from __future__ import annotations

import re
from typing import NamedTuple

import torch

from zoo.data.classification import label_set, split_paths, text_lines
from zoo.data.sequences import SPLITS, SequenceData, pad_batch
from zoo.data.spec import DataSpec
from zoo.data.vocab import Vocabulary
from zoo.errors import DataError

IGNORE = -100  # label of padding


class Tagged(NamedTuple):
    tokens: list[str]
    tags: list[str]
    where: str


class TaggingData(SequenceData):
    label_mode = "synced"  # a label per step: the head must be synced
    def __init__(self, *, min_count: int = 1, lowercase: bool = False, labels: list[str] | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_count, self.lowercase, self.fixed_labels = min_count, lowercase, labels

    def encode(self, raw: dict[str, list[Tagged]]) -> DataSpec:
        norm = (lambda t: t.lower()) if self.lowercase else (lambda t: t)
        vocab = self.fixed.vocab if self.fixed else Vocabulary.build(
            ([norm(t) for t in s.tokens] for s in raw["train"]), self.min_count)
        labels = label_set(self, lambda: sorted({t for s in raw["train"] for t in s.tags}))
        index = {label: i for i, label in enumerate(labels)}
        for split in SPLITS:
            out = []
            for s in raw[split]:
                unknown = [t for t in s.tags if t not in index]
                if not s.tokens:
                    self.bad(f"{s.where}: empty sentence", "empty sentences")
                elif unknown:
                    self.bad(f"{s.where}: tag {unknown[0]!r} is not among the training tags {labels}", "unknown tags")
                else:
                    out.append((vocab.encode([norm(t) for t in s.tokens]), [index[t] for t in s.tags]))
            self.data[split] = out
        return DataSpec(vocab=vocab, labels=labels)

    def collate(self, items):
        tokens, lengths = pad_batch([ids for ids, _ in items], Vocabulary.pad_id)
        labels, _ = pad_batch([tags for _, tags in items], IGNORE)
        return {"tokens": tokens, "lengths": lengths, "labels": labels}


class CoNLLU(TaggingData):
    """Universal Dependencies CoNLL-U: 10 tab-separated columns; ``column=upos`` (4th) or ``xpos`` (5th).
    Multi-word token ranges (``1-2``) and empty nodes (``1.1``) are not words and are skipped.
    A row whose ID is not a word index, or whose word or tag is empty, is malformed."""

    COLUMNS = {"upos": 3, "xpos": 4}
    ID = re.compile(r"[0-9]+(?:-[0-9]+|\.[0-9]+)?")  # a word, a range (1-2), an empty node (1.1)

    def __init__(self, *, train: str, val: str, test: str, root: str | None = None, column: str = "upos",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if column not in self.COLUMNS:
            raise ValueError(f"data.column must be upos or xpos, got {column!r}")
        self.paths = split_paths(root, train=train, val=val, test=test)
        self.column = self.COLUMNS[column]

    def source(self, split: str) -> str:
        return self.paths[split]

    def read_split(self, split: str) -> list[Tagged]:
        path, out = self.paths[split], []
        tokens, tags, start = [], [], 1
        for n, line in text_lines(path, self.bad):
            if line is None:  # not UTF-8 (counted): the row is left out, as a malformed one is
                continue
            line = line.rstrip("\n")
            if not line.strip():
                if tokens:
                    out.append(Tagged(tokens, tags, f"{path}:{start}"))
                tokens, tags, start = [], [], n + 1
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                self.bad(f"{path}:{n}: malformed CoNLL-U row ({len(cols)} tab-separated columns, expected 10)",
                         "malformed rows")
                continue
            if not self.ID.fullmatch(cols[0]):
                self.bad(f"{path}:{n}: malformed CoNLL-U row (ID {cols[0]!r} is not a word index)", "malformed rows")
                continue
            if "-" in cols[0] or "." in cols[0]:
                continue
            if not cols[1].strip() or not cols[self.column].strip():
                self.bad(f"{path}:{n}: malformed CoNLL-U row (empty {'FORM' if not cols[1].strip() else 'tag'} "
                         "column; CoNLL-U writes _ for none)", "malformed rows")
                continue
            tokens.append(cols[1])
            tags.append(cols[self.column])
        if tokens:
            out.append(Tagged(tokens, tags, f"{path}:{start}"))
        return out


class CoNLL(TaggingData):
    """CoNLL-style columns: the token first and the tag last on each line; blank lines end sentences."""

    def __init__(self, *, train: str, val: str, test: str, root: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.paths = split_paths(root, train=train, val=val, test=test)

    def source(self, split: str) -> str:
        return self.paths[split]

    def read_split(self, split: str) -> list[Tagged]:
        path, out = self.paths[split], []
        tokens, tags, start = [], [], 1
        for n, line in text_lines(path, self.bad):
            if line is None:  # not UTF-8 (counted): the row is left out, as a malformed one is
                continue
            cols = line.split()
            if not cols:
                if tokens:
                    out.append(Tagged(tokens, tags, f"{path}:{start}"))
                tokens, tags, start = [], [], n + 1
            elif len(cols) < 2:
                self.bad(f"{path}:{n}: malformed row {line.strip()!r} (expected TOKEN ... TAG)", "malformed rows")
            elif cols[0] != "-DOCSTART-":
                tokens.append(cols[0])
                tags.append(cols[-1])
        if tokens:
            out.append(Tagged(tokens, tags, f"{path}:{start}"))
        return out


class HFTokenClassification(TaggingData):
    """A Hugging Face token-classification set: a column of token lists and one of tag lists."""

    def __init__(self, *, name: str, tokens_column: str = "tokens", tags_column: str = "tags", **kwargs) -> None:
        from zoo.data.hf import hub_splits

        self.hf = hub_splits(name, kwargs, (tokens_column, tags_column))  # config_name, data_dir, revision, ...
        super().__init__(**kwargs)
        self.tokens_column, self.tags_column = tokens_column, tags_column

    def read_split(self, split: str) -> list[Tagged]:
        names = self.hf.label_names(self.tags_column)
        out = []
        for k, row in enumerate(self.hf.split(split)):
            tokens, tags = list(row[self.tokens_column]), list(row[self.tags_column])
            where = f"{self.hf.name} [{split}] row {k}"
            if len(tokens) != len(tags):
                raise DataError(f"{where}: {len(tokens)} tokens but {len(tags)} tags")
            out.append(Tagged(tokens, [names[t] if names else str(t) for t in tags], where))
        return out
