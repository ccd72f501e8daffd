"""Glimpse encoders: read an image where a model chooses to look, not all of it.

    glimpse(images (B, C, H, W), where (B, where_size)) -> g (B, out_dim)

Both combine *what* was seen with *where* (Mnih et al. 2014, the glimpse network):
``h_what = ReLU(W_g seen)``, ``h_where = ReLU(W_l where)``, ``g = ReLU(W_1 h_what + W_2 h_where)``.

- :class:`RetinaEncoder` (``encoder=retina``): RAM's glimpse sensor, ``scales`` square patches
  around a location ``l`` in [-1, 1]^2, the first ``size`` pixels wide and each next ``ratio``
  times wider, every one brought down to ``size x size`` (a retina: sharp at the centre, coarse
  around it). Cropping is not differentiable in ``l``: the location is learned by REINFORCE. Its
  cost does not depend on the image's size: it reads ``scales * size^2`` pixels (times the
  averaging of the wider patches).
- :class:`FilterbankEncoder` (``encoder=filterbank``): DRAW's N x N Gaussian filterbank read
  (:mod:`zoo.encoders.filterbank`); differentiable in where it looks, so the whole model trains
  by backpropagation.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.encoders.filterbank import GaussianFilterbank


class GlimpseNetwork(nn.Module):
    """What was seen (B, S) and where (B, L) -> g (B, dim)."""

    def __init__(self, seen: int, where: int, *, what_dim: int, where_dim: int, dim: int) -> None:
        super().__init__()
        self.W_g, self.W_l = nn.Linear(seen, what_dim), nn.Linear(where, where_dim)
        self.W_1, self.W_2 = nn.Linear(what_dim, dim), nn.Linear(where_dim, dim, bias=False)

    def forward(self, seen: Tensor, where: Tensor) -> Tensor:
        h_what, h_where = torch.relu(self.W_g(seen)), torch.relu(self.W_l(where))
        return torch.relu(self.W_1(h_what) + self.W_2(h_where))


class RetinaEncoder(nn.Module):
    consumes = "image"
    produces = "glimpse"
    where_size = 2  # (x, y) in [-1, 1]: -1 the left or top edge, 1 the right or bottom
    differentiable = False

    def __init__(self, image_shape: tuple[int, int, int], *, size: int = 8, scales: int = 3, ratio: int = 2,
                 what_dim: int = 128, where_dim: int = 128, dim: int = 256) -> None:
        super().__init__()
        if size < 1 or scales < 1 or ratio < 1:
            raise ValueError(f"encoder.size, encoder.scales and encoder.ratio must be >= 1, got {size}, {scales}, {ratio}")
        c, self.H, self.W = image_shape
        self.size, self.scales, self.ratio = size, scales, ratio
        self.net = GlimpseNetwork(scales * c * size * size, 2, what_dim=what_dim, where_dim=where_dim, dim=dim)
        self.out_dim = dim

    def sense(self, images: Tensor, where: Tensor) -> Tensor:
        """The retina: (B, C, H, W), l (B, 2) -> (B, scales * C, size, size); outside the image: zeros."""
        B = images.shape[0]
        patches = []
        for k in range(self.scales):
            r = self.ratio ** k
            side = self.size * r  # pixels, sampled one by one then averaged r x r: what the wide patch holds
            theta = torch.zeros(B, 2, 3, dtype=images.dtype, device=images.device)
            theta[:, 0, 0], theta[:, 1, 1] = side / self.W, side / self.H  # the patch's half-extent, normalised
            theta[:, :, 2] = where.to(images.dtype)
            grid = nn.functional.affine_grid(theta, (B, images.shape[1], side, side), align_corners=False)
            patch = nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            patches.append(nn.functional.avg_pool2d(patch, r) if r > 1 else patch)
        return torch.cat(patches, 1)

    def forward(self, images: Tensor, where: Tensor) -> Tensor:
        return self.net(self.sense(images, where).flatten(1), where)

    def box(self, where: Tensor) -> Tensor:
        """The widest patch, for pictures: (B, 4) = (centre x, centre y, width, height) in pixels."""
        side = float(self.size * self.ratio ** (self.scales - 1))
        cx, cy = (where[:, 0] + 1) / 2 * self.W - 0.5, (where[:, 1] + 1) / 2 * self.H - 0.5
        return torch.stack([cx, cy, torch.full_like(cx, side), torch.full_like(cy, side)], 1)


class FilterbankEncoder(nn.Module):
    consumes = "image"
    produces = "glimpse"
    where_size = GaussianFilterbank.where_size  # centre, variance, stride, intensity (unconstrained)
    differentiable = True

    def __init__(self, image_shape: tuple[int, int, int], *, size: int = 12, what_dim: int = 128,
                 where_dim: int = 128, dim: int = 256) -> None:
        super().__init__()
        c, h, w = image_shape
        self.bank = GaussianFilterbank(size, h, w)
        self.net = GlimpseNetwork(c * size * size, self.where_size, what_dim=what_dim, where_dim=where_dim, dim=dim)
        self.out_dim = dim

    def forward(self, images: Tensor, where: Tensor) -> Tensor:
        return self.net(self.bank.read(images, where).flatten(1), where)

    def box(self, where: Tensor) -> Tensor:
        return self.bank.box(where)
