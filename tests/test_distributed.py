"""Multi-process training on CPU (gloo): DDP launched by `python -m zoo`, inside a sweep, and
as two torchrun "nodes" on localhost. Each run is a fresh process with a clean environment."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
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


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    zoo("task=sentiment", *TINY["sentiment"], *EXACT, "data.batch_size=32", f"hydra.run.dir={one}")
    r = zoo("task=sentiment", *TINY["sentiment"], *EXACT, "data.batch_size=16", "trainer=ddp",
            "trainer.devices=2", "trainer.accelerator=cpu", "logger=wandb", f"hydra.run.dir={two}")
    a, b = metrics(one), metrics(two)
    for key in ("val/acc", "val/loss", "test/acc", "test/loss", "test/f1"):
        assert abs(a[key] - b[key]) < 1e-4, (key, a[key], b[key])
    assert r.stdout.count("run folder:") == 1  # only rank 0 reports and writes
    assert not list(two.glob("*rank*")) and not (two / "logs" / "version_1").exists()
    # the confusion matrix counts every test sentence of both ranks' shards, once
    from wandb_offline import read_run

    history = read_run(next(two.glob("wandb/offline-run-*/run-*.wandb")))["history"]
    table = next(h for h in history if h.get("test/confusion_table/_type") == "table-file")
    cells = json.loads(next(two.glob("wandb/offline-run-*/files/" + table["test/confusion_table/path"])).read_text())
    assert sum(row[2] for row in cells["data"]) == 64


@pytest.mark.slow
def test_ddp_captioning_covers_the_whole_test_split_image_by_image(tmp_path):
    """Uneven shards (15 test images on 2 ranks): the test captions are every rank's, each image
    once, and equal to what one process writes with the same checkpoint; the frozen encoder's
    features are computed once (by rank 0) and read by the other rank. The second epoch is
    self-critical (each rank samples and rewards its own shard's captions) and ends like any other."""
    import csv

    import torch

    import zoo as zoo_api

    run = tmp_path / "cap"
    r = zoo("task=captioning", *TINY["captioning"], "trainer.max_epochs=2", "task.scst.epochs=1", "task.scst.samples=3",
            "trainer.log_every_n_steps=1", "data.test_images=15", "trainer=ddp", "trainer.devices=2",
            "trainer.accelerator=cpu", "encoder.freeze=true", f"paths.cache_dir={tmp_path / 'c'}", f"hydra.run.dir={run}")
    m = metrics(run)
    assert 0 <= m["test/bleu4"] <= 1 and m["test/cider"] >= 0 and math.isfinite(m["test/loss"])
    rewards = [float(row["train/reward"]) for row in csv.DictReader((run / "logs" / "metrics.csv").open())
               if row.get("train/reward")]
    assert rewards and all(0 <= x <= 10 for x in rewards)  # the self-critical epoch ran, on both ranks in step
    assert (run / "samples.png").is_file()
    log = r.stdout + r.stderr
    assert log.count("features: wrote") == 3 and log.count("features: read") == 3  # train/val/test, once each
    captions = json.loads((run / "test_captions.json").read_text())
    model = zoo_api.load(run / "checkpoints" / "best.ckpt")
    from hydra.utils import instantiate

    data = instantiate(model.run_config["data"])
    data.setup()
    split = data.splits["test"]
    assert sorted(captions) == sorted(split.names) and len(split.names) == 15
    with torch.no_grad():
        alone = model.caption(model.encode(torch.stack([split.display[i] for i in range(15)])))
    assert {split.names[i]: c for i, c in enumerate(alone)} == captions


def _inject(tmp_path, fault: str) -> dict:
    """An environment whose rank 1 fails at training step 3: ``die`` (the process exits with 3)
    or ``nan`` (its loss is NaN). A sitecustomize on PYTHONPATH patches the task in that rank."""
    site = tmp_path / "inject"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(f"""
import os
if os.environ.get("RANK") == "1":
    from zoo.tasks.labels import LabelTask
    real = LabelTask._step
    def _step(self, split, batch):
        loss = real(self, split, batch)
        if split == "train" and self.global_step == 3:
            if {fault!r} == "die":
                os._exit(3)
            loss = loss * float("nan")
        return loss
    LabelTask._step = _step
""")
    return clean_env(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))


DDP = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]


def _alive_with(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("fault,message", [
    ("die", "ddp: rank 1 exited with status 3"),
    ("nan", "the training loss became NaN or infinite on another rank at step 3"),
])
def test_a_failing_rank_stops_every_rank_with_a_clear_error(tmp_path, fault, message):
    run = tmp_path / f"run-{fault}"
    start = time.time()
    r = subprocess.run([sys.executable, "-m", "zoo", "task=sentiment", *TINY["sentiment"], "data.train_size=2048",
                        "trainer.max_epochs=50", *DDP, f"hydra.run.dir={run}"], cwd=tmp_path, env=_inject(tmp_path, fault),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert message in r.stderr and "Traceback" not in r.stderr.split("error: ")[-1]
    assert time.time() - start < 120  # not a hang until a timeout
    assert not _alive_with(str(run))  # no rank left behind
    assert not (run / "metrics.json").exists()


@pytest.mark.slow
def test_a_killed_launcher_leaves_no_rank_behind(tmp_path):
    run = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "zoo", "task=sentiment", *TINY["sentiment"], "data.train_size=4096",
                          "trainer.max_epochs=50", *DDP, f"hydra.run.dir={run}"], cwd=ROOT, env=clean_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "config.yaml").exists() and time.time() < deadline:  # rank 0 is training
        time.sleep(0.2)
    assert len(_alive_with(str(run))) == 2  # rank 0 and the rank it started
    p.kill()
    p.wait()
    deadline = time.time() + 10
    while _alive_with(str(run)) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive_with(str(run))


def test_other_ranks_get_this_jobs_whole_command_line():
    from zoo.run.launch import rank_command

    argv = ["--config-dir", "/my conf", "-cn=exp", "-m", "task=sentiment", "cell=rnn,gru", "hydra.sweep.dir=/s"]
    cmd = rank_command(argv, ["hydra.mode=MULTIRUN", "hydra.sweep.dir=/s", "hydra.job.chdir=false",
                              "hydra/job_logging=disabled", "hydra.verbose=true"],
                       ["task=sentiment", "cell=gru", "data.path='/a b,c.txt'", "hparams_search=optuna"], "/runs/x,y")
    assert cmd[1:3] == ["-m", "zoo"]
    assert cmd[3:6] == ["--config-dir", "/my conf", "-cn=exp"]  # where the config comes from
    assert cmd[6:8] == ["hydra.job.chdir=false", "hydra.verbose=true"]  # this job's Hydra settings, not the sweep's
    assert cmd[8:11] == ["task=sentiment", "cell=gru", "data.path='/a b,c.txt'"]  # this job's overrides, quoted as given
    assert "hydra.run.dir='/runs/x,y'" in cmd and "-m" not in cmd[3:] and not any("sweep" in a for a in cmd)


@pytest.mark.slow
def test_ddp_inside_a_sweep_runs_each_job_once(tmp_path):
    """Each job starts its own ranks, with the job's own command line: a cell that only exists
    in the user's --config-dir reaches rank 1 too (it would not compose there otherwise)."""
    extra = tmp_path / "my conf" / "cell"
    extra.mkdir(parents=True)
    (extra / "small_gru.yaml").write_text("defaults:\n  - gru\n  - _self_\nnum_layers: 2\n")
    sweep = tmp_path / "sweep"
    r = zoo("--config-dir", str(tmp_path / "my conf"), "-m", "task=sentiment", "cell=rnn,small_gru",
            *TINY["sentiment"], "trainer.max_epochs=1", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
            f"hydra.sweep.dir={sweep}")
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert [p.name for p in jobs] == ["0", "1"]
    assert r.stdout.count("run folder:") == 2
    assert "| rank | overrides |" in (sweep / "summary.md").read_text()
    assert "num_layers: 2" in (sweep / "1" / "config.yaml").read_text()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
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
