"""A shared checkpoint or run folder builds only what the zoo builds: no entry point runs a
foreign ``_target_`` (Hydra would call it as soon as the config is instantiated)."""
from __future__ import annotations

import re
import shutil

import pytest
import torch
from conftest import TINY, compose, run_module
from omegaconf import OmegaConf

import zoo
from zoo.run.train import train
from zoo.run.trust import UntrustedConfig, check_targets, shipped_targets


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    run = tmp_path_factory.mktemp("genuine")
    train(compose("task=sentiment", *TINY["sentiment"], "trainer.max_epochs=1"), run_dir=run, name="genuine")
    return run


def _plant(config: dict, where: str, payload: dict) -> None:
    """Put a hostile node at ``where`` (a dotted path; [i] for a list item)."""
    *parents, last = where.split(".")
    node = config
    for key in parents:
        node = node[key]
    if last.endswith("]"):
        key, index = last[:-1].split("[")
        node.setdefault(key, [None])[int(index)] = payload
    else:
        node[last] = payload


# each a place where instantiate would reach: a component, an optimizer's argument, inside _args_
PLACES = ["encoder", "optimizer", "data", "cell", "scheduler", "logger", "trainer.strategy",
          "encoder._args_[0]"]


def _evil_checkpoint(genuine, tmp_path, where: str):
    victim = tmp_path / "written-by-the-checkpoint"
    payload = {"_target_": "shutil.copyfile", "_args_": [str(genuine / "config.yaml"), str(victim)]}
    ckpt = torch.load(genuine / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    _plant(ckpt["zoo"]["config"], where, payload)
    path = tmp_path / "shared.ckpt"
    torch.save(ckpt, path)
    return path, victim


@pytest.mark.parametrize("where", PLACES)
def test_load_refuses_a_foreign_target_anywhere_before_it_runs(genuine, tmp_path, where):
    path, victim = _evil_checkpoint(genuine, tmp_path, where)
    with pytest.raises(UntrustedConfig, match=rf"refused to load: its config sets {re.escape(where)}\._target_=shutil\.copyfile"):
        zoo.load(path)
    assert not victim.exists()


@pytest.mark.slow
def test_every_command_refuses_it_with_one_line_and_writes_nothing(genuine, tmp_path):
    path, victim = _evil_checkpoint(genuine, tmp_path, "encoder")
    for module, args in (("zoo.predict", ["a fine film ."]), ("zoo.evaluate", []), ("zoo.export", [])):
        code, out, err = run_module(module, [str(path), *args])
        assert code == 2, (module, err[-2000:])
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "encoder._target_=shutil.copyfile" in lines[0] and "Traceback" not in err
        assert not victim.exists(), module
        assert not (tmp_path / "eval-test.json").exists() and not (tmp_path / "export").exists()


@pytest.mark.slow
def test_resume_refuses_a_run_folder_with_a_foreign_target(genuine, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(genuine, run)
    victim = tmp_path / "written-by-the-folder"
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.task.samples = {"_target_": "builtins.open", "_args_": [str(victim), "w"]}
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    code, out, err = run_module("zoo", [f"resume={run}"])
    assert code == 2 and "task.samples._target_=builtins.open" in err and "Traceback" not in err
    assert not victim.exists()


def test_a_genuine_checkpoint_loads_and_the_users_own_targets_can_be_allowed(genuine, tmp_path, monkeypatch):
    model = zoo.load(genuine)
    assert model.predict_inputs(["a fine film ."])[0]["label"] in model.spec.labels
    config = {"cell": {"cell": {"_target_": "mypkg.cells.MyCell"}}, "optimizer": {"_target_": "torch.optim.SGD"},
              "scheduler": {"_target_": "torch.optim.lr_scheduler.OneCycleLR"}}
    with pytest.raises(UntrustedConfig, match="mypkg.cells.MyCell"):
        check_targets(config, "x")
    monkeypatch.setenv("ZOO_TRUSTED_TARGETS", "otherpkg.,mypkg.cells.")
    check_targets(config, "x")  # allowed by prefix; torch's optimizers and schedulers always are
    monkeypatch.setenv("ZOO_TRUSTED_TARGETS", "mypkg.cells.My")  # no trailing dot: an exact name only
    with pytest.raises(UntrustedConfig):
        check_targets(config, "x")


def test_the_allowlist_is_what_the_shipped_configs_build():
    targets = shipped_targets()
    assert "zoo.tasks.captioning.CaptioningTask" in targets and "zoo.run.loggers.wandb_loggers" in targets
    assert not any(t.startswith(("os.", "shutil.", "builtins.", "subprocess.")) for t in targets)
    for bad in ("os.system", "builtins.eval", "torch.save", "zoo.export.export", "torch.optim.Optimizer.zero_grad"):
        with pytest.raises(UntrustedConfig):
            check_targets({"a": [{"b": {"_target_": bad}}]}, "x")
