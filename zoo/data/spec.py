"""DataSpec: the only way sizes reach the model (vocab sizes, class counts, special ids), and
how its text is cut into tokens and put together again (the tokenizers)."""
from __future__ import annotations

from dataclasses import dataclass, field

from zoo.data.tokenizers import TextTokenizer
from zoo.data.vocab import Vocabulary


@dataclass
class DataSpec:
    """What a task needs to know about its data to build itself; nothing else crosses over.

    vocab        the output (and for text, input) vocabulary, or None
    src_vocab    seq2seq: the source-side vocabulary
    labels       class or tag names (many-to-one, synced), or None
    image_shape  (C, H, W) of the images (or frames) the encoder receives, or None
    max_len      longest target sequence in tokens (without <START>/<END>)
    tokenizer    how text becomes the tokens of ``vocab`` and back (a trained one carries its
                 model), or None (data that is not text, or a checkpoint older than tokenizers)
    src_tokenizer  seq2seq: the same for the source side
    """

    vocab: Vocabulary | None = None
    src_vocab: Vocabulary | None = None
    labels: list[str] | None = None
    image_shape: tuple[int, int, int] | None = None
    max_len: int | None = None
    tokenizer: TextTokenizer | None = None
    src_tokenizer: TextTokenizer | None = None
    extra: dict = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        if self.vocab is None:
            raise ValueError("this data set has no vocabulary")
        return len(self.vocab)

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            raise ValueError("this data set has no labels")
        return len(self.labels)

    def to_dict(self) -> dict:
        return {
            "vocab": self.vocab.to_dict() if self.vocab else None,
            "src_vocab": self.src_vocab.to_dict() if self.src_vocab else None,
            "labels": self.labels,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "max_len": self.max_len,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer else None,
            "src_tokenizer": self.src_tokenizer.to_dict() if self.src_tokenizer else None,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        return cls(
            vocab=Vocabulary.from_dict(d["vocab"]) if d.get("vocab") else None,
            src_vocab=Vocabulary.from_dict(d["src_vocab"]) if d.get("src_vocab") else None,
            labels=d.get("labels"),
            image_shape=tuple(d["image_shape"]) if d.get("image_shape") else None,
            max_len=d.get("max_len"),
            tokenizer=TextTokenizer.from_dict(d["tokenizer"]) if d.get("tokenizer") else None,
            src_tokenizer=TextTokenizer.from_dict(d["src_tokenizer"]) if d.get("src_tokenizer") else None,
            extra=d.get("extra") or {},
        )
