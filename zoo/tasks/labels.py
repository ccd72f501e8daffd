"""Labelling sequences: a label per sequence (many-to-one: a sentence's sentiment, an image
read row by row) or a label per step (synced many-to-many: a POS tag per word, an action per
video frame). The head decides which; the data says which its labels are (``label_mode``),
and composition checks the two agree.

The encoder makes the sequence: tokens are embedded, an image is read as its rows or patches,
and the frames of a clip go one by one through an image encoder (the same weights for every
frame). The recurrence reads it; padding is masked or packed, and ignored by the loss and the
metrics (accuracy, macro F1).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from zoo.data.frames import IMAGE_SUFFIXES
from zoo.data.images import read_picture
from zoo.data.spec import DataSpec
from zoo.errors import ZooError
from zoo.recurrence import build
from zoo.tasks.base import Task, build_encoder
from zoo.tasks.classifying import Classifying


class LabelTask(Classifying, Task):
    inputs = {"tokens": ("tokens", "sequence"), "image": ("image", "sequence"), "frames": ("image", "vector")}
    modes = ("many_to_one", "synced")

    def __init__(self, *, encoder: Callable[..., nn.Module], cell: Callable[..., nn.Module],
                 head: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        self.encoder = build_encoder(encoder, spec)
        self.recurrence = build(cell, input_size=self.encoder.out_dim)
        self.head = head(input_size=self.recurrence.output_size, num_classes=spec.num_classes,
                         directions=self.recurrence.num_directions)
        self.add_label_metrics(spec.num_classes)

    def sequence(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """(B, T, D) and lengths (None: every sequence is full length)."""
        if "tokens" in batch:
            return self.encoder(batch["tokens"]), batch["lengths"]
        if "images" in batch:
            return self.encoder(batch["images"]), None
        frames = batch["frames"]  # (B, T, 3, H, W): one image encoder for every frame
        B, T = frames.shape[:2]
        return self.encoder(frames.flatten(0, 1)).view(B, T, -1), batch.get("lengths")

    def forward(self, batch: dict) -> Tensor:
        """logits: (B, C) with a many-to-one head, (B, T, C) with a synced one."""
        x, lengths = self.sequence(batch)
        states = self.recurrence(x, lengths).outputs  # (B, T, D*H)
        return self.head(states, lengths)

    def _step(self, split: str, batch: dict) -> Tensor:
        return self.label_loss(split, self(batch), batch["labels"])  # a label per sequence or per step

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.check_finite(self._step("train", batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step("test", batch)

    # -- use ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_one(self, raw: str, **_) -> dict:
        """A sentence -> its label (or its words' tags); an image file -> its label; a folder
        of frame images -> a label per frame."""
        labels = self.spec.labels
        if self.encoder.consumes == "tokens":
            # the data's tokenizer (a trained one travels in the spec); older checkpoints: the config's
            words = self.spec.tokenizer.split(raw) if self.spec.tokenizer is not None else self.text_tokenizer()(raw)
            if not words:
                raise ZooError("an empty sentence")
            ids = self.spec.vocab.encode(words)
            batch = {"tokens": torch.tensor([ids], device=self.device), "lengths": torch.tensor([len(ids)])}
        elif self.encoder.produces == "sequence":
            batch = {"images": read_picture(raw, self.spec.image_shape).unsqueeze(0).to(self.device)}
        else:
            folder = Path(raw)
            frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
            if not frames:
                raise ZooError(f"{raw}: not a folder of frame images")
            clip = torch.stack([read_picture(f, self.spec.image_shape) for f in frames]).unsqueeze(0)
            per_frame = self({"frames": clip.to(self.device)})[0].argmax(-1).tolist()
            return {"frames": [f.name for f in frames], "labels": [labels[t] for t in per_frame]}
        logits = self(batch)[0]
        if logits.dim() == 2:  # a tag per word
            return {"tokens": words, "tags": [labels[t] for t in logits.argmax(-1).tolist()]}
        return self.label_of(logits)
