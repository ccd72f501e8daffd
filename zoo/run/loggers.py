"""Loggers of a run. CSV always; W&B on request, offline whenever no API key is configured;
TensorBoard on request, files only.

The decision online/offline is made before wandb starts, so a run never waits on the network.
Tasks describe their rich media (``Task.media``) without importing wandb or TensorBoard; this
module turns the descriptions into each dashboard's objects (tables with images, text, confusion
matrices), one function per kind of logger (``_media_writers``).
"""
from __future__ import annotations

import csv
import html
import logging
import netrc
import os
import re
from pathlib import Path
from typing import Callable, Literal

from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

log = logging.getLogger(__name__)


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that it keeps what a run folder's ``metrics.csv`` already
    holds (Lightning's deletes it): a resumed run's rows follow the interrupted run's. Rows of
    steps the resumed run does again (training rows from its checkpoint's step on, anything later)
    are replaced by the new ones; the last evaluation before it (logged at that step) is kept."""

    def _check_log_dir_exists(self) -> None:
        self.kept: list[dict] = []
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                reader = csv.DictReader(file)
                self.kept = list(reader)
                self.metrics_keys = sorted(reader.fieldnames or [])

    def save(self) -> None:
        if self.kept and self.metrics:
            first = min(int(m["step"]) for m in self.metrics)
            redone = lambda r: int(float(r["step"])) > first or (
                int(float(r["step"])) == first and any(v for k, v in r.items() if k.startswith("train/")))
            rows = [r for r in self.kept if r.get("step") and not redone(r)]
            self._record_new_keys()
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(rows)
            self.kept = []
        super().save()


class _KeepingCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def csv_loggers(*, save_dir: str | Path, run_name: str | None = None, group: str | None = None,
                id: str | None = None) -> list[Logger]:
    """``<run folder>/logs/metrics.csv`` (and hparams.yaml); a resumed run adds to it."""
    return [_KeepingCSVLogger(save_dir=str(save_dir), name="", version="logs")]


def tensorboard_loggers(*, save_dir: str | Path, run_name: str | None = None, group: str | None = None,
                        id: str | None = None, flush_secs: int = 30) -> list[Logger]:
    """CSV plus TensorBoard event files in ``<run folder>/tensorboard`` (``tensorboard --logdir
    outputs/`` shows every run below). A resumed run adds event files beside the earlier ones,
    its steps continuing theirs; a sweep's trials each write into their own run folder."""
    from pytorch_lightning.loggers import TensorBoardLogger

    # default_hp_metric=False: no placeholder "hp_metric" curve; the final metrics are written
    # with the config at the end (_tensorboard_media)
    logger = TensorBoardLogger(save_dir=str(save_dir), name="", version="tensorboard", default_hp_metric=False,
                               flush_secs=flush_secs)
    return csv_loggers(save_dir=save_dir) + [logger]


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


def _wandb_media(lg, media: dict, metrics: dict[str, float], step: int | None) -> None:
    """W&B tables (with images), HTML text and confusion-matrix plots; the final metrics as the
    run summary. (W&B counts its own steps: ``step`` is not used.)"""
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


# characters that mean something to Markdown inside a line (a table cell, a caption)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def markdown_cell(value) -> str:
    """One line of plain text as Markdown that shows it as written: ``<UNK>`` stays text (not an
    HTML tag), ``|`` does not end a table cell, ``*`` and ``_`` do not turn into emphasis."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def markdown_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(markdown_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_text(text: str) -> str:
    """Text as a Markdown code block (four spaces a line): its lines and every character kept."""
    return "\n".join("    " + line for line in (text.splitlines() or [""]))


def confusion_counts(y_true: list[int], y_pred: list[int], n: int) -> list[list[int]]:
    """counts[t][p]: how many examples of class t were predicted as p."""
    counts = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, y_pred):
        counts[t][p] += 1
    return counts


def confusion_picture(counts: list[list[int]], labels: list[str]):
    """A PIL image of a confusion matrix: rows the true class, columns the predicted one, each
    cell shaded by its share of the row and (where there is room) its count written in it."""
    from PIL import Image, ImageDraw, ImageFont

    n = len(labels)
    cell = max(4, min(36, 720 // max(n, 1)))
    font = ImageFont.load_default(size=max(8, min(12, cell - 4)))
    named = cell >= 10  # labels and counts only where they can be read
    widest = max([font.getlength(lab) for lab in labels] + [font.getlength("predicted")])
    margin = int(widest) + 8 if named else 4
    image = Image.new("RGB", (margin + n * cell + 4, margin + n * cell + 4), "white")
    draw = ImageDraw.Draw(image)
    for t, row in enumerate(counts):
        total = max(sum(row), 1)
        for p, count in enumerate(row):
            share = count / total
            shade = (int(255 - 215 * share), int(255 - 160 * share), 255)  # white -> blue
            box = (margin + p * cell, margin + t * cell, margin + (p + 1) * cell - 1, margin + (t + 1) * cell - 1)
            draw.rectangle(box, fill=shade, outline=(220, 220, 220))
            if named and count and font.getlength(str(count)) < cell - 2:
                draw.text((box[0] + 2, box[1] + 1), str(count), fill="white" if share > 0.6 else "black", font=font)
    if named:
        draw.text((4, margin - 4 - cell), "true", fill="gray", font=font)  # what the rows and columns are
        draw.text((margin - 4 - font.getlength("predicted"), 4), "predicted", fill="gray", font=font)
        for k, lab in enumerate(labels):
            draw.text((4, margin + k * cell + 1), lab, fill="black", font=font)  # true, left of its row
            width = int(font.getlength(lab)) + 4
            column = Image.new("RGB", (width, cell), "white")  # predicted, written upwards above its column
            ImageDraw.Draw(column).text((2, 1), lab, fill="black", font=font)
            column = column.rotate(90, expand=True)
            image.paste(column, (margin + k * cell, margin - 4 - width))
    return image


def _tensorboard_media(lg, media: dict, metrics: dict[str, float], step: int | None) -> None:
    """TensorBoard: a table's pictures as images, one per row (``<table>/<row>``), and its other
    columns as a Markdown table (with the row numbers); text as a code block; a confusion matrix
    as a picture and a Markdown table of counts. The final metrics with the run's config in the
    HParams dashboard."""
    import numpy as np
    from PIL import Image

    writer = lg.experiment
    for name, item in media.items():
        if "table" in item:
            columns, rows = item["table"]["columns"], item["table"]["rows"]
            pictures = [c for c in range(len(columns)) if any(isinstance(row[c], Image.Image) for row in rows)]
            words = [c for c in range(len(columns)) if c not in pictures]
            width = max(2, len(str(len(rows) - 1)))
            for r, row in enumerate(rows):
                for c in pictures:
                    if isinstance(row[c], Image.Image):
                        tag = f"{name}/{r:0{width}d}" + (f"/{columns[c]}" if len(pictures) > 1 else "")
                        writer.add_image(tag, np.asarray(row[c].convert("RGB")), step, dataformats="HWC")
            writer.add_text(name, markdown_table(["row"] + [columns[c] for c in words],
                                                 [[f"{r:0{width}d}"] + [row[c] for c in words] for r, row in enumerate(rows)]),
                            step)
        elif "text" in item:
            writer.add_text(name, markdown_text(item["text"]), step)
        elif "confusion" in item:
            c = item["confusion"]
            labels = [str(lab) for lab in c["labels"]]
            counts = confusion_counts(c["y_true"], c["y_pred"], len(labels))
            writer.add_image(name, np.asarray(confusion_picture(counts, labels)), step, dataformats="HWC")
            if len(labels) <= 30:
                table = markdown_table(["true \\ predicted", *labels], [[lab, *row] for lab, row in zip(labels, counts)])
            else:  # too wide to read: the most frequent confusions
                pairs = sorted(((counts[t][p], labels[t], labels[p]) for t in range(len(labels))
                                for p in range(len(labels)) if t != p and counts[t][p]), reverse=True)[:30]
                table = markdown_table(["true", "predicted", "count"], [[t, p, k] for k, t, p in pairs])
            writer.add_text(name, table, step)
    if metrics:
        from torch.utils.tensorboard.summary import hparams

        # the HParams dashboard: the run's config beside its final metrics, whose values it reads
        # from the curves of the same names (Lightning's log_hyperparams(params, metrics) would
        # log every metric a second time as a point of its curve)
        flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                for k, v in _flatten(getattr(lg, "hparams", {}) or {}).items() if v is not None}
        file_writer = writer._get_file_writer()
        for summary in hparams(flat, dict(metrics)):
            file_writer.add_summary(summary, step)
    writer.flush()


def _flatten(config, prefix: str = "") -> dict:
    """{"cell": {"hidden_size": 32}} -> {"cell/hidden_size": 32}"""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    out = {}
    for k, v in dict(config).items():
        if isinstance(v, (dict, DictConfig)):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _media_writers() -> dict[type, Callable]:
    """Each dashboard's way of showing a task's media and final metrics, by its logger class."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    return {WandbLogger: _wandb_media, TensorBoardLogger: _tensorboard_media}


def dashboards(loggers: list[Logger]) -> list[Logger]:
    """The loggers that show curves and media (W&B, TensorBoard), not just files of numbers."""
    kinds = tuple(_media_writers())
    return [lg for lg in loggers if isinstance(lg, kinds)]


def log_media(loggers: list[Logger], media: dict, metrics: dict[str, float], step: int | None = None) -> None:
    """Send a task's media and the final metrics to every dashboard among ``loggers`` (nothing
    with CSV alone); ``step``: the run's last training step, where they belong on its curves.

    media: name -> {"table": {"columns": [...], "rows": [[...]]}}  (PIL images allowed in cells)
                 | {"text": str} | {"confusion": {"y_true": [...], "y_pred": [...], "labels": [...]}}
    """
    writers = _media_writers()
    for lg in loggers:
        for kind, write in writers.items():
            if isinstance(lg, kind):
                write(lg, media, metrics, step)


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
