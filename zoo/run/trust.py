"""What a config from outside may build: the zoo's own targets, and nothing else.

A checkpoint or a run folder carries the config it was trained with, and Hydra's
``instantiate`` calls whatever ``_target_`` a config names: a shared checkpoint whose encoder
is ``{_target_: shutil.copyfile, _args_: [...]}`` would write a file as soon as it is loaded
(Hydra's own blocklist stops ``os.system`` and a few more, and says it is no security boundary).
So before anything from a checkpoint or a run folder is instantiated, :func:`check_targets`
walks the whole config (every depth, lists such as ``_args_`` included) and refuses a target
that is not

- named by one of the zoo's shipped configs (``conf/``, the recipes): its cells, encoders,
  heads, tasks, data sets, loggers, trainer and strategies;
- an optimizer in ``torch.optim`` or a learning-rate scheduler in ``torch.optim.lr_scheduler``;
- listed in ``$ZOO_TRUSTED_TARGETS`` (comma-separated: exact names, or prefixes ending in
  ``.``), for a user's own classes in a checkpoint they trust.

The check is on the strings, before any import: importing an unknown module runs its code too.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Iterator

from zoo.errors import ZooError

ENV = "ZOO_TRUSTED_TARGETS"


class UntrustedConfig(ZooError):
    """A config from outside names something the zoo does not build."""


@functools.lru_cache(maxsize=1)
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` named in the configs that ship with the zoo."""
    from omegaconf import OmegaConf

    from zoo.run.configs import config_dir

    root = config_dir()
    found: set[str] = set()
    for path in sorted(root.rglob("*.yaml")):
        node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        found.update(target for _, target in _targets(node, ""))
    return frozenset(found)


@functools.lru_cache(maxsize=1)
def _torch_targets() -> frozenset[str]:
    """torch's optimizers and learning-rate schedulers, by their import paths."""
    import torch.optim
    import torch.optim.lr_scheduler as sched

    names = {f"torch.optim.{n}" for n, v in vars(torch.optim).items()
             if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)}
    bases = tuple(b for b in (getattr(sched, "LRScheduler", None), getattr(sched, "ReduceLROnPlateau", None)) if b)
    names |= {f"torch.optim.lr_scheduler.{n}" for n, v in vars(sched).items()
              if isinstance(v, type) and issubclass(v, bases)}
    return frozenset(names)


def _user_trusted() -> tuple[str, ...]:
    return tuple(s.strip() for s in os.environ.get(ENV, "").split(",") if s.strip())


def is_trusted(target: str) -> bool:
    if target in shipped_targets() or target in _torch_targets():
        return True
    return any(target == t or (t.endswith(".") and target.startswith(t)) for t in _user_trusted())


def _targets(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, target) of every ``_target_`` in a nested container."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, value if isinstance(value, str) else repr(value)
            else:
                yield from _targets(value, where)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def check_targets(config: Any, source: str) -> None:
    """Raise :class:`UntrustedConfig` if ``config`` (a dict or DictConfig from ``source``) names a
    target the zoo does not build."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(config, (DictConfig, ListConfig)):
        config = OmegaConf.to_container(config, resolve=False)
    for where, target in _targets(config, ""):
        if not is_trusted(target):
            raise UntrustedConfig(
                f"{source}: refused to load: its config sets {where}={target}, which is not something the zoo "
                f"builds (only its own cells, encoders, heads, tasks, data sets, loggers, torch optimizers and "
                f"schedulers). If you trust this file and it uses your own code, allow the target with "
                f"{ENV}={target}")
