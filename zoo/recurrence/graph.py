"""The loop as one op of an exported graph: ``torch.export`` (and the ONNX exporter built on it)
records a Python loop unrolled over the example's length; torch's ``scan`` (a higher-order op,
a prototype in torch 2.x) records it once, so the exported model takes sequences of any length.
The same step and the same masking as :func:`zoo.recurrence.scan`, step by step.
"""
from __future__ import annotations

import torch
from torch import Tensor

from zoo.cells.base import Cell, CellState


def scan(cell: Cell, xp: Tensor, lengths: Tensor | None, s: CellState) -> tuple[Tensor, CellState]:
    """Projected inputs xp (B, T, G) -> outputs (B, T, H) and the final state; past a sequence's
    length the state is kept and the output is zero."""
    from torch._higher_order_ops.scan import scan as torch_scan

    from zoo.recurrence import blend
    from zoo.recurrence.cpu import prepared_step

    step = prepared_step(cell)
    T = xp.shape[1]
    if lengths is None:
        lengths = torch.full((xp.shape[0],), T, dtype=torch.long, device=xp.device)
    alive = (torch.arange(T, device=xp.device)[:, None] < lengths.to(xp.device)[None, :]).unsqueeze(2)  # (T, B, 1)

    def one(state: CellState, inputs: tuple[Tensor, Tensor]) -> tuple[CellState, Tensor]:
        xp_t, alive_t = inputs
        h, new = step(xp_t, state)
        return blend(alive_t, new, state), h * alive_t.to(h.dtype)

    final, outputs = torch_scan(one, s, (xp.transpose(0, 1), alive))  # over dim 0: time
    return outputs.transpose(0, 1), final
