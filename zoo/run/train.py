"""One run: data -> spec -> task -> Trainer.fit -> best checkpoint -> val + test -> run folder.

The run folder (``hydra.run.dir``) ends up holding:

    config.yaml        the resolved config
    data_spec.json     vocabularies and label sets, built from the training split
    run.json           the run's name (and W&B run id), so that a resumed run is the same run
    checkpoints/       best.ckpt (by the monitored metric) and last.ckpt
    logs/metrics.csv   every logged value (plus W&B files under wandb/ with logger=wandb,
                       TensorBoard event files under tensorboard/ with logger=tensorboard)
    metrics.json       final metrics, flat keys: val/..., test/... (from the best checkpoint)
    samples.png, ...   the task's artefacts (e.g. test images with generated captions)

Only rank 0 writes it. ``resume=<run folder>`` continues a run from its last checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from zoo.run.callbacks import EpochLog, GradNormLog, RankSeed, SaveOnInterrupt, _scalar
from zoo.run.checks import settle_image_size
from zoo.errors import DataError
from zoo.run.launch import ddp_processes
from zoo.run.loggers import dashboards, finish, log_media, wandb_logger, wandb_sync_hint
from zoo.run.resume import resume_config

log = logging.getLogger(__name__)

# Lightning's advice to add dataloader workers is wrong for in-memory data on a few cores.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")

MODES = {"maximize": "max", "minimize": "min"}


def run_name(choices: dict[str, str], overrides: list[str]) -> str:
    """A readable run name: the task and the command-line overrides."""
    shown = [o for o in overrides if not o.startswith(("hydra.", "task="))]
    return "-".join([choices.get("task", "run")] + shown) or "run"


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader (or a kill) never sees half of it: a temporary file beside
    it, then one rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def saved_spec(run_dir: Path):
    """The vocabularies and labels a run was trained with (its data_spec.json)."""
    from zoo.data.spec import DataSpec

    path = run_dir / "data_spec.json"
    try:
        return DataSpec.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: cannot read the run's vocabularies and labels ({e})") from e


def run_identity(run_dir: Path) -> dict:
    """How a run was named (and its W&B run), so that a resumed run is the same run."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def build_task(cfg: DictConfig, spec):
    """Instantiate the task from the composed config and the data spec."""
    # The task config is partial: objects are passed to the call, not through instantiate,
    # which would turn them into configs.
    task = instantiate(cfg.task)
    parts = getattr(task.func, "parts", ("encoder", "cell", "head"))  # what this task is built from
    return task(
        **{part: instantiate(cfg[part]) for part in parts},
        spec=spec,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )


def train(cfg: DictConfig, run_dir: str | Path | None = None, name: str | None = None,
          overrides: list[str] | None = None) -> float:
    """Train, validate and test one configuration; returns the monitored metric (for sweepers).

    ``run_dir``, ``name`` and ``overrides`` default to Hydra's run folder, a name made of the
    command-line overrides, and those overrides.
    """
    group = None
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        run_dir = run_dir or hc.runtime.output_dir
        overrides = list(hc.overrides.task) if overrides is None else overrides
        name = name or run_name(dict(hc.runtime.choices), overrides)
        if hc.mode == RunMode.MULTIRUN:  # W&B groups a sweep's trials
            group = Path(hc.sweep.dir).name
    overrides = overrides or []
    resume_ckpt = None
    if cfg.get("resume"):
        cfg, resume_ckpt, run_dir = resume_config(cfg, overrides)
    run_dir = Path(run_dir)
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)

    settle_image_size(cfg)  # data.image_size=null: what the encoder asks for
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    if resume_ckpt:  # the run's own vocabularies and labels, not ones rebuilt from the data as it is now
        datamodule.use_spec(saved_spec(run_dir))
    try:
        datamodule.setup("fit")
    except DataError as e:
        if not resume_ckpt:
            raise
        raise DataError(f"resume={run_dir}: the data no longer fits the run's saved vocabularies and labels "
                        f"({run_dir / 'data_spec.json'}): {e}") from e
    spec = datamodule.spec

    task = build_task(cfg, spec)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    task.run_config = resolved

    with ddp_processes(cfg, str(run_dir), overrides):
        identity = run_identity(run_dir) if resume_ckpt else {}  # a resumed run keeps its name and W&B run
        name = identity.get("name") or name or "run"
        loggers = instantiate(cfg.logger)(save_dir=run_dir, run_name=name, group=identity.get("group", group),
                                          id=identity.get("wandb_id"))
        checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=cfg.monitor.metric,
                                     mode=MODES[cfg.monitor.direction], save_top_k=1,
                                     auto_insert_metric_name=False, enable_version_counter=False)
        # last.ckpt after every epoch, whether or not it was the best: Lightning's own save_last
        # saves it only when best.ckpt is saved, which would make resume= lose the epochs since
        last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                               enable_version_counter=False)
        callbacks = [checkpoint, last, EpochLog(), SaveOnInterrupt(run_dir / "checkpoints" / "last.ckpt"), RankSeed(cfg.seed)]
        wandb = wandb_logger(loggers)
        if dashboards(loggers):  # curves worth watching beside the metrics
            callbacks += [LearningRateMonitor(logging_interval="step"), GradNormLog()]
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir))
        status = "failed"
        try:
            is_zero = trainer.is_global_zero  # only rank 0 writes the run folder
            if is_zero:
                write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
                write_atomic(run_dir / "data_spec.json", json.dumps(spec.to_dict(), indent=1))
                for lg in loggers:
                    lg.log_hyperparams(resolved)
                write_atomic(run_dir / "run.json", json.dumps(
                    {"name": name, "group": group, "wandb_id": wandb.experiment.id if wandb else None}, indent=1))

            # weights_only: a checkpoint is read as tensors and plain containers, never as pickled code
            trainer.fit(task, datamodule=datamodule, ckpt_path=resume_ckpt, weights_only=True)
            metrics = {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
            best = checkpoint.best_model_path or None  # none under fast_dev_run
            for stage in (trainer.validate, trainer.test):
                for result in stage(task, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True):
                    metrics.update({k: _scalar(v) for k, v in result.items()})
            metrics = dict(sorted(metrics.items()))

            if is_zero:
                write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
                task.write_artifacts(run_dir, datamodule)
                log_media(loggers, task.media(datamodule), metrics, step=trainer.global_step)
                hint = wandb_sync_hint(loggers)
                if hint:
                    print(hint)
                print(f"run folder: {run_dir}")
                summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith("test/"))
                print(f"test: {summary}")
            status = "success"
        finally:
            finish(loggers, status)  # also when training stops on an error: the W&B files are complete
    return metrics.get(cfg.monitor.metric, math.nan)
