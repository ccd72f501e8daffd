"""The only time loop in the zoo: a cell run over sequences, ``h_t = f_W(h_{t-1}, x_t)``.

    rec = Recurrence(cell, input_size, hidden_size, num_layers, dropout, bidirectional, extra_size)
    rec(x (B, T, I), lengths (B,) | None, state | None, extra | None)
        -> Unrolled(outputs (B, T, D*H), final state, trace)
    rec.step(x (B, I), state, extra | None) -> Stepped(h (B, H), state, record)   # one step, generating

State is a list with one cell state per (layer, direction), layer-major:
``[l0_fwd, l0_bwd, l1_fwd, ...]``; every tensor in it has the batch on dim 0. With ``lengths``,
outputs past a sequence's end are zero and the final state is the one at its last real step:
padding never changes an example.

What else enters the cell at step t is one object, a :class:`StepInput` (``extra``): its
vector ``u_t`` goes into layer 0's pre-activation through the cells' ``W_ih`` (the lecture's
captioner, ``h = tanh(W_xh x + W_hh h + W_ih v)``). It is either

- constant over the sequence (:class:`Constant`: the image ``v``), or
- computed from the previous top-layer output ``h_{t-1}`` (an attention context, a glimpse,
  DRAW's read): ``extra.at(h_prev) -> (u_t, record)``; the loop calls it at every step and
  stacks what it records (the context, the attention weights, a location) into ``trace``.

The loop below is the plain path, and the definition of the others. The loop chooses a faster
one where the math allows, with the same outputs and gradients (tested):

- :mod:`zoo.recurrence.fused`: torch's fused ``nn.RNN/LSTM/GRU`` for whole sequences, with the
  cells' own parameters, when the cell offers a kernel and nothing depends on the state (a
  constant extra input is extra input columns: the kernel reads ``[x_t; v]`` with
  ``[W_xh, W_ih]``);
- :mod:`zoo.recurrence.bptt`: a hand-written backpropagation through time, where a cell offers
  its backward step;
- :mod:`zoo.recurrence.cpu`: per-step matmuls through oneDNN on CPU;
- :mod:`zoo.recurrence.graph`: the loop as one ``scan`` op while ``torch.export`` records the
  model, so that an exported encoder reads sequences of any length.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell, CellState
from zoo.recurrence import bptt, graph
from zoo.recurrence.cpu import cached_for_weights, prepared_step, recording
from zoo.recurrence.fused import Kernels

RecurrentState = list  # list[CellState], one per (layer, direction)


class StepInput:
    """What else enters layer 0 at step t: ``u_t`` (B, D), read through the cells' ``W_ih``.

    ``constant``: the same ``value`` at every step. Otherwise ``at(h_prev)`` computes it from the
    previous top-layer output h_{t-1} (B, H) and returns it with a record (a dict of (B, ...)
    tensors: what the caller needs of this step afterwards), which the loop stacks over time.
    """

    constant: bool = False
    value: Tensor | None = None

    def at(self, h_prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class Constant(StepInput):
    """A vector v (B, D) that enters at every step: the lecture's image term ``W_ih v``."""

    constant = True

    def __init__(self, v: Tensor) -> None:
        self.value = v

    def at(self, h_prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.value, {}


class Unrolled(NamedTuple):
    outputs: Tensor  # (B, T, D*H): the top layer's h_t, both directions
    state: RecurrentState  # the final state (at each sequence's last real step)
    trace: dict  # name -> (B, T, ...): what a state-dependent extra input recorded at each step


class Stepped(NamedTuple):
    h: Tensor  # (B, H): the top layer's output
    state: RecurrentState
    record: dict  # what the extra input recorded at this step


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
        extra_size: int = 0,
        fused: bool = True,
        compile: bool = False,
        compile_bucket: int = 16,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"cell.num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"cell.dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size, self.extra_size = input_size, hidden_size, extra_size
        self.num_layers, self.dropout = num_layers, dropout
        self.num_directions = 2 if bidirectional else 1
        self.use_fused = fused
        # opt-in: the plain loop compiled by torch.compile, lengths padded up to a multiple of
        # compile_bucket, so a new batch length rarely means a new compilation
        self.compiled, self.compile_bucket = compile, compile_bucket
        self._scan = torch.compile(scan, dynamic=False) if compile else scan
        cells = []
        for layer in range(num_layers):
            size_in = input_size if layer == 0 else hidden_size * self.num_directions
            cells += [cell(input_size=size_in, hidden_size=hidden_size, extra_size=extra_size if layer == 0 else 0)
                      for _ in range(self.num_directions)]
        self.cells = nn.ModuleList(cells)
        self._kernels = Kernels(self)  # torch's kernel templates, if the cell offers one

    # -- sizes and states -------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> RecurrentState:
        return [c.init_state(batch_size, device=device, dtype=dtype) for c in self.cells]

    @property
    def state_size(self) -> int:
        """Numbers in one example's whole state (all layers, directions and parts such as LSTM's c)."""
        return sum(t.shape[1] for s in self.init_state(1) for t in _parts(s))

    def state_from(self, flat: Tensor) -> RecurrentState:
        """(B, state_size) -> a state: how a vector (an image, an encoder summary) becomes h_0 (and c_0)."""
        out, k = [], 0
        for s in self.init_state(1):
            pieces = []
            for p in _parts(s):
                pieces.append(flat[:, k:k + p.shape[1]])
                k += p.shape[1]
            out.append(tuple(pieces) if isinstance(s, tuple) else pieces[0])
        return out

    def top(self, state: RecurrentState) -> Tensor:
        """The top layer's output h in a (unidirectional) state: (B, H)."""
        return Cell.output(state[-1])

    def summary(self, state: RecurrentState) -> Tensor:
        """The top layer's output h of a final state, both directions: (B, D*H)."""
        return torch.cat([Cell.output(s) for s in state[-self.num_directions:]], dim=1)

    # -- one step, all layers (decoders use it when generating) ----------------------------
    def step(self, x: Tensor, state: RecurrentState, extra: StepInput | None = None) -> Stepped:
        """x (B, I) -> the top output (B, H). Left to right only: a bidirectional recurrence needs
        the whole sequence."""
        return self.step_projected(self.project_input(x), state, extra)

    def project_input(self, x: Tensor) -> Tensor:
        """Layer 0's input half ``W_xh x + b``: (..., I) -> (..., G)."""
        return self.cells[0].project_input(x)

    def project_extra(self, u: Tensor) -> Tensor:
        """The extra input's term ``W_ih u`` in layer 0's pre-activation: (..., D) -> (..., G)."""
        return self.cells[0].project_extra(u)

    def input_table(self, embedding: Tensor) -> Tensor:
        """Layer 0's input half for every row of an embedding (V, E) -> (V, G), kept until the
        weights change: generating, a word's projection is a row lookup, not a matmul per step."""
        cell = self.cells[0]
        weights = (embedding, cell.W_xh, cell.b, *([] if cell.b_hh is None else [cell.b_hh]))
        return cached_for_weights(self, "input_table", weights, lambda: cell.project_input(embedding))

    def step_projected(self, xp0: Tensor, state: RecurrentState, extra: StepInput | None = None) -> Stepped:
        """One step of every layer, from layer 0's projected input xp0 (B, G) (``project_input``,
        plus any term the caller computed once per sequence, such as ``project_extra(v)``)."""
        if self.num_directions != 1:
            raise RuntimeError("a bidirectional recurrence cannot be stepped: it needs the whole sequence")
        return self._step(xp0, state, extra)

    def _step(self, xp0: Tensor, state: RecurrentState, extra: StepInput | None) -> Stepped:
        record = {}
        if extra is not None:
            u, record = extra.at(self.top(state))
            xp0 = xp0 + self.cells[0].project_extra(u)
        new_state, x = [], None
        for layer, cell in enumerate(self.cells):
            if layer > 0 and self.dropout and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
            x, s = prepared_step(cell)(xp0 if layer == 0 else cell.project_input(x), state[layer])
            new_state.append(s)
        return Stepped(x, new_state, record)

    # -- whole sequences ------------------------------------------------------------------------
    def forward(self, x: Tensor, lengths: Tensor | None = None, state: RecurrentState | None = None,
                extra: StepInput | None = None) -> Unrolled:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        if extra is not None and not extra.constant:
            if self.num_directions != 1:
                raise RuntimeError("an input computed from the state needs a unidirectional recurrence "
                                   "(cell.bidirectional=false)")
            return self._by_step(x, lengths, state, extra)
        if self._kernels.apply():  # torch's fused kernel for every layer and direction at once
            return Unrolled(*self._kernels.run(0, x, lengths, state, extra), {})
        return self._by_layer(x, lengths, state, extra)

    def _by_step(self, x: Tensor, lengths: Tensor | None, state: RecurrentState, extra: StepInput) -> Unrolled:
        """Every layer at each step: what enters at step t depends on the top output at t-1."""
        outputs, records = [], []
        xp = self.cells[0].project_input(x)  # (B, T, G): layer 0's input half, for all steps at once
        for t, xp_t in enumerate(xp.unbind(1)):
            h, new, record = self._step(xp_t, state, extra)
            if lengths is not None:  # past a sequence's end: the state stays, the output is zero
                alive = (lengths > t).unsqueeze(1).to(h.device)
                new = [blend(alive, a, b) for a, b in zip(new, state)]
                h = h * alive.to(h.dtype)
            state = new
            outputs.append(h)
            records.append(record)
        trace = {k: torch.stack([r[k] for r in records], 1) for k in records[0]} if records else {}
        return Unrolled(torch.stack(outputs, 1), state, trace)

    def _by_layer(self, x: Tensor, lengths: Tensor | None, state: RecurrentState,
                  extra: StepInput | None) -> Unrolled:
        """One layer after the other, each over the whole sequence (both directions)."""
        D = self.num_directions
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
            outs = []
            for direction in range(D):
                cell = self.cells[layer * D + direction]
                xs = x if direction == 0 else reverse_padded(x, lengths)
                xp = cell.project_input(xs)  # (B, T, G), hoisted out of the loop
                if layer == 0 and extra is not None:
                    xp = xp + cell.project_extra(extra.value).unsqueeze(1)
                out, s = self._run_scan(cell, xp, lengths, state[layer * D + direction])
                outs.append(out if direction == 0 else reverse_padded(out, lengths))
                finals.append(s)
            x = torch.cat(outs, dim=2) if D > 1 else outs[0]
        return Unrolled(x, finals, {})

    def _run_scan(self, cell: Cell, xp: Tensor, lengths: Tensor | None, s: CellState):
        if torch.compiler.is_exporting():  # one scan op in the graph: any length, not the example's
            return graph.scan(cell, xp, lengths, s)
        if not self.compiled or recording():
            return scan(cell, xp, lengths, s)
        B, T = xp.shape[:2]
        padded = -(-T // self.compile_bucket) * self.compile_bucket
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        xp = nn.functional.pad(xp, (0, 0, 0, padded - T))  # masked steps: the state stays as it was
        out, s = self._scan(cell, xp, lengths.to(xp.device), s)
        return out[:, :T], s

    def as_torch_module(self) -> nn.RNNBase:
        """A standalone nn.RNN/LSTM/GRU with a copy of the cells' weights: the same function as this
        recurrence without an extra input (export traces it as one op, for any length)."""
        return self._kernels.standalone()


def scan(cell: Cell, xp: Tensor, lengths: Tensor | None, s: CellState) -> tuple[Tensor, CellState]:
    """The loop itself, one cell over time: h_t = step(xp_t, h_{t-1}) for projected inputs xp
    (B, T, G) -> outputs (B, T, H) and the final state. Past a sequence's length the state is kept
    and the output is zero. Training, a cell that offers its backward step goes through the
    hand-written BPTT (autograd cannot fuse the per-step gradients of W_hh)."""
    if bptt.applies(cell, xp):
        return bptt.scan(cell, xp, lengths, s)
    step = prepared_step(cell)  # what the cell needs once per sequence, not per step (W_hh transposed)
    outputs = []
    for t, xp_t in enumerate(xp.unbind(1)):
        h, new = step(xp_t, s)
        if lengths is not None:
            alive = (lengths > t).unsqueeze(1).to(h.device)  # (B, 1) bool
            new = blend(alive, new, s)
            h = h * alive.to(h.dtype)
        s = new
        outputs.append(h)
    return torch.stack(outputs, dim=1), s


def blend(alive: Tensor, new: CellState, old: CellState) -> CellState:
    """Take ``new`` where the sequence is still running, keep ``old`` past its end."""
    if isinstance(new, tuple):
        return tuple(blend(alive, a, b) for a, b in zip(new, old))
    return torch.where(alive, new, old)


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence within its own length; padding stays at the end. (B, T, ...)"""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    t = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    lens = lengths.to(x.device).unsqueeze(1)  # (B, 1)
    idx = torch.where(t < lens, lens - 1 - t, t)  # (B, T)
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def _parts(state: CellState) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


#: options of the ``cell`` config that say how the cell runs over time; the rest are the cell's own
RUN_OPTIONS = ("hidden_size", "num_layers", "dropout", "bidirectional", "fused", "compile", "compile_bucket")


def build(cell: Callable[..., Cell], *, input_size: int, extra_size: int = 0, **overrides) -> Recurrence:
    """The Recurrence a ``cell`` config describes. The config (``conf/cell/<name>.yaml``) is the cell
    class with its own options (``forget_bias``) and how it runs (:data:`RUN_OPTIONS`), so that one
    name reaches both: ``cell.forget_bias=1.0``, ``cell.num_layers=2``. ``overrides`` (a task's
    ``bidirectional=True`` for an encoder) win over the config."""
    options = {**(cell.keywords if isinstance(cell, functools.partial) else {}), **overrides}
    run = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    factory = cell.func if isinstance(cell, functools.partial) else cell
    return Recurrence(functools.partial(factory, **options), input_size=input_size, extra_size=extra_size, **run)
