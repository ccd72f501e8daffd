"""Backpropagation through time by hand, for the cells that offer their backward step.

A cell offers it with ``step_cached(xp, state, w_hh_t) -> (h, new state, cache)`` (its ``step``
that also returns the activations), ``step_backward(cache, d_new)`` and ``step_params()`` (its
parameters besides ``W_hh`` that ``step`` reads). The loop then trains through
:class:`StepLoopBPTT`: per step only the elementwise gradient and one ``d_h @ W_hh``, and the
gradient of ``W_hh`` as one matmul over all steps at the end, instead of autograd's graph of
small per-step ops (on CPU the per-step matmuls go through oneDNN). Gradchecked against autograd
through ``step`` (tests/test_cells.py).
"""
from __future__ import annotations

import torch
from torch import Tensor

from zoo.recurrence.cpu import onednn_matmul


def offered(cell) -> bool:
    return hasattr(cell, "step_backward") and hasattr(cell, "W_hh")


def applies(cell, xp: Tensor) -> bool:
    """Training through this cell's loop, and the hand-written backward can do it."""
    return (offered(cell) and torch.is_grad_enabled() and (xp.requires_grad or cell.W_hh.requires_grad)
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def scan(cell, xp: Tensor, lengths: Tensor | None, s):
    """The loop of :func:`zoo.recurrence.scan`, trained through :class:`StepLoopBPTT`."""
    T = xp.shape[1]
    alive = None
    if lengths is not None:
        lengths = lengths.to(xp.device)
        alive = (torch.arange(T, device=xp.device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(2)  # (T, B, 1)
    is_tuple = isinstance(s, tuple)
    params = tuple(cell.step_params()) if hasattr(cell, "step_params") else ()
    out, *final = StepLoopBPTT.apply(cell, alive, xp, cell.W_hh, len(params), *params, *(s if is_tuple else (s,)))
    return out, tuple(final) if is_tuple else final[0]


class StepLoopBPTT(torch.autograd.Function):
    """Forward: the same steps as the plain loop (``cell.step_cached``), keeping each step's
    activations. Backward, from the last step to the first: the cell's elementwise gradient, then
    ``d_h_prev = d_u @ W_hh``: one matmul a step instead of autograd's two (``d_h`` and a per-step
    ``d_W_hh``) plus its bookkeeping; ``d_W_hh`` is one (G, T*B) x (T*B, H) matmul at the end.
    Masked steps (past a sequence's end) pass the state's gradient through unchanged.
    Inputs: cell, alive (T, B, 1) bool or None, xp (B, T, G), W_hh, n_params, *params, *state parts.
    """

    @staticmethod
    def forward(ctx, cell, alive, xp, w_hh, n_params, *rest):
        from zoo.recurrence import blend

        state = tuple(rest[n_params:])
        is_tuple = len(state) > 1
        w_hh_t = onednn_matmul(w_hh) or w_hh.t()
        outs, caches, h_prev = [], [], []
        for t in range(xp.shape[1]):
            h_prev.append(state[0])
            h, new, cache = cell.step_cached(xp[:, t], state if is_tuple else state[0], w_hh_t)
            new = new if is_tuple else (new,)
            caches.append(cache)
            if alive is not None:
                state = blend(alive[t], new, state)
                h = h * alive[t]
            else:
                state = new
            outs.append(h)
        ctx.cell, ctx.caches, ctx.alive, ctx.n_params = cell, caches, alive, n_params
        ctx.save_for_backward(w_hh, torch.stack(h_prev))
        return (torch.stack(outs, dim=1), *state)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_out, *d_state):
        w_hh, h_prev = ctx.saved_tensors
        cell, caches, alive = ctx.cell, ctx.caches, ctx.alive
        T, B, H = h_prev.shape
        d_state = [d if d is not None else h_prev.new_zeros(B, H) for d in d_state]
        d_xp, d_u = None, h_prev.new_empty(T, B, w_hh.shape[0])
        d_params: list = [None] * ctx.n_params
        back = onednn_matmul(w_hh.t())  # d_u -> d_u @ W_hh
        for t in range(T - 1, -1, -1):
            d_new = list(d_state)
            if d_out is not None:
                d_new[0] = d_new[0] + d_out[:, t]
            if alive is not None:
                d_new = [torch.where(alive[t], d, 0.0) for d in d_new]
            dxp, du, d_direct, dp = cell.step_backward(caches[t], tuple(d_new))
            if d_xp is None:
                d_xp = dxp.new_empty(B, T, dxp.shape[1])
            d_xp[:, t] = dxp
            d_u[t] = du
            d_prev = [d if d is not None else torch.zeros_like(d_state[k]) for k, d in enumerate(d_direct)]
            d_prev[0] = d_prev[0] + back(du) if back is not None else torch.addmm(d_prev[0], du, w_hh)
            if alive is not None:  # a masked step kept the old state: its gradient passes through
                d_prev = [p + torch.where(alive[t], 0.0, d) for p, d in zip(d_prev, d_state)]
            d_state = d_prev
            d_params = [g if a is None else a + g for a, g in zip(d_params, dp)]
        d_w_hh = d_u.reshape(T * B, -1).t() @ h_prev.reshape(T * B, H)
        return (None, None, d_xp, d_w_hh, None, *d_params, *d_state)
