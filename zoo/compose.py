"""Checks on a composed config that Hydra cannot make: combinations that cannot work.

They run right after composition, before any data is read, and fail with a message that
says why and what to choose instead.
"""
from __future__ import annotations

from pathlib import Path

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError


def config_dir() -> Path:
    """The config folder: inside the installed package (a wheel), or the repo's conf/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Hydra config folder found next to {here}")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _target(node: DictConfig, what: str):
    target = OmegaConf.select(node, "_target_")
    if target is None:
        raise ConfigError(f"{what} has no _target_: choose one of {', '.join(group_options(what))}")
    try:
        return get_object(target)
    except Exception as e:
        raise ConfigError(f"{what}._target_={target} cannot be imported: {e}") from e


def _options_where(group: str, predicate) -> list[str]:
    ok = []
    for name in group_options(group):
        node = OmegaConf.load(config_dir() / group / f"{name}.yaml")
        try:
            if predicate(get_object(node["_target_"])):
                ok.append(name)
        except Exception:
            continue
    return ok


def check(cfg: DictConfig, choices: dict[str, str]) -> None:
    """Raise ConfigError if encoder, head and cell cannot work with the task."""
    task = _target(cfg.task, "task")
    name = choices.get("task", "?")
    encoder = _target(cfg.encoder, "encoder")
    if getattr(encoder, "consumes", None) != task.consumes:
        fits = _options_where("encoder", lambda t: getattr(t, "consumes", None) == task.consumes)
        raise ConfigError(
            f"task={name} reads {task.consumes} input, but encoder={choices.get('encoder')} encodes "
            f"{getattr(encoder, 'consumes', '?')} input. Choose encoder= one of: {', '.join(fits)}")
    head = _target(cfg.head, "head")
    if getattr(head, "mode", None) not in task.modes:
        fits = _options_where("head", lambda t: getattr(t, "mode", None) in task.modes)
        raise ConfigError(
            f"task={name} needs a {' or '.join(task.modes)} head, but head={choices.get('head')} is "
            f"{getattr(head, 'mode', '?')}. Choose head= one of: {', '.join(fits)}")
    if head.mode in ("one_to_many", "seq2seq") and OmegaConf.select(cfg, "cell.bidirectional", default=False):
        raise ConfigError(
            f"head={choices.get('head')} generates left to right, one token at a time, so its cell cannot be "
            f"bidirectional. Set cell.bidirectional=false")
    conditions = getattr(head, "conditions", None)
    condition = OmegaConf.select(cfg, "head.condition")
    if conditions and condition not in conditions:
        raise ConfigError(f"head.condition={condition} is not one of: {', '.join(conditions)}")
