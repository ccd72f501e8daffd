"""``python -m zoo.list``: what the zoo holds, read from the config folders.

Tasks, encoders, cells, heads, recipes and data sets, one line each with what it is (the
first comment line of its YAML), and for each task the heads it accepts and its default parts.
A new YAML file in conf/ or recipes/ shows up here without any code change.
"""
from __future__ import annotations

import sys

from omegaconf import OmegaConf

from zoo.run.configs import config_dir, group_options

GROUPS = ("task", "recipe", "encoder", "cell", "head", "data", "trainer", "logger", "hparams_search")
TITLES = {"data": "data sets", "hparams_search": "hyperparameter searches"}


def describe(group: str, name: str) -> str:
    """The first comment of the file (after a package line), as one line."""
    for line in (config_dir() / group / f"{name}.yaml").read_text().splitlines():
        line = line.strip()
        if line.startswith("#") and not line.startswith("# @package"):
            return line.lstrip("# ").rstrip()
        if line and not line.startswith("#"):
            break
    return ""


def _heads_by_mode() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in group_options("head"):
        target = OmegaConf.load(config_dir() / "head" / f"{name}.yaml")["_target_"]
        module, _, cls = target.rpartition(".")
        mode = getattr(getattr(__import__(module, fromlist=[cls]), cls), "mode", None)
        out.setdefault(mode, []).append(name)
    return out


def task_details(name: str, heads: dict[str, list[str]]) -> str:
    node = OmegaConf.load(config_dir() / "task" / f"{name}.yaml")
    defaults = {k.lstrip("/"): v for d in node.get("defaults", []) for k, v in d.items()}
    target = node.task["_target_"]
    module, _, cls = target.rpartition(".")
    modes = getattr(getattr(__import__(module, fromlist=[cls]), cls), "modes", ())
    accepted = [h for m in modes for h in heads.get(m, [])]
    parts = ", ".join(f"{k}={v}" for k, v in defaults.items())
    return f"heads: {', '.join(accepted)}; defaults: {parts}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    groups = [g for g in GROUPS if not argv or g in argv]
    heads = _heads_by_mode() if "task" in groups else {}
    for group in groups:
        names = group_options(group)
        print(f"{TITLES.get(group, group + 's')} ({len(names)}), {group}=NAME:")
        width = max(len(n) for n in names) if names else 0
        for name in names:
            print(f"  {name:<{width}}  {describe(group, name)}")
            if group == "task":
                print(f"  {'':<{width}}    {task_details(name, heads)}")
        print()


if __name__ == "__main__":
    main()
