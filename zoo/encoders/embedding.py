"""Token encoders: ids (B, T) -> vectors (B, T, D)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class TokenEmbedding(nn.Module):
    """A learned embedding per token (``<PAD>`` stays zero), with dropout.

    ``word_dropout``: in training, each token is replaced by ``<UNK>`` with this probability,
    so the model learns what to do with words it has never seen (they are ``<UNK>`` at test time).
    """

    consumes = "tokens"
    produces = "sequence"

    def __init__(self, vocab_size: int, *, dim: int = 128, dropout: float = 0.0, word_dropout: float = 0.0,
                 pad_id: int = 0, unk_id: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        self.word_dropout, self.pad_id, self.unk_id = word_dropout, pad_id, unk_id
        self.out_dim = dim

    def forward(self, tokens: Tensor) -> Tensor:
        if self.training and self.word_dropout:
            hit = (torch.rand(tokens.shape, device=tokens.device) < self.word_dropout) & (tokens != self.pad_id)
            tokens = tokens.masked_fill(hit, self.unk_id)
        return self.drop(self.embed(tokens))
