"""benchmarks.gpu, the prepared GPU check: without a GPU it says so, checks that its pieces compose
and run on CPU and exits 0 with its JSON line; its checks catch what they are there to catch, and
one failing item is reported while the rest still run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch
from conftest import ROOT

from benchmarks import gpu
from zoo.run.configs import group_options


@pytest.mark.slow
def test_without_a_gpu_it_says_so_checks_its_pieces_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("no GPU here (torch.cuda.is_available() is false)"), lines[0]
    result = json.loads(lines[-1])
    assert result["gpu"] is None and result["checked_on_cpu"] is True and result["failed"] == []
    # every task x cell x precision composed with trainer=gpu
    assert result["cpu_check/configs_composed"] == len(gpu.fdr_cases()) * 2
    cell = gpu.CPU_CELL
    for mode in gpu.MODES:  # the parity and path functions ran, and the instruments saw the CPU paths
        assert result[f"cpu_check/parity/{cell}/{mode}/fp32"] <= gpu.FP32_TOL
        assert result[f"cpu_check/parity/{cell}/{mode}/bf16"] <= gpu.BF16_TOL
    if torch.backends.mkldnn.is_available():
        assert "onednn_matmul 0," not in result[f"cpu_check/paths/{cell}/loop"]
    assert result["cpu_check/ddp_config"] == "ok"
    for key in (f"fused_over_cudnn/{cell}", f"steploop_over_fused/{cell}", "steps_per_s/captioning/b16/32-true",
                "steps_per_s/captioning/b16/bf16-mixed", "beam_images_per_s/b4"):  # the measure functions ran
        assert isinstance(result[f"cpu_check/{key}"], float) and result[f"cpu_check/{key}"] > 0, key


def test_every_task_is_a_case_once_per_cell_and_once_without_recurrence():
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    from zoo.run.configs import config_dir

    cases = gpu.fdr_cases()
    assert len(cases) == len(set(cases))
    without_cell = 0
    for task in group_options("task"):
        cells = [c for t, c in cases if t == task]
        parts = get_object(OmegaConf.load(config_dir() / "task" / f"{task}.yaml").task._target_).parts
        assert cells == (group_options("cell") if "cell" in parts else [None]), task
        without_cell += "cell" not in parts
    assert without_cell >= 1  # imageclass: a CNN, no recurrence


def test_bad_metrics_names_what_is_not_a_finite_number():
    assert gpu.bad_metrics({"val/loss": 0.5, "test/acc": 1, "train/loss": 2.0}) == []
    bad = gpu.bad_metrics({"a": math.nan, "b": math.inf, "c": "x", "d": True, "ok": 1.0})
    assert [b.split("=")[0] for b in bad] == ["a", "b", "c", "d"]
    assert gpu.bad_metrics({}) == ["no metrics logged"]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
def test_the_instruments_see_the_cpu_paths_and_put_everything_back():
    from zoo.cells import base, gru
    from zoo.recurrence import bptt, cpu

    rec = gpu.recurrence("gru", input_size=4, hidden_size=4, fused=False)
    x = torch.randn(2, 3, 4)
    originals = (bptt.onednn_matmul, cpu.onednn_matmul, gru.tanh)
    with gpu.CPUPaths() as seen:
        rec(x).outputs.sum().backward()  # the step loop, trained through its backward: oneDNN matmuls on CPU
    assert seen["onednn_matmul"] > 0 and seen["cpu_tanh"] > 0 and seen["mkldnn_ops"] > 0 and seen["cudnn_rnn"] == 0
    assert (bptt.onednn_matmul, cpu.onednn_matmul, gru.tanh) == originals and gru.tanh is base.tanh
    before = dict(seen)
    rec(x).outputs.sum().backward()
    assert dict(seen) == before  # no longer counting


def test_path_problems_on_cuda_and_blind_instruments_on_cpu():
    kinds = {"has_kernel": True, "has_step_loop_kernels": True}
    assert gpu.path_problems(Counter(cudnn_rnn=2), "cuda", "fused", **kinds) == []
    assert gpu.path_problems(Counter(), "cuda", "loop", **kinds) == []
    assert gpu.path_problems(Counter(onednn_matmul=1, cpu_tanh=3), "cuda", "step", **kinds) == [
        "onednn_matmul taken 1x", "cpu_tanh taken 3x"]
    assert gpu.path_problems(Counter(), "cuda", "fused", **kinds) == [
        "the fused kernel did not reach cuDNN (no _cudnn_rnn call)"]
    assert gpu.path_problems(Counter(), "cuda", "fused", has_kernel=False, has_step_loop_kernels=False) == []
    if torch.backends.mkldnn.is_available():
        assert len(gpu.path_problems(Counter(), "cpu", "loop", **kinds)) == 2


def test_the_gpu_runs_configs_compose():
    """What only a GPU run composes: the throughput runs' and the beam model's configs."""
    from zoo.api import compose_config
    from zoo.run.checks import check

    for task in gpu.GPU_SIZES.tasks:
        cfg, choices = compose_config(gpu.rate_overrides(task, "cuda", 256, "bf16-mixed", gpu.RATE_DATA[task]))
        check(cfg, choices)
        assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.data.batch_size) == ("gpu", "bf16-mixed", 256)
    cfg, choices = compose_config(["task=captioning", *gpu.BEAM_DATA])
    check(cfg, choices)


def test_ddp_problems(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"val/loss": 1.0}))
    ok = "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/1\ndistributed_backend=nccl\nAll distributed processes"
    assert gpu.ddp_problems(0, ok, metrics) == []
    assert gpu.ddp_problems(0, ok.replace("nccl", "gloo"), metrics) == ["backend gloo, not nccl"]
    assert gpu.ddp_problems(1, "a\nb\nRuntimeError: NCCL error", metrics)[0].startswith("exit status 1: ")
    metrics.write_text(json.dumps({"val/loss": math.nan}))
    assert gpu.ddp_problems(0, ok, metrics) == ["val/loss=nan"]


def test_rel_err():
    a = torch.tensor([1.0, -2.0])
    assert gpu.rel_err([a], [a.clone()]) == 0.0
    assert gpu.rel_err([a, a], [a, a + torch.tensor([0.0, 0.2])]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shapes differ"):
        gpu.rel_err([a], [a[:1]])


def _main(monkeypatch, capsys, *args: str) -> tuple[int, dict, str]:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = gpu.main(list(args))
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1]), out


def test_an_item_that_raises_is_reported_and_the_rest_still_run(monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(gpu, "parity", broken)
    code, result, out = _main(monkeypatch, capsys, "--only", "parity", "--only", "ddp")
    assert code == 1
    assert result[f"cpu_check/parity/{gpu.CPU_CELL}"] == "error: RuntimeError: boom"
    assert result["failed"] == [f"cpu_check/parity/{gpu.CPU_CELL}"]
    assert result["cpu_check/ddp_config"] == "ok"  # the next section ran
    assert "ERROR" in out


def test_a_failed_check_makes_the_exit_status_nonzero(monkeypatch, capsys):
    monkeypatch.setattr(gpu, "path_problems", lambda *a, **k: ["cpu_tanh taken 1x"])
    code, result, _ = _main(monkeypatch, capsys, "--only", "parity")
    assert code == 1
    assert result[f"cpu_check/paths/{gpu.CPU_CELL}/loop"] == "FAIL: cpu_tanh taken 1x"
    assert result[f"cpu_check/parity/{gpu.CPU_CELL}/loop/fp32"] <= gpu.FP32_TOL  # parity itself passed


def test_dry_run_says_what_would_run(capsys):
    assert gpu.main(["--dry-run", "--only", "measure"]) == 0
    assert capsys.readouterr().out.startswith("would run: measure")
