"""The seq2seq head: a decoder RNN that writes a target sequence about an encoded source.

The decoder starts from the source encoder's final state (``h_0 = tanh(W_b summary)``, and
``c_0`` for an LSTM) and, by ``attention``, looks back at the encoder states (the memory M):

    none            y_t = W_hy h_t                                        (Sutskever/Cho)
    additive        c_t = sum_j a_tj m_j,  a_t = softmax_j(v^T tanh(W_q h_{t-1} + W_k m_j))
                    h_t = f(W_xh x_t + W_hh h_{t-1} + W_c c_t)            (Bahdanau: the context
                    enters the cell, a step loop);  y_t = W_hy tanh(W_o [h_t; c_t])
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

from zoo.heads.attention import Attention
from zoo.heads.decoding import Decoder
from zoo.recurrence import Recurrence

AttentionKind = Literal["none", "additive", "multiplicative"]


class Seq2SeqDecoder(Decoder):
    mode = "seq2seq"
    static_state = ("memory", "mask", "keys")  # per source sentence; only "rnn" changes as words are written
    attentions = ("none", "additive", "multiplicative")

    def __init__(
        self,
        recurrence: Callable[..., Recurrence],
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
        self.rnn = recurrence(input_size=embed_dim)
        if self.rnn.num_directions != 1:
            raise ValueError("a decoder generates left to right: it cannot use a bidirectional cell")
        H = self.rnn.hidden_size
        self.W_b = nn.Linear(memory_dim, self.rnn.state_size)  # the bridge from the encoder
        self.drop = nn.Dropout(dropout)
        if attention != "none":
            self.attend = Attention(attention, H, memory_dim, attention_dim)
            self.W_o = nn.Linear(H + memory_dim, H)
        if attention == "additive":
            self.W_c = nn.Linear(memory_dim, self.rnn.gate_size, bias=False)  # the context into the cell
        self.W_hy = nn.Linear(H, vocab_size)

    def _keys(self, memory: Tensor) -> Tensor:
        return self.attend.keys(memory)

    def _attend(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.attend(query, keys, memory, mask)

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
        state = self.rnn.state_from(torch.tanh(self.W_b(summary)))
        x = self.drop(self.embed(tokens))
        if self.attention == "none":
            out, _ = self.rnn(x, state=state)
            return self._output(out, None)
        keys = self._keys(memory)
        if self.attention == "multiplicative":
            out, _ = self.rnn(x, state=state)  # (B, T, H), fused
            context, _ = self._attend(out, keys, memory, mask)
            return self._output(out, context)
        contexts: list[Tensor] = []

        def feed(h_prev: Tensor) -> Tensor:  # the context from the previous state enters the cell
            c, _ = self._attend(h_prev.unsqueeze(1), keys, memory, mask)
            contexts.append(c[:, 0])
            return self.W_c(c[:, 0])

        out, _ = self.rnn(x, state=state, extra=feed)
        return self._output(out, torch.stack(contexts, 1))

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
        state = {"rnn": self.rnn.state_from(torch.tanh(self.W_b(summary)))}
        if self.attention != "none":
            state.update(memory=memory, mask=mask, keys=self._keys(memory))
        return state

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        x = self.drop(self.embed(tokens))
        context = extra = None
        if self.attention == "additive":
            top = self.rnn.cells[-1].output(state["rnn"][-1])
            context, _ = self._attend(top.unsqueeze(1), state["keys"], state["memory"], state["mask"])
            context = context[:, 0]
            extra = self.W_c(context)
        h, rnn = self.rnn.step(x, state["rnn"], extra=extra)
        if self.attention == "multiplicative":
            context, _ = self._attend(h.unsqueeze(1), state["keys"], state["memory"], state["mask"])
            context = context[:, 0]
        return self._output(h, context), {**state, "rnn": rnn}
