"""The cell contract: one time step, nothing about time, tasks or data.

A cell computes ``h_t = f_W(h_{t-1}, x_t)`` in two halves, so that the time loop
(:class:`zoo.recurrence.Recurrence`) can hoist the input half out of the loop:

    project_input(x)   # (..., I) -> (..., G): W_xh x + b, for all steps in one matmul
    step(xp, state)    # (B, G), state -> (B, H), state: the recurrent half

``forward(x_t, state) = step(project_input(x_t), state)`` is the one-step contract. A cell
author writes ``step`` (and ``init_state`` when the state is not one (B, H) tensor) and nothing
else; ``G = gates * H`` says how wide the projected input is.

What else enters the cell at step t (the image ``v`` of the lecture's captioner, an attention
context, a glimpse) is an extra input ``u_t`` (B, D), read through the cell's ``W_ih`` (G, D):
it adds ``W_ih u_t`` to the same pre-activation as the input, ``h = f(W_xh x + W_hh h + W_ih u)``.
A cell made with ``extra_size=D`` has it; the loop computes the term (:meth:`project_extra`).

State is a tensor ``(B, H)`` or a tuple of them (LSTM: ``(h, c)``); the batch is always dim 0,
so decoders can reorder states for beam search with one ``index_select``.

Optional extras a cell may offer (the loop uses them where they exist, never needs them):

- a torch kernel with the same math: ``fused_kernel`` (``nn.RNN/LSTM/GRU``) and
  ``fused_weights()`` in its layout (:mod:`zoo.recurrence.fused`);
- a hand-written backward step: ``step_cached``, ``step_backward``, ``step_params`` and the
  recurrent weight ``W_hh`` (:mod:`zoo.recurrence.bptt`).
"""
from __future__ import annotations

import math
from typing import Callable, ClassVar, Union

import torch
from torch import Tensor, nn

CellState = Union[Tensor, tuple[Tensor, ...]]
#: W_hh transposed (G, H)^T, or a prepared matmul h -> h @ W_hh^T (see zoo.recurrence.cpu)
RecurrentWeight = Union[Tensor, Callable[[Tensor], Tensor]]


class Cell(nn.Module):
    """Base class: holds the input projection ``W_xh (G, I)``, its bias ``b (G,)`` (and torch's
    second bias ``b_hh`` where a cell mirrors a torch kernel) and, with ``extra_size``, the extra
    input's ``W_ih (G, D)``."""

    #: number of gate blocks stacked in the projected input (G = gates * H)
    gates: ClassVar[int] = 1

    def __init__(self, input_size: int, hidden_size: int, extra_size: int = 0) -> None:
        super().__init__()
        if input_size < 0 or hidden_size <= 0 or extra_size < 0 or input_size + extra_size == 0:
            raise ValueError(f"cell sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}, "
                             f"extra_size={extra_size}")
        self.input_size, self.hidden_size, self.extra_size = input_size, hidden_size, extra_size
        g = self.gates * hidden_size
        self.W_xh = self.weight(g, input_size)
        self.b = self.weight(g)
        self.W_ih = self.weight(g, extra_size) if extra_size else None
        #: torch's second bias: a cell that mirrors one of torch's kernels (nn.RNN, LSTM, GRU) has
        #: their two biases, b (torch's bias_ih) and b_hh, added where torch adds them. Not the same
        #: model as one bias in training: both get the same gradient, so under Adam their sum moves
        #: twice as far a step (measured: a plain nn.LSTM char model with bias_hh frozen at zero
        #: learned more slowly, benchmarks.parity, README). None for cells with one bias.
        self.b_hh: nn.Parameter | None = None

    @property
    def gate_size(self) -> int:
        """G: the width of the projected input."""
        return self.gates * self.hidden_size

    def weight(self, *shape: int) -> nn.Parameter:
        """A parameter with torch's own RNN initialisation, U(-1/sqrt(H), 1/sqrt(H)), so that zoo
        and torch cells start alike: what a cell makes its own weights with (``W_hh``, ...)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def input_bias(self) -> Tensor:
        """The bias of the input half (G,): ``b``, plus ``b_hh`` where the cell has it (for the
        leading gates it covers: all of them, or a GRU's r and z; its n gate's ``b_hn`` sits
        inside the reset gate)."""
        if self.b_hh is None:
            return self.b
        return self.b + nn.functional.pad(self.b_hh, (0, self.b.shape[0] - self.b_hh.shape[0]))

    def project_input(self, x: Tensor) -> Tensor:
        """``W_xh x + b (+ b_hh)``: (..., I) -> (..., G)."""
        return nn.functional.linear(x, self.W_xh, self.input_bias())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint saved before the cells had torch's second bias: b_hh = 0 is the function it
        # was trained as, exactly
        if self.b_hh is not None and prefix + "b" in state_dict and prefix + "b_hh" not in state_dict:
            state_dict[prefix + "b_hh"] = torch.zeros_like(self.b_hh)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def project_extra(self, u: Tensor) -> Tensor:
        """``W_ih u``: the extra input's term, (..., D) -> (..., G)."""
        return nn.functional.linear(u, self.W_ih)

    def step(self, xp: Tensor, state: CellState) -> tuple[Tensor, CellState]:
        """The recurrent half: the projected input (B, G) and the state -> h (B, H), the new state."""
        raise NotImplementedError

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> CellState:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    @staticmethod
    def output(state: CellState) -> Tensor:
        """The part of a state that is the cell's output h (B, H)."""
        return state[0] if isinstance(state, tuple) else state

    def forward(self, x: Tensor, state: CellState | None = None, u: Tensor | None = None) -> tuple[Tensor, CellState]:
        """One step: x (B, I) [and the extra input u (B, D)] -> h (B, H), the new state."""
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        xp = self.project_input(x)
        return self.step(xp if u is None else xp + self.project_extra(u), state)


def tanh(x: Tensor) -> Tensor:
    """tanh, as ``2 sigmoid(2x) - 1`` on CPU: the same function (within 2e-7 in float32), and
    several times faster for a step's activations there, since torch's CPU sigmoid is about ten
    times faster per element than its tanh (measured: python -m benchmarks.speed)."""
    if x.device.type != "cpu":
        return torch.tanh(x)
    return torch.sigmoid(2 * x) * 2 - 1


def recurrent_matmul(h: Tensor, w_hh_t: RecurrentWeight, add: Tensor | None = None) -> Tensor:
    """``add + h @ W_hh^T``: the recurrent half of a pre-activation."""
    if isinstance(w_hh_t, Tensor):
        return torch.mm(h, w_hh_t) if add is None else torch.addmm(add, h, w_hh_t)
    out = w_hh_t(h)
    return out if add is None else out + add
