"""The built-in sentiment data: generated movie-review sentences whose label needs word order.

Each sentence praises or pans one aspect of a film. Negation flips it ("the plot was not
good" is negative), and in "X but Y" the clause after "but" decides. So the same words
appear in positive and negative sentences, and a bag of words cannot tell them apart;
a model that reads in order can. Deterministic from the seed.
"""
from __future__ import annotations

import numpy as np

from zoo.data.classification import Sentence, TextClassificationData
from zoo.data.sequences import SPLITS

POSITIVE = ("good", "great", "wonderful", "excellent", "brilliant", "lovely", "fun", "moving", "clever", "superb")
NEGATIVE = ("bad", "awful", "boring", "terrible", "dull", "weak", "silly", "messy", "tedious", "poor")
SUBJECTS = ("the movie", "the film", "the plot", "the acting", "the script", "the ending", "the soundtrack",
            "the cast", "the story", "this film", "the director 's work", "the dialogue")
VERBS = ("was", "is", "felt", "seemed")
INTENSIFIERS = ("", "", "very", "really", "quite", "truly", "so")
NEGATIONS = ("not", "never", "hardly")
OPENERS = ("", "", "", "honestly ,", "overall ,", "i thought", "in the end ,")
LIKE = ("i loved it", "i enjoyed it", "i liked it", "a joy to watch", "worth seeing")
DISLIKE = ("i hated it", "i disliked it", "a waste of time", "hard to sit through", "not worth seeing")


def _clause(rng: np.random.Generator) -> tuple[str, int]:
    """One clause and its polarity (1 positive, 0 negative)."""
    if rng.random() < 0.15:
        positive = rng.random() < 0.5
        return str(rng.choice(LIKE if positive else DISLIKE)), int(positive)
    positive = rng.random() < 0.5
    adj = str(rng.choice(POSITIVE if positive else NEGATIVE))
    negated = rng.random() < 0.35
    words = [str(rng.choice(SUBJECTS)), str(rng.choice(VERBS))]
    if negated:
        words.append(str(rng.choice(NEGATIONS)))
    words += [str(rng.choice(INTENSIFIERS)), adj]
    return " ".join(w for w in words if w), int(positive != negated)


def make_review(rng: np.random.Generator) -> tuple[str, int]:
    first, label = _clause(rng)
    if rng.random() < 0.35:  # "X but Y": Y decides
        second, label2 = _clause(rng)
        while label2 == label:
            second, label2 = _clause(rng)
        first, label = f"{first} , but {second}", label2
    opener = str(rng.choice(OPENERS))
    return (f"{opener} {first} ." if opener else f"{first} ."), label


def make_reviews(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (sentence, label) pairs; labels are "negative" / "positive"."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        text, label = make_review(rng)
        out.append((text, ("negative", "positive")[label]))
    return out


class Reviews(TextClassificationData):
    """The built-in sentiment set (``data=reviews``)."""

    def __init__(self, *, train_size: int = 8000, val_size: int = 1000, test_size: int = 1000, data_seed: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.data_seed = data_seed

    def read_split(self, split: str) -> list[Sentence]:
        pairs = make_reviews(self.sizes[split], self.data_seed * 1000 + SPLITS.index(split))
        return [Sentence(text.split(), label, f"reviews[{split}] #{i}") for i, (text, label) in enumerate(pairs)]
