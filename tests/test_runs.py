"""Runs end to end: every cell x encoder x conditioning in a fast dev run, the run folder,
reproducibility, frozen-encoder feature caching, W&B offline, and a NaN loss."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY_CAPTIONING, check_metrics, compose, run_zoo
from PIL import Image

from zoo.run.configs import group_options
from zoo.data.captioning import CaptioningData
from zoo.errors import TrainingDiverged
from zoo.tasks import feature_cache
from zoo.run.train import train


@pytest.mark.parametrize("cell", group_options("cell"))
@pytest.mark.parametrize("encoder", ["cnn", "resnet18"])
@pytest.mark.parametrize("condition", ["every_step", "attention"])  # the fused kernel; the step loop
def test_fast_dev_run_every_cell_encoder_and_condition(tmp_path, cell, encoder, condition):
    extra = ["encoder.pretrained=false", "encoder.input_size=64"] if encoder != "cnn" else ["encoder.channels=[8,16]", "encoder.fc=[32]"]
    overrides = [o for o in TINY_CAPTIONING if not o.startswith("encoder.")]
    cfg = compose("task=captioning", f"cell={cell}", f"encoder={encoder}", f"head.condition={condition}",
                  "trainer.fast_dev_run=true", *overrides, *extra)
    train(cfg, run_dir=tmp_path, name="fdr")
    check_metrics(json.loads((tmp_path / "metrics.json").read_text()),
                  {"test/bleu4", "test/cider", "val/bleu4", "val/cider", "test/loss"})


@pytest.mark.slow
def test_python_m_zoo_end_to_end(tmp_path):
    """The main job in a subprocess: a short real run, and everything a run folder promises."""
    run_dir = tmp_path / "run"
    r = run_zoo("task=captioning", "trainer.max_epochs=2", *TINY_CAPTIONING, f"hydra.run.dir={run_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"run folder: {run_dir}" in r.stdout
    for name in ("config.yaml", "data_spec.json", "metrics.json", "samples.png", "checkpoints/best.ckpt",
                 "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (run_dir / name).is_file(), name
    check_metrics(json.loads((run_dir / "metrics.json").read_text()), {"train/loss"} | {
        f"{split}/{key}" for split in ("val", "test") for key in ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "loss", "ppl")})
    assert "seed: 1234" in (run_dir / "config.yaml").read_text() and "${" not in (run_dir / "config.yaml").read_text()
    assert "<START>" in json.loads((run_dir / "data_spec.json").read_text())["vocab"]["tokens"]
    with Image.open(run_dir / "samples.png") as im:
        assert im.width > 300 and im.height > 300
    header = (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss" in header and "val/cider" in header
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["zoo"]["spec"]["vocab"]["tokens"][:4] == ["<PAD>", "<START>", "<END>", "<UNK>"]
    assert ckpt["zoo"]["config"]["cell"]["hidden_size"] == 32


@pytest.mark.slow
def test_default_run_folder_is_under_outputs(tmp_path):
    r = run_zoo("trainer.fast_dev_run=true", *TINY_CAPTIONING, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    folder = Path(re.search(r"run folder: (.+)", r.stdout).group(1).strip())
    assert folder.parent == tmp_path / "outputs" / "captioning" and (folder / "metrics.json").is_file()


@pytest.mark.slow
def test_same_seed_same_run_and_another_seed_another(tmp_path):
    quick = ["task=captioning", *TINY_CAPTIONING, "trainer.max_epochs=1", "trainer.limit_train_batches=3"]
    out = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        train(compose(*quick, f"seed={seed}"), run_dir=tmp_path / name, name=name)
        out[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert out["a"] == out["b"]
    assert out["a"]["test/loss"] != out["c"]["test/loss"]


@pytest.mark.slow
def test_frozen_encoder_features_are_cached_on_disk(tmp_path, monkeypatch):
    overrides = ["task=captioning", *TINY_CAPTIONING, "encoder.freeze=true", "trainer.max_epochs=1",
                 f"paths.cache_dir={tmp_path / 'cache'}"]
    calls = []
    real = feature_cache.encode_store
    monkeypatch.setattr(feature_cache, "encode_store", lambda enc, store, *a, **kw: calls.append(len(store)) or real(enc, store, *a, **kw))
    attached = []
    real_attach = CaptioningData.attach_features
    monkeypatch.setattr(CaptioningData, "attach_features", lambda self, s, f, **kw: attached.append(f) or real_attach(self, s, f, **kw))
    train(compose(*overrides), run_dir=tmp_path / "one", name="one")
    assert sorted(calls) == [16, 16, 64]  # train, val, test: each image through the CNN once
    assert attached and all(isinstance(f, np.memmap) for f in attached)  # read from disk as needed, not held in RAM
    files = sorted((tmp_path / "cache" / "features").glob("*.npy"))
    assert len(files) == 3 and not list((tmp_path / "cache" / "features").glob(".*tmp"))
    calls.clear()
    train(compose(*overrides), run_dir=tmp_path / "two", name="two")
    assert calls == []  # a later run reads the cache and skips the CNN
    # another data set (blind) or other weights (another seed) -> other files, never stale ones
    train(compose(*overrides, "data.blind=true"), run_dir=tmp_path / "three", name="three")
    train(compose(*overrides, "seed=99"), run_dir=tmp_path / "four", name="four")
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 9
    # a damaged file is recomputed, not trusted
    files[0].write_bytes(b"garbage")
    calls.clear()
    train(compose(*overrides), run_dir=tmp_path / "five", name="five")
    assert len(calls) == 1


def test_frozen_encoder_does_not_change(tmp_path):
    cfg = compose("task=captioning", *TINY_CAPTIONING, "encoder.freeze=true", "trainer.max_epochs=1",
                  f"paths.cache_dir={tmp_path}")
    train(cfg, run_dir=tmp_path / "run", name="frozen")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    from zoo.run.train import build_task
    torch.manual_seed(cfg.seed)  # the untrained encoder of the same seed
    from zoo.data.shapes import ShapesCaptions  # noqa: F401
    enc_keys = [k for k in ckpt["state_dict"] if k.startswith("encoder.") and "running" not in k and "num_batches" not in k]
    assert enc_keys
    import pytorch_lightning as pl
    pl.seed_everything(cfg.seed)
    from hydra.utils import instantiate
    dm = instantiate(cfg.data)
    dm.setup()
    fresh = build_task(cfg, dm.spec)
    for k in enc_keys:
        torch.testing.assert_close(ckpt["state_dict"][k], fresh.state_dict()[k])


def test_wandb_logger_runs_offline_without_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = compose("task=captioning", *TINY_CAPTIONING, "logger=wandb", "trainer.max_epochs=1",
                  "trainer.limit_train_batches=2", "trainer.log_every_n_steps=1")
    train(cfg, run_dir=tmp_path, name="wb")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert f"wandb sync {runs[0]}" in capsys.readouterr().out
    assert (tmp_path / "logs" / "metrics.csv").is_file()  # CSV always


def test_nan_loss_stops_with_a_clear_error_and_keeps_checkpoints(tmp_path, monkeypatch):
    from zoo.tasks.captioning import CaptioningTask

    real = CaptioningTask.training_step

    def poisoned(self, batch, batch_idx):
        loss = real(self, batch, batch_idx)
        return self.check_finite(loss * float("nan")) if self.current_epoch == 1 else loss

    monkeypatch.setattr(CaptioningTask, "training_step", poisoned)
    cfg = compose("task=captioning", *TINY_CAPTIONING, "trainer.max_epochs=3", "trainer.limit_train_batches=2")
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 2 \(epoch 1\).*Checkpoints saved so far are kept"):
        train(cfg, run_dir=tmp_path, name="nan")
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(tmp_path / "checkpoints" / name, weights_only=False, map_location="cpu")
        assert ckpt["epoch"] == 0 and all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())


@pytest.mark.slow
def test_configs_travel_inside_the_wheel(tmp_path):
    """A wheel built from the repo runs from any folder, without the repo's conf/ at hand."""
    src = tmp_path / "src"  # build from a copy: the build leaves build/ and *.egg-info behind
    shutil.copytree(ROOT, src, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "build", "*.egg-info", "__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next((tmp_path / "dist").glob("zoo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "zoo/conf/config.yaml" in names and "zoo/conf/task/captioning.yaml" in names
    assert "zoo/conf/cell/rnn.yaml" in names and "zoo/conf/recipe/neuraltalk.yaml" in names
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "zoo").rglob("*.py")}
    assert modules <= set(names), modules - set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    r = run_zoo("task=captioning", "trainer.fast_dev_run=true", *TINY_CAPTIONING, cwd=workdir,
                env={"PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"file://{site}/zoo/conf" in run_zoo("--info", "searchpath", cwd=workdir, env={"PYTHONPATH": str(site)}).stdout
    assert (workdir / "outputs" / "captioning").is_dir()
