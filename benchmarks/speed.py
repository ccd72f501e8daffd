"""Speed, side by side: the zoo against a hand-written baseline and the machine's limits.

    python -m benchmarks.speed                       # everything (about 15 minutes on 2 CPU cores)
    python -m benchmarks.speed --only overhead       # one group: overhead fused flops beam data startup glimpse
    python -m benchmarks.speed --threads 2 --repeats 7

Each comparison runs both sides in one process, alternating them, after a warm-up, with the
thread count pinned; it prints the median and spread of each side and their ratio. The last
line is one JSON object of all ratios and figures. The same code runs on a GPU where there is
one (--device cuda); report GPU figures separately.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS: dict[str, float] = {}
ARGS: argparse.Namespace


def sync() -> None:
    if ARGS.device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object]) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def compare(name: str, a: Callable, b: Callable, *, label_a: str, label_b: str, warmup: int = 2,
            repeats: int | None = None) -> float:
    """Median time of a / median time of b, alternating a and b."""
    repeats = repeats or ARGS.repeats
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a))
        tb.append(timed(b))
    ma, mb = statistics.median(ta), statistics.median(tb)
    spread = lambda xs: (max(xs) - min(xs)) / statistics.median(xs) * 100
    print(f"  {name:<28} {label_a:<26} {ma * 1e3:9.2f} ms ±{spread(ta):4.1f}%   {label_b:<24} "
          f"{mb * 1e3:9.2f} ms ±{spread(tb):4.1f}%   ratio {ma / mb:6.3f}")
    return ma / mb


def report(key: str, value: float, note: str = "") -> None:
    RESULTS[key] = round(float(value), 4)
    print(f"  -> {key} = {value:.4g} {note}")


# -- 1. framework overhead ------------------------------------------------------------------------
def _task_and_data(task: str, overrides: list[str]):
    from hydra.utils import instantiate

    from zoo.api import compose_config
    from zoo.run.train import build_task

    cfg, _ = compose_config([f"task={task}", *overrides])
    data = instantiate(cfg.data)
    data.setup("fit")
    torch.manual_seed(0)
    model = build_task(cfg, data.spec)
    return cfg, model, data


class _StepClock:
    """Per-step wall times inside Lightning's loop (batch start to next batch start)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def callback(self):
        import pytorch_lightning as pl

        clock = self

        class Clock(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                sync()
                clock.marks.append(time.perf_counter())

        return Clock()


def overhead(task: str, hand_step: Callable, overrides: list[str], steps: int = 12) -> None:
    """A zoo training step (the LightningModule in Lightning's loop, as python -m zoo runs it)
    against a hand-written loop over the same model, batches, optimizer and clipping."""
    from hydra.utils import instantiate
    import tempfile

    cfg, model, data = _task_and_data(task, overrides)
    model.run_config = {}
    model = model.to(ARGS.device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optimizer.lr)
    clip = cfg.trainer.gradient_clip_val
    zoo_times, hand_times = [], []
    tmp = tempfile.mkdtemp()
    for _ in range(ARGS.repeats):
        clock = _StepClock()
        trainer = instantiate(cfg.trainer, max_steps=steps, limit_val_batches=0, enable_progress_bar=True,
                              logger=instantiate(cfg.logger)(save_dir=tmp), callbacks=[clock.callback()],
                              enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                              accelerator="gpu" if ARGS.device == "cuda" else "cpu", max_epochs=1)
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            trainer.fit(model, train_dataloaders=data.train_dataloader())
        zoo_times += [b - a for a, b in zip(clock.marks[2:], clock.marks[3:])]
        state = None
        model.train()
        marks = []
        for batch in itertools.islice(data.train_dataloader(), steps + 2):  # loading counts on both sides
            sync()
            marks.append(time.perf_counter())
            batch = {k: v.to(ARGS.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss, state = hand_step(model, batch, state)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        hand_times += [b - a for a, b in zip(marks[2:], marks[3:])]
    z, h = statistics.median(zoo_times), statistics.median(hand_times)
    print(f"  {task:<28} {'zoo (Lightning) step':<26} {z * 1e3:9.2f} ms   {'hand-written step':<24} {h * 1e3:9.2f} ms"
          f"   ratio {z / h:6.3f}")
    report(f"overhead_{task}", z / h, "(target <= 1.05)")


def _hand_captioning(model, batch, state):
    caps = batch["captions"]
    logits = model.decoder(model.encoder(batch["images"]), caps[:, :-1])
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), caps[:, 1:].flatten(), ignore_index=0), None


def _hand_charlm(model, batch, state):
    tokens = batch["tokens"]
    out, state, _ = model.recurrence(model.encoder(tokens[:, :-1]), state=state)
    state = [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]
    logits = model.head(out)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()), state


def bench_overhead() -> None:
    print("1. framework overhead: zoo training step / hand-written PyTorch loop")
    overhead("captioning", _hand_captioning, [])
    overhead("charlm", _hand_charlm, [])


# -- 2. fused kernels, and the step loop ----------------------------------------------------------
def _recurrence(name: str, H: int, **options):
    """The Recurrence ``cell=<name>`` builds, H wide, over H inputs (options: extra_size, fused, compile)."""
    from hydra.utils import instantiate

    from zoo.api import compose_config
    from zoo.recurrence import build

    cfg, _ = compose_config([f"cell={name}", f"cell.hidden_size={H}"])
    return build(instantiate(cfg.cell), input_size=H, **options).to(ARGS.device)


def bench_fused(B: int = 64, T: int = 100, H: int = 256) -> None:
    from zoo.recurrence import Constant

    print(f"2. fused kernels (B={B}, T={T}, I=H={H}, forward + backward)")
    x = torch.randn(B, T, H, device=ARGS.device)
    for name, kernel in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        rec = _recurrence(name, H)
        bare = kernel(H, H, batch_first=True).to(ARGS.device)
        zoo_step = lambda: rec(x).outputs.sum().backward()
        bare_step = lambda: bare(x)[0].sum().backward()
        report(f"fused_{name}", compare(f"cell={name}", zoo_step, bare_step, label_a="zoo Recurrence (fused)",
                                        label_b=f"bare nn.{kernel.__name__}"), "(target <= 1.05)")
    v = Constant(torch.randn(B, H, device=ARGS.device))  # W_ih v: the lecture's image at every step
    loop_rec, wide_rec = _recurrence("lstm", H, extra_size=H, fused=False), _recurrence("lstm", H, extra_size=H)
    bare = torch.nn.LSTM(H, H, batch_first=True).to(ARGS.device)
    loop = lambda: loop_rec(x, extra=v).outputs.sum().backward()
    fused = lambda: bare(x)[0].sum().backward()
    report("steploop_vs_fused", compare("lstm, the step loop", loop, fused, label_a="zoo step loop (+W_ih v)",
                                        label_b="fused nn.LSTM"), "(target <= 1.5)")
    wide = lambda: wide_rec(x, extra=v).outputs.sum().backward()
    report("every_step_vs_fused", compare("lstm, image every step", wide, fused, label_a="zoo W_ih v ([x; v] fused)",
                                          label_b="fused nn.LSTM"), "(what captioning every_step trains with)")
    mingru = _recurrence("mingru", H)
    report("mingru_vs_fused_lstm", compare("minGRU (a step-only cell)", lambda: mingru(x).outputs.sum().backward(),
                                           fused, label_a="zoo step loop, autograd", label_b="fused nn.LSTM"),
           "(a cell with only its step: no kernel, no hand-written backward)")
    if ARGS.compile:
        compiled = _recurrence("lstm", H, extra_size=H, fused=False, compile=True)
        compiled.load_state_dict(loop_rec.state_dict())
        t = time.perf_counter()
        compiled(x, extra=v).outputs.sum().backward()
        print(f"  (torch.compile of the step loop: first call {time.perf_counter() - t:.1f} s)")
        report("compiled_vs_eager_steploop", compare("lstm step loop", lambda: compiled(x, extra=v).outputs.sum().backward(),
                                                     loop, label_a="compiled (cell.compile)", label_b="eager"),
               "(< 1: compiled is faster)")


# -- 3. close to the hardware ---------------------------------------------------------------------
def bench_flops(B: int = 64, T: int = 100) -> None:
    print("3. LSTM training GFLOP/s against this machine's matmul GFLOP/s")
    n = 2048
    a, b = torch.randn(n, n, device=ARGS.device), torch.randn(n, n, device=ARGS.device)
    sides = {"torch.mm": lambda: a @ b}
    if ARGS.device == "cpu" and torch.backends.mkldnn.is_available():
        # torch.mm calls MKL's sgemm; the fused CPU RNN kernels call oneDNN, which on some CPUs
        # (AMD) is much faster: the machine's matmul limit is the faster of the two
        am, bm = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
        sides["oneDNN"] = lambda: torch._C._nn.mkldnn_linear(am, bm)
    peak = 0.0
    for name, mm in sides.items():
        mm()
        t = min(timed(mm) for _ in range(7))
        gflops = 2 * n ** 3 / t / 1e9
        print(f"  matmul {n}x{n} ({name}): {gflops:.1f} GFLOP/s")
        RESULTS[f"matmul_gflops_{name.replace('.', '_')}"] = round(gflops, 1)
        peak = max(peak, gflops)
    report("matmul_gflops", peak, "(the faster)")
    from zoo.cells import LSTMCell
    from zoo.recurrence import Recurrence

    for H in (256, 512):
        rec = Recurrence(LSTMCell, input_size=H, hidden_size=H).to(ARGS.device)
        x = torch.randn(B, T, H, device=ARGS.device, requires_grad=True)  # dX counts in the 6x
        step = lambda: rec(x).outputs.sum().backward()
        for _ in range(2):
            step()
        t = statistics.median(timed(step) for _ in range(ARGS.repeats))
        gflops = 6 * B * T * (H + H) * 4 * H / t / 1e9
        print(f"  LSTM H={H}: {gflops:.1f} GFLOP/s ({t * 1e3:.1f} ms a step)")
        report(f"lstm_gflops_fraction_h{H}", gflops / peak)
    RESULTS["lstm_gflops_fraction"] = max(RESULTS["lstm_gflops_fraction_h256"], RESULTS["lstm_gflops_fraction_h512"])
    print(f"  -> lstm_gflops_fraction = {RESULTS['lstm_gflops_fraction']:.3g} (target >= 0.7 at H >= 256)")


# -- 4. decoding ------------------------------------------------------------------------------------
def bench_beam() -> None:
    from zoo.api import build

    print("4. decoding: batched beam search over 64 images / one image at a time; beam 5 / greedy")
    torch.manual_seed(0)  # an untrained model: where it ends its captions depends on the weights
    model = build(task="captioning").to(ARGS.device).eval()
    images = torch.rand(64, 3, 32, 32, device=ARGS.device)
    with torch.no_grad():
        v = model.encode(images)
        dec = model.decoder
        batched = lambda: dec.generate(v, strategy="beam", beam_size=3, max_len=16)
        one_by_one = lambda: [dec.generate(v[i:i + 1], strategy="beam", beam_size=3, max_len=16) for i in range(64)]
        r = compare("beam 3, 64 images", one_by_one, batched, label_a="one image at a time", label_b="all 64 batched",
                    warmup=1, repeats=max(3, ARGS.repeats // 2))
        report("beam_batched_speedup", r, "(images/s batched / one at a time; target >= 10)")
        greedy = lambda: dec.generate(v, strategy="greedy", max_len=16)
        beam5 = lambda: dec.generate(v, strategy="beam", beam_size=5, max_len=16)
        report("beam5_vs_greedy_as_decoded", compare("64 images, as decoded", beam5, greedy, label_a="beam 5",
                                                     label_b="greedy"), "(beam stops once every best beam ended)")
        dec.W_hy.bias[dec.end_id] = -1e4  # no caption ends: both run all max_len steps, the worst case
        report("beam5_vs_greedy", compare("64 images, full length", beam5, greedy, label_a="beam 5",
                                          label_b="greedy"), "(every step of max_len; target <= 3)")


# -- 5. data ---------------------------------------------------------------------------------------
def bench_data() -> None:
    import tempfile

    from hydra.utils import instantiate

    from zoo.api import compose_config
    from zoo.run.train import build_task

    print("5. data: a frozen resnet18's cached features / computing them on the fly (one epoch)")
    cache = tempfile.mkdtemp()
    common = ["encoder=resnet18", "encoder.pretrained=false", "encoder.freeze=true", "encoder.input_size=112",
              "data.train_images=200", "data.val_images=10", "data.test_images=10", f"paths.cache_dir={cache}",
              "trainer.max_epochs=1", "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false",
              "trainer.enable_model_summary=false"]

    def epoch(cached: bool) -> Callable[[], None]:
        cfg, _ = compose_config(["task=captioning", *common, *([] if cached else ["task.feature_cache=null"])])

        def run():
            data = instantiate(cfg.data)
            data.setup("fit")
            torch.manual_seed(0)
            model = build_task(cfg, data.spec)
            trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False,
                                  accelerator="gpu" if ARGS.device == "cuda" else "cpu")
            trainer.fit(model, datamodule=data)
        return run

    epoch(True)()  # fills the cache: later epochs and runs read it
    report("feature_cache_speedup", compare("captioning epoch, resnet18", epoch(False), epoch(True),
                                            label_a="on the fly", label_b="cached features", warmup=0,
                                            repeats=3), "(target >= 4)")
    print("   time in the train loader (sampler, dataset, collate) as a share of step time, each task's default run")
    worst = 0.0
    for task in ("captioning", "charlm", "sentiment", "tagging", "translation", "video", "seqimage"):
        frac = _data_fraction(task)
        worst = max(worst, frac)
        print(f"  {task:<12} data loading {frac * 100:5.2f}% of step time")
        RESULTS[f"dataload_fraction_{task}"] = round(frac, 4)
    report("dataload_fraction_max", worst, "(target <= 0.05)")


def _data_fraction(task: str, steps: int = 30) -> float:
    """Median time in the train loader's next() (sampler, dataset, collate) / median step
    interval (one batch start to the next) in the task's default Lightning run."""
    from hydra.utils import instantiate

    cfg, model, data = _task_and_data(task, [])
    model.run_config = {}
    loads = []
    make_loader = data.train_dataloader

    def timed_loader():
        loader = make_loader()
        cls = type(loader)

        class Timed(cls):  # times the loader itself, not Lightning's loop around it
            def __iter__(self):
                it = cls.__iter__(self)
                while True:
                    t = time.perf_counter()
                    try:
                        batch = next(it)
                    except StopIteration:
                        return
                    loads.append(time.perf_counter() - t)
                    yield batch

        loader.__class__ = Timed
        return loader

    data.train_dataloader = timed_loader

    clock = _StepClock()
    trainer = instantiate(cfg.trainer, max_steps=steps, limit_val_batches=0, logger=False, callbacks=[clock.callback()],
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          max_epochs=1, accelerator="gpu" if ARGS.device == "cuda" else "cpu")
    trainer.fit(model, datamodule=data)
    step = statistics.median(b - a for a, b in zip(clock.marks[2:], clock.marks[3:]))
    return statistics.median(loads[2:]) / step


# -- 6. start-up and memory ------------------------------------------------------------------------
def _run(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return time.perf_counter() - t, r.stdout + r.stderr


# Peak RSS of the zoo process itself: VmHWM (reset by exec). ru_maxrss is not: on Linux it keeps
# the high-water mark of the forked parent, so a big benchmark process would inflate every child.
PEAK = ("import re, resource, runpy, sys\n"
        "sys.argv = ['zoo'] + sys.argv[1:]\n"
        "def peak():\n"
        "    try:\n        return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "    except (OSError, AttributeError):\n        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    runpy.run_module('zoo', run_name='__main__')\n"
        "finally:\n    print('peak_rss_kb', peak(), file=sys.stderr)\n")


def bench_startup() -> None:
    print("6. start-up and memory")
    helps = [_run([sys.executable, "-m", "zoo", "--help"])[0] for _ in range(3)]
    report("help_seconds", statistics.median(helps), "(python -m zoo --help; target < 3)")
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "zoo-speed"
    for task in ("captioning", "charlm", "sentiment", "tagging", "translation", "video", "seqimage"):
        _, out = _run([sys.executable, "-c", PEAK, f"task={task}", "trainer.max_steps=30", "trainer.limit_val_batches=0",
                       "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp}/{task}"],
                      env={"ZOO_CACHE_DIR": str(tmp / "cache")})
        first = float(re.search(r"first training step after ([\d.]+) s", out).group(1))
        peak = int(re.search(r"peak_rss_kb (\d+)", out).group(1)) / 1024
        RESULTS[f"first_step_seconds_{task}"] = round(first, 2)
        RESULTS[f"peak_mb_{task}"] = round(peak, 1)
        print(f"  {task:<12} first training step after {first:5.1f} s   peak memory {peak:7.1f} MB")
    print("   truncated BPTT: peak memory as the text grows (charlm, 40 steps)")
    base = None
    for k in (1, 4, 16):
        _, out = _run([sys.executable, "-c", PEAK, "task=charlm", f"data.stories={3000 * k}", "trainer.max_steps=40",
                       "trainer.limit_val_batches=0", "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
                       f"hydra.run.dir={tmp}/tbptt{k}"])
        peak = int(re.search(r"peak_rss_kb (\d+)", out).group(1)) / 1024
        base = base or peak
        print(f"  text x{k:<3} ({0.58 * k:5.1f} M characters): peak {peak:7.1f} MB  ({peak / base:.2f} x)")
        RESULTS[f"tbptt_peak_mb_x{k}"] = round(peak, 1)
    RESULTS["tbptt_memory_growth_x16"] = round(RESULTS["tbptt_peak_mb_x16"] / RESULTS["tbptt_peak_mb_x1"], 3)


# -- 7. glimpses: a cost that does not grow with the image --------------------------------------
def _image_model(task: str, side: int, overrides: list[str]):
    from zoo.api import compose_config
    from zoo.data.spec import DataSpec
    from zoo.run.train import build_task

    cfg, _ = compose_config([f"task={task}", *overrides])
    spec = DataSpec(labels=[str(d) for d in range(10)], image_shape=(1, side, side))
    return build_task(cfg, spec).to(ARGS.device).eval()


def bench_glimpse(B: int = 64) -> None:
    """FLOPs and time per image of the glimpse models and the CNN baseline at 60x60 and 100x100
    (forward, the default configs): a retina reads a fixed number of pixels, a CNN all of them."""
    from torch.utils.flop_counter import FlopCounterMode

    print(f"7. glimpses: cost per image, B={B}, forward (MFLOPs counted by torch; milliseconds)")
    models = {"glimpse_retina": ("glimpse", []), "glimpse_filterbank": ("glimpse", ["encoder=filterbank"]),
              "imageclass_cnn": ("imageclass", [])}
    flops, ms = {}, {}
    for side in (60, 100):
        x = torch.rand(B, 1, side, side, device=ARGS.device)
        for name, (task, overrides) in models.items():
            model = _image_model(task, side, overrides)
            with torch.no_grad():
                counter = FlopCounterMode(display=False)
                with counter:
                    model(x)
                flops[name, side] = counter.get_total_flops() / B / 1e6
                model(x)  # warm-up
                ms[name, side] = statistics.median(timed(lambda: model(x)) for _ in range(ARGS.repeats)) / B * 1000
            print(f"  {name:20s} {side:3d}x{side:<3d}: {flops[name, side]:8.2f} MFLOPs/image {ms[name, side]:7.3f} ms/image")
    for name in models:
        RESULTS[f"{name}_mflops_60"], RESULTS[f"{name}_mflops_100"] = round(flops[name, 60], 2), round(flops[name, 100], 2)
        report(f"{name}_flops_100_over_60", flops[name, 100] / flops[name, 60],
               "(FLOPs at 100x100 / at 60x60; 1: the cost does not grow with the image)")
        report(f"{name}_time_100_over_60", ms[name, 100] / ms[name, 60], "(time, the same ratio)")


GROUPS = {"overhead": bench_overhead, "fused": bench_fused, "flops": bench_flops, "beam": bench_beam,
          "data": bench_data, "startup": bench_startup, "glimpse": bench_glimpse}


def main(argv: list[str] | None = None) -> None:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=sorted(GROUPS), action="append", help="run only these groups")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (pinned)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile comparison")
    p.add_argument("--dry-run", action="store_true", help="say which groups would run, and run none")
    ARGS = p.parse_args(argv)
    if ARGS.dry_run:
        print("would run: " + " ".join(ARGS.only or list(GROUPS)))
        return
    torch.set_num_threads(ARGS.threads)
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
    import logging
    import warnings

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    name = torch.cuda.get_device_name() if ARGS.device == "cuda" else f"{os.cpu_count()}-core CPU"
    print(f"zoo speed benchmark: {name}, torch {torch.__version__}, {ARGS.threads} threads, {ARGS.repeats} repeats")
    for group in ARGS.only or list(GROUPS):
        GROUPS[group]()
    print(json.dumps(RESULTS))


if __name__ == "__main__":
    main()
