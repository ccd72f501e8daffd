"""An image read as a sequence of glimpses: square patches in raster order."""
from __future__ import annotations

from torch import Tensor, nn


class PatchesEncoder(nn.Module):
    """(B, C, H, W) -> (B, (H/p)*(W/p), C*p*p): one patch per step, optionally projected to ``dim``."""

    consumes = "image"
    produces = "sequence"

    def __init__(self, image_shape: tuple[int, int, int], *, patch: int = 4, dim: int | None = None) -> None:
        super().__init__()
        c, h, w = image_shape
        if h % patch or w % patch:
            raise ValueError(f"encoder.patch={patch} must divide the image size {h}x{w}")
        self.unfold = nn.Unfold(kernel_size=patch, stride=patch)
        self.proj = nn.Linear(c * patch * patch, dim) if dim else nn.Identity()
        self.out_dim = dim or c * patch * patch

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(self.unfold(images).transpose(1, 2))  # (B, N, C*p*p)
