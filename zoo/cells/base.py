"""The cell contract: one time step, nothing about time, tasks or data.

A cell computes ``h_t = f_W(h_{t-1}, x_t)`` in two halves so that the time loop
(:class:`zoo.recurrence.Recurrence`) can hoist the input half out of the loop:

    project_input(x)   # (..., I) -> (..., G): W_xh x + b, for all steps in one matmul
    step(xp, state)    # (B, G), state -> (B, H), state: the recurrent half

``forward(x_t, state) = step(project_input(x_t), state)`` is the one-step contract.

A cell may also write its own backward step (``step_cached`` + ``step_backward``); the step
loop then trains through :class:`zoo.recurrence.StepLoopBPTT`, which runs backpropagation
through time by hand: per step only the elementwise gradient and one ``dh @ W_hh``, and the
gradient of ``W_hh`` as one matmul over all steps at the end, instead of autograd's graph of
small per-step ops. ``step`` stays the one source of the forward math: it calls ``step_cached``.
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
from typing import Callable, ClassVar, Union

import torch
from torch import Tensor, nn

CellState = Union[Tensor, tuple[Tensor, ...]]
#: W_hh transposed (G, H)^T, or a prepared matmul h -> h @ W_hh^T (see zoo.recurrence.onednn_matmul)
RecurrentWeight = Union[Tensor, Callable[[Tensor], Tensor]]


def tanh(x: Tensor) -> Tensor:
    """tanh, as ``2 sigmoid(2x) - 1`` on CPU: the same function (within 2e-7 in float32), and
    3x faster for a step's activations there, since torch's CPU sigmoid is about ten times faster
    per element than its tanh (measured on this project's machine: 82k floats, tanh 89 us, while
    sigmoid takes 38 us for four times as many)."""
    if x.device.type != "cpu":
        return torch.tanh(x)
    return torch.sigmoid(2 * x) * 2 - 1


def recurrent_matmul(h: Tensor, w_hh_t: RecurrentWeight, add: Tensor | None = None) -> Tensor:
    """``add + h @ W_hh^T``: the recurrent half of a pre-activation."""
    if isinstance(w_hh_t, Tensor):
        return torch.mm(h, w_hh_t) if add is None else torch.addmm(add, h, w_hh_t)
    out = w_hh_t(h)
    return out if add is None else out + add


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

    def step(self, xp: Tensor, state: CellState, w_hh_t: RecurrentWeight | None = None) -> tuple[Tensor, CellState]:
        """The recurrent half: projected input (B, G) and state -> h (B, H), new state.
        ``w_hh_t``: W_hh transposed (or a prepared matmul), which a time loop makes once per
        sequence, not per step; None: from W_hh."""
        h, state, _ = self.step_cached(xp, state, w_hh_t)
        return h, state

    def step_cached(self, xp: Tensor, state: CellState, w_hh_t: RecurrentWeight | None = None
                    ) -> tuple[Tensor, CellState, tuple]:
        """``step`` that also returns what ``step_backward`` needs (activations)."""
        raise NotImplementedError

    #: parameters besides W_hh that step() reads (their gradients come from step_backward)
    def step_params(self) -> tuple[nn.Parameter, ...]:
        return ()

    def step_backward(self, cache: tuple, d_new: tuple[Tensor, ...]
                      ) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...], tuple[Tensor, ...]]:
        """The vector-Jacobian product of one step, for the hand-written BPTT.

        ``d_new``: gradients of the new state's parts (h first, as in ``state_parts``).
        Returns ``(d_xp, d_u, d_prev, d_params)``: the gradient of the projected input (B, G); of
        the recurrent pre-activation ``u = h_prev @ W_hh^T`` (B, G), from which the loop makes
        both ``d_h_prev += d_u @ W_hh`` and ``d_W_hh = sum_t d_u^T h_prev``; the gradients of the
        previous state's parts that bypass ``W_hh`` (None: zero); and of ``step_params()``.
        """
        raise NotImplementedError

    @property
    def has_backward(self) -> bool:
        return type(self).step_backward is not Cell.step_backward

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
