"""The built-in character-level text: short generated stories, deterministic from the seed.

Each story names a character and sticks to it ("Mia had a red kite. Mia took the kite to
the hill..."), sentences start with a capital and end with a full stop, and lines are
wrapped like prose. A character model can learn spelling, words, punctuation and the
story's repeated names; a model without memory cannot.
"""
from __future__ import annotations

import textwrap

import numpy as np

from zoo.data.charstream import CharStreamData

NAMES = ("Mia", "Tom", "Lena", "Omar", "Rosa", "Ben", "Ivy", "Sam", "Nora", "Leo")
THINGS = ("kite", "ball", "book", "hat", "boat", "drum", "cake", "map", "lamp", "key")
COLOURS = ("red", "blue", "green", "yellow", "old", "new", "small", "big")
PLACES = ("the hill", "the river", "the park", "the market", "the garden", "the beach", "the forest", "school")
FRIENDS = ("a dog", "a cat", "a bird", "her brother", "his sister", "a friend", "the baker", "an old man")
FEELINGS = ("happy", "sad", "tired", "proud", "surprised", "hungry")
WEATHER = ("The sun was warm.", "It began to rain.", "The wind was strong.", "The sky was grey.", "It was a quiet day.")


def make_story(rng: np.random.Generator) -> str:
    pick = lambda xs: str(rng.choice(xs))
    name, thing, colour, place = pick(NAMES), pick(THINGS), pick(COLOURS), pick(PLACES)
    article = "an" if colour[0] in "aeiou" else "a"
    s = [f"{name} had {article} {colour} {thing}.", f"One day {name} took the {thing} to {place}."]
    for _ in range(int(rng.integers(2, 5))):
        r = rng.random()
        if r < 0.25:
            s.append(pick(WEATHER))
        elif r < 0.5:
            s.append(f"At {place}, {name} met {pick(FRIENDS)}.")
        elif r < 0.75:
            s.append(f"The {thing} was {pick(('lost', 'found', 'broken', 'wet', 'shiny'))}, and {name} felt {pick(FEELINGS)}.")
        else:
            n = int(rng.integers(2, 6))
            count = " ".join(("one", "two", "three", "four", "five", "six")[:n])
            s.append(f"{name} counted: {count}.")
    s.append(f"Then {name} went home with the {colour} {thing}.")
    return " ".join(s)


def make_text(n_stories: int, seed: int, width: int = 72) -> str:
    rng = np.random.default_rng(seed)
    return "\n\n".join(textwrap.fill(make_story(rng), width) for _ in range(n_stories)) + "\n"


class Stories(CharStreamData):
    """The built-in character-level text (``data=stories``)."""

    def __init__(self, *, stories: int = 3000, data_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stories, self.data_seed = stories, data_seed

    def read_text(self) -> str:
        return make_text(self.stories, self.data_seed)
