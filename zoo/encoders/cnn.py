"""A VGG-style convolutional encoder built from config (the lecture's captioning CNN)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from zoo.encoders.transform import InputTransform


class ConvEncoder(nn.Module):
    """Blocks of ``convs_per_block`` x (conv3x3 -> [BN] -> ReLU), each block ending in a 2x2 max-pool,
    then average-pooled to a ``pool_to`` x ``pool_to`` grid (so any image size works and
    positions survive), flattened, and fully connected layers ``fc``.

    The lecture's network is ``channels=[64,128,256,512,512], convs_per_block=2,
    fc=[4096,4096]``; the default is a narrow version that trains on a CPU.

    ``input_size`` is the side it asks a data set of photos for (``data.image_size=null``): it
    takes any size, and a network trained from scratch on a CPU gains little from more pixels
    than the objects need (224 x 224 is 12x the pixels, and the time, of 64 x 64).
    """

    consumes = "image"
    produces = "vector"

    def __init__(
        self,
        *,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128),
        convs_per_block: int = 2,
        fc: Sequence[int] = (256,),
        pool_to: int = 4,
        batch_norm: bool = True,
        dropout: float = 0.0,
        freeze: bool = False,
        input_size: int | None = 64,
    ) -> None:
        super().__init__()
        if not channels or convs_per_block < 1:
            raise ValueError("encoder.channels needs at least one block and encoder.convs_per_block >= 1")
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in channels:
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
                layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
                layers += [nn.ReLU(inplace=True)]
                c_in = c_out
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_to)
        head: list[nn.Module] = [nn.Flatten()]
        d = c_in * pool_to * pool_to
        for width in fc:
            head += [nn.Linear(d, width), nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout else [])
            d = width
        self.fc = nn.Sequential(*head)
        self.out_dim = d
        self.grid_dim = c_in
        self.frozen = freeze
        self.input_transform = InputTransform(image_size=input_size, mean=(0.5,), std=(0.25,))
        if freeze:
            self.requires_grad_(False)

    def train(self, mode: bool = True) -> "ConvEncoder":
        return super().train(mode and not self.frozen)  # a frozen encoder keeps its BN statistics

    @classmethod
    def requested_image_size(cls, *, input_size: int | None = 64, **config) -> int | None:
        """The side asked of the data when ``data.image_size`` is null (read from the config alone)."""
        return input_size

    def _trunk(self, images: Tensor) -> Tensor:
        return self.features(self.input_transform(images))  # (B, C, h, w)

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, out_dim)."""
        return self.fc(self.pool(self._trunk(images)))

    def grid(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, N, grid_dim): one feature per spatial cell, for attention."""
        return self._trunk(images).flatten(2).transpose(1, 2)
