"""Sequence classification (many-to-one): a sentence's sentiment, an image read row by row.

The encoder turns the input into a sequence (tokens -> embeddings, an image -> its rows),
the recurrence reads it, the head pools the real steps and classifies.
Metrics: accuracy and macro F1 (torchmetrics), and the loss.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from zoo.data.images import read_picture
from zoo.data.spec import DataSpec
from zoo.errors import ZooError
from zoo.tasks.base import EVAL_SPLITS, Task, build_encoder


def sequence_input(encoder: nn.Module, batch: dict) -> tuple[Tensor, Tensor | None]:
    """(B, T, D) encoder output and lengths (B,) (None: every sequence is full length)."""
    if "tokens" in batch:
        return encoder(batch["tokens"]), batch["lengths"]
    return encoder(batch["images"]), None


class ClassificationTask(Task):
    inputs = {"tokens": ("tokens", "sequence"), "image": ("image", "sequence")}
    modes = ("many_to_one",)

    def __init__(self, *, encoder: Callable[..., nn.Module], cell: Callable[..., nn.Module],
                 head: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        self.encoder = build_encoder(encoder, spec)
        self.rnn = cell(input_size=self.encoder.out_dim)
        self.head = head(input_size=self.rnn.output_size, num_classes=spec.num_classes,
                         directions=self.rnn.num_directions)
        C = spec.num_classes
        for split in ("train",) + EVAL_SPLITS:
            self.add_split_metrics(split, {
                "acc": MulticlassAccuracy(C, average="micro"),
                "f1": MulticlassF1Score(C, average="macro"),
                "loss": MeanMetric(),
            })

    def forward(self, batch: dict) -> Tensor:
        """logits (B, C)."""
        x, lengths = sequence_input(self.encoder, batch)
        states, _ = self.rnn(x, lengths)  # (B, T, D*H)
        return self.head(states, lengths)

    def _step(self, split: str, batch: dict, keep: bool = False):
        logits = self(batch)
        loss = nn.functional.cross_entropy(logits, batch["labels"])
        m = self.split_metrics(split)
        m["acc"].update(logits, batch["labels"])
        m["f1"].update(logits, batch["labels"])
        m["loss"].update(loss.detach(), weight=len(logits))
        return (logits, batch["labels"]) if keep else loss

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

    @torch.no_grad()
    def predict_one(self, raw: str, **_) -> dict:
        """The label of a sentence (token input) or of an image file (image input)."""
        if self.encoder.consumes == "tokens":
            ids = self.spec.vocab.encode(self.text_tokenizer()(raw))
            if not ids:
                raise ZooError("an empty sentence")
            batch = {"tokens": torch.tensor([ids], device=self.device), "lengths": torch.tensor([len(ids)])}
        else:
            batch = {"images": read_picture(raw, self.spec.image_shape).unsqueeze(0).to(self.device)}
        probs = self(batch).softmax(-1)[0]
        k = int(probs.argmax())
        return {"label": self.spec.labels[k], "p": round(float(probs[k]), 4),
                "probabilities": {lab: round(float(p), 4) for lab, p in zip(self.spec.labels, probs)}}
