"""Video data with a label per frame (synced many-to-many over frames).

Sources: ``FrameFolders`` (one folder per clip holding its frames as image files, in name
order, and ``labels.txt`` with one label per frame), ``HFFrames`` (Hugging Face sets with a
sequence-of-images column and a sequence-of-labels column), and the built-in ``Clips``
(zoo.data.clips).

Batches: frames (B, T, 3, S, S) float in [0, 1], lengths (B,), labels (B, T) with -100 on padding.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from zoo.data.classification import label_set, split_paths
from zoo.data.images import check_image, read_image
from zoo.data.sequences import SPLITS, SequenceData, pad_batch
from zoo.data.spec import DataSpec
from zoo.data.tagging import IGNORE
from zoo.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class Clip(NamedTuple):
    frames: list  # arrays (S, S, 3) uint8, or image files/bytes decoded on access
    labels: list[str]
    where: str
    label_where: list[str] | None = None  # where each label was read (file:line), for messages


class FramesData(SequenceData):
    label_mode = "synced"  # a label per step: the head must be synced
    provides = "frames"

    def __init__(self, *, image_size: int = 32, labels: list[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image_size, self.fixed_labels = image_size, labels

    def encode(self, raw: dict[str, list[Clip]]) -> DataSpec:
        labels = label_set(self, lambda: sorted({t for c in raw["train"] for t in c.labels}))
        index = {label: i for i, label in enumerate(labels)}
        for split in SPLITS:
            out = []
            for c in raw[split]:
                unknown = [t for t in c.labels if t not in index]
                if not c.frames:
                    self.bad(f"{c.where}: a clip without frames", "empty clips")
                elif len(c.frames) != len(c.labels):
                    self.bad(f"{c.where}: {len(c.frames)} frames but {len(c.labels)} labels", "clips with mismatched labels")
                elif unknown:
                    k = c.labels.index(unknown[0])
                    where = c.label_where[k] if c.label_where else c.where
                    self.bad(f"{where}: label {unknown[0]!r} is not among the training labels {labels}", "unknown labels")
                else:
                    out.append((c.frames, [index[t] for t in c.labels]))
            self.data[split] = out
        return DataSpec(labels=labels, image_shape=(3, self.image_size, self.image_size))

    def _pixels(self, frame) -> np.ndarray:
        return frame if isinstance(frame, np.ndarray) else read_image(frame, self.image_size)

    def collate(self, items):
        T = max(len(f) for f, _ in items)
        S = self.image_size
        frames = torch.zeros(len(items), T, 3, S, S)
        for b, (clip, _) in enumerate(items):
            pix = np.stack([self._pixels(f) for f in clip])  # (t, S, S, 3)
            frames[b, : len(clip)] = torch.from_numpy(pix).permute(0, 3, 1, 2).float().div_(255.0)
        labels, lengths = pad_batch([y for _, y in items], IGNORE)
        return {"frames": frames, "lengths": lengths, "labels": labels}


class FrameFolders(FramesData):
    """``<split folder>/<clip>/<frames...>`` + ``<clip>/labels.txt`` (a label per frame, one per line)."""

    def __init__(self, *, train: str, val: str, test: str, root: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.paths = split_paths(root, train=train, val=val, test=test)

    def source(self, split: str) -> str:
        return self.paths[split]

    def read_split(self, split: str) -> list[Clip]:
        folder = Path(self.paths[split])
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (one sub-folder per clip expected)")
        out = []
        for clip in sorted(p for p in folder.iterdir() if p.is_dir()):
            frames = sorted(p for p in clip.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
            labels_file = clip / "labels.txt"
            if not labels_file.is_file():
                self.bad(f"{clip}: no labels.txt", "clips without labels")
                continue
            lines = self._label_lines(labels_file)
            if lines is None:
                continue
            bad = next(((f, why) for f in frames if (why := check_image(f))), None)
            if bad:
                self.bad(f"{bad[0]}: {bad[1]}", "unreadable frames")
                continue
            out.append(Clip(frames, [label for _, label in lines], str(clip),
                            [f"{labels_file}:{n}" for n, _ in lines]))
        return out

    def _label_lines(self, path: Path) -> list[tuple[int, str]] | None:
        """The labels of a clip with their line numbers (blank lines left out), or None when the
        file is not UTF-8 (then the clip is bad input: its labels no longer line up with its frames)."""
        data = path.read_bytes()
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            self.bad(f"{path}:{line}: not UTF-8 text", "clips with unreadable labels")
            return None
        # lines end at "\n" only (splitlines would also split a label at \x85 or \u2028)
        return [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


class HFFrames(FramesData):
    """A Hugging Face set with a column of frame sequences (images) and one of label sequences."""

    def __init__(self, *, name: str, frames_column: str = "frames", labels_column: str = "labels",
                 **kwargs) -> None:
        from zoo.data.hf import hub_splits

        self.hf = hub_splits(name, kwargs, (frames_column, labels_column))  # config_name, data_dir, revision, ...
        super().__init__(**kwargs)
        self.frames_column, self.labels_column = frames_column, labels_column

    def read_split(self, split: str) -> list[Clip]:
        names = self.hf.label_names(self.labels_column)
        out = []
        for k, row in enumerate(self.hf.split(split)):
            frames = [np.asarray(im.convert("RGB").resize((self.image_size, self.image_size)))
                      for im in row[self.frames_column]]
            labels = [names[t] if names else str(t) for t in row[self.labels_column]]
            out.append(Clip(frames, labels, f"{self.hf.name} [{split}] row {k}"))
        return out
