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
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from zoo.data.frames import IMAGE_SUFFIXES
from zoo.data.images import read_picture
from zoo.data.spec import DataSpec
from zoo.data.tagging import IGNORE
from zoo.errors import ZooError
from zoo.recurrence import build
from zoo.tasks.base import EVAL_SPLITS, Task, build_encoder


class LabelTask(Task):
    inputs = {"tokens": ("tokens", "sequence"), "image": ("image", "sequence"), "frames": ("image", "vector")}
    modes = ("many_to_one", "synced")

    def __init__(self, *, encoder: Callable[..., nn.Module], cell: Callable[..., nn.Module],
                 head: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        self.encoder = build_encoder(encoder, spec)
        self.recurrence = build(cell, input_size=self.encoder.out_dim)
        self.head = head(input_size=self.recurrence.output_size, num_classes=spec.num_classes,
                         directions=self.recurrence.num_directions)
        C = spec.num_classes
        for split in ("train",) + EVAL_SPLITS:
            self.add_split_metrics(split, {
                "acc": MulticlassAccuracy(C, average="micro", ignore_index=IGNORE),
                "f1": MulticlassF1Score(C, average="macro", ignore_index=IGNORE),
                "loss": MeanMetric(),
            })

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

    def _step(self, split: str, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        logits = self(batch)
        logits, labels = logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1)  # per sequence or step
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE)
        m = self.split_metrics(split)
        m["acc"].update(logits, labels)
        m["f1"].update(logits, labels)
        m["loss"].update(loss.detach(), weight=int((labels != IGNORE).sum()))
        return loss, logits, labels

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.check_finite(self._step("train", batch)[0])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_split_metrics("train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step("val", batch)

    def on_test_epoch_start(self) -> None:
        self.test_predictions: list[tuple[Tensor, Tensor]] = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        _, logits, labels = self._step("test", batch)
        real = labels != IGNORE
        self.test_predictions.append((labels[real].cpu(), logits.argmax(-1)[real].cpu()))

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.test_predictions = [pair for part in self.gather(self.test_predictions) for pair in part]  # all ranks'

    def media(self, datamodule) -> dict:
        """The confusion matrix of the test split (every rank's share)."""
        if not getattr(self, "test_predictions", None):
            return {}
        y_true = torch.cat([t for t, _ in self.test_predictions]).tolist()
        y_pred = torch.cat([p for _, p in self.test_predictions]).tolist()
        return {"test/confusion": {"confusion": {"y_true": y_true, "y_pred": y_pred, "labels": self.spec.labels}}}

    # -- use ----------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_one(self, raw: str, **_) -> dict:
        """A sentence -> its label (or its words' tags); an image file -> its label; a folder
        of frame images -> a label per frame."""
        labels = self.spec.labels
        if self.encoder.consumes == "tokens":
            words = self.text_tokenizer()(raw)
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
        probs = logits.softmax(-1)
        k = int(probs.argmax())
        return {"label": labels[k], "p": round(float(probs[k]), 4),
                "probabilities": {lab: round(float(p), 4) for lab, p in zip(labels, probs)}}
