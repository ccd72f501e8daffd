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

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor], w_hh_t: Tensor | None = None
             ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = state
        gates = torch.addmm(xp, h, self.W_hh.t() if w_hh_t is None else w_hh_t)  # (B, 4H)
        i, f, _, o = torch.sigmoid(gates).chunk(4, dim=1)  # one sigmoid for the three gates (g's is unused)
        g = torch.tanh(gates[:, 2 * self.hidden_size:3 * self.hidden_size])
        c = torch.addcmul(f * c, i, g)
        h = o * torch.tanh(c)
        return h, (h, c)
