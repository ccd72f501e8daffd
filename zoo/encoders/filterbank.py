"""DRAW's attention (Gregor et al. 2015, section 3.2): an N x N grid of Gaussian filters that
reads a patch of an image, or writes one onto a canvas, where a vector of five numbers says.

    (g~x, g~y, log s2, log d~, log gamma) = params            # (B, 5), e.g. W h_{t-1}
    gx = (W + 1)/2 (g~x + 1),  gy = (H + 1)/2 (g~y + 1)       # the grid's centre, in pixels
    d  = (max(H, W) - 1)/(N - 1) exp(log d~)                  # the stride between filters
    mu_x^i = gx + (i - N/2 - 1/2) d,  likewise mu_y^j         # i, j = 1..N
    F_x[i, a] = exp(-(a - mu_x^i)^2 / (2 s2)) / Z_x           # (B, N, W), each row sums to 1

    read(x)  = gamma F_y x F_x^T          (B, C, H, W) -> (B, C, N, N)
    write(p) = 1/gamma F_y^T p F_x        (B, C, N, N) -> (B, C, H, W)

Every step is differentiable in the parameters, so where to look is learned by backpropagation.
Reading costs N (H + W) per channel and column: it grows with the image (unlike the retina's
crops, :mod:`zoo.encoders.retina`), but stays far below a convolution over the whole image.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class GaussianFilterbank(nn.Module):
    """N x N Gaussian filters over H x W images."""

    where_size = 5  # the parameters of one read or write

    def __init__(self, N: int, height: int, width: int) -> None:
        super().__init__()
        if N < 2:
            raise ValueError(f"a Gaussian filterbank needs N >= 2 filters a side, got {N}")
        self.N, self.H, self.W = N, height, width
        self.register_buffer("_grid", torch.arange(N, dtype=torch.float32) - N / 2 - 0.5 + 1, persistent=False)
        # pixel coordinates 1..W and 1..H, as in the paper's formulas
        self.register_buffer("_cols", torch.arange(1, width + 1, dtype=torch.float32), persistent=False)
        self.register_buffer("_rows", torch.arange(1, height + 1, dtype=torch.float32), persistent=False)

    def filters(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """params (B, 5) -> F_x (B, N, W), F_y (B, N, H), gamma (B,)."""
        gx_, gy_, log_s2, log_d, log_gamma = params.float().unbind(1)
        gx = (self.W + 1) / 2 * (gx_ + 1)
        gy = (self.H + 1) / 2 * (gy_ + 1)
        d = (max(self.H, self.W) - 1) / (self.N - 1) * log_d.exp()
        s2 = log_s2.exp().unsqueeze(1).unsqueeze(2)  # (B, 1, 1)
        mu_x = gx.unsqueeze(1) + self._grid * d.unsqueeze(1)  # (B, N)
        mu_y = gy.unsqueeze(1) + self._grid * d.unsqueeze(1)
        fx = torch.exp(-((self._cols - mu_x.unsqueeze(2)) ** 2) / (2 * s2))  # (B, N, W)
        fy = torch.exp(-((self._rows - mu_y.unsqueeze(2)) ** 2) / (2 * s2))  # (B, N, H)
        fx = fx / fx.sum(2, keepdim=True).clamp_min(1e-8)
        fy = fy / fy.sum(2, keepdim=True).clamp_min(1e-8)
        return fx, fy, log_gamma.exp()

    def read(self, images: Tensor, params: Tensor) -> Tensor:
        """images (B, C, H, W) -> the patch (B, C, N, N) the filters see."""
        fx, fy, gamma = self.filters(params)
        patch = fy.unsqueeze(1) @ images.float() @ fx.transpose(1, 2).unsqueeze(1)  # (B, C, N, N)
        return (gamma.view(-1, 1, 1, 1) * patch).to(images.dtype)

    def write(self, patch: Tensor, params: Tensor) -> Tensor:
        """patch (B, C, N, N) -> what it adds to a canvas (B, C, H, W)."""
        fx, fy, gamma = self.filters(params)
        canvas = fy.transpose(1, 2).unsqueeze(1) @ patch.float() @ fx.unsqueeze(1)  # (B, C, H, W)
        return (canvas / gamma.view(-1, 1, 1, 1)).to(patch.dtype)

    def box(self, params: Tensor) -> Tensor:
        """Where the grid lies, for pictures: (B, 4) = (centre x, centre y, width, height) in pixels."""
        gx_, gy_, _, log_d, _ = params.float().unbind(1)
        d = (max(self.H, self.W) - 1) / (self.N - 1) * log_d.exp()
        side = d * self.N
        return torch.stack([(self.W + 1) / 2 * (gx_ + 1) - 1, (self.H + 1) / 2 * (gy_ + 1) - 1, side, side], 1)
