"""Sentence pairs in a tab-separated file, one pair a line (``data=tsv_pairs``).

The layout of the Tatoeba/Anki files (``eng-fra.txt`` of manythings.org/anki, the one the
PyTorch seq2seq tutorial reads)::

    Go.<TAB>Va !<TAB>CC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)

``columns`` names the source and the target column (``[1, 0]`` translates the second into the
first); further columns (the attribution) are ignored. With one file, validation and test pairs
are cut from it at random (``val_fraction``, ``test_fraction``, ``split_seed``: the same seed
gives the same cut); ``val`` / ``test`` name files of their own instead. A line without
enough tab-separated columns, a blank line and a pair with an empty side are bad input
(``data.on_bad``: an error naming file and line, or a counted skip).
"""
from __future__ import annotations

import random
from pathlib import Path

from zoo.data.classification import text_lines
from zoo.data.parallel import Pair, ParallelData
from zoo.errors import ConfigError


class TSVPairs(ParallelData):
    def __init__(self, *, path: str, val: str | None = None, test: str | None = None, val_fraction: float = 0.05,
                 test_fraction: float = 0.05, split_seed: int = 0, columns: tuple[int, int] = (0, 1),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        cut = {"val": val_fraction if val is None else 0.0, "test": test_fraction if test is None else 0.0}
        if any(not 0 <= f < 1 for f in cut.values()) or sum(cut.values()) >= 1:
            raise ConfigError(f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must each be "
                              "in [0, 1) and leave pairs for training")
        for split, f in cut.items():
            if f == 0 and (val if split == "val" else test) is None:
                raise ConfigError(f"data.{split}_fraction=0 and no data.{split} file: the {split} split would be "
                                  f"empty. Set data.{split}_fraction (e.g. 0.05) or data.{split}=FILE")
        columns = tuple(int(c) for c in columns)
        if len(columns) != 2 or min(columns) < 0 or columns[0] == columns[1]:
            raise ConfigError(f"data.columns={list(columns)}: two different column numbers from 0, "
                              "the source's and the target's (e.g. [0, 1], or [1, 0] the other way round)")
        self.path, self.files = str(Path(path).expanduser()), {"val": val, "test": test}
        self.cut, self.split_seed, self.columns = cut, split_seed, columns
        self._splits: dict[str, list[Pair]] | None = None

    def source(self, split: str) -> str:
        return self.files.get(split) or self.path

    def read_file(self, path: str) -> list[Pair]:
        out, need = [], max(self.columns) + 1
        for n, line in text_lines(path, self.bad):
            if line is None:  # not UTF-8 (counted under data.on_bad=skip)
                continue
            where = f"{path}:{n}"
            line = line.rstrip("\n")
            if not line.strip():
                self.bad(f"{where}: empty line (expected SOURCE<TAB>TARGET)", "empty lines")
                continue
            cols = line.split("\t")
            if len(cols) < need:
                self.bad(f"{where}: no tab (expected SOURCE<TAB>TARGET)" if len(cols) == 1 else
                         f"{where}: {len(cols)} tab-separated columns, but data.columns={list(self.columns)} "
                         f"needs {need}", "lines without enough columns")
                continue
            # an empty side is named by ParallelData.encode ("empty source/target sentence")
            out.append(Pair(cols[self.columns[0]], cols[self.columns[1]], where))
        return out

    def read_split(self, split: str) -> list[Pair]:
        if self._splits is None:
            pairs = self.read_file(self.path)
            order = list(range(len(pairs)))
            random.Random(self.split_seed).shuffle(order)
            n = len(pairs)
            sizes = {s: max(1, round(n * f)) if f > 0 else 0 for s, f in self.cut.items()}
            test = order[: sizes["test"]]
            val = order[sizes["test"]: sizes["test"] + sizes["val"]]
            held = set(test) | set(val)
            drawn = {"val": [pairs[i] for i in sorted(val)], "test": [pairs[i] for i in sorted(test)]}
            self._splits = {"train": [p for i, p in enumerate(pairs) if i not in held]}  # in file order
            for s in ("val", "test"):
                self._splits[s] = drawn[s] if self.files[s] is None else self.read_file(self.files[s])
        return self._splits[split]
