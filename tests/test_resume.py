"""Interrupt a run mid-epoch with SIGTERM, resume it, and get the uninterrupted run's results."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, TINY, compose, run_module
from omegaconf import OmegaConf
from test_distributed import clean_env

SETUP = [*TINY["sentiment"], "data.train_size=512", "data.batch_size=32", "trainer.max_epochs=3", "seed=5"]

# runs python -m zoo, after arranging for SIGTERM to arrive during training step STEP (mid-epoch):
# the process stops as a pre-empted cluster job would
KILLER = """
import os, signal, sys
from {module} import {cls} as Task
step = Task.training_step
def training_step(self, batch, i):
    if self.global_step == {step} and not os.environ.get("ZOO_TEST_KILLED"):
        os.environ["ZOO_TEST_KILLED"] = "1"
        os.kill(os.getpid(), signal.SIGTERM)
    return step(self, batch, i)
Task.training_step = training_step
from zoo.__main__ import main
sys.argv = ["zoo", *sys.argv[1:]]
main()
"""


def run(*args, script=None):
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "zoo", *args]
    return subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)


CASES = {  # task: (its overrides, the LightningModule to interrupt, the step, the keys compared)
    "sentiment": (SETUP, "zoo.tasks.labels", "LabelTask", 21, ("val/acc", "val/loss", "test/acc", "test/loss")),
    # charlm: the carried stream state is in the checkpoint too (44 windows an epoch: step 60 is mid-epoch 1)
    "charlm": ([*TINY["charlm"], "data.stories=20", "trainer.max_epochs=2", "seed=5"], "zoo.tasks.charlm",
               "CharLMTask", 60, ("val/loss", "test/loss", "train/loss_epoch")),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", CASES)
def test_sigterm_saves_and_resume_finishes_like_an_uninterrupted_run(tmp_path, task):
    setup, module, cls, step, keys = CASES[task]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert run(f"task={task}", *setup, f"hydra.run.dir={straight}").returncode == 0

    r = run(f"task={task}", *setup, f"hydra.run.dir={broken}", script=KILLER.format(module=module, cls=cls, step=step))
    assert r.returncode == 143, r.stderr[-3000:]
    assert "continue with resume=" in r.stderr
    last = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == step + 1 and last["epoch"] == 1  # saved mid-epoch, at the batch boundary
    assert not (broken / "metrics.json").exists()

    r = run(f"resume={broken}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"run folder: {broken}" in r.stdout  # the same folder
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((broken / "metrics.json").read_text())
    for key in keys:
        assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])


@pytest.mark.slow
def test_resume_refuses_another_experiment_and_missing_folders(tmp_path):
    code, _, err = run_module("zoo", [f"resume={tmp_path / 'nothing'}"])
    assert code == 2 and "no run folder there" in err
    run_dir = tmp_path / "run"
    assert run_module("zoo", ["task=sentiment", *TINY["sentiment"], "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"])[0] == 0
    code, _, err = run_module("zoo", ["task=sentiment", *TINY["sentiment"], "cell=gru", f"resume={run_dir}"])
    assert code == 2 and "Only trainer.* and logger.* may change" in err


def _run_folder(tmp_path, config) -> "Path":
    """A run folder as a run leaves it (config.yaml and a last.ckpt), without training."""
    run_dir = tmp_path / "saved"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
    return run_dir


def test_resume_with_another_trainer_changes_only_what_was_named(tmp_path):
    """trainer=ddp brings its strategy and devices, and leaves the run's own epochs and clipping
    (a char_rnn run resumed with trainer=ddp must not get the default task's max_epochs=6)."""
    from zoo.run.resume import resume_config

    saved = compose("recipe=char_rnn", "data.path=x.txt")
    run_dir = _run_folder(tmp_path, saved)
    overrides = [f"resume={run_dir}", "trainer=ddp", "trainer.accelerator=cpu", "logger=wandb"]
    cfg, ckpt, folder = resume_config(compose(*overrides), overrides)
    assert folder == run_dir and ckpt == run_dir / "checkpoints" / "last.ckpt"
    assert cfg.trainer.max_epochs == saved.trainer.max_epochs != compose().trainer.max_epochs
    assert cfg.trainer.gradient_clip_val == saved.trainer.gradient_clip_val
    assert cfg.trainer.strategy._target_.endswith("DDPStrategy") and cfg.trainer.devices == 2
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.logger._target_ == "zoo.run.loggers.wandb_loggers"  # another kind of logger: the node is replaced
    assert OmegaConf.to_container(cfg.cell) == OmegaConf.to_container(saved.cell)


def _write_sentences(folder, extra_train: list[str] = ()):
    folder.mkdir(exist_ok=True)
    rows = {"train": ["1 a good film", "0 a bad film", "1 good fun", "0 bad acting"] * 8,
            "dev": ["1 good", "0 bad"] * 4, "test": ["1 fun film", "0 bad film"] * 4}
    rows["train"] += list(extra_train)
    for split, lines in rows.items():
        (folder / f"stsa.binary.{split}").write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_a_resumed_run_keeps_its_vocabulary_and_refuses_labels_that_no_longer_fit(tmp_path):
    data = tmp_path / "data"
    _write_sentences(data)
    run_dir = tmp_path / "run"
    setup = ["task=sentiment", "data=sst2", f"data.root={data}", "data.batch_size=8", "encoder.dim=8",
             "cell.hidden_size=8", "trainer.enable_progress_bar=false"]
    assert run_module("zoo", [*setup, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"])[0] == 0
    spec = (run_dir / "data_spec.json").read_text()
    _write_sentences(data, ["1 brand new words everywhere"] * 3)  # the data changed since: a bigger vocabulary
    code, out, err = run_module("zoo", [f"resume={run_dir}", "trainer.max_epochs=2"])
    assert code == 0, err[-3000:]  # the saved vocabulary: the weights still fit
    assert (run_dir / "data_spec.json").read_text() == spec
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] >= 0
    _write_sentences(data, ["2 a label the run never had"])
    code, out, err = run_module("zoo", [f"resume={run_dir}", "trainer.max_epochs=3"])
    assert code == 2 and "the data no longer fits the run's saved vocabularies and labels" in err
    assert "label '2' is not among the training labels" in err and "Traceback" not in err


@pytest.mark.slow
def test_resume_takes_a_folder_with_a_tilde_or_a_comma(tmp_path):
    """resume=~/... is the home folder's, and a comma is part of the path, not a sweep."""
    odd = tmp_path / "home" / "runs" / "a,b c"
    code, out, err = run_module("zoo", ["task=sentiment", *TINY["sentiment"], "trainer.max_epochs=1", f"hydra.run.dir='{odd}'"])
    assert code == 0, err[-3000:]
    steps = torch.load(odd / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    code, out, err = run_module("zoo", ["resume=~/runs/a,b c", "trainer.max_epochs=2"], env={"HOME": str(tmp_path / "home")})
    assert code == 0, err[-3000:]
    assert f"run folder: {odd}" in out
    assert torch.load(odd / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * steps  # continued


def test_last_checkpoint_is_the_last_epoch_even_when_it_was_not_the_best(tmp_path):
    """last.ckpt is what resume= continues from: it must be every epoch's, not only the best's
    (Lightning 2.6's save_last saves it only when best.ckpt is saved)."""
    from zoo.run.train import train

    train(compose("task=sentiment", *TINY["sentiment"], "trainer.max_epochs=3", "optimizer.lr=0.0"),
          run_dir=tmp_path, name="flat")  # lr 0: no epoch improves on the first
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert (best["epoch"], last["epoch"]) == (0, 2)


def test_a_resumed_run_adds_to_the_metrics_csv_and_replaces_only_the_steps_it_does_again(tmp_path):
    """Lightning's CSV logger deletes a folder's metrics.csv when it starts; a resumed run must keep
    the interrupted run's rows. Training rows logged after the last checkpoint (a run killed
    mid-epoch) are of steps done again: the resumed run's rows replace them."""
    import csv

    from zoo.run.train import train

    setup = ["task=sentiment", *TINY["sentiment"], "trainer.log_every_n_steps=1"]
    train(compose(*setup, "trainer.max_epochs=2"), run_dir=tmp_path, name="r")
    table = tmp_path / "logs" / "metrics.csv"
    rows = list(csv.DictReader(table.open()))
    resumed_at = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    with table.open("a", newline="") as f:  # what a run killed after its last checkpoint had logged
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        for step in (resumed_at, resumed_at + 1):
            writer.writerow({**{k: "" for k in rows[0]}, "epoch": "2", "step": step, "train/loss": "123.0"})
    code, _, err = run_module("zoo", [f"resume={tmp_path}", "trainer.max_epochs=3"])
    assert code == 0, err[-3000:]
    after = list(csv.DictReader(table.open()))
    assert [{k: r[k] for k in rows[0]} for r in after[:len(rows)]] == rows  # every earlier row, as it was
    assert "123.0" not in table.read_text()  # the steps done again are the resumed run's
    train_rows = [r for r in after if r.get("train/loss")]
    assert {int(r["epoch"]) for r in train_rows} == {0, 1, 2}
    steps = [int(r["step"]) for r in train_rows]
    assert steps == list(range(len(steps))) and steps[-1] > resumed_at  # one row per step, none twice
