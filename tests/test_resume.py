"""Interrupt a run mid-epoch with SIGTERM, resume it, and get the uninterrupted run's results."""
from __future__ import annotations

import json
import subprocess
import sys

import torch
from conftest import ROOT, TINY
from test_distributed import clean_env

SETUP = [*TINY["sentiment"], "data.train_size=512", "data.batch_size=32", "trainer.max_epochs=3", "seed=5"]

# runs python -m zoo, after arranging for SIGTERM to arrive during training step 21 (epoch 1 of 3,
# 16 steps an epoch): the process stops as a pre-empted cluster job would
KILLER = """
import os, signal, sys
from zoo.tasks.labels import LabelTask
step = LabelTask.training_step
def training_step(self, batch, i):
    if self.global_step == 21 and not os.environ.get("ZOO_TEST_KILLED"):
        os.environ["ZOO_TEST_KILLED"] = "1"
        os.kill(os.getpid(), signal.SIGTERM)
    return step(self, batch, i)
LabelTask.training_step = training_step
from zoo.__main__ import main
sys.argv = ["zoo", *sys.argv[1:]]
main()
"""


def run(*args, script=None):
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "zoo", *args]
    return subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)


def test_sigterm_saves_and_resume_finishes_like_an_uninterrupted_run(tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert run("task=sentiment", *SETUP, f"hydra.run.dir={straight}").returncode == 0

    r = run("task=sentiment", *SETUP, f"hydra.run.dir={broken}", script=KILLER)
    assert r.returncode == 143, r.stderr[-3000:]
    assert "continue with resume=" in r.stderr
    last = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["global_step"] == 22 and last["epoch"] == 1  # saved mid-epoch, at the batch boundary
    assert not (broken / "metrics.json").exists()

    r = run(f"resume={broken}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"run folder: {broken}" in r.stdout  # the same folder
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((broken / "metrics.json").read_text())
    for key in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])


def test_resume_refuses_another_experiment_and_missing_folders(tmp_path):
    r = run(f"resume={tmp_path / 'nothing'}")
    assert r.returncode == 2 and "no run folder there" in r.stderr
    run_dir = tmp_path / "run"
    assert run("task=sentiment", *TINY["sentiment"], "trainer.max_epochs=1", f"hydra.run.dir={run_dir}").returncode == 0
    r = run("task=sentiment", *TINY["sentiment"], "cell=gru", f"resume={run_dir}")
    assert r.returncode == 2 and "Only trainer.* and logger.* may change" in r.stderr
