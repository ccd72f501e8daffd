"""A Hydra callback: at the end of a sweep, one table of all its runs, best first.

Reads every run folder of the sweep (its overrides, its config's monitored metric, its
metrics.json) and writes ``summary.csv`` and ``summary.md`` into the sweep folder, and prints
the Markdown. Each run has a status:

    done     metrics.json holds a finite value of the monitored metric: ranked, best first
    failed   no metrics.json (the run raised, or was killed), or the metric is NaN or missing
    broken   metrics.json cannot be read (e.g. cut short): listed, not ranked

Runs that are not ranked come last, in folder order. One unreadable folder never stops the table.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def _folder_order(path: Path) -> list:
    """trial_2 before trial_10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.parent.parent.name)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _monitor(run: Path) -> tuple[str, str] | None:
    try:
        cfg = OmegaConf.load(run / "config.yaml")
        return str(cfg.monitor.metric), str(cfg.monitor.direction)
    except Exception:  # no config (the run failed early) or an unreadable one: another run tells
        return None


def _read_run(run: Path, overrides_file: Path) -> dict:
    row: dict[str, Any] = {"run": run.name, "overrides": "", "status": "failed", "folder": str(run)}
    try:
        row["overrides"] = " ".join(str(o) for o in OmegaConf.load(overrides_file) if not str(o).startswith("hydra"))
    except Exception:
        row["overrides"] = "?"
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        return row
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, ValueError):
        metrics = None
    if not isinstance(metrics, dict):
        row["status"] = "broken"
        return row
    return {**row, **metrics, "status": "metrics"}  # done or failed: decided once the metric is known


def collect(sweep_dir: Path, metric: str | None = None, direction: str | None = None) -> tuple[list[dict], str, str]:
    """Rows (one per run folder): ranked runs best first, then the others; the metric and its direction.

    The metric is the runs' own monitor.metric (from their config.yaml); ``metric``/``direction``
    are used when no run has a readable config.
    """
    rows, monitor = [], None
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"), key=_folder_order):
        run = overrides_file.parent.parent
        monitor = monitor or _monitor(run)
        rows.append(_read_run(run, overrides_file))
    metric, direction = monitor or (metric or "val/loss", direction or "minimize")
    for row in rows:
        if row["status"] == "metrics":
            row["status"] = "done" if _finite(row.get(metric)) else "failed"
    sign = -1.0 if direction == "maximize" else 1.0
    ranked = sorted((r for r in rows if r["status"] == "done"), key=lambda r: sign * r[metric])
    return ranked + [r for r in rows if r["status"] != "done"], metric, direction


def write_summary(sweep_dir: Path, metric: str | None = None, direction: str | None = None) -> str:
    rows, metric, direction = collect(sweep_dir, metric, direction)
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # what differs between the runs; what they share goes in the heading
        r["overrides"] = " ".join(o for o in r["overrides"].split() if o not in common)
    shown = [k for k in ("val/", "test/") for k in sorted({c for r in rows for c in r if c.startswith(k)})]
    columns = ["rank", "overrides", metric] + [c for c in shown if c != metric] + ["status", "folder"]
    table = [{"rank": i + 1 if r["status"] == "done" else "", **r} for i, r in enumerate(rows)]
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    shared = " ".join(sorted(common))
    counts = {s: sum(r["status"] == s for r in rows) for s in ("failed", "broken")}
    not_ranked = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    md = [f"Sweep {sweep_dir}: {len(rows)} runs, best first by {metric} ({direction})"
          + (f"; {not_ranked} (not ranked)" if not_ranked else ""),
          *([f"All runs: {shared}"] if shared else []), "",
          "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in table]
    text = "\n".join(md) + "\n"
    (sweep_dir / "summary.md").write_text(text)
    return text


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            print(write_summary(sweep_dir, OmegaConf.select(config, "monitor.metric"),
                                OmegaConf.select(config, "monitor.direction")))
