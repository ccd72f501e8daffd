"""The vanilla RNN cell of the lecture."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell


class RNNCell(Cell):
    """Vanilla (Elman) cell.

        h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)

    The output ``y_t = W_hy h_t`` belongs to the head, not the cell.
    """

    gates = 1
    fused_kernel = nn.RNN

    def step(self, xp: Tensor, state: Tensor, w_hh_t: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = torch.tanh(torch.addmm(xp, state, self.W_hh.t() if w_hh_t is None else w_hh_t))  # (B, H)
        return h, h
