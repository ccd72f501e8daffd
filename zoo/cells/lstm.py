"""The LSTM cell (Hochreiter & Schmidhuber), gate order as torch's nn.LSTM."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell


class LSTMCell(Cell):
    """Long short-term memory.

        [i, f, g, o] = W_xh x_t + W_hh h_{t-1} + b        # (B, 4H)
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    State is ``(h, c)``, both (B, H).
    """

    gates = 4
    fused_kernel = nn.LSTM

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        z = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return z, z.clone()

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = state
        i, f, g, o = torch.addmm(xp, h, self.W_hh.t()).chunk(4, dim=1)  # each (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)
