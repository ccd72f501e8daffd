"""Export, measured: how long ``zoo.export`` takes per format, and one decoder step through each
format's runner beside the eager model, in one process.

    python -m benchmarks.export                          # task=captioning at its default sizes
    python -m benchmarks.export --steps 300 --batch 15 --threads 2 --repeats 5
    python -m benchmarks.export --task translation

The model is untrained (speed does not depend on the weights). Export: the wall time of
``zoo.export.export`` per format, the second of two (the first also imports the exporter),
and of loading the folder into :class:`zoo.export.ExportedDecoder`. Decoding: ``--steps`` decoder
steps of ``--batch`` rows from the first state, the argmax fed back, for the eager decoder and
each format's runner (onnx: onnxruntime on CPU; torch_export: ``torch.export.load().module()``;
torchscript: ``torch.jit.load``), taking turns, after a warm-up, with the thread count pinned;
it prints the median time per step of each side and its ratio to eager. The last line is one
JSON object of all figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

FORMATS = ("torch_export", "onnx", "torchscript")


def steps_of(start, step, context, steps: int) -> float:
    """Seconds for ``steps`` decoder steps from the first state, the argmax fed back."""
    state = start(context)
    tokens = torch.full((context[0].shape[0],), 1, dtype=torch.long)
    t = time.perf_counter()
    for _ in range(steps):
        logits, state = step(tokens, state)
        tokens = logits.argmax(-1)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="captioning", choices=["captioning", "translation"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=15, help="rows per step (a beam of 3 over 5 images: 15)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and onnxruntime threads (pinned)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dry-run", action="store_true", help="say what would be measured, and measure nothing")
    args = p.parse_args(argv)
    if args.dry_run:
        print(f"would export task={args.task} as {', '.join(FORMATS)} and time {args.steps} decoder steps of "
              f"batch {args.batch} in each beside eager, {args.repeats} repeats, {args.threads} threads")
        return
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    import zoo
    from zoo.export import ExportedDecoder, export

    print(f"zoo export benchmark: {os.cpu_count()}-core CPU, torch {torch.__version__}, {args.threads} threads, "
          f"task={args.task}, {args.steps} steps of batch {args.batch}, {args.repeats} repeats")
    model = zoo.build(task=args.task).eval()
    torch.manual_seed(0)
    if args.task == "captioning":
        inputs = (torch.rand(args.batch, *model.spec.image_shape),)
    else:
        inputs = (torch.randint(4, len(model.spec.src_vocab), (args.batch, 20)), torch.full((args.batch,), 20))
    results: dict[str, float] = {}
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in FORMATS:
            took = []
            for _ in range(2):  # the first also imports the exporter (what one python -m zoo.export pays)
                t = time.perf_counter()
                folder = export(model, Path(tmp) / fmt, fmt)
                took.append(time.perf_counter() - t)
            t = time.perf_counter()
            runners[fmt] = ExportedDecoder(folder)
            t_load = time.perf_counter() - t
            results.update({f"export_first_s/{fmt}": round(took[0], 2), f"export_s/{fmt}": round(took[1], 2),
                            f"load_s/{fmt}": round(t_load, 3)})
            print(f"  export {fmt:<13} {took[1]:7.2f} s (first in the process {took[0]:5.2f} s)   load {t_load:6.3f} s")
    with torch.no_grad():
        dec = model.decoder
        context = model.export_encoder("torch_export").module(*inputs)
        context = context if isinstance(context, tuple) else (context,)
        sides = {"eager": lambda: steps_of(lambda c: dec.start(c if len(c) > 1 else c[0]), dec.step, context,
                                           args.steps)}
        for fmt, runner in runners.items():
            sides[fmt] = lambda r=runner, c=runner.encode(*inputs): steps_of(r.start, r.step, c, args.steps)
        for side in sides.values():  # warm-up: caches, onnxruntime's first run
            side()
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, side in sides.items():
                times[name].append(side() / args.steps)
    eager = statistics.median(times["eager"])
    for name, ts in times.items():
        m = statistics.median(ts)
        spread = (max(ts) - min(ts)) / m * 100
        print(f"  step {name:<15} {m * 1e3:8.3f} ms ±{spread:4.1f}%   ratio to eager {m / eager:6.3f}")
        results[f"step_ms/{name}"] = round(m * 1e3, 4)
        results[f"step_ratio/{name}"] = round(m / eager, 4)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
