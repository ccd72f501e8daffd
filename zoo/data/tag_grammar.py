"""The built-in tagging data: generated sentences with universal POS tags (UPOS).

Many words are ambiguous and only their neighbours tell the tag: "book", "watch", "run",
"park", "light", "play" are nouns after a determiner and verbs after a subject; "that" is a
determiner before a noun and a subordinating conjunction after "said"/"think". A tagger
that looks at one word at a time cannot get them all; one that reads the context can.
"""
from __future__ import annotations

import numpy as np

from zoo.data.sequences import SPLITS
from zoo.data.tagging import Tagged, TaggingData

AMBIGUOUS = ("book", "watch", "run", "park", "light", "play", "walk", "fly", "call", "cook")
NOUNS = ("dog", "cat", "teacher", "child", "car", "house", "river", "letter", "song", "garden") + AMBIGUOUS
VERBS = ("sees", "likes", "finds", "takes", "makes", "wants") + AMBIGUOUS
INTRANSITIVE = ("sleeps", "waits", "laughs", "arrives") + AMBIGUOUS
ADJS = ("big", "small", "old", "new", "red", "quiet", "happy", "light")
ADVS = ("quickly", "slowly", "often", "today", "again")
DETS = ("the", "a", "this", "every", "that")
PRONS = ("she", "he", "they", "we", "i", "you")
PROPNS = ("anna", "paris", "tom", "london", "maria")
ADPS = ("in", "near", "with", "under", "behind")
SAY = ("said", "think", "know")


def _np(rng: np.random.Generator, out: list[tuple[str, str]], subject: bool = False) -> None:
    r = rng.random()
    if subject and r < 0.3:
        out.append((str(rng.choice(PRONS)), "PRON"))
    elif r < 0.45:
        out.append((str(rng.choice(PROPNS)), "PROPN"))
    else:
        out.append((str(rng.choice(DETS)), "DET"))
        if rng.random() < 0.4:
            out.append((str(rng.choice(ADJS)), "ADJ"))
        out.append((str(rng.choice(NOUNS)), "NOUN"))
    if rng.random() < 0.2:
        out.append((str(rng.choice(ADPS)), "ADP"))
        _np(rng, out)


def _clause(rng: np.random.Generator, out: list[tuple[str, str]], depth: int = 0) -> None:
    _np(rng, out, subject=True)
    r = rng.random()
    if r < 0.15 and depth == 0:
        out.append((str(rng.choice(SAY)), "VERB"))
        out.append(("that", "SCONJ"))
        _clause(rng, out, depth + 1)
        return
    if r < 0.35:
        out.append((str(rng.choice(INTRANSITIVE)), "VERB"))
    elif r < 0.45:
        out += [("will", "AUX"), (str(rng.choice(AMBIGUOUS)), "VERB")]
    else:
        out.append((str(rng.choice(VERBS)), "VERB"))
        _np(rng, out)
    if rng.random() < 0.3:
        out.append((str(rng.choice(ADVS)), "ADV"))
    if rng.random() < 0.15 and depth == 0:
        out.append(("and", "CCONJ"))
        _clause(rng, out, depth + 1)


def make_sentence(rng: np.random.Generator) -> tuple[list[str], list[str]]:
    out: list[tuple[str, str]] = []
    _clause(rng, out)
    out.append((".", "PUNCT"))
    words, tags = zip(*out)
    return list(words), list(tags)


def make_sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    rng = np.random.default_rng(seed)
    return [make_sentence(rng) for _ in range(n)]


class GrammarTags(TaggingData):
    """The built-in tagging set (``data=grammar_tags``)."""

    def __init__(self, *, train_size: int = 6000, val_size: int = 1000, test_size: int = 1000, data_seed: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.data_seed = data_seed

    def read_split(self, split: str) -> list[Tagged]:
        sents = make_sentences(self.sizes[split], self.data_seed * 1000 + SPLITS.index(split))
        return [Tagged(w, t, f"grammar_tags[{split}] #{i}") for i, (w, t) in enumerate(sents)]
