"""An image read as a sequence of rows (the lecture's "classify images by a series of glimpses")."""
from __future__ import annotations

from torch import Tensor, nn


class RowsEncoder(nn.Module):
    """(B, C, H, W) -> (B, H, C*W): step t sees row t of every channel, optionally projected to ``dim``."""

    consumes = "image"
    produces = "sequence"

    def __init__(self, image_shape: tuple[int, int, int], *, dim: int | None = None) -> None:
        super().__init__()
        c, h, w = image_shape
        self.proj = nn.Linear(c * w, dim) if dim else nn.Identity()
        self.out_dim = dim or c * w

    def forward(self, images: Tensor) -> Tensor:
        B, C, H, W = images.shape
        return self.proj(images.permute(0, 2, 1, 3).reshape(B, H, C * W))
