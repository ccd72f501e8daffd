"""What every task shares: optimiser and scheduler from config, a finite-loss guard, and
checkpoints that carry the data spec and the resolved config."""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor

from zoo.data.spec import DataSpec
from zoo.errors import TrainingDiverged


class Task(pl.LightningModule):
    #: what the encoder must read: "image", "tokens" or "frames"
    consumes: ClassVar[str]
    #: the head modes this task can drive
    modes: ClassVar[tuple[str, ...]]

    def __init__(self, *, spec: DataSpec, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.run_config: dict | None = None  # the resolved config, stored in checkpoints

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self._optimizer(params=params)
        if self._scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self._scheduler(optimizer=optimizer)}}

    def check_finite(self, loss: Tensor) -> Tensor:
        """Stop with a clear error on a NaN/inf loss; checkpoints already written stay intact."""
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}). "
                "Checkpoints saved so far are kept. Lower the learning rate (optimizer.lr), clip gradients "
                "(trainer.gradient_clip_val), or check the data for extreme values"
            )
        return loss

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["zoo"] = {"spec": self.spec.to_dict(), "config": self.run_config}
