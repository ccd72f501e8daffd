"""Torchvision backbones as image encoders: weights, preprocessing and freezing in one place."""
from __future__ import annotations

import logging
import urllib.error
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from zoo.errors import ConfigError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_weights(arch: str, builder, weights_enum) -> nn.Module:
    """Build ``arch`` with torchvision's default weights, or say clearly why it cannot."""
    weights = weights_enum.DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return builder(weights=weights)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        if cached.exists() and cached.stat().st_size < 1024:
            cached.unlink()  # a failed download leaves a stub behind
        raise ConfigError(
            f"encoder={arch} with encoder.pretrained=true needs torchvision's weights {weights} "
            f"({weights.url}), which are not in the cache ({cached}) and could not be downloaded ({e}). "
            f"Connect to the internet once, or copy the file to {cached}, "
            f"or train from scratch with encoder.pretrained=false"
        ) from e


class BackboneEncoder(nn.Module):
    """Base of the torchvision encoders: weights, ImageNet normalisation, optional resize, freezing.

    A family names its torchvision builders in ``builders`` (arch -> (builder, weights enum))
    and says in ``split`` how a network divides into ``trunk`` (images -> grid (B, C, h, w))
    and ``head`` (grid -> (B, out_dim)).
    """

    consumes = "image"
    produces = "vector"
    builders: ClassVar[dict[str, tuple[Callable, Any]]] = {}

    def __init__(self, *, arch: str, pretrained: bool, freeze: bool, input_size: int | None) -> None:
        super().__init__()
        if arch not in self.builders:
            raise ValueError(f"encoder.arch must be one of {sorted(self.builders)}, got {arch!r}")
        builder, weights = self.builders[arch]
        net = load_weights(arch, builder, weights) if pretrained else builder(weights=None)
        self.trunk, self.head, self.out_dim, self.grid_dim = self.split(net)
        self.input_size = input_size
        self.frozen = freeze
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if freeze:
            self.requires_grad_(False)

    @staticmethod
    def split(net: nn.Module) -> tuple[nn.Module, nn.Module, int, int]:
        """(trunk, head, out_dim, grid_dim) of a torchvision network."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "BackboneEncoder":
        return super().train(mode and not self.frozen)

    def _prepare(self, images: Tensor) -> Tensor:
        if self.input_size and images.shape[-1] != self.input_size:
            images = nn.functional.interpolate(images, size=(self.input_size, self.input_size),
                                               mode="bilinear", align_corners=False, antialias=True)
        return (images - self.mean) / self.std

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, out_dim)."""
        return self.head(self.trunk(self._prepare(images)))

    def grid(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, N, grid_dim)."""
        return self.trunk(self._prepare(images)).flatten(2).transpose(1, 2)
