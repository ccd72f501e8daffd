"""The GRU cell (Cho et al.), in torch's nn.GRU formulation."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell, RecurrentWeight, recurrent_matmul, tanh


class GRUCell(Cell):
    """Gated recurrent unit.

        [a_r, a_z, a_n] = W_xh x_t + b + [b_hr, b_hz, 0]  # (B, 3H), input half (b_hh = [b_hr, b_hz])
        [u_r, u_z, u_n] = W_hh h_{t-1}                    # (B, 3H), recurrent half
        r = sigmoid(a_r + u_r);  z = sigmoid(a_z + u_z)
        n = tanh(a_n + r * (u_n + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    ``b_hn`` is the one bias that cannot be folded into the input half: the reset gate scales it.
    Extras: torch's ``nn.GRU`` kernel, a hand-written backward step.
    """

    gates = 3
    fused_kernel = nn.GRU

    def __init__(self, input_size: int, hidden_size: int, extra_size: int = 0) -> None:
        super().__init__(input_size, hidden_size, extra_size)
        self.W_hh = self.weight(3 * hidden_size, hidden_size)
        self.b_hn = self.weight(hidden_size)
        self.b_hh = self.weight(2 * hidden_size)  # torch's b_hr, b_hz (its b_hn is ours above)

    def step(self, xp: Tensor, state: Tensor, w_hh_t: RecurrentWeight | None = None):
        return self.step_cached(xp, state, w_hh_t)[:2]

    # -- extras: the fused kernel's layout, the hand-written backward ------------------
    def fused_weights(self):
        return self.W_xh, self.W_hh, self.b, torch.cat([self.b_hh, self.b_hn])

    def step_cached(self, xp: Tensor, state: Tensor, w_hh_t: RecurrentWeight | None = None):
        H = self.hidden_size
        u = recurrent_matmul(state, self.W_hh.t() if w_hh_t is None else w_hh_t)  # (B, 3H)
        r, z = torch.sigmoid(xp[:, :2 * H] + u[:, :2 * H]).chunk(2, dim=1)  # one sigmoid for both gates
        hn = u[:, 2 * H:] + self.b_hn
        n = tanh(torch.addcmul(xp[:, 2 * H:], r, hn))
        h = n + z * (state - n)  # == (1 - z) * n + z * h
        return h, h, (r, z, n, hn, state)

    def step_params(self):
        return (self.b_hn,)

    def step_backward(self, cache, d_new):
        r, z, n, hn, h_prev = cache
        (dh,) = d_new
        d_an = dh * (1 - z) * (1 - n * n)  # through n = tanh(a_n + r * hn)
        d_ar = d_an * hn * r * (1 - r)
        d_az = dh * (h_prev - n) * z * (1 - z)
        d_un = d_an * r
        d_xp = torch.cat([d_ar, d_az, d_an], dim=1)
        d_u = torch.cat([d_ar, d_az, d_un], dim=1)
        return d_xp, d_u, (dh * z,), (d_un.sum(0),)
