"""Image classification, one-to-one: the CNN encoder gives a vector, the head a label, and there
is no recurrence (the lecture's mode 1, "from fixed-sized input to fixed-sized output"). It is
the baseline every model that reads an image as a sequence (rows, glimpses) is compared with."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from zoo.data.images import read_picture
from zoo.data.spec import DataSpec
from zoo.tasks.base import Task, build_encoder
from zoo.tasks.classifying import Classifying


class ImageClassTask(Classifying, Task):
    inputs = {"image": ("image", "vector")}
    modes = ("one_to_one",)
    parts = ("encoder", "head")

    def __init__(self, *, encoder: Callable[..., nn.Module], head: Callable[..., nn.Module], spec: DataSpec,
                 optimizer, scheduler=None) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        self.encoder = build_encoder(encoder, spec)
        self.head = head(input_size=self.encoder.out_dim, num_classes=spec.num_classes)
        self.add_label_metrics(spec.num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, H, W) -> logits (B, C)."""
        return self.head(self.encoder(images))

    def _step(self, split: str, batch: dict) -> Tensor:
        return self.label_loss(split, self(batch["images"]), batch["labels"])

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.check_finite(self._step("train", batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step("test", batch)

    @torch.no_grad()
    def predict_one(self, raw: str, **_) -> dict:
        """An image file -> its label."""
        return self.label_of(self(read_picture(raw, self.spec.image_shape).unsqueeze(0).to(self.device))[0])
