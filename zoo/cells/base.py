"""The cell contract: one time step, nothing about time, tasks or data.

A cell computes ``h_t = f_W(h_{t-1}, x_t)`` in two halves so that the time loop
(:class:`zoo.recurrence.Recurrence`) can hoist the input half out of the loop:

    project_input(x)   # (..., I) -> (..., G): W_xh x + b, for all steps in one matmul
    step(xp, state)    # (B, G), state -> (B, H), state: the recurrent half

``forward(x_t, state) = step(project_input(x_t), state)`` is the one-step contract.
A conditioning term (the image ``W_ih v`` of the captioning lecture, an attention
context) is added to ``xp`` before ``step``: it enters the same pre-activation as the input.

State is a tensor ``(B, H)`` or a tuple of them (LSTM: ``(h, c)``); the batch is
always dim 0, so decoders can reorder states for beam search with one ``index_select``.

A cell whose update equals a torch fused kernel names it in ``fused_kernel``; the
recurrence then runs whole sequences through ``nn.RNN/LSTM/GRU`` with the cell's own
parameters (``fused_weights``), and the step loop only where the math needs it.
"""
from __future__ import annotations

import math
from typing import ClassVar, Union

import torch
from torch import Tensor, nn

CellState = Union[Tensor, tuple[Tensor, ...]]


class Cell(nn.Module):
    """Base class: holds ``W_xh (G, I)``, ``W_hh (G, H)`` and the input bias ``b (G,)``."""

    #: number of gate blocks stacked in W_xh / W_hh (G = gates * H)
    gates: ClassVar[int] = 1
    #: the torch module with the same math, or None
    fused_kernel: ClassVar[type[nn.RNNBase] | None] = None

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"cell sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        g = self.gates * hidden_size
        self.W_xh = nn.Parameter(torch.empty(g, input_size))
        self.W_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.b = nn.Parameter(torch.empty(g))
        self.reset_parameters()

    @property
    def gate_size(self) -> int:
        """G: the width of the pre-activation a conditioning term must have."""
        return self.gates * self.hidden_size

    def reset_parameters(self) -> None:
        # torch's own RNN initialisation, so the fused and the zoo cell start alike
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def project_input(self, x: Tensor) -> Tensor:
        """``W_xh x + b``: (..., I) -> (..., G)."""
        return nn.functional.linear(x, self.W_xh, self.b)

    def step(self, xp: Tensor, state: CellState, w_hh_t: Tensor | None = None) -> tuple[Tensor, CellState]:
        """The recurrent half: projected input (B, G) and state -> h (B, H), new state.
        ``w_hh_t``: W_hh transposed, which a time loop makes once per sequence, not per step."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: CellState | None = None) -> tuple[Tensor, CellState]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        return self.step(self.project_input(x), state)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> CellState:
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    @staticmethod
    def output(state: CellState) -> Tensor:
        """The part of a state that is the cell's output h (B, H)."""
        return state[0] if isinstance(state, tuple) else state

    # -- fused path ---------------------------------------------------------------
    def fused_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) in the layout of ``fused_kernel``."""
        return self.W_xh, self.W_hh, self.b, torch.zeros_like(self.b)

    @staticmethod
    def to_fused_state(states: list[CellState]) -> Tensor | tuple[Tensor, ...]:
        """Per-layer states [(B, H)] -> the kernel's (L, B, H) layout."""
        if isinstance(states[0], tuple):
            return tuple(torch.stack(parts) for parts in zip(*states))
        return torch.stack(states)

    @staticmethod
    def from_fused_state(state: Tensor | tuple[Tensor, ...]) -> list[CellState]:
        if isinstance(state, tuple):
            return list(zip(*(s.unbind(0) for s in state)))
        return list(state.unbind(0))
