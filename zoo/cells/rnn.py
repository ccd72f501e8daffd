"""The vanilla RNN cell of the lecture."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell, RecurrentWeight, recurrent_matmul, tanh


class RNNCell(Cell):
    """Vanilla (Elman) cell.

        h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)

    The output ``y_t = W_hy h_t`` belongs to the head, not the cell.
    """

    gates = 1
    fused_kernel = nn.RNN

    def step_cached(self, xp: Tensor, state: Tensor, w_hh_t: RecurrentWeight | None = None):
        h = tanh(recurrent_matmul(state, self.W_hh.t() if w_hh_t is None else w_hh_t, add=xp))  # (B, H)
        return h, h, (h,)

    def step_backward(self, cache, d_new):
        (h,), (dh,) = cache, d_new
        d_pre = dh * (1 - h * h)
        return d_pre, d_pre, (None,), ()
