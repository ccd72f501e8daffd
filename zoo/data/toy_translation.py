"""The built-in translation data: English sentences and their rendering in a made-up language.

The target language has its own words (a fixed lexicon), puts adjectives after their noun,
the verb at the end of its clause (subject-object-verb), and marks plural nouns with a
suffix. So a translator must reorder, not only substitute: attention pays off.
Deterministic from the seed.
"""
from __future__ import annotations

import numpy as np

from zoo.data.parallel import Pair, ParallelData
from zoo.data.sequences import SPLITS

LEXICON = {
    # determiners, numbers
    "the": "le", "a": "un", "this": "ce", "two": "dua", "three": "tri", "some": "kelk",
    # nouns
    "dog": "hundo", "cat": "kato", "man": "viro", "woman": "ino", "child": "info", "bird": "birdo",
    "house": "domo", "ball": "pilko", "tree": "arbo", "car": "auto", "book": "libro", "river": "rivero",
    "horse": "cevalo", "girl": "knabino", "boy": "knabo", "apple": "pomo",
    # adjectives
    "big": "granda", "small": "malgranda", "red": "ruga", "old": "malnova", "young": "juna",
    "happy": "felica", "green": "verda", "black": "nigra", "white": "blanka", "fast": "rapida",
    # verbs
    "sees": "vidas", "likes": "satas", "has": "havas", "eats": "mangas", "finds": "trovas",
    "follows": "sekvas", "throws": "jetas", "watches": "rigardas",
    # prepositions, conjunctions
    "near": "apud", "in": "en", "with": "kun", "and": "kaj",
}
DETS = ("the", "a", "this")
NUMBERS = ("two", "three", "some")
NOUNS = ("dog", "cat", "man", "woman", "child", "bird", "house", "ball", "tree", "car", "book", "river",
         "horse", "girl", "boy", "apple")
ANIMATE = ("dog", "cat", "man", "woman", "child", "bird", "horse", "girl", "boy")
ADJS = ("big", "small", "red", "old", "young", "happy", "green", "black", "white", "fast")
VERBS = ("sees", "likes", "has", "eats", "finds", "follows", "throws", "watches")
PREPS = ("near", "in", "with")
PLURAL_VERB = {"sees": "see", "likes": "like", "has": "have", "eats": "eat", "finds": "find",
               "follows": "follow", "throws": "throw", "watches": "watch"}
PLURAL_SUFFIX = "j"


def _noun_phrase(rng: np.random.Generator, nouns) -> tuple[list[str], list[str], bool]:
    plural = rng.random() < 0.3
    det = str(rng.choice(NUMBERS if plural else DETS))
    adjs = [str(a) for a in rng.choice(ADJS, size=int(rng.choice([0, 0, 1, 1, 2])), replace=False)]
    noun = str(rng.choice(nouns))
    en = [det, *adjs, noun + ("s" if plural else "")]
    # target: determiner, noun (+plural), then its adjectives
    tgt = [LEXICON[det], LEXICON[noun] + (PLURAL_SUFFIX if plural else ""), *[LEXICON[a] for a in adjs]]
    return en, tgt, plural


def _clause(rng: np.random.Generator) -> tuple[list[str], list[str]]:
    s_en, s_tgt, plural = _noun_phrase(rng, ANIMATE)
    verb = str(rng.choice(VERBS))
    o_en, o_tgt, _ = _noun_phrase(rng, NOUNS)
    en, tgt = s_en + [PLURAL_VERB[verb] if plural else verb] + o_en, s_tgt + o_tgt
    if rng.random() < 0.3:
        prep = str(rng.choice(PREPS))
        p_en, p_tgt, _ = _noun_phrase(rng, NOUNS)
        en, tgt = en + [prep] + p_en, tgt + [LEXICON[prep]] + p_tgt
    return en, tgt + [LEXICON[verb]]  # the verb goes last


def make_pair(rng: np.random.Generator) -> tuple[str, str]:
    en, tgt = _clause(rng)
    if rng.random() < 0.2:
        en2, tgt2 = _clause(rng)
        en, tgt = en + ["and"] + en2, tgt + [LEXICON["and"]] + tgt2
    return " ".join(en + ["."]), " ".join(tgt + ["."])


def make_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    return [make_pair(rng) for _ in range(n)]


class ToyTranslation(ParallelData):
    """The built-in translation set (``data=toy_translation``)."""

    def __init__(self, *, train_size: int = 10000, val_size: int = 500, test_size: int = 500, data_seed: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.data_seed = data_seed

    def read_split(self, split: str) -> list[Pair]:
        pairs = make_pairs(self.sizes[split], self.data_seed * 1000 + SPLITS.index(split))
        return [Pair(s, t, f"toy_translation[{split}] #{i}") for i, (s, t) in enumerate(pairs)]
