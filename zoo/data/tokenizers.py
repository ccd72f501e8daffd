"""Text <-> tokens (``data.tokenizer``), the same way for training, evaluation, predict and the metrics.

    whitespace  split at whitespace (text tokenised already: SST, CoNLL); joined by spaces
    words       words and punctuation apart (``\\w+|[^\\w\\s]``); joined by spaces
    chars       every character, spaces too (runs of whitespace become one space); joined as is
    bpe         byte-pair-encoding subwords trained on the training split (Hugging Face ``tokenizers``)
    unigram     unigram-LM subwords (SentencePiece's model), trained the same way

Subwords mark the start of a word with ``▁`` (Metaspace) and split punctuation off, so joining
the pieces gives the text back (runs of whitespace become one space): BLEU compares real
sentences, not pieces. ``data.vocab_size`` is the size of the whole vocabulary, the four
special tokens included (bpe: exactly, unless the text is too small for it; unigram: at most,
its trainer stops near it; words, chars: the most frequent kept, null keeps all). Training is
deterministic for bpe; unigram's trainer is not from process to process, so it is refused
under DDP (each rank trains its own). A trained tokenizer travels in the DataSpec as its JSON
(the format of ``tokenizers`` itself), so a checkpoint carries it and predict, evaluate and
resume use it, never one trained again.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Sequence

from zoo.data.vocab import SPECIALS, UNK, Vocabulary
from zoo.errors import ConfigError, ZooError

KINDS = ("whitespace", "words", "chars", "bpe", "unigram")
TRAINED = ("bpe", "unigram")  # learnt from the training split
SUBWORDS_DEFAULT = 8000  # data.vocab_size for bpe/unigram when it is null
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def check_kind(kind: str, allowed: Sequence[str] = KINDS) -> str:
    if kind not in allowed:
        raise ConfigError(f"data.tokenizer={kind} is not one of: {', '.join(allowed)}")
    return kind


class TextTokenizer:
    """``split(text) -> tokens`` and ``join(tokens) -> text`` of one kind; bpe/unigram hold the
    trained model (``model``: its JSON), made by :meth:`train`."""

    def __init__(self, kind: str = "words", *, lowercase: bool = False, model: str | None = None) -> None:
        self.kind, self.lowercase, self.model = check_kind(kind), bool(lowercase), model
        self._hf = None
        if kind in TRAINED:
            if model is None:
                raise ValueError(f"a {kind} tokenizer is trained first: TextTokenizer.train({kind!r}, texts, ...)")
            from tokenizers import Tokenizer

            try:
                self._hf = Tokenizer.from_str(model)
            except Exception as e:  # the Rust side raises plain Exceptions
                raise ZooError(f"the saved {kind} tokenizer is not a readable tokenizers JSON ({e}); "
                               "the checkpoint or data_spec.json is damaged") from e

    @property
    def trained(self) -> bool:
        return self.kind in TRAINED

    def normalize(self, text: str) -> str:
        """What the tokens are made from: lower-cased if asked, runs of whitespace one space."""
        return " ".join((text.lower() if self.lowercase else text).split())

    def split(self, text: str) -> list[str]:
        text = self.normalize(text)
        if self.kind == "whitespace":
            return text.split()
        if self.kind == "words":
            return _WORDS.findall(text)
        if self.kind == "chars":
            return list(text)
        return self._hf.encode(text, add_special_tokens=False).tokens

    def join(self, tokens: Iterable[str]) -> str:
        """Tokens -> text: subwords through their decoder, characters as they are, words by spaces."""
        tokens = list(tokens)
        if self.kind == "chars":
            return "".join(tokens)
        if self.trained:
            return self._hf.decoder.decode(tokens)
        return " ".join(tokens)

    def vocabulary(self) -> Vocabulary:
        """A trained tokenizer's own vocabulary (its ids are the model's); special tokens first."""
        if not self.trained:
            raise ValueError(f"a {self.kind} tokenizer has no vocabulary of its own: Vocabulary.build(...)")
        return Vocabulary([self._hf.id_to_token(i) for i in range(self._hf.get_vocab_size())])

    @classmethod
    def train(cls, kind: str, texts: Iterable[str], *, vocab_size: int | None = None,
              lowercase: bool = False) -> "TextTokenizer":
        """A tokenizer of ``kind`` for these (training) texts; words/chars/whitespace need no training."""
        check_kind(kind)
        if kind not in TRAINED:
            return cls(kind, lowercase=lowercase)
        vocab_size = SUBWORDS_DEFAULT if vocab_size is None else int(vocab_size)
        if vocab_size <= len(SPECIALS):
            raise ConfigError(f"data.vocab_size={vocab_size}: a vocabulary holds the {len(SPECIALS)} special tokens "
                              "and more; choose a larger one (e.g. 8000)")
        if kind == "unigram" and _processes() > 1:
            raise ConfigError("data.tokenizer=unigram with several processes (DDP): every rank trains its tokenizer "
                              "on its own, and the unigram trainer of Hugging Face tokenizers does not choose the same "
                              "pieces in every process (bpe does). Use data.tokenizer=bpe, or train on one process")
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        norm = cls("whitespace", lowercase=lowercase).normalize
        corpus = [t for t in (norm(text) for text in texts) if t]
        if kind == "bpe":
            hf = Tokenizer(models.BPE(unk_token=UNK))
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False)
        else:
            hf = Tokenizer(models.Unigram())
            trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), unk_token=UNK,
                                              show_progress=False)
        # "▁" marks where a word starts, punctuation is a piece of its own: the decoder undoes both
        hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        hf.decoder = decoders.Metaspace()
        chars = len({c for t in corpus for c in t.replace(" ", "▁")})
        try:
            hf.train_from_iterator(corpus, trainer)
        except Exception as e:  # unigram: "The vocabulary is not large enough to contain all chars"
            raise _too_small(vocab_size, chars, kind) from e
        if hf.get_vocab_size() > vocab_size:  # bpe keeps every character of the text
            raise _too_small(vocab_size, chars, kind)
        return cls(kind, lowercase=lowercase, model=hf.to_str())

    # -- travelling in the DataSpec ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase, "model": self.model}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TextTokenizer":
        return cls(d["kind"], lowercase=bool(d.get("lowercase", False)), model=d.get("model"))

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: the JSON, not the Rust object
        return self.to_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["kind"], lowercase=state["lowercase"], model=state["model"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        size = f", {self._hf.get_vocab_size()} pieces" if self.trained else ""
        return f"TextTokenizer({self.kind!r}, lowercase={self.lowercase}{size})"


def _processes() -> int:
    """How many processes train (DDP ranks started by the zoo, torchrun or SLURM)."""
    return int(os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or 1)


def _too_small(vocab_size: int, chars: int, kind: str) -> ConfigError:
    return ConfigError(f"data.vocab_size={vocab_size} is too small for data.tokenizer={kind}: the training text has "
                       f"{chars} different characters, and the vocabulary needs them and {len(SPECIALS)} special "
                       f"tokens. Set data.vocab_size to at least {chars + len(SPECIALS)}")


def vocabulary_for(tokenizer: TextTokenizer, training: Iterable[Sequence[str]], *, min_count: int = 1,
                   vocab_size: int | None = None) -> Vocabulary:
    """The vocabulary of a data set: a trained tokenizer's own, else built from the training
    split's tokens (seen ``min_count`` times, at most ``vocab_size`` with the special tokens)."""
    if tokenizer.trained:
        return tokenizer.vocabulary()
    if vocab_size is not None and vocab_size <= len(SPECIALS):
        raise ConfigError(f"data.vocab_size={vocab_size}: a vocabulary holds the {len(SPECIALS)} special tokens and "
                          "more; choose a larger one, or null for every token of the training split")
    return Vocabulary.build(training, min_count, max_size=vocab_size)
