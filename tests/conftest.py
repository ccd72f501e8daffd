"""Shared test set-up: no network, no writes outside tmp, configs composed the way Hydra does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Under pytest-xdist (make test: one worker per core) each worker computes on one thread, and so
# do the processes the tests start: two workers with two threads each would fight for the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

# Before anything imports datasets / wandb / torch: offline, quiet, caches in a temp folder.
os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
})


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache / "zoo"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):  # nothing under ~/.local or ~/.config
        monkeypatch.setenv(var, str(cache / var.lower()))


def compose(*overrides: str, choices: bool = False):
    """The config ``python -m zoo <overrides>`` would run (and, with choices=True, the group choices)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    from zoo.run.configs import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    picked = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return (cfg, picked) if choices else cfg


def run_zoo(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict | None = None):
    """``python -m zoo args...`` in a fresh process; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "zoo", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_module(module: str, args: list[str], stdin: str | None = None, env: dict | None = None) -> tuple[int, str, str]:
    """``python -m <module> args...`` in this process (``zoo`` is ``zoo.__main__``): (exit status,
    stdout, stderr). Saves a fresh interpreter's start-up (seconds of imports) per command; use
    run_zoo where a test needs a process of its own (signals, a clean environment)."""
    import importlib
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    argv, old_stdin = sys.argv, sys.stdin
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    code = 0
    try:
        os.environ.update(env or {})
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with redirect_stdout(out), redirect_stderr(err):
            mod = importlib.import_module("zoo.__main__" if module == "zoo" else module)
            sys.argv = [module, *args]
            try:
                result = mod.main() if module == "zoo" else mod.main(args)
                code = result if isinstance(result, int) else 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.stdin = argv, old_stdin
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.hydra_config import HydraConfig

        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # later tests in this process are not inside that run
    return code, out.getvalue(), err.getvalue()


QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]

# a captioning model and data small enough for a unit test (seconds, not minutes)
TINY_CAPTIONING = [
    "data.train_images=64", "data.val_images=16", "data.test_images=16", "data.batch_size=16",
    "encoder.channels=[8,16]", "encoder.fc=[32]", "cell.hidden_size=32", "head.embed_dim=16", *QUIET,
]

_SIZES = ["data.train_size=64", "data.val_size=16", "data.test_size=16", "data.batch_size=16"]
# every task, tiny: for runs that check plumbing, not learning
TINY = {
    "captioning": TINY_CAPTIONING,
    "sentiment": [*_SIZES, "encoder.dim=8", "cell.hidden_size=16", *QUIET],
    "tagging": [*_SIZES, "encoder.dim=8", "cell.hidden_size=16", *QUIET],
    "translation": [*_SIZES, "encoder.dim=8", "cell.hidden_size=16", "head.embed_dim=8", "head.attention_dim=8",
                    *QUIET],
    "charlm": ["data.stories=40", "data.bptt=20", "data.batch_size=4", "data.eval_batch_size=4", "encoder.dim=8",
               "cell.hidden_size=16", "task.sample.length=20", *QUIET],
    "video": [*_SIZES, "encoder.channels=[4]", "encoder.fc=[8]", "cell.hidden_size=8", *QUIET],
    "seqimage": ["cell.hidden_size=16", *QUIET],
    "imageclass": [*_SIZES, "encoder.channels=[4]", "encoder.fc=[8]", *QUIET],
    "glimpse": [*_SIZES, "cell.hidden_size=16", "encoder.dim=16", "encoder.what_dim=8", "encoder.where_dim=8",
                "task.glimpses=2", *QUIET],
    "draw": [*_SIZES, "cell.hidden_size=16", "task.steps=2", "task.z_size=4", "task.samples=4", *QUIET],
}


# what each metric can be: a run's metrics.json is checked against these, not only for its keys
_RANGES = {"acc": (0, 1), "f1": (0, 1), "bleu1": (0, 1), "bleu2": (0, 1), "bleu3": (0, 1), "bleu4": (0, 1),
           "bleu": (0, 100), "chrf": (0, 100), "cider": (0, 10), "loss": (0, 1e4), "loss_epoch": (0, 1e4),
           "bpc": (0, 1e4), "ppl": (1, 1e12), "nll": (0, 1e6), "recon": (0, 1e6), "kl": (0, 1e6),
           "wer": (0, 1e3), "cer": (0, 1e3)}


def check_metrics(metrics: dict, required: set[str] = frozenset()) -> dict:
    """Every value finite and in its metric's range, and the ``required`` keys present."""
    import math

    assert required <= set(metrics), sorted(required - set(metrics))
    for key, value in metrics.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
        name = key.rsplit("/", 1)[-1]
        if name in _RANGES:
            low, high = _RANGES[name]
            assert low <= value <= high, (key, value, (low, high))
    return metrics
