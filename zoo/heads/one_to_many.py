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
                 enters the cell like the image does in every_step, and the output is
                 y_t = W_hy tanh(W_o [h_t; z_t]) (Show, Attend and Tell, soft attention)

LN: a LayerNorm (``image_norm``) that brings the projected image to the scale of the word
embeddings; without it, v enters ten times weaker than a word and a captioner whose CNN learns
from scratch settles on the blind model's captions (measured).

Training is teacher-forced: ``forward(v, tokens)`` with tokens = <START> w_1 .. w_n and the
loss against w_1 .. w_n <END>. Generation steps the recurrence one token at a time
(:class:`zoo.heads.decoding.Decoder`).
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor, nn

from zoo.heads.attention import Attention
from zoo.heads.decoding import Decoder
from zoo.recurrence import ConstantInput, Recurrence, cached_for_weights

Condition = Literal["init", "every_step", "first_input", "attention"]


class OneToManyDecoder(Decoder):
    mode = "one_to_many"
    conditions = ("init", "every_step", "first_input", "attention")
    static_state = ("extra", "grid", "keys")  # per image; only "rnn" changes as words are written

    def __init__(
        self,
        recurrence: Callable[..., Recurrence],
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
        self.condition = condition
        self.start_id, self.end_id, self.pad_id = start_id, end_id, pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = recurrence(input_size=embed_dim)
        if self.rnn.num_directions != 1:
            raise ValueError("a decoder generates left to right: it cannot use a bidirectional cell")
        H = self.rnn.hidden_size
        if condition == "attention":  # reads the grid (B, N, grid_dim) instead of v
            if not grid_dim:
                raise ValueError("head.condition=attention needs an encoder with a spatial grid (grid_dim)")
            cond_dim = grid_dim
        if condition in ("init", "attention"):
            self.W_vh = nn.Linear(cond_dim, self.rnn.state_size)
            self.norm_v = nn.LayerNorm(self.rnn.state_size) if image_norm else nn.Identity()
        if condition == "every_step":
            self.W_ih = nn.Linear(cond_dim, self.rnn.gate_size, bias=False)
        elif condition == "first_input":
            self.W_vx = nn.Linear(cond_dim, embed_dim)
            self.norm_v = nn.LayerNorm(embed_dim) if image_norm else nn.Identity()
        elif condition == "attention":
            self.attend = Attention("additive", H, cond_dim, attention_dim)
            self.W_c = nn.Linear(cond_dim, self.rnn.gate_size, bias=False)  # the context into the cell
            self.W_o = nn.Linear(H + cond_dim, H)
        self.drop = nn.Dropout(dropout)
        self.W_hy = nn.Linear(H, vocab_size)

    @property
    def uses_grid(self) -> bool:
        """True: the decoder reads the encoder's grid (B, N, C), not a vector."""
        return self.condition == "attention"

    # -- conditioning ---------------------------------------------------------------
    def _initial(self, v: Tensor) -> tuple[list, Tensor | None]:
        """v (B, D) -> initial recurrent state and the per-step term (B, G) or None."""
        if self.condition in ("init", "attention"):  # h_0 (and c_0) of every layer from v
            pooled = v.mean(1) if self.condition == "attention" else v  # the grid (B, N, C): its mean
            state = self.rnn.state_from(torch.tanh(self.norm_v(self.W_vh(pooled))))
        else:
            state = self.rnn.init_state(v.shape[0], device=v.device, dtype=v.dtype)
        if self.condition == "every_step":  # the fused kernel can read it as extra input columns
            return state, ConstantInput(v, self.W_ih.weight)
        return state, None

    # -- teacher forcing --------------------------------------------------------------
    def forward(self, v: Tensor, tokens: Tensor, return_attention: bool = False):
        """v (B, D) (or the grid (B, N, C)), tokens (B, T) starting with <START> -> logits (B, T, V)
        (and with ``return_attention`` the attention weights (B, T, N))."""
        state, extra = self._initial(v)
        x = self.drop(self.embed(tokens))  # (B, T, E)
        if self.condition == "attention":
            keys, contexts, weights = self.attend.keys(v), [], []

            def feed(h_prev: Tensor) -> Tensor:  # where to look, from the previous state
                z, a = self.attend(h_prev.unsqueeze(1), keys, v)
                contexts.append(z[:, 0])
                weights.append(a[:, 0])
                return self.W_c(z[:, 0])

            out, _ = self.rnn(x, state=state, extra=feed)
            logits = self._attended_output(out, torch.stack(contexts, 1))
            return (logits, torch.stack(weights, 1)) if return_attention else logits
        if self.condition == "first_input":
            x = torch.cat([self.norm_v(self.W_vx(v)).unsqueeze(1), x], dim=1)  # (B, 1 + T, E)
        out, _ = self.rnn(x, state=state, extra=extra)  # (B, T', H)
        if self.condition == "first_input":
            out = out[:, 1:]
        return self.W_hy(self.drop(out))

    # -- generation -------------------------------------------------------------------
    def _attended_output(self, h: Tensor, z: Tensor) -> Tensor:
        return self.W_hy(self.drop(torch.tanh(self.W_o(torch.cat([h, z], -1)))))

    def start(self, v: Tensor) -> dict:
        state, extra = self._initial(v)
        if self.condition == "attention":
            return {"rnn": state, "grid": v, "keys": self.attend.keys(v)}
        if self.condition == "first_input":
            _, state = self.rnn.step(self.norm_v(self.W_vx(v)), state)
        return {"rnn": state, "extra": extra.term()} if extra is not None else {"rnn": state}

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        if self.condition == "attention":
            top = self.rnn.cells[-1].output(state["rnn"][-1])
            z, _ = self.attend(top.unsqueeze(1), state["keys"], state["grid"])
            h, rnn = self.rnn._step(self._step_input(tokens), state["rnn"], self.W_c(z[:, 0]))
            return self._attended_output(h, z[:, 0]), {**state, "rnn": rnn}
        h, rnn = self.rnn._step(self._step_input(tokens), state["rnn"], state.get("extra"))
        return self.W_hy(h), {**state, "rnn": rnn}

    def _step_input(self, tokens: Tensor) -> Tensor:
        """Layer 0's projected input for the tokens, W_xh E[w] + b (N, G). Generating (no grad),
        it is a row lookup in a table of every word's projection, made once and kept until the
        weights change (a validation pass, a predict call), instead of a matmul at every step."""
        cell = self.rnn.cells[0]
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return cell.project_input(self.embed(tokens))
        return self._word_table().index_select(0, tokens)

    def _word_table(self) -> Tensor:
        """Every word's projected input (V, G), kept until the weights change."""
        cell = self.rnn.cells[0]
        return cached_for_weights(self, "word_table", (self.embed.weight, cell.W_xh, cell.b),
                                  lambda: cell.project_input(self.embed.weight))
