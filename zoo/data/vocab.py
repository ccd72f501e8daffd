"""One vocabulary class for every token sequence in the zoo, with its special tokens."""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

PAD, START, END, UNK = "<PAD>", "<START>", "<END>", "<UNK>"
SPECIALS = (PAD, START, END, UNK)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize_caption(text: str) -> list[str]:
    """Lower-case words, punctuation dropped (the usual COCO caption preprocessing)."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Token <-> id. Ids 0..3 are ``<PAD>``, ``<START>``, ``<END>``, ``<UNK>``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with the special tokens {SPECIALS}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary has no duplicate tokens")

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], min_count: int = 1,
              max_size: int | None = None) -> "Vocabulary":
        """From training sequences: tokens seen at least ``min_count`` times, most frequent first;
        at most ``max_size`` tokens, the special ones included (None: no limit)."""
        counts = Counter(t for seq in sequences for t in seq)
        kept = sorted((t for t, c in counts.items() if c >= min_count and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str], *, start: bool = False, end: bool = False) -> list[int]:
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return ([self.start_id] if start else []) + ids + ([self.end_id] if end else [])

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> tokens, stopping at ``<END>`` and skipping ``<START>``/``<PAD>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            out.append(self.itos[i])
        return out

    def to_dict(self) -> dict:
        return {"tokens": self.itos}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        return cls(d["tokens"])
