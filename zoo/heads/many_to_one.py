"""The many-to-one head: a whole sequence -> one label (sentiment, an image read row by row)."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

Pool = Literal["last", "mean", "max"]


class ManyToOneHead(nn.Module):
    """Pools the states over the real (unpadded) steps, then ``y = W_hy pooled``.

    pool=last   the state after the last real step; with a bidirectional recurrence, the
                forward half at the last step and the backward half at the first step
    pool=mean   the mean over real steps;  pool=max: the element-wise max over real steps
    """

    mode = "many_to_one"
    pools = ("last", "mean", "max")

    def __init__(self, input_size: int, num_classes: int, *, directions: int = 1, pool: Pool = "last",
                 hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in self.pools:
            raise ValueError(f"head.pool must be one of {self.pools}, got {pool!r}")
        self.pool, self.directions = pool, directions
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(input_size, hidden), nn.Tanh(), nn.Dropout(dropout)]
            input_size = hidden
        layers.append(nn.Linear(input_size, num_classes))
        self.W_hy = nn.Sequential(*layers)

    def forward(self, states: Tensor, lengths: Tensor | None = None) -> Tensor:
        """states (B, T, D*H), lengths (B,) -> logits (B, C)."""
        B, T, _ = states.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=states.device)
        lengths = lengths.to(states.device)
        if self.pool == "last":
            last = states[torch.arange(B, device=states.device), lengths - 1]  # (B, D*H)
            if self.directions == 2:
                H = states.shape[2] // 2
                last = torch.cat([last[:, :H], states[:, 0, H:]], dim=1)
            pooled = last
        else:
            real = (torch.arange(T, device=states.device)[None, :] < lengths[:, None]).unsqueeze(2)  # (B, T, 1)
            if self.pool == "mean":
                pooled = (states * real).sum(1) / lengths[:, None].to(states.dtype)
            else:
                pooled = states.masked_fill(~real, float("-inf")).amax(1)
        return self.W_hy(pooled)
