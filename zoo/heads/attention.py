"""Attention over a memory of vectors (encoder states, image grid cells), shared by decoders.

    additive        score_j = v^T tanh(W_q q + W_k m_j)     (Bahdanau et al.; Show, Attend and Tell)
    multiplicative  score_j = q^T W_k m_j                   (Luong et al., "general")

``keys(memory)`` precomputes the per-position part once per sequence (and is reordered with
the state in beam search); ``forward(query, keys, memory, mask)`` gives the context and the
weights. Positions where ``mask`` is false get no weight.

:class:`Attended` is the one attention step both attention decoders share: where the decoder
looks at step t is computed from its previous output, and the context enters the cell.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.recurrence import StepInput


class Attention(nn.Module):
    kinds = ("additive", "multiplicative")

    def __init__(self, kind: str, query_dim: int, memory_dim: int, attention_dim: int = 256) -> None:
        super().__init__()
        if kind not in self.kinds:
            raise ValueError(f"attention must be one of {self.kinds}, got {kind!r}")
        self.kind = kind
        if kind == "additive":
            self.W_q = nn.Linear(query_dim, attention_dim, bias=False)
            self.W_k = nn.Linear(memory_dim, attention_dim)
            self.v = nn.Linear(attention_dim, 1, bias=False)
        else:
            self.W_k = nn.Linear(memory_dim, query_dim, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """memory (B, S, M) -> keys (B, S, A)."""
        return self.W_k(memory)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """query (B, T, Q) -> context (B, T, M), weights (B, T, S)."""
        if self.kind == "additive":
            scores = self.v(torch.tanh(self.W_q(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(3)
        else:
            scores = query @ keys.transpose(1, 2)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(-1)
        return weights @ memory, weights


class Attended(StepInput):
    """What enters the cell at step t is the context ``c_t = sum_j a_tj m_j``, where
    ``a_t = softmax(score(h_{t-1}, m))``: Bahdanau's decoder; Show, Attend and Tell. The loop calls
    it with its previous top output; it records the context (B, M) and the weights (B, S)."""

    def __init__(self, attention: Attention, keys: Tensor, memory: Tensor, mask: Tensor | None = None) -> None:
        self.attention, self.keys, self.memory, self.mask = attention, keys, memory, mask

    def at(self, h_prev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        context, weights = self.attention(h_prev.unsqueeze(1), self.keys, self.memory, self.mask)
        return context[:, 0], {"context": context[:, 0], "weights": weights[:, 0]}
