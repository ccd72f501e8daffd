"""W&B offline: what a dashboard would show is in the run files (read back without a server)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import TINY, compose
from wandb_offline import read_run

from zoo.tasks.charlm import CharLMTask
from zoo.run.train import train


def offline_run(folder) -> dict:
    files = list(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return read_run(files[0])


@pytest.mark.slow
def test_captioning_run_logs_config_history_gradients_and_a_samples_table(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # artifact staging
    cfg = compose("task=captioning", *TINY["captioning"], "logger=wandb", "trainer.max_epochs=2",
                  "trainer.log_every_n_steps=1")
    train(cfg, run_dir=tmp_path, name="captioning-wandb")
    run = offline_run(tmp_path)
    assert run["config"]["cell"]["hidden_size"] == 32 and run["config"]["task"]["decode"]["beam_size"] == 3
    losses = [h["train/loss"] for h in run["history"] if "train/loss" in h]
    assert len(losses) >= 8
    assert any("grad_norm/total" in h for h in run["history"])
    assert any(k.startswith("lr-") for h in run["history"] for k in h)
    assert any("val/cider" in h for h in run["history"])
    table = next(h for h in run["history"] if h.get("test/samples/_type") == "table-file")
    assert table["test/samples/nrows"] == 16 and table["test/samples/ncols"] == 3
    data = json.loads(next(tmp_path.glob("wandb/offline-run-*/files/" + table["test/samples/path"])).read_text())
    assert data["columns"] == ["image", "generated", "references"] and len(data["data"]) == 16
    assert all(" | " in row[2] for row in data["data"])  # the references of each image
    # a table with images travels as an artifact: the table and its 16 pictures, staged for `wandb sync`
    staged = next(a for a in run["artifacts"] if "test/samples.table.json" in a)
    pictures = [p for p in staged if p.endswith(".png")]
    assert len(pictures) == 16 and all(Path(staged[p]).is_file() for p in pictures)
    assert run["summary"]["test/bleu4"] >= 0 and run["name"] == "captioning-wandb"
    assert f"wandb sync {next(tmp_path.glob('wandb/offline-run-*'))}" in capsys.readouterr().out
    assert json.loads((tmp_path / "run.json").read_text())["wandb_id"] == run["run_id"]


@pytest.mark.slow
def test_classification_logs_a_confusion_matrix_and_charlm_logs_escaped_text(tmp_path, monkeypatch):
    """The generated text is HTML-escaped (<UNK>, <END> and markup show as written); offline mode
    (no key) is not left switched on in the process for later runs; a resumed run keeps its name."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    train(compose("task=sentiment", *TINY["sentiment"], "logger=wandb", "trainer.max_epochs=1"),
          run_dir=tmp_path / "s", name="s")
    assert "WANDB_MODE" not in os.environ  # decided per run, not for the rest of the process
    history = offline_run(tmp_path / "s")["history"]
    confusion = next(h for h in history if h.get("test/confusion_table/_type") == "table-file")
    data = json.loads(next(tmp_path.glob("s/wandb/offline-run-*/files/" + confusion["test/confusion_table/path"])).read_text())
    assert sum(row[2] for row in data["data"]) == 16  # every test sentence counted once
    hostile = '<b>bold</b> & <UNK> <END>'
    monkeypatch.setattr(CharLMTask, "sample_text", lambda self: hostile)
    run_dir = tmp_path / "c"
    train(compose("task=charlm", *TINY["charlm"], "logger=wandb", "trainer.max_epochs=1"), run_dir=run_dir,
          name="charlm-first")
    html = next(h for h in offline_run(run_dir)["history"] if h.get("samples/text/_type") == "html-file")
    page = next(run_dir.glob("wandb/offline-run-*/files/" + html["samples/text/path"])).read_text()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;UNK&gt; &lt;END&gt;" in page and "<b>" not in page
    # resumed (more epochs): the same W&B run id and the same name, not one made of the resume override
    train(compose(f"resume={run_dir}", "trainer.max_epochs=2"), overrides=[f"resume={run_dir}", "trainer.max_epochs=2"],
          name="resume-name")
    runs = [read_run(f) for f in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))]
    assert len(runs) == 2 and {r["run_id"] for r in runs} == {json.loads((run_dir / "run.json").read_text())["wandb_id"]}
    assert [r["name"] for r in runs] == ["charlm-first", "charlm-first"]
