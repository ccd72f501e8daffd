"""The fast path: torch's fused ``nn.RNN/LSTM/GRU`` kernels, run with the cells' own parameters.

A cell that offers a kernel names it (``fused_kernel``) and gives its weights in that kernel's
layout (``fused_weights() -> (weight_ih, weight_hh, bias_ih, bias_hh or None)``). A template of
the kernel (no parameters of its own, never registered as a submodule) is built per shape and
called through ``torch.func.functional_call`` with the cells' parameters lent to it, so gradients
reach the cells, and a checkpoint holds the cells' names (``W_xh``, ``W_hh``, ...).

A constant extra input ``v`` is more input columns: layer 0 reads ``[x_t; v]`` with weights
``[W_xh, W_ih]``, which is the lecture's ``W_xh x + W_ih v`` in one kernel call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.recurrence.cpu import recording

if TYPE_CHECKING:
    from zoo.recurrence import Recurrence, StepInput


class Kernels:
    """The kernel templates of one Recurrence (none if its cell offers no kernel)."""

    def __init__(self, rec: "Recurrence") -> None:
        self._rec = (rec,)  # a tuple: not registered as a submodule of the Recurrence
        self.kind: type[nn.RNNBase] | None = getattr(type(rec.cells[0]), "fused_kernel", None)
        self._templates: dict[tuple, nn.RNNBase] = {}

    @property
    def rec(self) -> "Recurrence":
        return self._rec[0]

    def apply(self) -> bool:
        """The kernel can run this call: the cell has one, it is wanted, and this is not a trace
        for export (the cells' parameters cannot be lent to a traced kernel)."""
        return self.kind is not None and self.rec.use_fused and not recording()

    def _template(self, input_size: int, num_layers: int, bidirectional: bool, like: Tensor) -> nn.RNNBase:
        """A kernel of this shape, on the device and in the dtype of ``like``, made on first use and
        without initialising its own weights: that would draw from torch's random generator, and a
        run resumed mid-epoch (generator restored, templates made afresh) would drop out other units."""
        key = (input_size, num_layers, bidirectional, like.device, like.dtype)
        if key not in self._templates:
            self._templates[key] = new_kernel(self.kind, self.rec, input_size, num_layers, bidirectional,
                                              skip_init=True, device=like.device, dtype=like.dtype
                                              ).requires_grad_(False)
        return self._templates[key]

    def weights(self, first: int, extra: Tensor | None = None) -> dict[str, Tensor]:
        """The cells' parameters under the kernel's names, for layers first..L-1 (with layer 0's
        weight_ih widened by W_ih when an extra input enters)."""
        rec, out = self.rec, {}
        for k, cell in enumerate(rec.cells[first * rec.num_directions:]):
            layer, direction = divmod(k, rec.num_directions)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh, b_ih, b_hh = cell.fused_weights()
            if layer == 0 and first == 0 and extra is not None:
                w_ih = torch.cat([w_ih, cell.W_ih], dim=1)  # (G, I + D)
            out.update({f"weight_ih{suffix}": w_ih, f"weight_hh{suffix}": w_hh, f"bias_ih{suffix}": b_ih,
                        f"bias_hh{suffix}": torch.zeros_like(b_ih) if b_hh is None else b_hh})
        return out

    def run(self, first: int, x: Tensor, lengths: Tensor | None, state: list,
            extra: "StepInput | None") -> tuple[Tensor, list]:
        """Layers first..L-1, both directions, in one kernel call; a constant extra input enters layer 0."""
        rec = self.rec
        if extra is not None:  # [x_t; v] at every step
            v = extra.value
            x = torch.cat([x, v.unsqueeze(1).expand(x.shape[0], x.shape[1], v.shape[1])], dim=2)
        kernel = self._template(x.shape[2], rec.num_layers - first, rec.num_directions == 2, rec.cells[0].W_xh)
        kernel.train(rec.training)  # inter-layer dropout follows the recurrence's mode
        return run_kernel(kernel, self.weights(first, None if extra is None else extra.value), x, lengths,
                          to_kernel_state(state))

    def standalone(self) -> nn.RNNBase:
        """A real nn.RNN/LSTM/GRU holding a copy of the cells' weights (for export)."""
        rec = self.rec
        if self.kind is None:
            raise TypeError(f"{type(rec.cells[0]).__name__} has no torch kernel")
        kernel = new_kernel(self.kind, rec, rec.input_size, rec.num_layers, rec.num_directions == 2)
        with torch.no_grad():
            for name, value in self.weights(0).items():
                getattr(kernel, name).copy_(value)
        return kernel.to(rec.cells[0].W_xh.device).eval()


def new_kernel(kind: type[nn.RNNBase], rec: "Recurrence", input_size: int, num_layers: int,
               bidirectional: bool, skip_init: bool = False, **factory) -> nn.RNNBase:
    make = lambda: kind(input_size, rec.hidden_size, num_layers=num_layers, dropout=rec.dropout if num_layers > 1 else 0.0,
                        bidirectional=bidirectional, batch_first=True)
    if not skip_init:
        return make()
    with torch.device("meta"):  # no storage, no initialisation, no random numbers drawn
        kernel = make()
    return kernel.to_empty(device=factory["device"]).to(factory["dtype"])


def run_kernel(kernel: nn.RNNBase, weights: dict[str, Tensor] | None, x: Tensor, lengths: Tensor | None,
               hx) -> tuple[Tensor, list]:
    """A torch RNN kernel over padded sequences (packed when lengths are given), with ``weights``
    lent to it (``None``: its own). Returns the outputs and the final state as per-cell states."""
    call = (lambda *a: functional_call(kernel, weights, a)) if weights is not None else kernel
    if lengths is None:
        out, hn = call(x, hx)
    else:
        T = x.shape[1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, hn = call(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    return out, from_kernel_state(hn)


def to_kernel_state(states: list) -> Tensor | tuple[Tensor, ...]:
    """Per-cell states [(B, H) or ((B, H), (B, H))] -> the kernel's (L*D, B, H) layout."""
    if isinstance(states[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*states))
    return torch.stack(states)


def from_kernel_state(state: Tensor | tuple[Tensor, ...]) -> list:
    if isinstance(state, tuple):
        return list(zip(*(s.unbind(0) for s in state)))
    return list(state.unbind(0))
