"""Sweeps: a grid over config groups, and the zoo's Optuna study, each summarised.

The study's claims, each tried here: the README command runs as written; a search with other
fixed overrides is another study (or is refused); a SIGKILL loses nothing and the budget is
kept; NaN, raising and diverging trials are failures the search survives, up to
max_failure_rate; the summary survives a broken metrics.json; zoo installs beside optuna 5.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, TINY
from optuna.trial import TrialState
from test_distributed import clean_env, zoo

QUICK = [*TINY["sentiment"], "trainer.max_epochs=1"]
README_OPTUNA = ["-m", "task=sentiment", "hparams_search=optuna"]  # README, "Sweeps", as written

# `python -m zoo` with zoo.run.train replaced by a scripted objective: by trial number, a value to
# return (written to metrics.json, as train() does), "nan", "raise", or "hang" (until killed).
# Everything else is real: Hydra, the sweeper, the launcher, sqlite; only zoo.run.checks.check, which
# imports every model part (seconds of torch imports), is left out.
SCRIPTED = """
import json, math, os, sys, time, types
from pathlib import Path
from hydra.core.hydra_config import HydraConfig
import zoo.run.checks

def train(cfg):
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    outcome = json.loads(os.environ["OUTCOMES"])[str(hc.job.num)]
    (out / "choices.json").write_text(json.dumps(dict(hc.runtime.choices)))
    if outcome == "hang":
        (out / "started").touch()
        time.sleep(600)
    if outcome == "raise":
        raise FloatingPointError("scripted failure")
    value = float(outcome)
    (out / "metrics.json").write_text(json.dumps({cfg.monitor.metric: value}))
    return value

sys.modules["zoo.run.train"] = types.ModuleType("zoo.run.train")
sys.modules["zoo.run.train"].train = train
zoo.run.checks.check = lambda cfg, choices: None
sys.argv[0] = "zoo"
from zoo.__main__ import main
main()
"""


def scripted(tmp_path: Path, outcomes: dict, *args: str, **popen) -> subprocess.Popen:
    script = tmp_path / "scripted_zoo.py"
    script.write_text(SCRIPTED)
    # PYTHONPATH: a script's own folder, not the repo, heads sys.path; Hydra finds the sweeper in the repo's
    # hydra_plugins/ (an editable install does not show it to Hydra's plugin scan)
    env = clean_env(OUTCOMES=json.dumps({str(k): v for k, v in outcomes.items()}), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT, env=env, text=True, **popen)


def study_of(sweep: Path) -> optuna.Study:
    name = json.loads((sweep / "study.json").read_text())["study_name"]
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep}/optuna.db")


def summary(sweep: Path) -> list[dict]:
    return list(csv.DictReader(open(sweep / "summary.csv")))


def no_traceback_error(r) -> str:
    """The single 'error: ...' line of a refused command, which must not print a traceback."""
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
def test_grid_sweep_one_folder_per_combination_and_a_summary(tmp_path):
    sweep = tmp_path / "grid"
    r = zoo("-m", "task=sentiment", "cell=rnn,lstm,gru", *QUICK, f"hydra.sweep.dir={sweep}")
    rows = summary(sweep)
    cells = sorted(o for row in rows for o in row["overrides"].split() if o.startswith("cell="))
    assert cells == ["cell=gru", "cell=lstm", "cell=rnn"]
    accs = [float(row["val/acc"]) for row in rows]
    assert accs == sorted(accs, reverse=True)  # best first (val/acc is maximised)
    assert all((sweep / str(i) / "metrics.json").is_file() for i in range(3))
    assert "best first by val/acc (maximize)" in r.stdout


@pytest.mark.slow
def test_readme_command_runs_and_names_its_study_after_the_fixed_overrides(tmp_path):
    # from another folder than the repo (outputs/ lands there), with the repo importable as from its root
    env = clean_env(PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "zoo", *README_OPTUNA, *QUICK]
    run = lambda *extra: subprocess.run([*cmd, *extra], cwd=tmp_path, env=env, capture_output=True, text=True,
                                        timeout=600)
    r = run("hydra.sweeper.n_trials=2")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (first,) = (tmp_path / "outputs" / "optuna").iterdir()
    record = json.loads((first / "study.json").read_text())
    assert first.name == record["study_name"] and first.name.startswith("sentiment-")
    assert set(record["fixed_overrides"]) == {o.replace("=false", "=False") for o in QUICK}
    assert set(record["searched"]) == {"optimizer.lr", "head.dropout"}  # cell.hidden_size is fixed by QUICK
    study = study_of(first)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert [row["status"] for row in summary(first)] == ["done", "done"]

    # other fixed overrides: another study in another folder (n_trials=0: only the study is made)
    other = [o for o in QUICK if o != "encoder.dim=8"] + ["encoder.dim=4"]
    r = subprocess.run([sys.executable, "-m", "zoo", *README_OPTUNA, *other, "hydra.sweeper.n_trials=0"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    folders = set((tmp_path / "outputs" / "optuna").iterdir())
    assert len(folders) == 2
    (second,) = folders - {first}
    assert "encoder.dim=4" in json.loads((second / "study.json").read_text())["fixed_overrides"]

    # ...and naming the first study with them is refused, in one line
    line = no_traceback_error(subprocess.run(
        [sys.executable, "-m", "zoo", *README_OPTUNA, *other, f"hydra.sweeper.study_name={first.name}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600))
    assert f"study '{first.name}'" in line and "other fixed overrides" in line
    assert "only the study has: encoder.dim=8" in line and "only this command has: encoder.dim=4" in line
    # ...and so is putting the other study into the first one's folder
    line = no_traceback_error(subprocess.run(
        [sys.executable, "-m", "zoo", *README_OPTUNA, *other, f"hydra.sweep.dir={first}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600))
    assert f"holds study '{first.name}'" in line
    assert len(study_of(first).trials) == 2  # untouched


@pytest.mark.slow
def test_optuna_study_survives_a_kill_and_keeps_its_budget(tmp_path):
    sweep = tmp_path / "study"
    args = [*README_OPTUNA, *QUICK, "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}"]
    # first run: trial 0 finishes, then SIGKILL while trial 1 runs
    p = scripted(tmp_path, {0: 0.5, 1: "hang"}, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 start_new_session=True)
    deadline = time.time() + 120
    while not (sweep / "trial_1" / "started").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert [t.state for t in study_of(sweep).trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    first_metrics = (sweep / "trial_0" / "metrics.json").read_text()

    # the same command, for real: the killed trial is marked failed, and two more trials run
    r = subprocess.run([sys.executable, "-m", "zoo", *args], cwd=ROOT, env=clean_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "1 of 3 trials finished before" in r.stdout + r.stderr
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                               TrialState.COMPLETE]
    assert study.user_attrs["interrupted_trials"] == [1]  # not counted: 3 trials ran to an end
    assert [p.name for p in sorted(sweep.glob("trial_*"))] == ["trial_0", "trial_1", "trial_2", "trial_3"]
    assert (sweep / "trial_0" / "metrics.json").read_text() == first_metrics  # no folder overwritten
    assert (sweep / "trial_1" / "started").exists() and not (sweep / "trial_1" / "metrics.json").exists()
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 4  # reseeded: the resumed sampler did not propose trials 0 and 1 again
    for t in study.trials:  # (cell.hidden_size is fixed by the command line, so not searched)
        assert set(t.params) == {"optimizer.lr", "head.dropout"}
        assert 0.0003 <= t.params["optimizer.lr"] <= 0.01 and 0.0 <= t.params["head.dropout"] <= 0.5
    rows = summary(sweep)
    assert [row["status"] for row in rows] == ["done", "done", "done", "failed"]
    assert rows[-1]["folder"].endswith("trial_1")
    best = max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
    assert abs(float(rows[0]["val/acc"]) - best) < 1e-6  # the table's first row is the study's best


@pytest.mark.slow
def test_nan_and_raising_trials_fail_and_the_search_goes_on(tmp_path):
    sweep = tmp_path / "study"
    p = scripted(tmp_path, {0: 0.5, 1: "nan", 2: "raise", 3: 0.7}, *README_OPTUNA, *QUICK, "cell=rnn,gru",
                 "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}", stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, out[-2000:] + err[-3000:]  # 2 failures of 4: max_failure_rate=0.5 allows them
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL,
                                               TrialState.COMPLETE]
    assert [t.value for t in study.trials] == [0.5, None, None, 0.7]
    assert "nan" in study.trials[1].user_attrs["fail_reason"]
    assert study.trials[2].user_attrs["fail_reason"] == "FloatingPointError: scripted failure"
    assert "FloatingPointError" in (sweep / "trial_2" / "error.txt").read_text()
    for t in study.trials:  # a command-line sweep is searched; a command-line value is not
        assert set(t.params) == {"optimizer.lr", "head.dropout", "cell"}
        assert json.loads((sweep / f"trial_{t.number}" / "choices.json").read_text())["cell"] == t.params["cell"]
    rows = summary(sweep)
    assert [(r["status"], r["rank"], Path(r["folder"]).name) for r in rows] == [
        ("done", "1", "trial_3"), ("done", "2", "trial_0"), ("failed", "", "trial_1"), ("failed", "", "trial_2")]


@pytest.mark.slow
def test_max_failure_rate_stops_a_search_whose_trials_all_diverge(tmp_path):
    sweep = tmp_path / "study"
    r = subprocess.run([sys.executable, "-m", "zoo", *README_OPTUNA, *QUICK, "optimizer.lr=inf",
                        "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep}"],
                       cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600)
    line = no_traceback_error(r)
    # the first failure did not stop the search; the second is more than 0.5 * 3 allows
    assert "2 of 3 trials failed, more than hydra.sweeper.max_failure_rate=0.5 allows (1)" in line
    assert str(sweep / "trial_0") in line and str(sweep / "trial_1") in line
    assert not (sweep / "trial_2").exists()
    study = study_of(sweep)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert all(t.user_attrs["fail_reason"].startswith("TrainingDiverged: the training loss became nan")
               for t in study.trials)
    assert "TrainingDiverged" in (sweep / "trial_0" / "error.txt").read_text()


def test_search_space_from_params_and_the_command_line():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydra_plugins.zoo_sweeper.search_space import search_space
    from zoo.errors import ConfigError

    params = {"optimizer.lr": "tag(log, interval(0.0003, 0.01))", "cell.hidden_size": "choice(64, 128, 256)",
              "head.dropout": "interval(0.0, 0.5)", "layers": "range(1, 8, 3)", "dim": "tag(int, log, interval(4, 64))",
              "p": "range(0.1, 0.35, 0.1)", "seed": "7"}
    space = search_space(params, ["task=sentiment", "hparams_search=optuna", "cell.hidden_size=16", "cell=rnn,gru",
                                  "data.train_size= 64", "head.dropout=choice(0.0, 0.2)"],
                         ignore_in_name=("task", "hparams_search"))
    d = space.distributions
    assert d["optimizer.lr"] == FloatDistribution(0.0003, 0.01, log=True)
    assert d["layers"] == IntDistribution(1, 7, step=3)
    assert d["dim"] == IntDistribution(4, 64, log=True)
    assert d["p"].choices == pytest.approx((0.1, 0.2, 0.3))  # a float range: its values, as Hydra counts them
    assert d["cell"] == CategoricalDistribution(["rnn", "gru"])
    assert d["head.dropout"] == CategoricalDistribution([0.0, 0.2])  # the command line's sweep replaces the param
    assert "cell.hidden_size" not in d  # fixed on the command line
    assert space.fixed_on_command_line == ["cell.hidden_size=16", "data.train_size=64"]
    assert space.overrides({"cell": "gru", "layers": 4, "optimizer.lr": 0.001}) == [
        "task=sentiment", "hparams_search=optuna", "cell.hidden_size=16", "data.train_size=64", "seed=7",
        "cell=gru", "layers=4", "optimizer.lr=0.001"]
    for bad in ("tag(log, interval(0.0, 1.0))", "tag(log, choice(1, 2))", "tag(exp, interval(1, 2))"):
        with pytest.raises(ConfigError, match="x="):
            search_space({"x": bad}, [])


def test_summary_lists_a_broken_metrics_file_and_ranks_the_others(tmp_path):
    from zoo.run.sweep_summary import write_summary

    def run(name, metrics: str | None):
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- task=sentiment\n- cell={name}\n")
        (folder / "config.yaml").write_text("monitor:\n  metric: val/acc\n  direction: maximize\n")
        if metrics is not None:
            (folder / "metrics.json").write_text(metrics)

    run("rnn", '{"val/acc": 0.6, "test/acc": 0.5}')
    run("lstm", '{"val/acc": 0.8, "test/acc": 0.7}')
    run("gru", '{"val/acc": 0.9, "te')  # cut short
    run("diverged", '{"val/acc": NaN}')
    run("crashed", None)
    text = write_summary(tmp_path)
    rows = summary(tmp_path)
    assert [(r["overrides"], r["status"], r["rank"]) for r in rows] == [
        ("cell=lstm", "done", "1"), ("cell=rnn", "done", "2"), ("cell=crashed", "failed", ""),
        ("cell=diverged", "failed", ""), ("cell=gru", "broken", "")]
    assert "5 runs, best first by val/acc (maximize); 2 failed, 1 broken (not ranked)" in text


@pytest.mark.slow
def test_sweep_trials_are_grouped_and_named_in_wandb(tmp_path):
    from wandb_offline import read_run

    sweep = tmp_path / "wb"
    zoo("-m", "task=sentiment", "cell=rnn,gru", *QUICK, "logger=wandb", f"hydra.sweep.dir={sweep}")
    runs = [read_run(next((sweep / str(i)).glob("wandb/offline-run-*/run-*.wandb"))) for i in (0, 1)]
    assert {r["group"] for r in runs} == {sweep.name}
    names = sorted(r["name"] for r in runs)  # the task and the run's overrides
    assert names[0].startswith("sentiment-cell=gru-data.train_size=64") and names[1].startswith("sentiment-cell=rnn-")


def test_zoo_installs_beside_a_current_optuna_and_sqlalchemy(tmp_path):
    """pip, asked to install zoo into this environment (optuna 5, SQLAlchemy 2), changes nothing else."""
    from importlib.metadata import version

    from packaging.version import Version

    assert Version(version("optuna")) >= Version("4") and Version(version("sqlalchemy")) >= Version("2")
    src = tmp_path / "zoo-src"  # a copy: building the metadata writes next to pyproject.toml
    for part in ("zoo", "conf", "hydra_plugins"):
        shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, src / part)
    report = tmp_path / "report.json"
    # --no-index: what is installed must already satisfy zoo; anything else would be a change
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
                        "--no-build-isolation", "--report", str(report), "-e", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    install = json.loads(report.read_text())["install"]
    assert [item["metadata"]["name"] for item in install] == ["zoo"]  # torch, optuna, SQLAlchemy stay as they are
    requires = " ".join(install[0]["metadata"]["requires_dist"]).lower()
    assert "optuna" in requires and "sqlalchemy" in requires and "hydra-optuna-sweeper" not in requires
