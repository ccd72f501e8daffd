"""The one-to-one head: a vector -> a label, no recurrence (the lecture's mode 1, e.g. image
classification: the baseline every image-sequence model is compared with)."""
from __future__ import annotations

from torch import Tensor, nn


class OneToOneHead(nn.Module):
    """``y = W_hy v`` (after an optional tanh layer of size ``hidden``), v (B, D) -> logits (B, C)."""

    mode = "one_to_one"

    def __init__(self, input_size: int, num_classes: int, *, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(input_size, hidden), nn.Tanh(), nn.Dropout(dropout)]
            input_size = hidden
        layers.append(nn.Linear(input_size, num_classes))
        self.W_hy = nn.Sequential(*layers)

    def forward(self, v: Tensor) -> Tensor:
        return self.W_hy(v)
