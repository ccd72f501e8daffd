"""Multi-process DDP launched from ``python -m zoo ... trainer=ddp trainer.devices=N``.

Lightning's own launcher re-runs the command line for the other ranks, which breaks under a
Hydra sweep (``-m``): the copies re-run the whole sweep, and with Optuna sample other
parameters (../shared/STACK-NOTES.md). So the zoo starts the other ranks itself, for *this
job*: ``python -m zoo <this job's overrides> hydra.run.dir=<this run folder>``, with the
torch.distributed environment set (MASTER_ADDR/PORT, WORLD_SIZE, NODE_RANK, LOCAL_RANK), and
sets the same environment for itself as rank 0. Lightning then sees processes created
externally, as under ``torchrun`` or SLURM, which need nothing from here.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
LAUNCHED_EXTERNALLY = ("LOCAL_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID")


def wants_ddp_processes(cfg: DictConfig) -> int:
    """How many local processes this run needs started (0: none, run in this process)."""
    if any(k in os.environ for k in LAUNCHED_EXTERNALLY):
        return 0
    strategy = OmegaConf.select(cfg, "trainer.strategy")
    target = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy or "")
    devices = OmegaConf.select(cfg, "trainer.devices")
    if "DDPStrategy" not in target and target not in ("ddp", "ddp_find_unused_parameters_true"):
        return 0
    if not isinstance(devices, int) or devices < 2:
        return 0
    if (OmegaConf.select(cfg, "trainer.num_nodes") or 1) > 1:
        return 0  # several nodes: each is started by torchrun or SLURM
    return devices


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ddp_processes(cfg: DictConfig, run_dir: str, overrides: list[str]) -> Iterator[None]:
    """Start ranks 1..N-1 for this job and make this process rank 0; wait for them at the end."""
    n = wants_ddp_processes(cfg)
    if not n:
        yield
        return
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(n), "NODE_RANK": "0"}
    saved = {k: os.environ.get(k) for k in (*env, "LOCAL_RANK", "RANK")}
    children = []
    command = [sys.executable, "-m", "zoo", *overrides, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null",
               "hydra/job_logging=stdout", "hydra/hydra_logging=disabled"]
    try:
        for rank in range(1, n):
            children.append(subprocess.Popen(command, env={**os.environ, **env, "LOCAL_RANK": str(rank),
                                                           "RANK": str(rank)}))
        os.environ.update({**env, "LOCAL_RANK": "0", "RANK": "0"})
        log.info("ddp: started %d more process(es) on %s:%s", n - 1, env["MASTER_ADDR"], env["MASTER_PORT"])
        yield
        for child in children:
            if child.wait() != 0:
                raise RuntimeError(f"ddp: rank process {child.args[:3]}... exited with {child.returncode}")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # the next job of a sweep makes its own group
            dist.destroy_process_group()
        for k, v in saved.items():  # the next job of a sweep starts clean
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
