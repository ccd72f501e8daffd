"""Multi-process training on CPU (gloo): DDP launched by `python -m zoo`, inside a sweep, and
as two torchrun "nodes" on localhost. Each run is a fresh process with a clean environment."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY

DIST_VARS = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
             "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "PL_GLOBAL_SEED", "HYDRA_FULL_ERROR")
# a model without dropout or batch statistics, so 1 and 2 processes compute the same thing
EXACT = ["encoder.dropout=0", "head.dropout=0", "cell.dropout=0", "trainer.max_epochs=2",
         "data.train_size=256", "data.val_size=64", "data.test_size=64"]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DIST_VARS}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def zoo(*args, timeout=600, cwd=ROOT):
    r = subprocess.run([sys.executable, "-m", "zoo", *args], cwd=cwd, env=clean_env(), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    zoo("task=sentiment", *TINY["sentiment"], *EXACT, "data.batch_size=32", f"hydra.run.dir={one}")
    r = zoo("task=sentiment", *TINY["sentiment"], *EXACT, "data.batch_size=16", "trainer=ddp",
            "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.run.dir={two}")
    a, b = metrics(one), metrics(two)
    for key in ("val/acc", "val/loss", "test/acc", "test/loss", "test/f1"):
        assert abs(a[key] - b[key]) < 1e-4, (key, a[key], b[key])
    assert r.stdout.count("run folder:") == 1  # only rank 0 reports and writes
    assert not list(two.glob("*rank*")) and not (two / "logs" / "version_1").exists()


def test_ddp_captioning_computes_metrics_over_all_ranks(tmp_path):
    run = tmp_path / "cap"
    zoo("task=captioning", *TINY["captioning"], "trainer.max_epochs=1", "data.test_images=15", "trainer=ddp",
        "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.run.dir={run}")
    m = metrics(run)
    assert {"test/bleu4", "test/cider", "val/cider"} <= set(m)
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "samples.png").is_file()


def test_ddp_inside_a_sweep_runs_each_job_once(tmp_path):
    sweep = tmp_path / "sweep"
    r = zoo("-m", "task=sentiment", "cell=rnn,gru", *TINY["sentiment"], "trainer.max_epochs=1", "trainer=ddp",
            "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.sweep.dir={sweep}")
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert [p.name for p in jobs] == ["0", "1"]
    assert r.stdout.count("run folder:") == 2
    assert "| rank | overrides |" in (sweep / "summary.md").read_text()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_torchrun_nodes_on_localhost(tmp_path):
    run, port = tmp_path / "run", _port()
    torchrun = str(Path(sys.executable).parent / "torchrun")
    procs = [subprocess.Popen(
        [torchrun, "--nnodes=2", "--nproc-per-node=1", f"--node-rank={node}", "--master-addr=127.0.0.1",
         f"--master-port={port}", "-m", "zoo", "task=sentiment", *TINY["sentiment"], "trainer.max_epochs=1",
         "trainer=ddp", "trainer.devices=1", "trainer.num_nodes=2", "trainer.accelerator=cpu", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=clean_env(PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-3000:] + outs[1][-3000:]
    assert "test/acc" in metrics(run)
    assert "run folder:" in outs[0] and "run folder:" not in outs[1]  # rank 1 writes nothing
    assert not (run / ".hydra" / "overrides.yaml").read_text().count("output_subdir")
