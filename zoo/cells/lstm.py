"""The LSTM cell (Hochreiter & Schmidhuber), gate order as torch's nn.LSTM."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell, RecurrentWeight, recurrent_matmul, tanh


class LSTMCell(Cell):
    """Long short-term memory.

        [i, f, g, o] = W_xh x_t + W_hh h_{t-1} + b + b_hh  # (B, 4H); b_hh: torch's second bias
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    State is ``(h, c)``, both (B, H). ``forget_bias`` is added to f's bias at initialisation
    (Jozefowicz et al., 2015: 1.0 keeps the memory, and the gradient, alive over long spans early
    in training; 0.0 is torch's nn.LSTM initialisation). Extras: torch's ``nn.LSTM`` kernel, a
    hand-written backward step.
    """

    gates = 4
    fused_kernel = nn.LSTM

    def __init__(self, input_size: int, hidden_size: int, extra_size: int = 0, forget_bias: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, extra_size)
        self.W_hh = self.weight(4 * hidden_size, hidden_size)
        self.b_hh = self.weight(4 * hidden_size)
        self.forget_bias = forget_bias
        self._open_forget_gate()

    def _open_forget_gate(self) -> None:
        with torch.no_grad():
            self.b[self.hidden_size:2 * self.hidden_size].add_(self.forget_bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._open_forget_gate()

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> tuple[Tensor, Tensor]:
        z = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return z, z.clone()

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor], w_hh_t: RecurrentWeight | None = None):
        return self.step_cached(xp, state, w_hh_t)[:2]

    # -- extras: the fused kernel's layout, the hand-written backward ------------------
    def fused_weights(self):
        return self.W_xh, self.W_hh, self.b, self.b_hh

    def step_cached(self, xp: Tensor, state: tuple[Tensor, Tensor], w_hh_t: RecurrentWeight | None = None):
        h, c = state
        H = self.hidden_size
        gates = recurrent_matmul(h, self.W_hh.t() if w_hh_t is None else w_hh_t, add=xp)  # (B, 4H)
        i, f, _, o = torch.sigmoid(gates).chunk(4, dim=1)  # one sigmoid for the three gates (g's is unused)
        g = tanh(gates[:, 2 * H:3 * H])
        c_new = torch.addcmul(f * c, i, g)
        tc = tanh(c_new)
        h_new = o * tc
        return h_new, (h_new, c_new), (i, f, g, o, c, tc)

    def step_backward(self, cache, d_new):
        i, f, g, o, c_prev, tc = cache
        dh, dc = d_new
        dc = torch.addcmul(dc, dh * o, 1 - tc * tc)  # through h = o * tanh(c)
        d_gates = torch.cat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g * g),
                             dh * tc * o * (1 - o)], dim=1)
        return d_gates, d_gates, (None, dc * f), ()
