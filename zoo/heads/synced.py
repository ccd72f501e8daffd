"""The synced many-to-many head: one output per step, ``y_t = W_hy h_t`` (tagging, char LM, video)."""
from __future__ import annotations

from torch import Tensor, nn


class SyncedHead(nn.Module):
    mode = "synced"

    def __init__(self, input_size: int, num_classes: int, *, directions: int = 1, dropout: float = 0.0) -> None:
        # (directions: both halves of a bidirectional state are simply read together)
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.W_hy = nn.Linear(input_size, num_classes)

    def forward(self, states: Tensor, lengths: Tensor | None = None) -> Tensor:
        """states (B, T, D*H) -> logits (B, T, C). Padded steps are masked by the loss."""
        return self.W_hy(self.drop(states))
