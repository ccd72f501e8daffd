"""The only time loop in the zoo: run a cell over sequences.

    Recurrence(cell, input_size, hidden_size, num_layers, dropout, bidirectional)
    forward(x (B, T, I), lengths (B,) | None, state | None, extra | None)
        -> outputs (B, T, D*H), final state
    step(x (B, I), state, extra | None) -> top output (B, H), state     # decoders, generating

State is a list with one cell state per (layer, direction), layer-major:
``[l0_fwd, l0_bwd, l1_fwd, ...]``; every tensor in it has the batch on dim 0.

Paths, chosen per call:
- **fused**: no conditioning term -> one call of ``nn.RNN/LSTM/GRU`` for all layers and
  directions, with the cells' own parameters (``torch.func.functional_call``), padding
  handled by packing.
- **fused, wider**: a constant conditioning input (``ConstantInput(v, W_ih)``, the lecture's
  ``W_ih v`` at every step) is extra input columns: the kernel reads [x_t; v] with [W_xh, W_ih].
- **loop**: (also when traced for export) a conditioning term ``extra`` enters layer 0 at every
  step: layer 0 is stepped by hand, with its input projection hoisted out of the loop; the
  layers above still take the fused kernel. ``extra`` is a tensor (B, G) added at every step,
  or a callable ``extra(h_top_prev (B, H)) -> (B, G)`` computed from the previous top-layer
  output (attention); a callable steps all layers. Training, a tensor term's loop runs through
  ``StepLoopBPTT`` (the cell's hand-written backward step); on CPU its per-step matmuls, and
  those of ``step`` when generating, go through oneDNN (``onednn_matmul``).

Padding never leaks: with ``lengths`` given, outputs past a sequence's end are zero and the
final state is the state at its last real step, on both paths and both directions.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from zoo.cells.base import Cell, CellState

@dataclass
class ConstantInput:
    """A vector v (B, D) that enters layer 0 at every step through its own weight (G, D):
    the pre-activation gains ``weight @ v`` (the lecture's ``W_ih v``). Mathematically a second
    input column block, so the fused kernel can take it: input [x_t; v], weight [W_xh, W_ih]."""

    v: Tensor
    weight: Tensor

    def term(self) -> Tensor:
        """W_ih v (B, G), for the step loop."""
        return nn.functional.linear(self.v, self.weight)


Extra = Union[Tensor, ConstantInput, Callable[[Tensor], Tensor], None]
RecurrentState = list  # list[CellState], one per (layer, direction)


def map_state(fn: Callable[[Tensor], Tensor], state):
    """Apply ``fn`` to every tensor of a (nested) state: lists, tuples and dicts of tensors."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_state(fn, v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(fn, s) for s in state)
    return state


class Recurrence(nn.Module):
    def __init__(
        self,
        cell: Callable[..., Cell],
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        fused: bool = True,
        compile: bool = False,
        compile_bucket: int = 16,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"cell.num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"cell.dropout must be in [0, 1), got {dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.use_fused = fused
        # opt-in: the step loop compiled by torch.compile (lengths padded up to a multiple of
        # compile_bucket, so a new batch length rarely means a new compilation)
        self.compile_bucket = compile_bucket
        self._scan = torch.compile(_scan, dynamic=False) if compile else _scan
        self.compiled = compile
        cells = []
        for layer in range(num_layers):
            size_in = input_size if layer == 0 else hidden_size * self.num_directions
            cells += [cell(input_size=size_in, hidden_size=hidden_size) for _ in range(self.num_directions)]
        self.cells = nn.ModuleList(cells)
        # Stateless templates for the fused kernel, kept out of the module tree (a tuple is
        # not registered): the cells own the parameters and lend them on every call.
        self._kernels = None
        self._wide_kernels: dict[int, nn.RNNBase] = {}  # for a ConstantInput of width D (unregistered)
        if type(self.cells[0]).fused_kernel is not None:
            self._kernels = tuple(
                self._new_kernel(input_size if first == 0 else hidden_size * self.num_directions,
                                 num_layers - first, bidirectional).requires_grad_(False)
                for first in range(min(num_layers, 2))
            )

    def _new_kernel(self, input_size: int, num_layers: int, bidirectional: bool) -> nn.RNNBase:
        """The cells' torch kernel (nn.RNN/LSTM/GRU) for ``num_layers`` layers of this recurrence."""
        return type(self.cells[0]).fused_kernel(
            input_size, self.hidden_size, num_layers=num_layers,
            dropout=self.dropout if num_layers > 1 else 0.0, bidirectional=bidirectional, batch_first=True)

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    @property
    def gate_size(self) -> int:
        """Width of the conditioning term ``extra`` (layer 0's pre-activation)."""
        return self.cells[0].gate_size

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> RecurrentState:
        return [c.init_state(batch_size, device=device, dtype=dtype) for c in self.cells]

    @property
    def state_size(self) -> int:
        """Numbers in one example's whole state (all layers, directions and parts such as LSTM's c)."""
        one = self.init_state(1)
        return sum(t.shape[1] for s in one for t in (s if isinstance(s, tuple) else (s,)))

    def state_from(self, flat: Tensor) -> RecurrentState:
        """(B, state_size) -> a state: how a vector (an image, an encoder summary) becomes h_0 (and c_0)."""
        out, k = [], 0
        for s in self.init_state(1):
            parts = s if isinstance(s, tuple) else (s,)
            pieces = []
            for p in parts:
                pieces.append(flat[:, k:k + p.shape[1]])
                k += p.shape[1]
            out.append(tuple(pieces) if isinstance(s, tuple) else pieces[0])
        return out

    def summary(self, state: RecurrentState) -> Tensor:
        """The top layer's output h of a final state, both directions: (B, D*H)."""
        top = state[-self.num_directions:]
        return torch.cat([self.cells[0].output(s) for s in top], dim=1)

    # -- one step, all layers (decoders use it when generating) --------------------
    def step(self, x: Tensor, state: RecurrentState, extra: Tensor | None = None) -> tuple[Tensor, RecurrentState]:
        """x (B, I) -> top output (B, H). Unidirectional only: generation runs left to right."""
        return self._step(self.cells[0].project_input(x), state, extra)

    def _step(self, xp0: Tensor, state: RecurrentState, extra: Tensor | None) -> tuple[Tensor, RecurrentState]:
        """One step from layer 0's projected input xp0 (B, G)."""
        if self.num_directions != 1:
            raise RuntimeError("a bidirectional recurrence cannot be stepped: it needs the whole sequence")
        new_state = []
        for layer, cell in enumerate(self.cells):
            xp = xp0 if layer == 0 else cell.project_input(x)
            if layer == 0 and extra is not None:
                xp = xp + extra
            x, s = cell.step(xp, state[layer], self._inference_matmul(cell))
            new_state.append(s)
            if layer < self.num_layers - 1 and self.dropout and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
        return x, new_state

    def _inference_matmul(self, cell: Cell):
        """Generating (no grad) on CPU: the recurrent matmul through oneDNN, with W_hh converted
        once and kept until it changes (a decoding pass, a validation epoch). None: torch.mm."""
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return None
        return cached_for_weights(cell, "onednn_w_hh", (cell.W_hh,), lambda: onednn_matmul(cell.W_hh), USE_ONEDNN)

    # -- whole sequences --------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        state: RecurrentState | None = None,
        extra: Extra = None,
    ) -> tuple[Tensor, RecurrentState]:
        B = x.shape[0]
        if state is None:
            state = self.init_state(B, device=x.device, dtype=x.dtype)
        if extra is not None and self.num_directions != 1:
            raise RuntimeError("a conditioning term needs a unidirectional recurrence (cell.bidirectional=false)")
        if isinstance(extra, ConstantInput):
            if self._fusable():
                return self._fused_constant(x, lengths, state, extra)
            extra = extra.term()
        if callable(extra) and not isinstance(extra, Tensor):
            return self._loop_all(x, lengths, state, extra)
        if extra is None and self._fusable():
            return self._fused(0, x, lengths, state)
        # layer 0 by hand (it takes the conditioning term), the layers above fused
        per_dir = self.num_directions
        out, s0 = self._loop_layer(0, x, lengths, state[:per_dir], extra)
        if self.num_layers == 1:
            return out, s0
        if self.dropout and self.training:
            out = nn.functional.dropout(out, self.dropout, training=True)
        if self._fusable():
            out, rest = self._fused(1, out, lengths, state[per_dir:])
        else:
            rest = []
            for layer in range(1, self.num_layers):
                sl = state[layer * per_dir:(layer + 1) * per_dir]
                out, s = self._loop_layer(layer, out, lengths, sl, None)
                rest += s
                if layer < self.num_layers - 1 and self.dropout and self.training:
                    out = nn.functional.dropout(out, self.dropout, training=True)
        return out, s0 + rest

    def _fusable(self) -> bool:
        # TorchScript export traces the step loop: the cells' parameters cannot be lent to a
        # traced kernel (torch.func's stateless calls are not traceable)
        return self.use_fused and self._kernels is not None and not torch.jit.is_tracing()

    def _kernel_weights(self, first: int) -> dict[str, Tensor]:
        """The cells' parameters under the kernel's names, for layers first..L-1."""
        weights = {}
        for k, cell in enumerate(self.cells[first * self.num_directions:]):
            layer, direction = divmod(k, self.num_directions)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh, b_ih, b_hh = cell.fused_weights()
            weights.update({f"weight_ih{suffix}": w_ih, f"weight_hh{suffix}": w_hh,
                            f"bias_ih{suffix}": b_ih, f"bias_hh{suffix}": b_hh})
        return weights

    def _fused(self, first: int, x: Tensor, lengths: Tensor | None, state: RecurrentState):
        """Layers first..L-1 (and both directions) in one kernel call."""
        kernel = self._kernels[first]
        kernel.train(self.training)  # inter-layer dropout follows our mode
        return run_kernel(kernel, self._kernel_weights(first), x, lengths, self.cells[0].to_fused_state(state),
                          self.cells[0].from_fused_state)

    def _fused_constant(self, x: Tensor, lengths: Tensor | None, state: RecurrentState, c: ConstantInput):
        """The fused kernel with v as extra input columns of layer 0: [x_t; v] and [W_xh, W_ih]."""
        B, T, _ = x.shape
        D = c.v.shape[1]
        if D not in self._wide_kernels:  # a template whose first layer reads I + D inputs
            self._wide_kernels[D] = self._new_kernel(self.input_size + D, self.num_layers, False).requires_grad_(False)
        kernel = self._wide_kernels[D]
        kernel.train(self.training)
        weights = self._kernel_weights(0)
        weights["weight_ih_l0"] = torch.cat([weights["weight_ih_l0"], c.weight], dim=1)  # (G, I + D)
        wide = torch.cat([x, c.v.unsqueeze(1).expand(B, T, D)], dim=2)  # (B, T, I + D)
        return run_kernel(kernel, weights, wide, lengths, self.cells[0].to_fused_state(state),
                          self.cells[0].from_fused_state)

    def as_torch_module(self) -> nn.RNNBase:
        """A standalone nn.RNN/LSTM/GRU holding a copy of the cells' weights: the same function
        as this recurrence without conditioning, for export (TorchScript traces it as one op)."""
        if self._kernels is None:
            raise TypeError(f"{type(self.cells[0]).__name__} has no torch kernel")
        kernel = self._new_kernel(self.input_size, self.num_layers, self.num_directions == 2)
        with torch.no_grad():
            for name, value in self._kernel_weights(0).items():
                getattr(kernel, name).copy_(value)
        return kernel.to(self.cells[0].W_xh.device).eval()

    def _loop_layer(self, layer: int, x: Tensor, lengths: Tensor | None, state: RecurrentState, extra: Tensor | None):
        """One layer, both directions, stepped by hand. x (B, T, I) -> (B, T, D*H)."""
        outs, finals = [], []
        for direction in range(self.num_directions):
            cell = self.cells[layer * self.num_directions + direction]
            xs = x if direction == 0 else _reverse_padded(x, lengths)
            xp = cell.project_input(xs)  # (B, T, G), hoisted out of the loop
            if extra is not None:
                xp = xp + extra.unsqueeze(1)
            out, s = self._run_scan(cell, xp, lengths, state[direction])  # (B, T, H)
            outs.append(out if direction == 0 else _reverse_padded(out, lengths))
            finals.append(s)
        return torch.cat(outs, dim=2) if len(outs) > 1 else outs[0], finals

    def _run_scan(self, cell: Cell, xp: Tensor, lengths: Tensor | None, s: CellState):
        if not self.compiled or torch.jit.is_tracing():
            return _scan(cell, xp, lengths, s)
        B, T = xp.shape[:2]
        padded = -(-T // self.compile_bucket) * self.compile_bucket
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        xp = nn.functional.pad(xp, (0, 0, 0, padded - T))  # masked steps: the state stays as it was
        out, s = self._scan(cell, xp, lengths.to(xp.device), s)
        return out[:, :T], s

    def _loop_all(self, x: Tensor, lengths: Tensor | None, state: RecurrentState, extra: Callable[[Tensor], Tensor]):
        """All layers stepped together: the conditioning term depends on the previous top output."""
        top = self.cells[-1].output(state[-1])
        steps = []
        xp0 = self.cells[0].project_input(x)  # (B, T, G): layer 0's input half, hoisted out of the loop
        for t, xp_t in enumerate(xp0.unbind(1)):
            h, s_new = self._step(xp_t, state, extra(top))
            if lengths is not None:
                alive = (lengths > t).unsqueeze(1).to(h.device)
                state = [_blend(alive, a, b) for a, b in zip(s_new, state)]
                h = h * alive.to(h.dtype)
                top = self.cells[-1].output(state[-1])
            else:
                state, top = s_new, h
            steps.append(h)
        return torch.stack(steps, dim=1), state


def _scan(cell: Cell, xp: Tensor, lengths: Tensor | None, s: CellState) -> tuple[Tensor, CellState]:
    """The time loop of one cell over projected inputs xp (B, T, G): outputs (B, T, H), final state.
    Past a sequence's length the state is kept and the output is zero. Training goes through the
    hand-written BPTT where the cell has one (autograd cannot fuse the per-step W_hh gradients)."""
    if (cell.has_backward and torch.is_grad_enabled() and (xp.requires_grad or cell.W_hh.requires_grad)
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling()):
        T = xp.shape[1]
        alive = None
        if lengths is not None:
            lengths = lengths.to(xp.device)
            alive = (torch.arange(T, device=xp.device).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(2)  # (T, B, 1)
        is_tuple = isinstance(s, tuple)
        out, *final = StepLoopBPTT.apply(cell, alive, xp, cell.W_hh, len(cell.step_params()),
                                         *cell.step_params(), *(s if is_tuple else (s,)))
        return out, tuple(final) if is_tuple else final[0]
    steps = []
    w_hh_t = cell.W_hh.t()  # once, not at every step
    for t, xp_t in enumerate(xp.unbind(1)):
        h, s_new = cell.step(xp_t, s, w_hh_t)
        if lengths is not None:
            alive = (lengths > t).unsqueeze(1).to(h.device)  # (B, 1) bool
            s = _blend(alive, s_new, s)
            h = h * alive.to(h.dtype)
        else:
            s = s_new
        steps.append(h)
    return torch.stack(steps, dim=1), s


class StepLoopBPTT(torch.autograd.Function):
    """Backpropagation through time by hand for a cell with ``step_backward``.

    Forward: the same steps as the loop above (``cell.step_cached``), keeping each step's
    activations. Backward, from the last step to the first: the cell's elementwise gradient,
    then ``d_h_prev = d_u @ W_hh``: one matmul a step instead of autograd's two (``d_h`` and a
    per-step ``d_W_hh``) plus its bookkeeping; ``d_W_hh`` is one (G, T*B) x (T*B, H) matmul at the
    end. Masked steps (past a sequence's end) pass the state's gradient through unchanged.
    Inputs: cell, alive (T, B, 1) bool or None, xp (B, T, G), W_hh, n_params, *params, *state parts.
    """

    @staticmethod
    def forward(ctx, cell, alive, xp, w_hh, n_params, *rest):
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
                state = _blend(alive[t], new, state)
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

#: oneDNN for the step loop's per-step matmuls on CPU (float32). On this project's machine (AMD,
#: AVX-512) a (64 x 256) @ (256 x 1024) step takes 160 us in oneDNN against 290 us in torch.mm
#: (MKL); the fused RNN kernels use oneDNN already. Set False to use torch.mm everywhere.
USE_ONEDNN = True


def onednn_matmul(w: Tensor) -> Callable[[Tensor], Tensor] | None:
    """``x -> x @ w^T`` through oneDNN, with ``w`` converted once (per sequence, not per step);
    None where it does not apply (not CPU float32, or oneDNN missing)."""
    if not (USE_ONEDNN and w.device.type == "cpu" and w.dtype == torch.float32
            and torch.backends.mkldnn.is_available()):
        return None
    wm = w.detach().contiguous().to_mkldnn()
    return lambda x: torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), wm).to_dense()


def run_kernel(kernel: nn.RNNBase, weights: dict[str, Tensor] | None, x: Tensor, lengths: Tensor | None, hx,
               from_fused: Callable) -> tuple[Tensor, RecurrentState]:
    """A torch RNN kernel over padded sequences (packed when lengths are given), with ``weights``
    lent to it (``None``: its own)."""
    call = (lambda *a: functional_call(kernel, weights, a)) if weights is not None else kernel
    if lengths is None:
        out, hn = call(x, hx)
    else:
        T = x.shape[1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, hn = call(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    return out, from_fused(hn)


def _blend(alive: Tensor, new: CellState, old: CellState) -> CellState:
    """Take ``new`` where the sequence is still running, keep ``old`` past its end."""
    if isinstance(new, tuple):
        return tuple(_blend(alive, a, b) for a, b in zip(new, old))
    return torch.where(alive, new, old)


def _reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence within its own length; padding stays at the end. (B, T, ...)"""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    lens = lengths.to(x.device).unsqueeze(1)  # (B, 1)
    idx = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)
