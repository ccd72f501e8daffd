"""``python -m zoo [group=option ...] [key=value ...]``: compose a model from config groups and train it.

Only Hydra and OmegaConf are imported before composition, so ``--help`` and ``--cfg job``
answer quickly; torch and Lightning come in once a run really starts.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
import tempfile

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from zoo.run.configs import config_dir, group_options, quote_value, unquote_value
from zoo.errors import ZooError


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _run(cfg: DictConfig) -> float:
    from zoo.run.checks import check

    check(cfg, dict(HydraConfig.get().runtime.choices))
    from zoo.run.train import train

    return train(cfg)


def _built_from(task: str) -> str:
    """' (it is built from encoder, head, data)': the groups a task's config file picks."""
    from omegaconf import OmegaConf

    file = config_dir() / "task" / f"{task}.yaml"
    if not file.is_file():
        return ""
    picked = [str(next(iter(d))).strip("/").split("@")[0] for d in OmegaConf.load(file).get("defaults", [])
              if hasattr(d, "keys")]
    return f" (it is built from {', '.join(picked)})" if picked else ""


def _suggest(message: str, cause: BaseException | None) -> str:
    """Add 'did you mean' to Hydra's composition errors."""
    message = message.split("\nConfig search path:")[0].rstrip()
    m = re.search(r"Missing mandatory value: ([\w.]+)", message)
    if m:
        return f"{m.group(1)} must be set (it is ??? in the config): add {m.group(1)}=... to the command line"
    m = re.search(r"Could not find '([\w/]+)/([^']+)'", message)
    if m:
        group, wrong = m.groups()
        near = difflib.get_close_matches(wrong, group_options(group), n=1)
        return f"{message}\nDid you mean {group}={near[0]}?" if near else message
    m = re.search(r"Could not override '(\w+)'. No match in the defaults list", message)
    if m and group_options(m.group(1)):  # a group the chosen task is not built from (no cell in imageclass)
        task = next((a.split("=", 1)[1] for a in reversed(sys.argv[1:]) if a.startswith("task=")), "captioning")
        return f"task={task} has no {m.group(1)}{_built_from(task)}: drop {m.group(1)}=... from the command line"
    m = re.search(r"Could not override '([^']+)'", message) or re.search(r"Key '([^']+)' is not in struct", message)
    node = getattr(cause, "parent_node", None) if cause is not None else None
    if m and node is not None and hasattr(node, "keys"):
        full = m.group(1)
        parent, _, key = full.rpartition(".")
        near = difflib.get_close_matches(key, [str(k) for k in node.keys()], n=1)
        valid = ", ".join(sorted(str(k) for k in node.keys() if k != "hydra"))
        hint = f"Did you mean {parent + '.' if parent else ''}{near[0]}? " if near else ""
        return (f"Unknown key '{full}'. {hint}Valid keys{' of ' + parent if parent else ''}: {valid}. "
                f"To add a new key, write +{full}=...")
    return message


def _adjust_argv(argv: list[str]) -> list[str]:
    """Command-line additions that depend on how the process was started.

    - ``resume=<run folder>``: the run continues in that folder (unless hydra.run.dir is given).
    - A rank other than 0 started by torchrun/SLURM writes nothing: no .hydra/, no log file,
      and its Hydra run folder (which Hydra always makes) goes to a temporary place.
    """
    args = list(argv)
    given = {a.split("=", 1)[0] for a in args if "=" in a}
    at = next((i for i, a in enumerate(args) if a.startswith("resume=")), None)
    if at is not None:
        # a folder as the shell gave it: ~ expanded, and quoted for Hydra's override grammar, in
        # which a comma would make a sweep and spaces or brackets would not parse
        folder = os.path.expanduser(unquote_value(args[at].split("=", 1)[1]))
        args[at] = f"resume={quote_value(folder)}"
        if "hydra.run.dir" not in given:
            args.append(f"hydra.run.dir={quote_value(folder)}")
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID")
    if rank not in (None, "0") and "hydra.output_subdir" not in given:
        args += ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra/hydra_logging=disabled"]
        if "hydra.run.dir" not in given:
            args.append(f"hydra.run.dir={tempfile.gettempdir()}/zoo-rank{rank}-{os.getpid()}")
    return args


def main() -> None:
    if os.environ.get("ZOO_PARENT_PID"):  # a rank started by the zoo's DDP launcher: end with rank 0
        from zoo.run.launch import watch_parent

        watch_parent()
    sys.argv[1:] = _adjust_argv(sys.argv[1:])
    before = os.environ.get("HYDRA_FULL_ERROR")
    wants_traceback = before == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print them our way
    try:
        _run()
    except SystemExit as e:
        if type(e).__name__ != "SIGTERMException":  # Lightning's, when SIGTERM stopped training
            raise
        # pre-empted: last.ckpt is saved (SaveOnInterrupt); a scheduler sees the usual 128 + 15
        print("stopped by SIGTERM; last.ckpt was saved: continue with resume=<run folder>", file=sys.stderr)
        sys.exit(143)
    except ZooError as e:
        if wants_traceback:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if wants_traceback or not isinstance(e, (HydraException, OmegaConfBaseException)):
            raise
        cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else None
        text = str(e) + (f"\n{cause}" if cause is not None and str(cause) not in str(e) else "")
        print(f"error: {_suggest(text, cause if cause is not None else e)}", file=sys.stderr)
        sys.exit(2)
    finally:  # the process (a test, a notebook calling main) is left as it was
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


if __name__ == "__main__":
    main()
