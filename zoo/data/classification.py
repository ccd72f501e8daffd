"""Sentence classification data (many-to-one): a label per token sequence.

Sources: ``LabelledLines`` (``LABEL SENTENCE`` per line, as SST-2's stsa.binary files),
``DelimitedText`` (CSV/TSV with a text and a label column), ``HFTextClassification``
(Hugging Face sets), and the built-in ``Reviews`` (zoo.data.reviews).

Batches: tokens (B, T) long, lengths (B,), labels (B,).
"""
from __future__ import annotations

import csv
import gzip
import zlib
from pathlib import Path
from typing import Iterator, NamedTuple

import torch

from zoo.data.bad_input import BadInput
from zoo.data.sequences import SPLITS, SequenceData, make_tokenizer, pad_batch
from zoo.data.spec import DataSpec
from zoo.data.tokenizers import TextTokenizer, check_kind, vocabulary_for
from zoo.data.vocab import Vocabulary
from zoo.errors import DataError


class Sentence(NamedTuple):
    tokens: list[str]
    label: str
    where: str


def text_lines(path: str | Path, bad: BadInput) -> Iterator[tuple[int, str | None]]:
    """The lines of a UTF-8 text file (gzip when the name ends in .gz), numbered from 1, each
    with its line end as ``"\n"`` (also for ``"\r\n"``) and a byte-order mark dropped.

    Lines end at ``"\n"`` only: ``str.splitlines`` would also end them at ``\x1c``, ``\x85``
    or ``\u2028`` inside a sentence, and shift every line number after them. A line that is not
    UTF-8 is bad input, named by file and line; under ``data.on_bad=skip`` it comes as None,
    so the caller knows a line was there (line-aligned files drop its partner). A file that
    cannot be read on (a broken gzip stream) is an error naming the line it broke at."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    n = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad(f"{path}:{n}: not UTF-8 text (byte {raw[e.start]:#04x} at byte {e.start + 1} of the line)",
                        "lines that are not UTF-8")
                    yield n, None
                    continue
                if n == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                yield n, line[:-2] + "\n" if line.endswith("\r\n") else line
    except (OSError, EOFError, zlib.error) as e:  # gzip: BadGzipFile (an OSError), EOFError, zlib.error
        raise DataError(f"{path}:{n + 1}: cannot read the file ({type(e).__name__}: {e})") from e


class TextClassificationData(SequenceData):
    """Sources split a sentence into words as they read it (``self.tokenize``: whitespace or
    words); with ``tokenizer=chars|bpe|unigram`` those words, joined by spaces, are cut again by
    the characters or by subwords trained on the training split (zoo.data.tokenizers)."""

    label_mode = "many_to_one"  # a label per sequence: the head must be many_to_one

    def __init__(self, *, min_count: int = 1, max_len: int | None = None, labels: list[str] | None = None,
                 lowercase: bool = False, tokenizer: str = "whitespace", vocab_size: int | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_count, self.max_len, self.fixed_labels = min_count, max_len, labels
        self.tokenizer, self.lowercase, self.vocab_size = check_kind(tokenizer), lowercase, vocab_size
        self.tokenize = make_tokenizer(tokenizer if tokenizer in ("whitespace", "words") else "whitespace", lowercase)

    def text_tokenizer(self, raw: dict[str, list[Sentence]]) -> TextTokenizer:
        """A trained model's (evaluation, resume), else made from the training split."""
        if self.fixed is not None and self.fixed.tokenizer is not None:
            return self.fixed.tokenizer
        if self.fixed is not None or self.tokenizer in ("whitespace", "words"):
            return TextTokenizer(self.tokenizer, lowercase=self.lowercase)
        return TextTokenizer.train(self.tokenizer, (" ".join(s.tokens) for s in raw["train"]),
                                   vocab_size=self.vocab_size, lowercase=self.lowercase)

    def encode(self, raw: dict[str, list[Sentence]]) -> DataSpec:
        tok = self.text_tokenizer(raw)
        if tok.kind not in ("whitespace", "words"):  # cut the words again: characters, subwords
            raw = {split: [s._replace(tokens=tok.split(" ".join(s.tokens))) for s in raw[split]] for split in SPLITS}
        vocab = self.fixed.vocab if self.fixed else vocabulary_for(tok, (s.tokens for s in raw["train"]),
                                                                   min_count=self.min_count, vocab_size=self.vocab_size)
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
        return DataSpec(vocab=vocab, labels=labels, tokenizer=tok)

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
        for n, line in text_lines(self.paths[split], self.bad):
            if line is None:
                continue
            where = f"{self.paths[split]}:{n}"
            fields = line.split(None, 1)  # the label, and the sentence (when there is one)
            if not fields:
                self.bad(f"{where}: empty line", "empty lines")
                continue
            out.append(Sentence(self.tokenize(fields[1] if len(fields) > 1 else ""), fields[0], where))
        return out

    def source(self, split: str) -> str:
        return self.paths[split]


class DelimitedText(TextClassificationData):
    """CSV or TSV files with a header; ``text_column`` and ``label_column`` name the columns.

    Quoting is read strictly: a quote that is never closed is a malformed row (named by the
    line it opened on), not a field that silently swallows the rest of the file."""

    def __init__(self, *, train: str, val: str, test: str, root: str | None = None, text_column: str = "text",
                 label_column: str = "label", delimiter: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.paths = split_paths(root, train=train, val=val, test=test)
        self.text_column, self.label_column, self.delimiter = text_column, label_column, delimiter

    def source(self, split: str) -> str:
        return self.paths[split]

    def read_split(self, split: str) -> list[Sentence]:
        path = str(self.paths[split])
        delimiter = self.delimiter or ("\t" if path.endswith((".tsv", ".tsv.gz")) else ",")
        at = [0]  # the number of the line the reader took last

        def lines():
            for n, line in text_lines(path, self.bad):
                at[0] = n
                if line is not None:
                    yield line

        reader = csv.reader(lines(), delimiter=delimiter, strict=True)
        header, out, start = None, [], 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                if header is None:
                    raise DataError(f"{path}:{start}: malformed header ({e})") from e
                self.bad(f"{path}:{start}: malformed row ({e})", "malformed rows")
                start = at[0] + 1
                continue
            where, start = f"{path}:{start}", at[0] + 1
            if not row:  # a blank line
                continue
            if header is None:
                header = row
                missing = sorted({self.text_column, self.label_column} - set(header))
                if missing:
                    raise DataError(f"{where}: no column {missing} (columns: {header}); "
                                    "set data.text_column / data.label_column")
                text_at, label_at = header.index(self.text_column), header.index(self.label_column)
                continue
            if len(row) != len(header):
                self.bad(f"{where}: malformed row ({len(row)} fields, expected {len(header)})", "malformed rows")
                continue
            label = row[label_at].strip()
            if not label:
                self.bad(f"{where}: empty label", "empty labels")
                continue
            out.append(Sentence(self.tokenize(row[text_at]), label, where))
        if header is None:
            raise DataError(f"{path}: empty file (expected a header naming the columns "
                            f"{self.text_column!r} and {self.label_column!r})")
        return out


class HFTextClassification(TextClassificationData):
    """A Hugging Face classification set (a hub name, or a local builder with data_dir/data_files)."""

    def __init__(self, *, name: str, text_column: str = "text", label_column: str = "label",
                 tokenizer: str = "words", **kwargs) -> None:
        from zoo.data.hf import hub_splits

        self.hf = hub_splits(name, kwargs, (text_column, label_column))  # config_name, data_dir, revision, ...
        super().__init__(tokenizer=tokenizer, **kwargs)
        self.text_column, self.label_column = text_column, label_column

    def read_split(self, split: str) -> list[Sentence]:
        rows = self.hf.split(split)
        names = self.hf.label_names(self.label_column)
        return [Sentence(self.tokenize(row[self.text_column] or ""),
                         names[row[self.label_column]] if names else str(row[self.label_column]),
                         f"{self.hf.name} [{split}] row {k}") for k, row in enumerate(rows)]
