"""GPU readiness: one prepared check of the zoo on a CUDA GPU, and the figures it gives.

    python -m benchmarks.gpu                   # on a CUDA machine: everything, sized for 8 minutes on one GPU
    python -m benchmarks.gpu --only parity     # one section: parity fdr ddp measure compile
    python -m benchmarks.gpu --budget 300      # start no item that would end after 300 s (default 450)

On a CUDA GPU, in this order:

- parity: for every cell, each way the recurrence runs (the fused kernel, the step loop trained
  through its backward, one step at a time as generation steps it) on a fixed batch with
  padding and an extra input: the outputs and gradients on the GPU in fp32 (TF32 off) and under
  bf16 autocast against the CPU's fp32, and the CPU-only speed paths counted while it runs
  (oneDNN step matmuls, tanh as 2 sigmoid(2x) - 1, any mkldnn op): none may be taken on CUDA,
  and the fused path must reach cuDNN;
- fdr: ``trainer.fast_dev_run=true`` for every task x cell (once for a task without recurrence)
  on ``trainer=gpu`` with ``trainer.precision=bf16-mixed`` and ``32-true``, through
  ``zoo.run.train.train`` with the test suite's tiny sizes; every logged metric must be finite;
- ddp: ``python -m zoo task=captioning trainer=ddp trainer.devices=1`` (NCCL), one epoch on tiny data;
- measure, side by side in one process after a warm-up (CUDA events): fused zoo cell / bare
  cuDNN nn.RNN, nn.LSTM, nn.GRU (goal <= 1.1), step loop / fused, bf16 / fp32 training
  throughput (goal >= 1.5), captioning and charlm training steps/s at batch 64 and 256 with their
  peak GPU memory, batched beam search images/s;
- compile: the step loop through torch.compile (``cell.compile=true``): first call, compiled /
  eager time, and that both give the same outputs.

Each item is guarded: one that fails is reported (an error string in the table and the JSON)
and the rest still run. It prints a table as it goes and, last, one JSON line. The exit status
is 1 if a check failed (a metric not finite, parity, a path) or an item raised; a goal missed is
a figure, not a failure.

Without a GPU it says so, checks that its pieces compose and run on CPU (every task x cell
config with ``trainer=gpu`` and both precisions, the DDP command's config, the parity, path and
measure functions on a tiny batch for one cell) and exits 0 with ``{"gpu": null,
"checked_on_cpu": true, ...}``, so that CI keeps this script from rotting.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.util
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("parity", "fdr", "ddp", "measure", "compile")
PRECISIONS = ("bf16-mixed", "32-true")
#: parity tolerances: the largest difference / the largest magnitude of the CPU's fp32 result
FP32_TOL, BF16_TOL = 1e-4, 5e-2
#: compiled against eager: inductor sums in another order
COMPILE_TOL = 1e-3
#: the CPU-only speed paths the instruments count (none may be taken on CUDA)
CPU_ONLY = ("onednn_matmul", "cpu_tanh", "mkldnn_ops")


# -- the report: the table as it goes, the JSON at the end ------------------------------------
class Report:
    """Rows of the table and keys of the JSON line; every item runs guarded."""

    def __init__(self, prefix: str, budget_s: float) -> None:
        self.prefix = prefix
        self.results: dict[str, object] = {}
        self.failed: list[str] = []
        self.deadline = time.monotonic() + budget_s
        print(f"{'section':<9} {'item':<52} {'status':<20} value", flush=True)

    def add(self, section: str, item: str, key: str, value: object, status: str = "") -> None:
        """One row and one JSON key; status FAIL or ERROR makes the run fail."""
        full = f"{self.prefix}/{key}"
        self.results[full] = _rounded(value)
        if status in ("FAIL", "ERROR"):
            self.failed.append(full)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{section:<9} {item:<52} {status:<20} {shown}", flush=True)

    def check(self, section: str, item: str, key: str, problems: list[str], value: object = "ok") -> None:
        """A check: ``value`` (and ok) if there are no problems, else FAIL and what they are."""
        if problems:
            self.add(section, item, key, "FAIL: " + "; ".join(problems), "FAIL")
        else:
            self.add(section, item, key, value, "ok")

    def goal(self, section: str, item: str, key: str, value: float, op: str, bound: float) -> None:
        met = value <= bound if op == "<=" else value >= bound
        self.add(section, item, key, value, f"goal {op} {bound}: {'met' if met else 'missed'}")

    def run(self, section: str, item: str, key: str, fn: Callable[[], object], need_s: float = 0.0) -> None:
        """``fn()``, guarded: an exception is reported as this item's error, and the check goes on.
        Skipped if it would start past the time budget, or end past it by its ``need_s``."""
        if time.monotonic() + need_s > self.deadline:
            self.add(section, item, key, "skipped: past the time budget (--budget)", "skipped")
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, and the rest still runs
            traceback.print_exc(file=sys.stderr)
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            self.add(section, item, key, f"error: {type(e).__name__}: {first}", "ERROR")


def _rounded(value: object) -> object:
    """A float to 5 significant digits (for the JSON line); anything else as it is."""
    if isinstance(value, float) and math.isfinite(value) and value:
        return round(value, 4 - math.floor(math.log10(abs(value))))
    return value


# -- configs -----------------------------------------------------------------------------------
@functools.cache
def tiny_sizes() -> dict[str, list[str]]:
    """Each task's tiny data and model overrides: the test suite's ``TINY`` (tests/conftest.py)."""
    path = ROOT / "tests" / "conftest.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the tiny sizes come from the test suite's TINY; run from a checkout of the repo")
    spec = importlib.util.spec_from_file_location("_zoo_test_sizes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TINY


@contextlib.contextmanager
def hydra_session() -> Iterator[Callable[[list[str]], tuple]]:
    """``compose(overrides) -> (cfg, choices)``: the config ``python -m zoo <overrides>`` runs, with
    one Hydra initialisation for many configs."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from zoo.run.configs import config_dir

    def composed(overrides: list[str]) -> tuple:
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg, choices

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield composed


def fdr_cases() -> list[tuple[str, str | None]]:
    """(task, cell) for every task x cell; (task, None) once for a task without recurrence."""
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    from zoo.run.configs import config_dir, group_options

    cases = []
    for task in group_options("task"):
        target = OmegaConf.load(config_dir() / "task" / f"{task}.yaml").task._target_
        cells = group_options("cell") if "cell" in getattr(get_object(target), "parts", ("cell",)) else [None]
        cases += [(task, cell) for cell in cells]
    return cases


def fdr_overrides(task: str, cell: str | None, precision: str) -> list[str]:
    return [f"task={task}", *([f"cell={cell}"] if cell else []), "trainer=gpu", f"trainer.precision={precision}",
            "trainer.fast_dev_run=true", *tiny_sizes().get(task, [])]


def without(overrides: list[str], *keys: str) -> list[str]:
    """``overrides`` without those that set ``keys`` (the caller sets them)."""
    return [o for o in overrides if o.split("=", 1)[0] not in keys]


def bad_metrics(metrics: dict) -> list[str]:
    """The logged metrics that are not finite numbers (a note if none were logged at all)."""
    if not metrics:
        return ["no metrics logged"]
    return [f"{k}={v}" for k, v in metrics.items()
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]


def fast_dev_run(cfg, run_dir: Path) -> dict:
    """``zoo.run.train.train`` of a composed config into ``run_dir``; its metrics.json."""
    from zoo.run.train import train

    with contextlib.redirect_stdout(io.StringIO()):
        train(cfg, run_dir=run_dir, name=run_dir.name)
    return json.loads((run_dir / "metrics.json").read_text())


def section_fdr(report: Report, device: str, tmp: Path) -> None:
    """Every task x cell composes with trainer=gpu and both precisions; on CUDA each runs a fast
    dev run whose metrics must be finite."""
    from zoo.run.checks import check

    cases = [(t, c, p) for t, c in fdr_cases() for p in PRECISIONS]
    configs = {}
    with hydra_session() as compose:
        for task, cell, precision in cases:
            key, overrides = f"fdr/{task}/{cell or 'none'}/{precision}", fdr_overrides(task, cell, precision)

            def compose_one(key=key, overrides=overrides):
                cfg, choices = compose(overrides)
                check(cfg, choices)
                configs[key] = cfg
            report.run("fdr", f"{task} cell={cell or '-'} {precision}: composes", key, compose_one)
    if device != "cuda":
        report.check("fdr", f"task x cell x precision configs, trainer=gpu ({len(cases)})", "configs_composed",
                     [f"{len(cases) - len(configs)} did not compose"] if len(configs) < len(cases) else [],
                     len(configs))
        return
    bf16 = torch.cuda.is_bf16_supported()
    for key, cfg in configs.items():
        _, task, cell, precision = key.split("/")
        item = f"{task} cell={cell} {precision}"
        if precision.startswith("bf16") and not bf16:
            report.add("fdr", item, key, "skipped: this GPU has no bf16", "skipped")
            continue

        def one(key=key, cfg=cfg, item=item):
            try:
                metrics = fast_dev_run(cfg, tmp / key.replace("/", "-"))
            finally:
                gc.collect()
                torch.cuda.empty_cache()
            report.check("fdr", item, key, bad_metrics(metrics), f"{len(metrics)} metrics finite")
        report.run("fdr", item, key, one)


# -- the CPU-only paths, and parity ----------------------------------------------------------
class CPUPaths:
    """Counts, while active, the speed paths that are for the CPU only, and cuDNN's RNN kernel:

    - ``onednn_matmul``: a oneDNN matmul prepared for the step loop (zoo.recurrence.cpu.onednn_matmul
      returning one), wherever a zoo module holds that function;
    - ``cpu_tanh``: zoo.cells.base.tanh given a CPU tensor (it computes 2 sigmoid(2x) - 1 there);
    - ``mkldnn_ops``: any aten op of oneDNN's (to_mkldnn, mkldnn_linear, mkldnn_rnn_layer ...);
    - ``cudnn_rnn``: aten's _cudnn_rnn (forward and backward), the kernel the fused path should reach on CUDA.
    """

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._patched: list[tuple[object, str, object]] = []
        self._mode = None

    def __enter__(self) -> Counter:
        from torch.utils._python_dispatch import TorchDispatchMode

        from zoo.cells import base
        from zoo.recurrence import cpu

        counts = self.counts
        onednn, tanh = cpu.onednn_matmul, base.tanh

        def counted_onednn(w: Tensor):
            out = onednn(w)
            counts["onednn_matmul"] += out is not None
            return out

        def counted_tanh(x: Tensor) -> Tensor:
            counts["cpu_tanh"] += x.device.type == "cpu"
            return tanh(x)

        for name, module in list(sys.modules.items()):
            if module is None or not (name == "zoo" or name.startswith("zoo.")):
                continue
            for attr, value in list(vars(module).items()):
                for original, wrapper in ((onednn, counted_onednn), (tanh, counted_tanh)):
                    if value is original:
                        self._patched.append((module, attr, original))
                        setattr(module, attr, wrapper)

        class Ops(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                op = func.overloadpacket.__name__
                counts["mkldnn_ops"] += "mkldnn" in op
                counts["cudnn_rnn"] += "cudnn_rnn" in op
                return func(*args, **(kwargs or {}))

        self._mode = Ops()
        self._mode.__enter__()
        return counts

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
        for module, attr, original in reversed(self._patched):
            setattr(module, attr, original)
        self._patched.clear()


def path_problems(counts: Counter, device: str, mode: str, *, has_kernel: bool, has_step_loop_kernels: bool) -> list[str]:
    """What is wrong with the paths one parity run took. On CUDA: any CPU-only path, and a fused run
    of a cell with a kernel that did not reach cuDNN. On CPU the instruments must see the CPU paths
    where the step loop takes them (a cell with a recurrent weight whose step the CPU kernels
    serve: ``step_cached``), or they would be as blind on CUDA."""
    if device == "cuda":
        problems = [f"{k} taken {counts[k]}x" for k in CPU_ONLY if counts[k]]
        if mode == "fused" and has_kernel and not counts["cudnn_rnn"]:
            problems.append("the fused kernel did not reach cuDNN (no _cudnn_rnn call)")
        return problems
    from zoo.recurrence import cpu

    if mode in ("loop", "step") and has_step_loop_kernels and cpu.USE_ONEDNN and torch.backends.mkldnn.is_available():
        return [f"the instruments saw no {k} on CPU" for k in ("onednn_matmul", "cpu_tanh") if not counts[k]]
    return []


def rel_err(ref: list[Tensor], out: list[Tensor]) -> float:
    """The largest of max|ref - out| / max|ref| over paired tensors (0 for equal ones)."""
    worst = 0.0
    for a, b in zip(ref, out, strict=True):
        a, b = a.detach().float().cpu(), b.detach().float().cpu()
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
        scale = a.abs().max().item() if a.numel() else 0.0
        worst = max(worst, (a - b).abs().max().item() / max(scale, 1e-12) if a.numel() else 0.0)
    return worst


@functools.cache
def _cell_config(name: str):
    from zoo.api import compose_config

    return compose_config([f"cell={name}"])[0].cell


def recurrence(name: str, *, input_size: int, hidden_size: int, device: str = "cpu", **options):
    """The Recurrence ``cell=<name>`` builds (options: extra_size, fused, compile, ...)."""
    from hydra.utils import instantiate

    from zoo.recurrence import build

    rec = build(instantiate(_cell_config(name)), input_size=input_size, hidden_size=hidden_size, **options)
    return rec.to(device)


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """fp32 as fp32: cuDNN (and matmuls) without TF32, for a tight comparison with the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _flat(state) -> list[Tensor]:
    from zoo.recurrence import map_state

    out: list[Tensor] = []
    map_state(out.append, state)
    return out


def _run_mode(rec, mode: str, x: Tensor, lengths: Tensor, v: Tensor, bf16: bool) -> list[Tensor]:
    """One parity run: outputs, final state and (trained) every parameter's gradient."""
    from zoo.recurrence import Constant

    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16)
    rec.zero_grad(set_to_none=True)
    if mode == "step":  # as generation steps it: no gradients, one step at a time
        rec.eval()
        with torch.no_grad(), autocast:
            state, outs = rec.init_state(x.shape[0], device=x.device), []
            for x_t in x.unbind(1):
                h, state, _ = rec.step(x_t, state, Constant(v))
                outs.append(h)
        return [torch.stack(outs, 1), *_flat(state)]
    rec.train()
    with autocast:
        out, state, _ = rec(x, lengths, extra=Constant(v))
        loss = out.float().pow(2).sum() + sum(t.float().sum() for t in _flat(state))
    loss.backward()
    return [out, *_flat(state), *(p.grad for p in rec.parameters())]


MODES = {"fused": {}, "loop": {"fused": False}, "step": {}}


def parity(cell: str, device: str, *, batch: int = 6, steps: int = 9, size: int = 16) -> dict[str, dict]:
    """For one cell, each way its recurrence runs (``MODES``): the largest relative difference of
    ``device`` in fp32 and under bf16 autocast from the CPU's fp32 (outputs, final state,
    gradients) on a fixed batch with padding and an extra input, and the paths it took there."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, steps, size, generator=g)
    v = torch.randn(batch, size // 2, generator=g)
    lengths = torch.tensor([steps] + [max(1, (steps * (k + 1)) // batch) for k in range(batch - 1)])
    results = {}
    for mode, options in MODES.items():
        torch.manual_seed(0)
        make = functools.partial(recurrence, cell, input_size=size, hidden_size=size, extra_size=size // 2, **options)
        ref_rec = make()
        ref = _run_mode(ref_rec, mode, x, lengths, v, bf16=False)
        result = {"paths": Counter()}
        for label, bf16 in (("fp32", False), ("bf16", True)):
            rec = make().to(device)
            rec.load_state_dict(ref_rec.state_dict())
            with no_tf32() if not bf16 else contextlib.nullcontext(), CPUPaths() as seen:
                out = _run_mode(rec, mode, x.to(device), lengths.to(device), v.to(device), bf16=bf16)
            result[label] = rel_err(ref, out)
            result["paths"] += seen
        results[mode] = result
    return results


def section_parity(report: Report, device: str, cells: list[str]) -> None:
    from hydra.utils import get_object

    for cell in cells:
        def one(cell=cell):
            cls = get_object(_cell_config(cell)._target_)
            kinds = {"has_kernel": getattr(cls, "fused_kernel", None) is not None,
                     "has_step_loop_kernels": hasattr(cls, "step_cached")}
            for mode, r in parity(cell, device).items():
                for label, tol in (("fp32", FP32_TOL), ("bf16", BF16_TOL)):
                    report.check("parity", f"cell={cell} {mode}, {label} vs CPU fp32 (tol {tol:g})",
                                 f"parity/{cell}/{mode}/{label}", [f"{r[label]:.3g} > {tol:g}"] if r[label] > tol else [],
                                 r[label])
                seen = r["paths"]
                shown = ", ".join(f"{k} {seen[k]}" for k in (*CPU_ONLY, "cudnn_rnn"))
                report.check("paths", f"cell={cell} {mode}: CPU-only paths on {device}", f"paths/{cell}/{mode}",
                             path_problems(seen, device, mode, **kinds), shown)
        report.run("parity", f"cell={cell}", f"parity/{cell}", one)


# -- measurements ------------------------------------------------------------------------------
def _timed(fn: Callable[[], object], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_times(fns: dict[str, Callable[[], object]], device: str, *, warmup: int = 2,
                 repeats: int = 7) -> dict[str, float]:
    """Median seconds of a call of each fn, the fns run in turn after a warm-up (side by side)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(_timed(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}


@dataclass(frozen=True)
class Sizes:
    """How big the measurements are: on a GPU, and the tiny ones that check the code on CPU."""

    batch: int = 64
    steps: int = 100
    size: int = 256
    repeats: int = 7
    bf16: tuple[int, int, int] = (256, 100, 512)  # (B, T, H) of the bf16 / fp32 recurrence
    tasks: tuple[str, ...] = ("captioning", "charlm")
    task_batches: tuple[int, ...] = (64, 256)
    task_steps: int = 15
    beam_images: tuple[int, ...] = (64, 256)
    beam_len: int = 16
    compile: tuple[int, int, int] = (64, 16, 256)  # (B, T, H) of the compiled step loop


GPU_SIZES = Sizes()
CPU_SIZES = Sizes(batch=4, steps=5, size=8, repeats=1, bf16=(4, 5, 8), tasks=("captioning",), task_batches=(16,),
                  task_steps=4, beam_images=(4,), beam_len=4, compile=(2, 4, 8))
#: the one cell of the CPU check: oneDNN's CPU LSTM kernel refuses bf16 on CPUs without bf16
#: instructions (AVX2 ones), GRU's CPU kernel takes it, and GRU has every path LSTM has
CPU_CELL = "gru"
#: the data of the throughput runs: enough for the steps at batch 256, quick to make
RATE_DATA = {"captioning": ["data.train_images=1000", "data.val_images=10", "data.test_images=10"], "charlm": []}
#: the data of the beam search model: its vocabulary is all the beam needs of it
BEAM_DATA = ["data.train_images=200", "data.val_images=10", "data.test_images=10"]


def recurrence_times(cell: str, device: str, *, batch: int, steps: int, size: int,
                     repeats: int) -> dict[str, float | bool]:
    """Seconds of forward + backward over (B, T, H): the zoo's Recurrence (fused), the same weights
    through the step loop (``fused=false``), and a bare torch kernel of the cell's kind (cuDNN on
    CUDA); "compacted": whether the kernel warned that it copies the weights into one chunk per call."""
    import warnings

    torch.manual_seed(0)
    fused = recurrence(cell, input_size=size, hidden_size=size, device=device)
    loop = recurrence(cell, input_size=size, hidden_size=size, device=device, fused=False)
    loop.load_state_dict(fused.state_dict())
    bare = type(fused.cells[0]).fused_kernel(size, size, batch_first=True).to(device)
    x = torch.randn(batch, steps, size, device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused(x).outputs.sum().backward()
    times = median_times({"fused": lambda: fused(x).outputs.sum().backward(),
                          "bare": lambda: bare(x)[0].sum().backward(),
                          "loop": lambda: loop(x).outputs.sum().backward()}, device, repeats=repeats)
    times["compacted"] = any("contiguous chunk of memory" in str(w.message) for w in caught)
    return times


def bf16_speedup(device: str, *, cell: str = "lstm", batch: int, steps: int, size: int, repeats: int) -> float:
    """Training throughput of one recurrence (forward, backward, AdamW step) under bf16 autocast
    / in fp32: fp32 seconds a step / bf16 seconds a step."""
    torch.manual_seed(0)
    rec = recurrence(cell, input_size=size, hidden_size=size, device=device)
    opt = torch.optim.AdamW(rec.parameters(), lr=1e-4)
    x = torch.randn(batch, steps, size, device=device)

    def step(bf16: bool) -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = rec(x).outputs.float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    t = median_times({"fp32": lambda: step(False), "bf16": lambda: step(True)}, device, repeats=repeats)
    return t["fp32"] / t["bf16"]


def _clock(marks: list[float], cuda: bool):
    """A Lightning callback that appends the time each training batch starts to ``marks``."""
    import pytorch_lightning as pl

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
    return Clock()


def rate_overrides(task: str, device: str, batch: int, precision: str, overrides: list[str] = ()) -> list[str]:
    """The config of a throughput run: the task's default model on ``device``'s trainer."""
    return [f"task={task}", f"trainer={'gpu' if device == 'cuda' else 'cpu'}", f"trainer.precision={precision}",
            *without(list(overrides), "data.batch_size"), f"data.batch_size={batch}"]


def training_rates(task: str, device: str, *, batch: int, steps: int, precisions=PRECISIONS,
                   overrides: list[str] = ()) -> dict[str, tuple[float, float | None]]:
    """Training steps per second of a task's default model in Lightning's loop, as ``python -m
    zoo`` trains it (data loading included; the first 3 steps are warm-up), and the peak GPU
    memory in MB (None on CPU), for each precision: {precision: (steps/s, peak MB)}."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from zoo.api import compose_config
    from zoo.run.train import build_task

    skip = 3 if steps > 5 else 1
    cuda = device == "cuda"
    data = None
    out = {}
    for precision in precisions:
        cfg, _ = compose_config(rate_overrides(task, device, batch, precision, overrides))
        if data is None:  # the same batches for every precision
            data = instantiate(cfg.data)
            data.setup("fit")
        torch.manual_seed(0)
        model = build_task(cfg, data.spec)
        model.run_config = OmegaConf.to_container(cfg, resolve=True)
        marks: list[float] = []
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer = instantiate(cfg.trainer, max_steps=steps, max_epochs=-1, limit_val_batches=0, logger=False,
                              callbacks=[_clock(marks, cuda)], enable_checkpointing=False, enable_progress_bar=False,
                              enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(model, train_dataloaders=data.train_dataloader())
        intervals = [b - a for a, b in zip(marks[skip:], marks[skip + 1:])]
        if not intervals:
            raise RuntimeError(f"only {len(marks)} training steps ran: too little data for batch {batch}")
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
        out[precision] = (1 / statistics.median(intervals), peak)
    return out


def beam_rate(device: str, *, images: int, max_len: int, beam_size: int = 3, repeats: int = 5,
              overrides: list[str] = ()) -> float:
    """Images per second of batched beam search, captioning's default model (untrained, no caption
    ending early: every one of max_len steps runs)."""
    from zoo.api import build

    torch.manual_seed(0)
    model = build(task="captioning", overrides=list(overrides)).to(device).eval()
    pictures = torch.rand(images, *model.spec.image_shape, device=device)
    with torch.no_grad():
        v = model.encode(pictures)
        dec = model.decoder
        dec.W_hy.bias[dec.end_id] = -1e4
        t = median_times({"beam": lambda: dec.generate(v, strategy="beam", beam_size=beam_size, max_len=max_len)},
                         device, warmup=1, repeats=repeats)["beam"]
    return images / t


def section_measure(report: Report, device: str, sizes: Sizes, cells: list[str]) -> None:
    from hydra.utils import get_object

    kernel_cells = [c for c in cells if getattr(get_object(_cell_config(c)._target_), "fused_kernel", None)]
    B, T, H = sizes.batch, sizes.steps, sizes.size
    for cell in kernel_cells:
        def times(cell=cell):
            t = recurrence_times(cell, device, batch=B, steps=T, size=H, repeats=sizes.repeats)
            kind = get_object(_cell_config(cell)._target_).fused_kernel.__name__
            report.goal("measure", f"fused cell={cell} / bare nn.{kind} (B={B} T={T} H={H})",
                        f"fused_over_cudnn/{cell}", t["fused"] / t["bare"], "<=", 1.1)
            report.add("measure", f"step loop / fused, cell={cell}", f"steploop_over_fused/{cell}", t["loop"] / t["fused"])
            if t["compacted"]:
                report.add("measure", f"cell={cell}: the kernel copies the weights per call", f"weights_compacted/{cell}",
                           "yes: not one contiguous chunk of memory (torch's warning)", "note")
        report.run("measure", f"fused / bare kernel, cell={cell}", f"fused_over_cudnn/{cell}", times)

    (bB, bT, bH), bf16_cell = sizes.bf16, "lstm" if device == "cuda" else CPU_CELL
    report.run("measure", f"bf16 / fp32, {bf16_cell}", f"bf16_over_fp32/{bf16_cell}", lambda: report.goal(
        "measure", f"bf16 / fp32 throughput, {bf16_cell} (B={bB} T={bT} H={bH})",
        f"bf16_over_fp32/{bf16_cell}_b{bB}_h{bH}",
        bf16_speedup(device, cell=bf16_cell, batch=bB, steps=bT, size=bH, repeats=sizes.repeats), ">=", 1.5))

    peaks: list[float] = []
    for task in sizes.tasks:
        for batch in sizes.task_batches:
            def rates(task=task, batch=batch):
                extra = RATE_DATA[task] if device == "cuda" else [*tiny_sizes()[task], f"cell={CPU_CELL}"]
                r = training_rates(task, device, batch=batch, steps=sizes.task_steps, overrides=extra)
                for precision, (rate, peak) in r.items():
                    report.add("measure", f"{task} training steps/s, batch {batch}, {precision}",
                               f"steps_per_s/{task}/b{batch}/{precision}", rate)
                    if peak is not None:
                        peaks.append(peak)
                        report.add("measure", f"{task} peak GPU memory (MB), batch {batch}, {precision}",
                                   f"peak_mem_mb/{task}/b{batch}/{precision}", peak)
                report.goal("measure", f"{task} bf16 / fp32 steps/s, batch {batch}", f"bf16_over_fp32/{task}_b{batch}",
                            r["bf16-mixed"][0] / r["32-true"][0], ">=", 1.5)
            report.run("measure", f"{task} training, batch {batch}", f"steps_per_s/{task}/b{batch}", rates)
    if peaks:
        report.add("measure", "peak GPU memory of the training runs (MB)", "peak_mem_mb/max", max(peaks))

    beam_data = BEAM_DATA if device == "cuda" else [*tiny_sizes()["captioning"], f"cell={CPU_CELL}"]
    for images in sizes.beam_images:
        report.run("measure", f"beam 3, {images} images", f"beam_images_per_s/b{images}", lambda images=images: report.add(
            "measure", f"batched beam 3 images/s ({images} images, {sizes.beam_len} steps)",
            f"beam_images_per_s/b{images}", beam_rate(device, images=images, max_len=sizes.beam_len,
                                                      repeats=max(1, sizes.repeats // 2), overrides=beam_data)))


# -- DDP and torch.compile ---------------------------------------------------------------------
def ddp_overrides(run_dir: Path) -> list[str]:
    """One captioning epoch on tiny data through trainer=ddp on one GPU (NCCL)."""
    tiny = without(tiny_sizes()["captioning"], "trainer.max_epochs")
    return ["task=captioning", "trainer=ddp", "trainer.devices=1", "trainer.max_epochs=1", *tiny,
            f"hydra.run.dir={run_dir}"]


def ddp_epoch(run_dir: Path, timeout: int = 300) -> list[str]:
    """``python -m zoo <ddp_overrides>`` in a subprocess; the problems found (exit status, backend, metrics)."""
    r = subprocess.run([sys.executable, "-m", "zoo", *ddp_overrides(run_dir)], cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, check=False)
    return ddp_problems(r.returncode, r.stdout + r.stderr, run_dir / "metrics.json")


def ddp_problems(returncode: int, output: str, metrics: Path) -> list[str]:
    """What went wrong in a DDP run: its exit status, a backend other than NCCL, its metrics."""
    if returncode != 0:
        return [f"exit status {returncode}: " + " | ".join(output.strip().splitlines()[-3:])[:400]]
    backend = re.search(r"distributed_backend=(\w+)", output)  # Lightning says which one it started
    problems = [] if backend and backend.group(1) == "nccl" else \
        [f"backend {backend.group(1) if backend else '(not said in the output)'}, not nccl"]
    return problems + bad_metrics(json.loads(metrics.read_text()))


def section_ddp(report: Report, device: str, tmp: Path) -> None:
    if device == "cuda":
        report.run("ddp", "trainer=ddp devices=1 (NCCL), captioning epoch", "ddp_nccl", lambda: report.check(
            "ddp", "trainer=ddp devices=1 (NCCL), captioning epoch", "ddp_nccl", ddp_epoch(tmp / "ddp")), need_s=45)
        return

    def composes() -> None:
        from zoo.run.checks import check

        with hydra_session() as compose:
            cfg, choices = compose(without(ddp_overrides(tmp / "ddp"), "hydra.run.dir"))
        check(cfg, choices)
        report.check("ddp", "the DDP command's config composes", "ddp_config",
                     [] if cfg.trainer.devices == 1 and "DDP" in cfg.trainer.strategy._target_ else ["not 1-device DDP"])
    report.run("ddp", "the DDP command's config composes", "ddp_config", composes)


def compile_speed(device: str, *, batch: int, steps: int, size: int, repeats: int) -> dict[str, float]:
    """The lstm step loop (an extra input at every step) through torch.compile against eager,
    forward + backward: the first call's seconds, compiled / eager time, their outputs' difference."""
    from zoo.recurrence import Constant

    torch.manual_seed(0)
    common = {"input_size": size, "hidden_size": size, "extra_size": size, "fused": False, "device": device}
    eager = recurrence("lstm", **common)
    compiled = recurrence("lstm", compile=True, compile_bucket=steps, **common)
    compiled.load_state_dict(eager.state_dict())
    x, v = torch.randn(batch, steps, size, device=device), Constant(torch.randn(batch, size, device=device))
    t = time.perf_counter()
    out = compiled(x, extra=v).outputs
    out.sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter() - t
    err = rel_err([eager(x, extra=v).outputs], [out])
    times = median_times({"compiled": lambda: compiled(x, extra=v).outputs.sum().backward(),
                          "eager": lambda: eager(x, extra=v).outputs.sum().backward()}, device, repeats=repeats)
    return {"first_call_s": first, "compiled_over_eager": times["compiled"] / times["eager"], "rel_err": err}


def section_compile(report: Report, device: str, sizes: Sizes) -> None:
    if device != "cuda":
        report.add("compile", "torch.compile of the step loop", "compile",
                   "skipped on CPU: compiling takes minutes here (tests/test_cells.py runs the compiled loop)", "skipped")
        return
    B, T, H = sizes.compile

    def one() -> None:
        r = compile_speed(device, batch=B, steps=T, size=H, repeats=sizes.repeats)
        report.add("compile", f"first call, compiling (B={B} T={T} H={H})", "compile_first_call_s", r["first_call_s"])
        report.add("compile", "compiled / eager step loop, fwd+bwd", "compiled_over_eager/lstm", r["compiled_over_eager"])
        report.check("compile", f"compiled = eager outputs (tol {COMPILE_TOL:g})", "compiled_parity/lstm",
                     [f"{r['rel_err']:.3g} > {COMPILE_TOL:g}"] if r["rel_err"] > COMPILE_TOL else [], r["rel_err"])
    report.run("compile", "torch.compile of the step loop", "compiled_over_eager/lstm", one, need_s=90)


# -- the run -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _environment(tmp: Path) -> Iterator[None]:
    """Offline and quiet, caches in ``tmp``; the process's environment as it was afterwards."""
    keys = ("ZOO_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "WANDB_MODE", "WANDB_SILENT",
            "TOKENIZERS_PARALLELISM")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({"ZOO_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                       "WANDB_MODE": "offline", "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false"})
    os.environ.setdefault("HF_HOME", str(tmp / "hf"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet(threads: int | None) -> Iterator[None]:
    """Lightning's info lines and warnings off, torch on ``threads`` threads; all as it was afterwards."""
    import logging
    import warnings

    import pytorch_lightning  # noqa: F401 - first: importing it sets its loggers' level to INFO

    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric", "lightning")]
    levels, before = [lg.level for lg in loggers], torch.get_num_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the kernels' warning that matters is caught where it is measured
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    p.add_argument("--budget", type=float, default=450,
                   help="seconds: no item starts that would end after them (default 450; skipped items are listed)")
    p.add_argument("--dry-run", action="store_true", help="say what would run, and run nothing")
    args = p.parse_args(argv)
    sections = args.only or list(SECTIONS)
    cuda = torch.cuda.is_available()
    where = f"on {torch.cuda.get_device_name()}" if cuda else "no GPU here: the CPU check of the pieces"
    if args.dry_run:
        print(f"would run: {' '.join(sections)} ({where})")
        return 0
    started = time.monotonic()
    if cuda:
        print(f"zoo GPU check {where}: torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
              f"{torch.backends.cudnn.version()}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        print("no GPU here (torch.cuda.is_available() is false): checking that this check's pieces compose and run "
              "on CPU; the GPU figures come from a run on a machine with one")
    from zoo.run.configs import group_options

    device, sizes = ("cuda", GPU_SIZES) if cuda else ("cpu", CPU_SIZES)
    cells = group_options("cell") if cuda else [CPU_CELL]
    report = Report("gpu" if cuda else "cpu_check", args.budget)
    # on CPU the work is tiny: one thread does it, without waiting on a busy machine's other cores
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-") as tmp, _environment(Path(tmp)), _quiet(None if cuda else 1):
        run = {"parity": lambda: section_parity(report, device, cells),
               "fdr": lambda: section_fdr(report, device, Path(tmp)),
               "ddp": lambda: section_ddp(report, device, Path(tmp)),
               "measure": lambda: section_measure(report, device, sizes, cells),
               "compile": lambda: section_compile(report, device, sizes)}
        for section in sections:
            t = time.monotonic()
            report.run(section, f"section {section}", section, run[section])
            report.add(section, f"section {section}: seconds", f"seconds/{section}", time.monotonic() - t)
    seconds = time.monotonic() - started
    print(f"{len(report.results)} items in {seconds:.0f} s; "
          + (f"FAILED: {', '.join(report.failed)}" if report.failed else "no check failed"))
    summary = {"gpu": torch.cuda.get_device_name() if cuda else None, "checked_on_cpu": not cuda,
               "torch": torch.__version__, "seconds": round(seconds, 1), "failed": report.failed}
    if cuda:
        summary.update({"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
        summary["gpu/tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    print(json.dumps({**summary, **report.results}))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
