"""The seq2seq head: a decoder RNN that writes a target sequence about an encoded source.

The decoder starts from the source encoder's final state (``h_0 = tanh(W_b summary)``, and
``c_0`` for an LSTM) and, by ``attention``, looks back at the encoder states (the memory M):

    none            y_t = W_hy h_t                                        (Sutskever/Cho)
    additive        c_t = sum_j a_tj m_j,  a_t = softmax_j(v^T tanh(W_q h_{t-1} + W_k m_j))
                    h_t = f(W_xh x_t + W_hh h_{t-1} + W_ih c_t)           (Bahdanau: the context
                    enters the cell, a step loop: zoo.heads.attention.Attended, the step the
                    captioner's attention shares);  y_t = W_hy tanh(W_o [h_t; c_t])
    multiplicative  a_t = softmax_j(h_t^T W_a m_j), c_t = sum_j a_tj m_j  (Luong, "general")
                    y_t = W_hy tanh(W_o [h_t; c_t])     (no input feeding: the fused kernel)

Training is teacher-forced; ``teacher_forcing < 1`` feeds the decoder its own previous
prediction with probability ``1 - teacher_forcing`` at each step (scheduled sampling; a step
loop). Generation: greedy, sampling, batched beam search (:class:`Decoder`).
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor, nn

from zoo.cells.base import Cell
from zoo.heads.attention import Attended, Attention
from zoo.heads.decoding import Decoder
from zoo.recurrence import build

AttentionKind = Literal["none", "additive", "multiplicative"]


class Seq2SeqDecoder(Decoder):
    mode = "seq2seq"
    static_state = ("memory", "mask", "keys")  # per source sentence; only "rnn" changes as words are written
    attentions = ("none", "additive", "multiplicative")

    def __init__(
        self,
        cell: Callable[..., Cell],
        vocab_size: int,
        memory_dim: int,
        *,
        attention: AttentionKind = "additive",
        embed_dim: int = 256,
        attention_dim: int = 256,
        dropout: float = 0.2,
        teacher_forcing: float = 1.0,
        start_id: int = 1,
        end_id: int = 2,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if attention not in self.attentions:
            raise ValueError(f"head.attention must be one of {self.attentions}, got {attention!r}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"head.teacher_forcing must be in [0, 1], got {teacher_forcing}")
        self.attention, self.teacher_forcing = attention, teacher_forcing
        self.start_id, self.end_id, self.pad_id = start_id, end_id, pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        # additive attention: the context enters the cells through their W_ih
        self.recurrence = build(cell, input_size=embed_dim, extra_size=memory_dim if attention == "additive" else 0)
        if self.recurrence.num_directions != 1:
            raise ValueError("a decoder generates left to right: it cannot use a bidirectional cell")
        H = self.recurrence.hidden_size
        self.W_b = nn.Linear(memory_dim, self.recurrence.state_size)  # the bridge from the encoder
        self.drop = nn.Dropout(dropout)
        if attention != "none":
            self.attend = Attention(attention, H, memory_dim, attention_dim)
            self.W_o = nn.Linear(H + memory_dim, H)
        self.W_hy = nn.Linear(H, vocab_size)

    def _output(self, h: Tensor, context: Tensor | None) -> Tensor:
        if context is not None:
            h = torch.tanh(self.W_o(torch.cat([h, context], -1)))
        return self.W_hy(self.drop(h))

    # -- teacher forcing ------------------------------------------------------------------
    def forward(self, memory: Tensor, mask: Tensor, summary: Tensor, tokens: Tensor) -> Tensor:
        """memory (B, S, M), mask (B, S) true on real positions, summary (B, M), tokens (B, T)
        starting with <START> -> logits (B, T, V)."""
        if self.training and self.teacher_forcing < 1.0:
            return self._scheduled_sampling(memory, mask, summary, tokens)
        state = self.recurrence.state_from(torch.tanh(self.W_b(summary)))
        x = self.drop(self.embed(tokens))
        if self.attention == "none":
            return self._output(self.recurrence(x, state=state).outputs, None)
        keys = self.attend.keys(memory)
        if self.attention == "multiplicative":  # Luong: attend with h_t after the (fused) recurrence
            out = self.recurrence(x, state=state).outputs  # (B, T, H)
            return self._output(out, self.attend(out, keys, memory, mask)[0])
        run = self.recurrence(x, state=state, extra=Attended(self.attend, keys, memory, mask))
        return self._output(run.outputs, run.trace["context"])

    def _scheduled_sampling(self, memory: Tensor, mask: Tensor, summary: Tensor, tokens: Tensor) -> Tensor:
        state = self.start((memory, mask, summary))
        prev, logits = tokens[:, 0], []
        for t in range(tokens.shape[1]):
            if t > 0:
                own = logits[-1].argmax(-1).detach()
                use_gold = torch.rand(len(own), device=own.device) < self.teacher_forcing
                prev = torch.where(use_gold, tokens[:, t], own)
            step_logits, state = self.step(prev, state)
            logits.append(step_logits)
        return torch.stack(logits, 1)

    # -- generation -------------------------------------------------------------------------
    def start(self, context: tuple[Tensor, Tensor, Tensor]) -> dict:
        memory, mask, summary = context
        state = {"rnn": self.recurrence.state_from(torch.tanh(self.W_b(summary)))}
        if self.attention != "none":
            state.update(memory=memory, mask=mask, keys=self.attend.keys(memory))
        return state

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        x = self.drop(self.embed(tokens))
        extra = Attended(self.attend, state["keys"], state["memory"], state["mask"]) if self.attention == "additive" else None
        h, rnn, record = self.recurrence.step(x, state["rnn"], extra)
        context = record.get("context")
        if self.attention == "multiplicative":
            context = self.attend(h.unsqueeze(1), state["keys"], state["memory"], state["mask"])[0][:, 0]
        return self._output(h, context), {**state, "rnn": rnn}
