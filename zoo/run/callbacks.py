"""Lightning callbacks of every zoo run."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import grad_norm
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def _scalar(v) -> float:
    return float(v.item() if isinstance(v, torch.Tensor) else v)


class EpochLog(Callback):
    """One log line per epoch with the validation metrics: readable without a progress bar;
    and when the first training step starts, how long after the process started."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == 0 and batch_idx == 0 and trainer.is_global_zero:
            from zoo import STARTED

            log.info("first training step after %.1f s", time.time() - STARTED)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        shown = {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/loss", "val/"))}
        log.info("epoch %d: %s", trainer.current_epoch, ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))


class SaveOnInterrupt(Callback):
    """SIGTERM (a cluster's pre-emption, ``kill``) or Ctrl-C during training: save
    ``last.ckpt`` at the batch boundary where Lightning stops, so ``resume=<run folder>``
    continues from there. (ModelCheckpoint's own ``save_on_exception`` would overwrite
    ``best.ckpt`` with a state that is not the best.)"""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.state.fn != "fit":
            return
        from zoo.run.launch import RANK_FAILED

        if RANK_FAILED.is_set():  # stopped because another rank died: a save would wait for it forever
            return
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path)
        if trainer.is_global_zero:
            log.warning("interrupted (%s) at step %d: saved %s; continue with resume=%s", type(exception).__name__,
                        trainer.global_step, self.path, self.path.parent.parent)


class RankSeed(Callback):
    """Initial weights come from the same seed on every rank; from the start of training each
    rank draws its own random numbers (dropout), offset by its rank."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1 and trainer.ckpt_path is None:
            pl.seed_everything(self.seed + trainer.global_rank, workers=True, verbose=False)


class GradNormLog(Callback):
    """The 2-norm of all gradients (and per parameter group) before each optimizer step."""

    def __init__(self, every_n_steps: int = 10) -> None:
        self.every = every_n_steps

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        if trainer.global_step % self.every == 0:
            norms = grad_norm(pl_module, norm_type=2)
            total = norms.pop("grad_2.0_norm_total", None)
            if total is not None:
                pl_module.log("grad_norm/total", total)
