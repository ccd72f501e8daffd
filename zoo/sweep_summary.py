"""A Hydra callback: at the end of a sweep, one table of all its runs, best first.

Reads every run folder of the sweep (its overrides, its config's monitored metric, its
metrics.json) and writes ``summary.csv`` and ``summary.md`` into the sweep folder, and prints
the Markdown. Runs that failed (no metrics.json) are listed last.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def collect(sweep_dir: Path) -> tuple[list[dict], str, str]:
    """Rows (one per run folder) sorted best first, the monitored metric, and its direction."""
    rows, metric, direction = [], "val/loss", "minimize"
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        run = overrides_file.parent.parent
        cfg_file = run / "config.yaml"
        if cfg_file.is_file():
            cfg = OmegaConf.load(cfg_file)
            metric, direction = cfg.monitor.metric, cfg.monitor.direction
        overrides = [o for o in OmegaConf.load(overrides_file) if not str(o).startswith("hydra")]
        metrics_file = run / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({"run": run.name, "overrides": " ".join(map(str, overrides)), "status": "done" if metrics else "failed",
                     **metrics, "folder": str(run)})
    sign = -1.0 if direction == "maximize" else 1.0

    def key(row: dict) -> tuple:
        value = row.get(metric)
        bad = value is None or (isinstance(value, float) and math.isnan(value))
        return (bad, sign * value if not bad else 0.0)

    return sorted(rows, key=key), metric, direction


def write_summary(sweep_dir: Path) -> str:
    rows, metric, direction = collect(sweep_dir)
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # what differs between the runs; what they share goes in the heading
        r["overrides"] = " ".join(o for o in r["overrides"].split() if o not in common)
    shown = [k for k in ("val/", "test/") for k in sorted({c for r in rows for c in r if c.startswith(k)})]
    columns = ["rank", "overrides", metric] + [c for c in shown if c != metric] + ["status", "folder"]
    table = [{"rank": i + 1, **r} for i, r in enumerate(rows)]
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    shared = " ".join(sorted(common))
    md = [f"Sweep {sweep_dir}: {len(rows)} runs, best first by {metric} ({direction})",
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
            print(write_summary(sweep_dir))
