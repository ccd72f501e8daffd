"""Parallel text for translation (seq2seq): a source sentence and its target sentence.

Sources: ``ParallelFiles`` (line-aligned files, one sentence a line, gzip allowed: Multi30k,
Europarl, ...), ``HFTranslation`` (Hugging Face sets: a ``translation`` column of
{lang: text} dicts, or two text columns), and the built-in ``ToyTranslation``
(zoo.data.toy_translation).

Each side has its tokenizer (``data.tokenizer``: words, chars, or bpe/unigram subwords trained
on that side of the training split, ``data.vocab_size``; zoo.data.tokenizers) and its
vocabulary; both travel in the DataSpec. Training pairs longer than ``max_len`` tokens on
either side are left out (counted, logged); validation and test keep every pair, so their
scores cover the whole set. The references are the target sentences as they are in the data
(untokenised, and cased unless ``lowercase``, which lower-cases everything): BLEU and chrF
compare them with the detokenised translations.

Batches: src (B, S), src_lengths (B,), tgt (B, L) = <START> w.. <END> <PAD>.., refs: the B
target sentences as text (what BLEU compares the generated text with), sources: the B source
sentences as text, index (B,): the examples' places in their split.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import torch

from zoo.data.classification import split_paths, text_lines
from zoo.data.sequences import SPLITS, SequenceData, pad_batch
from zoo.data.spec import DataSpec
from zoo.data.tokenizers import TRAINED, TextTokenizer, check_kind, vocabulary_for
from zoo.data.vocab import Vocabulary
from zoo.errors import DataError

log = logging.getLogger(__name__)


class Pair(NamedTuple):
    src: str
    tgt: str
    where: str


class ParallelData(SequenceData):
    def __init__(self, *, min_count: int = 1, max_len: int = 50, lowercase: bool = False,
                 tokenizer: str = "words", vocab_size: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.min_count, self.max_len, self.lowercase = min_count, max_len, lowercase
        self.tokenizer, self.vocab_size = check_kind(tokenizer, ("words", "chars", *TRAINED)), vocab_size
        if lowercase:
            log.warning("data.lowercase=true: sources, targets and references are lower-cased, so BLEU/chrF are "
                        "lower-cased figures (papers report cased ones: data.lowercase=false)")

    def tokenizers(self, raw: dict[str, list[Pair]]) -> tuple[TextTokenizer, TextTokenizer]:
        """(source, target): a trained model's (evaluation, resume), else made from the training split."""
        if self.fixed is not None and self.fixed.tokenizer is not None:
            return self.fixed.src_tokenizer, self.fixed.tokenizer
        if self.fixed is not None:  # a checkpoint from before tokenizers travelled in the spec
            return (TextTokenizer(self.tokenizer, lowercase=self.lowercase),) * 2
        return tuple(TextTokenizer.train(self.tokenizer, (getattr(p, side) for p in raw["train"]),
                                         vocab_size=self.vocab_size, lowercase=self.lowercase)
                     for side in ("src", "tgt"))

    def encode(self, raw: dict[str, list[Pair]]) -> DataSpec:
        src_tok, tgt_tok = self.tokenizers(raw)
        tok = {s: [(src_tok.split(p.src), tgt_tok.split(p.tgt), p) for p in raw[s]] for s in SPLITS}
        long = 0
        for split in SPLITS:
            kept = []
            for src, tgt, p in tok[split]:
                if not src or not tgt:
                    self.bad(f"{p.where}: empty {'source' if not src else 'target'} sentence", "empty sentences")
                elif split == "train" and max(len(src), len(tgt)) > self.max_len:
                    long += 1
                else:
                    kept.append((src, tgt, p))
            tok[split] = kept
        if long:
            share = long / max(1, long + len(tok["train"]))
            hint = " (characters and subwords make longer sequences: raise data.max_len)" if share > 0.1 else ""
            (log.warning if hint else log.info)("data: left out %d training pairs (%.0f%%) longer than data.max_len=%d "
                                                "tokens%s", long, 100 * share, self.max_len, hint)
        if self.fixed is not None:
            src_vocab, vocab = self.fixed.src_vocab, self.fixed.vocab
        else:
            src_vocab = vocabulary_for(src_tok, (s for s, _, _ in tok["train"]), min_count=self.min_count,
                                       vocab_size=self.vocab_size)
            vocab = vocabulary_for(tgt_tok, (t for _, t, _ in tok["train"]), min_count=self.min_count,
                                   vocab_size=self.vocab_size)
        # the reference as the data has it (untokenised; cased unless data.lowercase): what BLEU/chrF see
        ref = (lambda text: text.strip().lower()) if self.lowercase else str.strip
        for split in SPLITS:
            self.data[split] = [(src_vocab.encode(s), vocab.encode(t, start=True, end=True), ref(p.tgt),
                                 p.src.strip(), i) for i, (s, t, p) in enumerate(tok[split])]
        return DataSpec(vocab=vocab, src_vocab=src_vocab, max_len=self.max_len, tokenizer=tgt_tok,
                        src_tokenizer=src_tok)

    def collate(self, items):
        src, src_lengths = pad_batch([it[0] for it in items], Vocabulary.pad_id)
        tgt, _ = pad_batch([it[1] for it in items], Vocabulary.pad_id)
        return {"src": src, "src_lengths": src_lengths, "tgt": tgt, "refs": [it[2] for it in items],
                "sources": [it[3] for it in items], "index": torch.tensor([it[4] for it in items], dtype=torch.long)}


def _pair(where_src: str, where_tgt: str, n: int, src: str, tgt: str) -> Pair:
    return Pair(src, tgt, f"{where_src}:{n} / {where_tgt}:{n}")


class ParallelFiles(ParallelData):
    """Line-aligned files: ``pattern`` names them from the split and the language, e.g.
    ``{split}.{lang}.gz`` with ``splits={train: train, val: val, test: test_2016_flickr}``."""

    def __init__(self, *, root: str | None = None, src_lang: str, tgt_lang: str, pattern: str = "{split}.{lang}",
                 splits: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        names = {"train": "train", "val": "val", "test": "test", **(splits or {})}
        self.files = {s: split_paths(root, src=pattern.format(split=names[s], lang=src_lang),
                                     tgt=pattern.format(split=names[s], lang=tgt_lang)) for s in SPLITS}

    def source(self, split: str) -> str:
        return f"{self.files[split]['src']} / {self.files[split]['tgt']}"

    def read_split(self, split: str) -> list[Pair]:
        f = self.files[split]
        # None where a line is not UTF-8 (counted under data.on_bad=skip): its pair is left out
        src = [line if line is None else line.rstrip("\n") for _, line in text_lines(f["src"], self.bad)]
        tgt = [line if line is None else line.rstrip("\n") for _, line in text_lines(f["tgt"], self.bad)]
        if len(src) != len(tgt):
            longer, n = (f["src"], len(tgt) + 1) if len(src) > len(tgt) else (f["tgt"], len(src) + 1)
            raise DataError(f"{f['src']} has {len(src)} lines but {f['tgt']} has {len(tgt)}: "
                            f"parallel files must be line-aligned ({longer}:{n} has no partner)")
        return [_pair(f["src"], f["tgt"], n, s, t) for n, (s, t) in enumerate(zip(src, tgt), 1)
                if s is not None and t is not None]


class HFTranslation(ParallelData):
    """A Hugging Face translation set: a ``translation`` column of {lang: text}, or
    ``src_column``/``tgt_column`` text columns."""

    def __init__(self, *, name: str, src_lang: str, tgt_lang: str, translation_column: str = "translation",
                 src_column: str | None = None, tgt_column: str | None = None, **kwargs) -> None:
        from zoo.data.hf import hub_splits

        self.columns = (src_column, tgt_column) if src_column and tgt_column else None
        # config_name, data_dir, revision, splits, ...
        self.hf = hub_splits(name, kwargs, self.columns or (translation_column,), val_fraction=0.05, test_fraction=0.05)
        super().__init__(**kwargs)
        self.translation_column, self.src_lang, self.tgt_lang = translation_column, src_lang, tgt_lang

    def read_split(self, split: str) -> list[Pair]:
        out = []
        for k, row in enumerate(self.hf.split(split)):
            where = f"{self.hf.name} [{split}] row {k}"
            if self.columns:
                src, tgt = row[self.columns[0]], row[self.columns[1]]
            else:
                pair = row[self.translation_column]
                if self.src_lang not in pair or self.tgt_lang not in pair:
                    raise DataError(f"{where}: no {self.src_lang!r}/{self.tgt_lang!r} in {sorted(pair)}; "
                                    "set data.src_lang / data.tgt_lang")
                src, tgt = pair[self.src_lang], pair[self.tgt_lang]
            out.append(Pair(src or "", tgt or "", where))
        return out
