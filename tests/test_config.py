"""Every config composes; typos and impossible combinations fail early with a helpful message."""
from __future__ import annotations

import pytest
from conftest import compose, run_module
from hydra.utils import get_object
from omegaconf import OmegaConf

from zoo.run.checks import check
from zoo.run.configs import config_dir, group_options
from zoo.errors import ConfigError

GROUPS = ["task", "encoder", "cell", "head", "data", "trainer", "logger"]


def test_groups_exist_and_have_options():
    for group in GROUPS:
        assert group_options(group), group


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes_and_names_a_target_of_its_kind(group):
    """Each option's _target_ imports and is the kind of thing its group builds."""
    import pytorch_lightning as pl

    from zoo.cells import Cell
    from zoo.tasks.base import Task

    kinds = {
        "task": lambda t: issubclass(t, Task),
        "encoder": lambda t: getattr(t, "consumes", None) in ("image", "tokens"),
        "cell": lambda t: issubclass(t, Cell),
        "head": lambda t: getattr(t, "mode", None) in ("one_to_one", "many_to_one", "synced", "one_to_many", "seq2seq"),
        "data": lambda t: issubclass(t, pl.LightningDataModule) and getattr(t, "provides", None) in ("image", "tokens", "frames"),
        "trainer": lambda t: t is pl.Trainer,
        "logger": lambda t: callable(t) and t.__module__ == "zoo.run.loggers",
    }
    for option in group_options(group):
        cfg = compose(f"{group}={option}")
        node = cfg if group == "task" else cfg[group]
        target = (cfg.task if group == "task" else node)["_target_"]
        assert kinds[group](get_object(target)), f"{group}={option}: {target}"


def test_task_chooses_defaults_and_each_can_be_overridden():
    cfg, choices = compose("task=captioning", choices=True)
    assert (choices["encoder"], choices["cell"], choices["head"], choices["data"]) == ("cnn", "lstm", "one_to_many", "scenes")
    cfg, choices = compose("task=captioning", "cell=gru", "encoder=resnet18", "head.condition=init", choices=True)
    assert choices["cell"] == "gru" and cfg.cell._target_.endswith("GRUCell")
    assert cfg.encoder._target_.endswith("ResNetEncoder") and cfg.head.condition == "init"
    assert cfg.monitor.metric == "val/cider"  # set once, by the task
    task_yaml = OmegaConf.load(config_dir() / "task" / "captioning.yaml")
    assert cfg.trainer.max_epochs == task_yaml.trainer.max_epochs  # a task's trainer values win over trainer/default
    assert compose("trainer=cpu").trainer.max_epochs == task_yaml.trainer.max_epochs


def test_check_accepts_the_defaults_and_rejects_a_bidirectional_decoder():
    cfg, choices = compose("task=captioning", choices=True)
    check(cfg, choices)
    cfg, choices = compose("task=captioning", "cell.bidirectional=true", choices=True)
    with pytest.raises(ConfigError, match="cannot be bidirectional. Set cell.bidirectional=false"):
        check(cfg, choices)
    cfg, choices = compose("task=captioning", "head.condition=sideways", choices=True)
    with pytest.raises(ConfigError, match="head.condition=sideways is not one of: init, every_step, first_input"):
        check(cfg, choices)


def test_typos_exit_nonzero_naming_the_valid_choices():
    code, _, err = run_module("zoo", ["cell=lstmm"])
    assert code != 0
    assert "Available options in 'cell'" in err and "Did you mean cell=lstm?" in err
    code, _, err = run_module("zoo", ["trainer.max_epoch=3"])
    assert code != 0
    assert "Unknown key 'trainer.max_epoch'. Did you mean trainer.max_epochs?" in err
    assert "Traceback" not in err


def test_an_impossible_combination_fails_before_data_is_loaded(tmp_path):
    code, _, err = run_module("zoo", ["cell.bidirectional=true", f"hydra.run.dir={tmp_path}", "data.train_images=100000000"])
    assert code == 2
    assert "error: head=one_to_many generates left to right" in err
    assert "Traceback" not in err
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "config.yaml").exists()


def test_help_lists_every_group_and_option():
    code, out, _ = run_module("zoo", ["--help"])
    assert code == 0
    for group in GROUPS:
        assert f"{group}: {', '.join(group_options(group))}" in out
    assert "python -m zoo task=captioning" in out


def test_config_folder_has_no_global_package_in_components():
    for group in ("encoder", "cell", "head", "data", "trainer", "logger"):
        for path in (config_dir() / group).glob("*.yaml"):
            assert "@package _global_" not in path.read_text(), path
