"""One run: data -> spec -> task -> Trainer.fit -> best checkpoint -> val + test -> run folder.

The run folder (``hydra.run.dir``) ends up holding:

    config.yaml        the resolved config
    data_spec.json     vocabularies and label sets, built from the training split
    checkpoints/       best.ckpt (by the monitored metric) and last.ckpt
    logs/metrics.csv   every logged value (plus W&B files under wandb/ with logger=wandb)
    metrics.json       final metrics, flat keys: val/..., test/... (from the best checkpoint)
    samples.png, ...   the task's artefacts (e.g. test images with generated captions)
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint

from zoo.loggers import wandb_sync_hint

log = logging.getLogger(__name__)

# Lightning's advice to add dataloader workers is wrong for in-memory data on a few cores.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


class EpochLog(Callback):
    """One log line per epoch with the validation metrics: readable without a progress bar."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        shown = {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/loss", "val/"))}
        log.info("epoch %d: %s", trainer.current_epoch, ", ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items())))


def run_name(choices: dict[str, str], overrides: list[str]) -> str:
    """A readable run name: the task and the command-line overrides."""
    shown = [o for o in overrides if not o.startswith(("hydra.", "task="))]
    return "-".join([choices.get("task", "run")] + shown) or "run"


def build_task(cfg: DictConfig, spec):
    """Instantiate the task from the composed config and the data spec."""
    # The task config is partial: objects are passed to the call, not through instantiate,
    # which would turn them into configs.
    return instantiate(cfg.task)(
        encoder=instantiate(cfg.encoder),
        cell=instantiate(cfg.cell),
        head=instantiate(cfg.head),
        spec=spec,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )


def _scalar(v) -> float:
    return float(v.item() if isinstance(v, torch.Tensor) else v)


def train(cfg: DictConfig, run_dir: str | Path | None = None, name: str | None = None) -> float:
    """Train, validate and test one configuration; returns the monitored metric (for sweepers).

    ``run_dir`` and ``name`` default to Hydra's run folder and a name made of the overrides.
    """
    if run_dir is None or name is None:
        hc = HydraConfig.get()
        run_dir = run_dir or hc.runtime.output_dir
        name = name or run_name(dict(hc.runtime.choices), list(hc.overrides.task))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    spec = datamodule.spec

    task = build_task(cfg, spec)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    task.run_config = resolved

    loggers = instantiate(cfg.logger)(save_dir=run_dir, run_name=name)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=cfg.monitor.metric,
                                 mode=cfg.monitor.mode, save_last=True, save_top_k=1,
                                 auto_insert_metric_name=False, enable_version_counter=False)
    callbacks = [checkpoint, EpochLog()]
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir))
    is_zero = trainer.is_global_zero  # only rank 0 writes the run folder
    if is_zero:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
        (run_dir / "data_spec.json").write_text(json.dumps(spec.to_dict(), indent=1))

    trainer.fit(task, datamodule=datamodule)
    metrics: dict[str, float] = {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    best = checkpoint.best_model_path or None  # none under fast_dev_run
    for stage in (trainer.validate, trainer.test):
        for result in stage(task, datamodule=datamodule, ckpt_path=best, verbose=False):
            metrics.update({k: _scalar(v) for k, v in result.items()})
    metrics = dict(sorted(metrics.items()))

    if is_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        task.write_artifacts(run_dir, datamodule)
        hint = wandb_sync_hint(loggers)
        if hint:
            print(hint)
        print(f"run folder: {run_dir}")
        summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("test/"))
        print(f"test: {summary}")
    for lg in loggers:
        lg.finalize("success")
    return metrics.get(cfg.monitor.metric, math.nan)
