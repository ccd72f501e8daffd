"""The vanilla RNN cell of the lecture."""
from __future__ import annotations

from torch import Tensor, nn

from zoo.cells.base import Cell, RecurrentWeight, recurrent_matmul, tanh


class RNNCell(Cell):
    """Vanilla (Elman) cell.

        h_t = tanh(W_hh h_{t-1} + W_xh x_t + b + b_hh)  (+ W_ih u_t: an extra input, the lecture's image)

    The output ``y_t = W_hy h_t`` belongs to the head, not the cell.
    Extras: torch's ``nn.RNN`` kernel, a hand-written backward step.
    """

    gates = 1
    fused_kernel = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, extra_size: int = 0) -> None:
        super().__init__(input_size, hidden_size, extra_size)
        self.W_hh = self.weight(hidden_size, hidden_size)
        self.b_hh = self.weight(hidden_size)

    def step(self, xp: Tensor, state: Tensor, w_hh_t: RecurrentWeight | None = None):
        return self.step_cached(xp, state, w_hh_t)[:2]

    # -- extras: the fused kernel's layout, the hand-written backward ------------------
    def fused_weights(self):
        return self.W_xh, self.W_hh, self.b, self.b_hh

    def step_cached(self, xp: Tensor, state: Tensor, w_hh_t: RecurrentWeight | None = None):
        h = tanh(recurrent_matmul(state, self.W_hh.t() if w_hh_t is None else w_hh_t, add=xp))  # (B, H)
        return h, h, (h,)

    def step_backward(self, cache, d_new):
        (h,), (dh,) = cache, d_new
        d_pre = dh * (1 - h * h)
        return d_pre, d_pre, (None,), ()
