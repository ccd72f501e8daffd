"""Sweeps: a grid over config groups, and a resumable Optuna study, each summarised."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import optuna
from conftest import ROOT, TINY
from test_distributed import clean_env, zoo

QUICK = [*TINY["sentiment"], "trainer.max_epochs=1"]


def test_grid_sweep_one_folder_per_combination_and_a_summary(tmp_path):
    sweep = tmp_path / "grid"
    r = zoo("-m", "task=sentiment", "cell=rnn,lstm,gru", *QUICK, f"hydra.sweep.dir={sweep}")
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    cells = sorted(o for row in rows for o in row["overrides"].split() if o.startswith("cell="))
    assert cells == ["cell=gru", "cell=lstm", "cell=rnn"]
    accs = [float(row["val/acc"]) for row in rows]
    assert accs == sorted(accs, reverse=True)  # best first (val/acc is maximised)
    assert all((sweep / str(i) / "metrics.json").is_file() for i in range(3))
    assert "best first by val/acc (maximize)" in r.stdout


def optuna_cmd(sweep, n):
    return [sys.executable, "-m", "zoo", "-m", "task=sentiment", "hparams_search=optuna", *QUICK,
            f"hydra.sweeper.n_trials={n}", f"hydra.sweep.dir={sweep}", "hydra.sweeper.study_name=t"]


def finished(sweep) -> list:
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{sweep}/optuna.db")
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def test_optuna_study_survives_a_kill_and_continues(tmp_path):
    sweep = tmp_path / "study"
    p = subprocess.Popen(optuna_cmd(sweep, 3), cwd=ROOT, env=clean_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (sweep / "trial_0" / "metrics.json").exists() and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(p.pid, signal.SIGKILL)  # killed during the second trial (or right after the first)
    p.wait()
    done_before = len(finished(sweep))
    assert 1 <= done_before < 3
    r = subprocess.run(optuna_cmd(sweep, 3), cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    trials = finished(sweep)
    assert len(trials) == 3  # the budget, not 3 more
    assert f"{done_before} of 3 trials finished before" in r.stdout + r.stderr
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3  # TPE sampled the search space
    for t in trials:  # (cell.hidden_size is fixed by the command line, so not searched)
        assert 0.0003 <= t.params["optimizer.lr"] <= 0.01 and 0.0 <= t.params["head.dropout"] <= 0.5
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len([r for r in rows if r["status"] == "done"]) == 3
    best = max(t.value for t in trials)
    assert abs(float(rows[0]["val/acc"]) - best) < 1e-6  # the table's first row is the study's best


def test_sweep_trials_are_grouped_and_named_in_wandb(tmp_path):
    from wandb_offline import read_run

    sweep = tmp_path / "wb"
    zoo("-m", "task=sentiment", "cell=rnn,gru", *QUICK, "logger=wandb", f"hydra.sweep.dir={sweep}")
    runs = [read_run(next((sweep / str(i)).glob("wandb/offline-run-*/run-*.wandb"))) for i in (0, 1)]
    assert {r["group"] for r in runs} == {sweep.name}
    names = sorted(r["name"] for r in runs)  # the task and the run's overrides
    assert names[0].startswith("sentiment-cell=gru-data.train_size=64") and names[1].startswith("sentiment-cell=rnn-")
