"""W&B offline: what a dashboard would show is in the run files (read back without a server)."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import TINY, compose
from wandb_offline import read_run

from zoo.train import train


def offline_run(folder) -> dict:
    files = list(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    return read_run(files[0])


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
    assert (tmp_path / "wandb_run_id").read_text() == run["run_id"]


def test_classification_logs_a_confusion_matrix_and_charlm_logs_text(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    train(compose("task=sentiment", *TINY["sentiment"], "logger=wandb", "trainer.max_epochs=1"),
          run_dir=tmp_path / "s", name="s")
    history = offline_run(tmp_path / "s")["history"]
    assert any(k.startswith("test/confusion") for h in history for k in h)
    train(compose("task=charlm", *TINY["charlm"], "logger=wandb", "trainer.max_epochs=1"),
          run_dir=tmp_path / "c", name="c")
    history = offline_run(tmp_path / "c")["history"]
    assert any(h.get("samples/text/_type") == "html-file" for h in history)
