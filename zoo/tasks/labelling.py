"""Sequence labelling (synced many-to-many): a label per step — a POS tag per word, an action
per video frame.

Tokens are embedded; frames go one by one through an image encoder (the same weights for
every frame) to a vector each. The recurrence reads the sequence, the synced head labels every
step. Padding is ignored by the loss and the metrics (token accuracy, macro F1).
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
from zoo.tasks.base import EVAL_SPLITS, Task, build_encoder


class LabellingTask(Task):
    inputs = {"tokens": ("tokens", "sequence"), "frames": ("image", "vector")}
    modes = ("synced",)

    def __init__(self, *, encoder: Callable[..., nn.Module], cell: Callable[..., nn.Module],
                 head: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        self.encoder = build_encoder(encoder, spec)
        self.rnn = cell(input_size=self.encoder.out_dim)
        self.head = head(input_size=self.rnn.output_size, num_classes=spec.num_classes)
        C = spec.num_classes
        for split in ("train",) + EVAL_SPLITS:
            self.add_split_metrics(split, {
                "acc": MulticlassAccuracy(C, average="micro", ignore_index=IGNORE),
                "f1": MulticlassF1Score(C, average="macro", ignore_index=IGNORE),
                "loss": MeanMetric(),
            })

    def sequence(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """(B, T, D) and lengths: embedded tokens, or every frame through the image encoder."""
        if "tokens" in batch:
            return self.encoder(batch["tokens"]), batch["lengths"]
        frames = batch["frames"]  # (B, T, 3, H, W)
        B, T = frames.shape[:2]
        return self.encoder(frames.flatten(0, 1)).view(B, T, -1), batch.get("lengths")

    def forward(self, batch: dict) -> Tensor:
        """logits (B, T, C)."""
        x, lengths = self.sequence(batch)
        states, _ = self.rnn(x, lengths)
        return self.head(states, lengths)

    def _step(self, split: str, batch: dict, keep: bool = False):
        logits = self(batch).flatten(0, 1)  # (B*T, C)
        labels = batch["labels"].flatten()
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE)
        m = self.split_metrics(split)
        m["acc"].update(logits, labels)
        m["f1"].update(logits, labels)
        m["loss"].update(loss.detach(), weight=int((labels != IGNORE).sum()))
        return (logits, labels) if keep else loss

    @torch.no_grad()
    def predict_one(self, raw: str, **_) -> dict:
        """Tags of a sentence's words, or labels of a clip's frames (a folder of frame images)."""
        labels = self.spec.labels
        if self.encoder.consumes == "tokens":
            words = raw.split()
            if not words:
                raise ZooError("an empty sentence")
            norm = str.lower if (self.run_config or {}).get("data", {}).get("lowercase") else str
            ids = self.spec.vocab.encode([norm(w) for w in words])
            batch = {"tokens": torch.tensor([ids], device=self.device), "lengths": torch.tensor([len(ids)])}
            tags = self(batch)[0].argmax(-1).tolist()
            return {"tokens": words, "tags": [labels[t] for t in tags]}
        folder = Path(raw)
        frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        if not frames:
            raise ZooError(f"{raw}: not a folder of frame images")
        clip = torch.stack([read_picture(f, self.spec.image_shape) for f in frames]).unsqueeze(0).to(self.device)
        out = self({"frames": clip})[0].argmax(-1).tolist()
        return {"frames": [f.name for f in frames], "labels": [labels[t] for t in out]}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.check_finite(self._step("train", batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_split_metrics("train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        logits, labels = self._step("test", batch, keep=True)
        real = labels != -100
        self.test_predictions.append((labels[real].cpu(), logits.argmax(-1)[real].cpu()))

    def on_test_epoch_start(self) -> None:
        self.test_predictions: list[tuple[torch.Tensor, torch.Tensor]] = []

    def media(self, datamodule) -> dict:
        """The confusion matrix of the test split (this rank's share under DDP)."""
        if not getattr(self, "test_predictions", None):
            return {}
        y_true = torch.cat([t for t, _ in self.test_predictions]).tolist()
        y_pred = torch.cat([p for _, p in self.test_predictions]).tolist()
        return {"test/confusion": {"confusion": {"y_true": y_true, "y_pred": y_pred, "labels": self.spec.labels}}}
