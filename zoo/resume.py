"""``resume=<run folder>``: continue a run from its last checkpoint, into the same folder.

The run continues as it was configured (its saved ``config.yaml``); only how it is trained
and logged may change on the command line (``trainer.*``, ``logger.*``: more epochs, other
devices). Anything else that differs is refused, since it would be another experiment.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError

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
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "resume" or key.startswith("hydra"):
            continue
        if key.split(".")[0] in MAY_CHANGE:  # trainer=ddp replaces the node, trainer.max_epochs=9 one value
            value = OmegaConf.select(cfg, key)
            value = OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value
            OmegaConf.update(base, key, value, merge=False)
            continue
        old, new = OmegaConf.select(base, key), OmegaConf.select(cfg, key)
        if old != new:
            raise ConfigError(f"resume continues the run as it was configured, but {key} was {old!r} and is now "
                              f"{new!r}. Only trainer.* and logger.* may change; start a new run for another setting")
    base.resume = str(run_dir)
    return base, ckpt, run_dir
