"""What every task that predicts labels shares: accuracy, macro F1 and the loss per split
(padding ignored), the test split's predictions gathered from every rank for the confusion
matrix, and a label with its probabilities for predict."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from zoo.data.tagging import IGNORE
from zoo.tasks.base import EVAL_SPLITS


class Classifying:
    """A mixin for a :class:`zoo.tasks.base.Task` (``class T(Classifying, Task)``)."""

    def add_label_metrics(self, num_classes: int) -> None:
        for split in ("train",) + EVAL_SPLITS:
            self.add_split_metrics(split, {
                "acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE),
                "f1": MulticlassF1Score(num_classes, average="macro", ignore_index=IGNORE),
                "loss": MeanMetric(),
            })

    def label_loss(self, split: str, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy of logits (..., C) against labels (...) (IGNORE: padding), with the split's
        metrics updated; the test split's predictions are kept for the confusion matrix."""
        logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE)
        m = self.split_metrics(split)
        m["acc"].update(logits, labels)
        m["f1"].update(logits, labels)
        m["loss"].update(loss.detach(), weight=int((labels != IGNORE).sum()))
        if split == "test":
            real = labels != IGNORE
            self.test_predictions.append((labels[real].cpu(), logits.argmax(-1)[real].cpu()))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_split_metrics("train")

    def on_test_epoch_start(self) -> None:
        self.test_predictions: list[tuple[Tensor, Tensor]] = []

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

    def label_of(self, logits: Tensor) -> dict:
        """One example's logits (C,) -> its label, its probability and every label's."""
        probs = logits.float().softmax(-1)
        k = int(probs.argmax())
        labels = self.spec.labels
        return {"label": labels[k], "p": round(float(probs[k]), 4),
                "probabilities": {lab: round(float(p), 4) for lab, p in zip(labels, probs)}}
