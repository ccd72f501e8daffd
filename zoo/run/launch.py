"""Multi-process DDP launched from ``python -m zoo ... trainer=ddp trainer.devices=N``.

Lightning's own launcher re-runs the command line for the other ranks, which breaks under a
Hydra sweep (``-m``): the copies re-run the whole sweep, and with Optuna sample other
parameters (../shared/STACK-NOTES.md). So the zoo starts the other ranks itself, for *this
job*: ``python -m zoo`` with this job's config source (``--config-dir``, ``--config-name``),
its Hydra overrides and its task overrides, and ``hydra.run.dir=<this run folder>``, with the
torch.distributed environment set (MASTER_ADDR/PORT, WORLD_SIZE, NODE_RANK, LOCAL_RANK), and
sets the same environment for itself as rank 0. Lightning then sees processes created
externally, as under ``torchrun`` or SLURM, which need nothing from here.

The ranks fail together, never hang: rank 0 watches its children, and when one exits with an
error it stops the others and itself within seconds, naming the rank; a child dies with its
parent (Linux: the kernel's parent-death signal), so a killed run leaves no rank behind.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from zoo.run.configs import quote_value
from zoo.errors import ZooError

log = logging.getLogger(__name__)
LAUNCHED_EXTERNALLY = ("LOCAL_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID")
#: after a rank failed, how long rank 0 may take to stop on its own before it is made to
GRACE_S = 20.0


class RankFailed(ZooError):
    """Another rank of this run exited with an error."""


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


# Hydra overrides that belong to how *this* process was started (a sweep, its folders, its
# logging), not to the job: the other ranks get their own.
_NOT_FOR_RANKS = ("hydra.mode", "hydra.sweep.", "hydra/sweeper", "hydra.sweeper", "hydra/launcher", "hydra.launcher",
                  "hydra.run.dir", "hydra.output_subdir", "hydra/job_logging", "hydra/hydra_logging", "hydra.job.num",
                  "hydra.job.id", "hparams_search")
_SOURCE_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def rank_command(argv: list[str], hydra_overrides: list[str], task_overrides: list[str], run_dir: str) -> list[str]:
    """The command line of another rank of this job: where its config comes from (the flags of
    ``argv``), this job's Hydra and task overrides, and this run's folder."""
    source, it = [], iter(argv)
    for a in it:
        flag = a.split("=", 1)[0]
        if flag in _SOURCE_FLAGS:
            source += [a] if "=" in a else [a, next(it, "")]
    hydra = [o for o in hydra_overrides if not o.lstrip("+~").startswith(_NOT_FOR_RANKS)]
    task = [o for o in task_overrides if not o.lstrip("+~").startswith("hparams_search")]
    return [sys.executable, "-m", "zoo", *source, *hydra, *task, f"hydra.run.dir={quote_value(run_dir)}",
            "hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra/hydra_logging=disabled"]


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when its parent dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the child's own watchdog (ZOO_PARENT_PID) covers it
        pass


def watch_parent() -> None:
    """In a rank started by the zoo: exit when rank 0's process is gone (where the kernel's
    parent-death signal does not exist)."""
    parent = os.environ.get("ZOO_PARENT_PID")
    if not parent:
        return

    def check() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != int(parent):
                os._exit(1)

    threading.Thread(target=check, name="zoo-parent-watch", daemon=True).start()


#: set once another rank of this run failed: rank 0 then leaves without saving a checkpoint at
#: the current step (saving waits for every rank, and one is gone)
RANK_FAILED = threading.Event()


class _Watchdog:
    """Rank 0's view of its children: the first that exits with an error stops the run."""

    def __init__(self, children: list[subprocess.Popen]) -> None:
        RANK_FAILED.clear()
        self.children, self.failed = children, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zoo-ddp-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for rank, child in enumerate(self.children, start=1):
                code = child.poll()
                if code not in (None, 0):
                    self.failed = (rank, code)
                    RANK_FAILED.set()
                    log.error("ddp: rank %d exited with status %d; stopping the other ranks", rank, code)
                    stop_all(self.children)
                    if self._stop.wait(3.0):  # rank 0 is stopping by itself (the same NaN, a reset connection)
                        return
                    import _thread

                    _thread.interrupt_main()  # rank 0 leaves training (or its collective) now
                    if not self._stop.wait(GRACE_S):  # still stuck (a collective that never returns)
                        print(f"error: ddp: rank {rank} exited with status {code}; rank 0 could not stop "
                              f"within {GRACE_S:.0f} s and exits now. Checkpoints saved so far are kept",
                              file=sys.stderr, flush=True)
                        os._exit(1)
                    return

    def stop(self) -> None:
        self._stop.set()


def _first_failed(children: list[subprocess.Popen], wait: float) -> tuple[int, int] | None:
    """(rank, status) of the first child that exited with an error within ``wait`` seconds."""
    deadline = time.time() + wait
    while True:
        for rank, child in enumerate(children, start=1):
            if child.poll() not in (None, 0):
                return rank, child.returncode
        if time.time() >= deadline or all(c.poll() is not None for c in children):
            return None
        time.sleep(0.1)


def stop_all(children: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM every child still running, then SIGKILL what is left after ``grace`` seconds."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.time() + grace
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def ddp_processes(cfg: DictConfig, run_dir: str, overrides: list[str]) -> Iterator[None]:
    """Start ranks 1..N-1 for this job and make this process rank 0; wait for them at the end."""
    n = wants_ddp_processes(cfg)
    if not n:
        yield
        return
    from hydra.core.hydra_config import HydraConfig

    hydra_overrides = list(HydraConfig.get().overrides.hydra) if HydraConfig.initialized() else []
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(n), "NODE_RANK": "0"}
    saved = {k: os.environ.get(k) for k in (*env, "LOCAL_RANK", "RANK")}
    command = rank_command(sys.argv[1:], hydra_overrides, overrides, run_dir)
    children: list[subprocess.Popen] = []
    watchdog = None
    try:
        for rank in range(1, n):
            children.append(subprocess.Popen(command, preexec_fn=_die_with_parent, env={
                **os.environ, **env, "LOCAL_RANK": str(rank), "RANK": str(rank), "ZOO_PARENT_PID": str(os.getpid())}))
        os.environ.update({**env, "LOCAL_RANK": "0", "RANK": "0"})
        log.info("ddp: started %d more process(es) on %s:%s", n - 1, env["MASTER_ADDR"], env["MASTER_PORT"])
        watchdog = _Watchdog(children)
        try:
            yield
        except BaseException as e:
            watchdog.stop()
            # rank 0's own error (a reset connection, an interrupted collective) comes from another
            # rank having died: say which (its exit may reach us a moment after the error)
            failed = watchdog.failed or _first_failed(children, wait=3.0)
            if failed and not isinstance(e, ZooError):
                rank, code = failed
                raise RankFailed(f"ddp: rank {rank} exited with status {code} (its error is printed above); "
                                 f"the run stopped on every rank. Checkpoints saved so far are kept") from e
            raise
        watchdog.stop()
        for rank, child in enumerate(children, start=1):
            if child.wait() != 0:
                raise RankFailed(f"ddp: rank {rank} exited with status {child.returncode} (its error is printed above)")
    finally:
        if watchdog is not None:
            watchdog.stop()
        stop_all(children)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # the next job of a sweep makes its own group
            dist.destroy_process_group()
        for k, v in saved.items():  # the next job of a sweep starts clean
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
