"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate
depend on the input only, so that training could run as a parallel scan (not used here: on a
CPU a loop is faster)."""
from __future__ import annotations

import torch
from torch import Tensor

from zoo.cells.base import Cell


class MinGRUCell(Cell):
    """    z_t = sigmoid(W_z x_t + b_z),   h~_t = W_h x_t + b_h      # [W_z; W_h] = W_xh: no W_hh
        h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
    """

    gates = 2

    def step(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        z, candidate = xp.chunk(2, dim=1)
        h = torch.lerp(state, candidate, torch.sigmoid(z))  # (1 - z) h_{t-1} + z h~
        return h, h
