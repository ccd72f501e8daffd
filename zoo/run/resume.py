"""``resume=<run folder>``: continue a run from its last checkpoint, into the same folder.

The run continues as it was configured (its saved ``config.yaml``); only how it is trained
and logged may change on the command line (``trainer.*``, ``logger.*``: more epochs, other
devices). Anything else that differs is refused, since it would be another experiment.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError
from zoo.run.trust import check_targets

MAY_CHANGE = ("trainer", "logger")


def resume_config(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, Path, Path]:
    """(the config to continue with, the checkpoint, the run folder)."""
    run_dir = Path(str(cfg.resume)).expanduser().resolve()
    saved, ckpt = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    if not saved.is_file():
        raise ConfigError(f"resume={cfg.resume}: no run folder there ({saved} is missing)")
    if not ckpt.is_file():
        raise ConfigError(f"resume={cfg.resume}: the run saved no checkpoint yet ({ckpt} is missing); start it again")
    base = OmegaConf.load(saved)
    check_targets(base, str(saved))  # a run folder may come from someone else: build only what the zoo builds
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "resume" or key.startswith("hydra"):
            continue
        group = key.split(".")[0]
        if group in MAY_CHANGE:
            _change(base, cfg, key, override.split("=", 1)[1] if "=" in override else None)
            continue
        old, new = OmegaConf.select(base, key), OmegaConf.select(cfg, key)
        if old != new:
            raise ConfigError(f"resume continues the run as it was configured, but {key} was {old!r} and is now "
                              f"{new!r}. Only trainer.* and logger.* may change; start a new run for another setting")
    base.resume = str(run_dir)
    return base, ckpt, run_dir


def _change(base: DictConfig, cfg: DictConfig, key: str, value: str | None) -> None:
    """Apply one ``trainer``/``logger`` override to the saved config, changing only what it names.

    ``trainer.max_epochs=9`` sets that value. ``trainer=ddp`` applies the keys that option's own
    file sets (strategy, devices), not the defaults it builds on: the composed config would fill
    those from the default task, and a recipe's epochs and gradient clipping would be lost.
    ``logger=wandb`` names another kind of logger (another ``_target_``): it replaces the node.
    """
    from zoo.run.configs import config_dir

    composed = OmegaConf.select(cfg, key)
    if "." in key or value is None:
        plain = OmegaConf.to_container(composed, resolve=True) if isinstance(composed, DictConfig) else composed
        OmegaConf.update(base, key, plain, merge=False)
        return
    own = OmegaConf.load(config_dir() / key / f"{value}.yaml")  # the option's own keys, without its defaults
    own.pop("defaults", None)
    if "_target_" in own and own._target_ != OmegaConf.select(base, f"{key}._target_"):
        OmegaConf.update(base, key, OmegaConf.to_container(composed, resolve=True), merge=False)
    else:
        OmegaConf.update(base, key, OmegaConf.merge(base[key], own), merge=False)
