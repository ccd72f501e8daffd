"""CPU kernels for the step loop: the per-step recurrent matmul through oneDNN, and a cache of
what generation derives from weights once (not at every step).

On CPU, torch.mm goes through MKL, which on AMD CPUs reaches about half of oneDNN's speed for the
step loop's small matmuls; the fused RNN kernels use oneDNN already. (Measured side by side:
python -m benchmarks.speed.)
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch import Tensor, nn

#: oneDNN for the step loop's per-step matmuls on CPU (float32). False: torch.mm everywhere.
USE_ONEDNN = True


def onednn_matmul(w: Tensor) -> Callable[[Tensor], Tensor] | None:
    """``x -> x @ w^T`` through oneDNN, with ``w`` converted once (per sequence, not per step);
    None where it does not apply (not CPU float32, or oneDNN missing)."""
    if not (USE_ONEDNN and w.device.type == "cpu" and w.dtype == torch.float32
            and torch.backends.mkldnn.is_available()):
        return None
    wm = w.detach().contiguous().to_mkldnn()
    return lambda x: torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), wm).to_dense()


def recording() -> bool:
    """The model is being recorded for export (``torch.jit.trace``, ``torch.export``): what runs
    becomes a graph, which records neither a cache keyed on a tensor's storage nor oneDNN tensors."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


_WEIGHT_CACHES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def cached_for_weights(owner: nn.Module, name: str, weights: tuple[Tensor, ...], make: Callable[[], object],
                       *key: object) -> object:
    """``make()``, kept for ``owner`` under ``name`` until one of ``weights`` changes (an optimizer
    step or a load changes it in place, a move gives it new storage) or ``key`` does: what
    generation derives from the weights once, not at every step (a validation pass, a predict call)."""
    key = (*key, *((w.data_ptr(), w._version) for w in weights))
    store = _WEIGHT_CACHES.setdefault(owner, {})
    if name not in store or store[name][0] != key:
        store[name] = (key, make())
    return store[name][1]


def prepared_step(cell) -> Callable:
    """``cell.step`` with what a cell with a recurrent weight needs once per sequence, not per
    step: W_hh transposed, or (generating on CPU, no gradients) a oneDNN matmul kept until the
    weights change. Other cells: their ``step`` as it is."""
    w = getattr(cell, "W_hh", None)
    if w is None or not hasattr(cell, "step_cached"):
        return cell.step
    w_t = None
    if not torch.is_grad_enabled() and not recording():
        w_t = cached_for_weights(cell, "onednn_w_hh", (w,), lambda: onednn_matmul(w), USE_ONEDNN)
    if w_t is None:
        w_t = w.t()
    return lambda xp, s: cell.step(xp, s, w_t)
