"""One-hot tokens, as in the lecture's character model over [h, e, l, o]."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class OneHot(nn.Module):
    """ids (B, T) -> one-hot (B, T, V). No parameters: W_xh of the first cell does the embedding."""

    consumes = "tokens"
    produces = "sequence"

    def __init__(self, vocab_size: int, *, pad_id: int = 0) -> None:
        super().__init__()
        self.out_dim = vocab_size
        self.register_buffer("eye", torch.eye(vocab_size), persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.eye[tokens]
