"""The config tree (``conf/``, shipped inside the wheel as ``zoo/conf``) and Hydra's override
grammar: where the configs are, what a group's options are, how a value is quoted."""
from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """The config folder: inside the installed package (a wheel), or the repo's conf/."""
    package = Path(__file__).resolve().parents[1]  # zoo/
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Hydra config folder found in or next to {package}")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def unquote_value(value: str) -> str:
    """A command-line value without the quotes Hydra's override grammar would strip."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1].replace("\\" + value[0], value[0])
    return value


def quote_value(value: str) -> str:
    """A value Hydra's override parser reads back as exactly this string."""
    body = value.replace("'", "\\'")
    bare = body.rstrip("\\")  # backslashes before the closing quote would escape it: double them
    return "'" + bare + "\\" * 2 * (len(body) - len(bare)) + "'"
