"""Loggers of a run. CSV always; W&B on request, offline whenever no API key is configured.

The decision online/offline is made before wandb starts, so a run never waits on the network.
Tasks describe their rich media (``Task.media``) without importing wandb; this module turns
the descriptions into W&B objects: tables with images, text, confusion matrices.
"""
from __future__ import annotations

import html
import logging
import netrc
import os
from pathlib import Path
from typing import Literal

from pytorch_lightning.loggers import CSVLogger, Logger

log = logging.getLogger(__name__)


def csv_loggers(*, save_dir: str | Path, run_name: str | None = None, group: str | None = None,
                id: str | None = None) -> list[Logger]:
    """``<run folder>/logs/metrics.csv`` (and hparams.yaml)."""
    return [CSVLogger(save_dir=str(save_dir), name="", version="logs")]


def wandb_api_key_configured() -> bool:
    """True if wandb could authenticate: WANDB_API_KEY, or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_loggers(
    *,
    save_dir: str | Path,
    run_name: str | None = None,
    group: str | None = None,
    id: str | None = None,
    project: str = "zoo",
    entity: str | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
    mode: Literal["auto", "online", "offline"] = "auto",
    log_model: bool = False,
) -> list[Logger]:
    """CSV plus W&B. ``group`` gathers a sweep's trials; ``id`` continues a run (resume)."""
    from pytorch_lightning.loggers import WandbLogger

    if mode not in ("auto", "online", "offline"):
        raise ValueError(f"logger.mode must be auto, online or offline, got {mode!r}")
    env_mode = os.environ.get("WANDB_MODE")
    offline = mode == "offline" or env_mode in ("offline", "dryrun") or (
        mode == "auto" and env_mode != "online" and not wandb_api_key_configured())
    # offline=True is wandb.init(mode="offline"): no network at all, not even a probe. (Not set
    # through WANDB_MODE, which would stay switched on for later runs in the same process.)
    logger = WandbLogger(project=project, entity=entity, group=group, name=name or run_name, tags=list(tags or []),
                         save_dir=str(save_dir), offline=offline, log_model=log_model, id=id,
                         resume="allow" if id else None)
    logger.offline_note = offline  # read by the run summary
    # Lightning's offline WandbLogger sets WANDB_MODE for the whole process: finish() restores it
    logger.env_mode_before = env_mode
    return csv_loggers(save_dir=save_dir) + [logger]


def wandb_logger(loggers: list[Logger]):
    """The W&B logger among ``loggers``, or None."""
    from pytorch_lightning.loggers import WandbLogger

    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)


def log_media(loggers: list[Logger], media: dict, metrics: dict[str, float]) -> None:
    """Send a task's media and the final metrics to W&B (nothing without a W&B logger).

    media: name -> {"table": {"columns": [...], "rows": [[...]]}}  (PIL images allowed in cells)
                 | {"text": str} | {"confusion": {"y_true": [...], "y_pred": [...], "labels": [...]}}
    """
    lg = wandb_logger(loggers)
    if lg is None:
        return
    import wandb
    from PIL import Image

    out = {}
    for name, item in media.items():
        if "table" in item:
            rows = [[wandb.Image(c) if isinstance(c, Image.Image) else c for c in row] for row in item["table"]["rows"]]
            out[name] = wandb.Table(columns=item["table"]["columns"], data=rows)
        elif "text" in item:
            out[name] = wandb.Html(f"<pre>{html.escape(item['text'])}</pre>")  # <UNK> shown, never markup
        elif "confusion" in item:
            c = item["confusion"]
            out[name] = wandb.plot.confusion_matrix(y_true=c["y_true"], preds=c["y_pred"], class_names=c["labels"])
    lg.experiment.log(out)
    for k, v in metrics.items():  # the final metrics as the run summary
        lg.experiment.summary[k] = v


def finish(loggers: list[Logger], status: str = "success") -> None:
    """Close the loggers; a W&B run is finished so that its files are complete, and the process
    is left as it was (W&B's offline mode not switched on for later runs)."""
    for lg in loggers:
        lg.finalize(status)
    lg = wandb_logger(loggers)
    if lg is None:
        return
    if getattr(lg, "_experiment", None) is not None:
        lg.experiment.finish(exit_code=0 if status == "success" else 1)
    if lg.env_mode_before is None:
        os.environ.pop("WANDB_MODE", None)
    else:
        os.environ["WANDB_MODE"] = lg.env_mode_before


def wandb_sync_hint(loggers: list[Logger]) -> str | None:
    """``wandb sync <dir>`` for an offline W&B run, or None."""
    lg = wandb_logger(loggers)
    if lg is not None and getattr(lg, "offline_note", False):
        run_dir = Path(lg.experiment.dir).parent  # .../wandb/offline-run-<time>-<id>/files -> the run
        return f"wandb: offline run in {run_dir}; upload it with: wandb sync {run_dir}"
    return None
