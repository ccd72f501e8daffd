"""Character streams for language models trained with truncated backpropagation through time.

The text of a split becomes ``batch_size`` parallel streams (row b continues row b of the
previous batch), cut into windows of ``bptt + 1`` characters: the model reads characters
0..bptt-1 of a window and predicts 1..bptt, and carries its state to the next window.
Windows come in order, never shuffled: that is what makes the carried state meaningful.

Sources: ``TextFile`` (any UTF-8 plain-text file, split by position: the first part trains,
the next validates, the last tests; with ``test_fraction=0`` the test split is the validation
split), ``HFText`` (a Hugging Face text set), and the built-in ``Stories`` (zoo.data.stories).

Batches: tokens (B, bptt + 1) long; window: the window's index k in the split (0 starts a pass).
"""
from __future__ import annotations

import logging
from collections import Counter

import torch
from torch.utils.data import DataLoader, Dataset

from zoo.data.batching import BucketBatchSampler, StatefulLoader, dist_rank_world
from zoo.data.classification import text_lines
from zoo.data.sequences import SPLITS, SequenceData
from zoo.data.spec import DataSpec
from zoo.data.vocab import SPECIALS, Vocabulary
from zoo.errors import DataError

log = logging.getLogger(__name__)


class _Windows(Dataset):
    """Window k of the streams; under distributed training this rank's share of the streams
    (the text is laid out in ``streams * world`` rows, and rank r reads rows r*streams..)."""

    def __init__(self, ids: torch.Tensor, streams: int, bptt: int, where: str = "a split") -> None:
        rank, world = dist_rank_world()
        n = len(ids) // (streams * world)
        if n < 2:
            raise DataError(f"{where}: {len(ids)} characters are too short for {streams * world} streams "
                            "(lower data.batch_size / data.eval_batch_size)")
        rows = ids[: n * streams * world].view(streams * world, n)  # row b is one contiguous stream
        self.streams = rows[rank * streams:(rank + 1) * streams]
        self.bptt = bptt
        self.starts = list(range(0, n - 1, bptt))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k: int) -> dict:
        s = self.starts[k]
        # "window": the position in the stream, so the model knows which state continues it
        return {"tokens": self.streams[:, s: s + self.bptt + 1], "window": k}


def _first(items: list) -> dict:
    return items[0]


class CharStreamData(SequenceData):
    def __init__(self, *, bptt: int = 100, val_fraction: float = 0.1, test_fraction: float = 0.0,
                 min_count: int = 1, **kwargs) -> None:
        super().__init__(bucket=False, **kwargs)
        if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError("data.val_fraction and data.test_fraction must leave some text for training")
        self.bptt, self.val_fraction, self.test_fraction, self.min_count = bptt, val_fraction, test_fraction, min_count
        self.text: dict[str, str] = {}

    def read_text(self) -> dict[str, str] | str:
        """The whole text (split here by position), or a dict of the three splits."""
        raise NotImplementedError

    def read_split(self, split: str) -> str:
        if not self.text:
            text = self.read_text()
            if isinstance(text, str):
                if not text:
                    raise DataError(f"{self.source(split)}: the text is empty")
                n = len(text)
                a = int(n * (1 - self.val_fraction - self.test_fraction))
                b = int(n * (1 - self.test_fraction))
                text = {"train": text[:a], "val": text[a:b], "test": text[b:] if self.test_fraction else text[a:b]}
            self.text = text
        return self.text[split]

    def encode(self, raw: dict[str, str]) -> DataSpec:
        counts = Counter(raw["train"])
        chars = sorted((c for c, k in counts.items() if k >= self.min_count), key=lambda c: (-counts[c], c))
        vocab = self.fixed.vocab if self.fixed else Vocabulary(list(SPECIALS) + [c for c in chars if c not in SPECIALS])
        for split in SPLITS:
            ids = torch.tensor(vocab.encode(list(raw[split])), dtype=torch.long)
            unknown = int((ids == vocab.unk_id).sum())
            if unknown and split != "train":
                log.info("data: %d characters of %s are not in the training text (<UNK>)", unknown, split)
            self.data[split] = ids
        return DataSpec(vocab=vocab, extra={"chars": {s: len(raw[s]) for s in SPLITS}})

    def _loader(self, split: str, train: bool) -> DataLoader:
        """Windows of the streams, in order."""
        windows = _Windows(self.data[split], self.batch_size if train else self.eval_batch_size, self.bptt,
                           where=f"{self.source(split)}, the {split} split")
        # windows in order, one per step (never shuffled: the carried state needs the order)
        order = BucketBatchSampler([0] * len(windows), 1, shuffle=False, pad=False, num_replicas=1, rank=0)
        return StatefulLoader(windows, batch_sampler=order, num_workers=self.num_workers, collate_fn=_first)


class TextFile(CharStreamData):
    """Any plain-text file (UTF-8, gzip allowed), split by position."""

    def __init__(self, *, path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = path

    def source(self, split: str) -> str:
        return str(self.path)

    def read_text(self) -> str:
        # a line that is not UTF-8 is named by its line; under data.on_bad=skip it is left out (counted)
        return "".join(line for _, line in text_lines(self.path, self.bad) if line is not None)


class HFText(CharStreamData):
    """A Hugging Face text set: the rows of ``text_column`` joined by newlines; the set's own
    validation/test splits when it has them, else split by position."""

    def __init__(self, *, name: str, text_column: str = "text", **kwargs) -> None:
        from zoo.data.hf import hub_splits

        # val_fraction / test_fraction cut the text by position (the base class), not the set's rows
        hub = {k: kwargs.pop(k) for k in ("config_name", "data_dir", "data_files", "revision") if k in kwargs}
        self.hf = hub_splits(name, hub, (text_column,), val_fraction=0.0, test_fraction=0.0)
        super().__init__(**kwargs)
        self.text_column = text_column

    def read_text(self) -> dict[str, str] | str:
        dd = self.hf.load_dict()
        join = lambda part: "\n".join(part[self.text_column])
        if "validation" in dd or "test" in dd:
            val = dd.get("validation") or dd["test"]
            return {"train": join(dd["train"]), "val": join(val), "test": join(dd.get("test") or val)}
        return join(dd["train"])
