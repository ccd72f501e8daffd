"""The one-to-many head: an RNN decoder that writes a sequence about one vector v (captioning).

How v enters the decoder is ``condition``:

    init         the initial state from v in every layer: h_0 = tanh(LN(W_vh v)) (and for an
                 LSTM also its memory c_0, as in Show, Attend and Tell); first input <START>
    every_step   h_t = f(W_xh x_t + W_hh h_{t-1} + W_ih v): the lecture's captioner,
                 v added to layer 0's pre-activation at every step (in training the fused
                 kernel reads [x_t; v]; generating steps the cell with W_ih v)
    first_input  v, projected to the embedding size (LN(W_vx v)), is the input before <START>
                 (Show and Tell); its output is not scored
    attention    v is a grid of image features a_1..a_N (B, N, C) (the encoder's ``grid``):
                 h_0 (and c_0) from their mean; at every step a context
                 z_t = sum_i alpha_ti a_i, alpha_t = softmax(v^T tanh(W_q h_{t-1} + W_k a_i)),
                 enters the cell like the image does in every_step (through W_ih), and the
                 output is y_t = W_hy tanh(W_o [h_t; z_t]) (Show, Attend and Tell, soft attention)

LN: a LayerNorm (``image_norm``) that brings the projected image to the scale of the word
embeddings; without it, v enters ten times weaker than a word and a captioner whose CNN learns
from scratch settles on the blind model's captions (measured).

The image or the context is the recurrence's extra input (:class:`zoo.recurrence.StepInput`):
the cells' ``W_ih`` reads it, so the fused kernel trains every_step, and attention's step is
the one :class:`zoo.heads.attention.Attended` the seq2seq decoder uses too.

Training is teacher-forced: ``forward(v, tokens)`` with tokens = <START> w_1 .. w_n and the
loss against w_1 .. w_n <END>. Generation steps the recurrence one token at a time
(:class:`zoo.heads.decoding.Decoder`).
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell
from zoo.heads.attention import Attended, Attention
from zoo.heads.decoding import Decoder
from zoo.recurrence import Constant, StepInput, build
from zoo.recurrence.cpu import recording

Condition = Literal["init", "every_step", "first_input", "attention"]


class OneToManyDecoder(Decoder):
    mode = "one_to_many"
    conditions = ("init", "every_step", "first_input", "attention")
    static_state = ("image", "grid", "keys")  # per image; only "rnn" changes as words are written

    def __init__(
        self,
        cell: Callable[..., Cell],
        vocab_size: int,
        cond_dim: int,
        *,
        grid_dim: int | None = None,
        condition: Condition = "init",
        embed_dim: int = 128,
        attention_dim: int = 128,
        dropout: float = 0.0,
        image_norm: bool = True,
        start_id: int = 1,
        end_id: int = 2,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if condition not in self.conditions:
            raise ValueError(f"head.condition must be one of {self.conditions}, got {condition!r}")
        if condition == "attention" and not grid_dim:
            raise ValueError("head.condition=attention needs an encoder with a spatial grid (grid_dim)")
        self.condition = condition
        self.start_id, self.end_id, self.pad_id = start_id, end_id, pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        # the image (every_step) or the attention context enters the cells through their W_ih
        extra = {"every_step": cond_dim, "attention": grid_dim}.get(condition, 0)
        self.recurrence = build(cell, input_size=embed_dim, extra_size=extra)
        if self.recurrence.num_directions != 1:
            raise ValueError("a decoder generates left to right: it cannot use a bidirectional cell")
        H = self.recurrence.hidden_size
        if condition == "attention":  # reads the grid (B, N, grid_dim) instead of v
            cond_dim = grid_dim
        if condition in ("init", "attention"):
            self.W_vh = nn.Linear(cond_dim, self.recurrence.state_size)
            self.norm_v = nn.LayerNorm(self.recurrence.state_size) if image_norm else nn.Identity()
        elif condition == "first_input":
            self.W_vx = nn.Linear(cond_dim, embed_dim)
            self.norm_v = nn.LayerNorm(embed_dim) if image_norm else nn.Identity()
        if condition == "attention":
            self.attend = Attention("additive", H, cond_dim, attention_dim)
            self.W_o = nn.Linear(H + cond_dim, H)
        self.drop = nn.Dropout(dropout)
        self.W_hy = nn.Linear(H, vocab_size)

    @property
    def uses_grid(self) -> bool:
        """True: the decoder reads the encoder's grid (B, N, C), not a vector."""
        return self.condition == "attention"

    # -- conditioning ---------------------------------------------------------------
    def _initial(self, v: Tensor) -> tuple[list, StepInput | None]:
        """v (B, D) (or the grid) -> the initial recurrent state and what enters at every step."""
        if self.condition in ("init", "attention"):  # h_0 (and c_0) of every layer from v
            pooled = v.mean(1) if self.condition == "attention" else v  # the grid (B, N, C): its mean
            state = self.recurrence.state_from(torch.tanh(self.norm_v(self.W_vh(pooled))))
        else:
            state = self.recurrence.init_state(v.shape[0], device=v.device, dtype=v.dtype)
        if self.condition == "every_step":  # W_ih v at every step: the fused kernel reads [x_t; v]
            return state, Constant(v)
        if self.condition == "attention":  # where to look, from the previous state
            return state, Attended(self.attend, self.attend.keys(v), v)
        return state, None

    # -- teacher forcing --------------------------------------------------------------
    def forward(self, v: Tensor, tokens: Tensor, return_attention: bool = False):
        """v (B, D) (or the grid (B, N, C)), tokens (B, T) starting with <START> -> logits (B, T, V)
        (and with ``return_attention`` the attention weights (B, T, N))."""
        state, extra = self._initial(v)
        x = self.drop(self.embed(tokens))  # (B, T, E)
        if self.condition == "first_input":
            x = torch.cat([self.norm_v(self.W_vx(v)).unsqueeze(1), x], dim=1)  # (B, 1 + T, E)
        run = self.recurrence(x, state=state, extra=extra)
        if self.condition == "attention":
            logits = self._attended_output(run.outputs, run.trace["context"])
            return (logits, run.trace["weights"]) if return_attention else logits
        out = run.outputs[:, 1:] if self.condition == "first_input" else run.outputs  # (B, T, H)
        return self.W_hy(self.drop(out))

    # -- generation -------------------------------------------------------------------
    def _attended_output(self, h: Tensor, z: Tensor) -> Tensor:
        return self.W_hy(self.drop(torch.tanh(self.W_o(torch.cat([h, z], -1)))))

    def start(self, v: Tensor) -> dict:
        state, extra = self._initial(v)
        if self.condition == "attention":
            return {"rnn": state, "grid": v, "keys": extra.keys}
        if self.condition == "first_input":
            state = self.recurrence.step(self.norm_v(self.W_vx(v)), state).state
        if self.condition == "every_step":  # W_ih v once per image, not at every step
            return {"rnn": state, "image": self.recurrence.project_extra(v)}
        return {"rnn": state}

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        xp = self._step_input(tokens)
        if self.condition == "attention":
            h, rnn, record = self.recurrence.step_projected(xp, state["rnn"],
                                                            Attended(self.attend, state["keys"], state["grid"]))
            return self._attended_output(h, record["context"]), {**state, "rnn": rnn}
        if "image" in state:
            xp = xp + state["image"]
        h, rnn, _ = self.recurrence.step_projected(xp, state["rnn"])
        return self.W_hy(h), {**state, "rnn": rnn}

    def _step_input(self, tokens: Tensor) -> Tensor:
        """Layer 0's projected input for the tokens, W_xh E[w] + b (N, G). Generating (no grad),
        it is a row lookup in a table of every word's projection, made once and kept until the
        weights change (a validation pass, a predict call), instead of a matmul at every step."""
        if torch.is_grad_enabled() or recording():
            return self.recurrence.project_input(self.embed(tokens))
        return self.recurrence.input_table(self.embed.weight).index_select(0, tokens)
