"""What an image encoder wants as input: the size to ask the data for, and the steps its forward takes.

Pretrained weights come with the preprocessing they were trained with (torchvision's ImageNet
ResNets: shorter side to 256, centre crop 224, ImageNet mean/std). An image encoder publishes it
as ``encoder.input_transform``, an :class:`InputTransform`:

    image_size   the square side the encoder wants from the data (None: any, the data decides)
    resize, crop what forward does with whatever size it gets: the shorter side to ``resize``
                 (aspect kept), then the central ``crop`` x ``crop``; with ``crop=None`` the whole
                 image is resized to ``resize`` x ``resize``; ``resize=None``: images as given
    mean, std    then ``(x - mean) / std`` per channel, on images in [0, 1]

A data module that gives ``image_size`` images spares the encoder a resize (only the crop is
left); any other size still reaches the network as the weights' recipe would have made it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class InputTransform:
    image_size: int | None = None
    resize: int | None = None
    crop: int | None = None
    mean: tuple[float, ...] = (0.0,)  # one value per channel, or one for all
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if self.crop is not None and (self.resize is None or self.crop > self.resize):
            raise ValueError(f"a crop of {self.crop} needs a resize of at least that, got {self.resize}")
        # made once, not per call: a tensor made in forward is a constant a trace warns about
        object.__setattr__(self, "_mean", torch.tensor(self.mean).view(-1, 1, 1))
        object.__setattr__(self, "_std", torch.tensor(self.std).view(-1, 1, 1))

    def __call__(self, images: Tensor) -> Tensor:
        """(..., C, H, W) in [0, 1] -> (..., C, h, w) resized, cropped and normalised."""
        lead, (h, w) = images.shape[:-3], images.shape[-2:]
        if self.resize is not None:
            if self.crop is None:  # the whole image to resize x resize (the aspect is not kept)
                size = (self.resize, self.resize)
            else:  # the shorter side to resize, as torchvision's Resize(int) does
                short, long = min(h, w), max(h, w)
                size_long = int(self.resize * long / short)
                size = (self.resize, size_long) if h <= w else (size_long, self.resize)
            if (h, w) != size:
                flat = images.reshape(-1, *images.shape[-3:])  # interpolate wants (N, C, H, W)
                images = nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False,
                                                   antialias=True).reshape(*lead, -1, *size)
                h, w = size
            if self.crop is not None:
                top, left = round((h - self.crop) / 2), round((w - self.crop) / 2)  # torchvision's center_crop
                images = images[..., top:top + self.crop, left:left + self.crop]
        return (images - self._mean.to(images)) / self._std.to(images)
