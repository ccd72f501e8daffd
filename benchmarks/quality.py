"""Quality on real data: train a recipe on a real data set within a CPU time budget and print
the test metrics (last line: one JSON object).

    python -m benchmarks.quality charlm --data-root ../shared/data         # recipe char_rnn, tiny-shakespeare
    python -m benchmarks.quality sentiment --data-root ../shared/data      # sentiment_bilstm, SST-2
    python -m benchmarks.quality tagging --data-root ../shared/data        # tagger_bilstm, UD English-EWT
    python -m benchmarks.quality translation --data-root ../shared/data    # seq2seq_attention, Multi30k
    python -m benchmarks.quality tagging --minutes 5 cell=gru              # extra overrides
    python -m benchmarks.quality neuraltalk        # a recipe on built-in data, trained as it is
    python -m benchmarks.quality glimpse           # recipe ram beside task=imageclass, same budget
    python -m benchmarks.quality draw              # recipe draw beside no attention and a one-step VAE
    python -m benchmarks.quality captioning-real   # ImageNet features vs a scratch CNN vs blind, emoji photos

Each runs ``python -m zoo recipe=<recipe>`` (recipes/ states the model and why) with the data
path and ``trainer.max_time`` (the budget) added; the best checkpoint on the validation split
is tested. The run folder is kept (printed). The result is checked against the recipe's own
``# Expected: <metric> >=|<= <value>`` line (``"met"`` in the JSON). A benchmark with
``compare`` trains each comparison after the recipe, in the same budget, and reports its test
metrics under its name (``baseline/test/acc``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

BENCHMARKS: dict[str, dict] = {
    "charlm": {"recipe": "char_rnn", "minutes": 22, "report": ["test/loss", "test/bpc", "val/loss"],
               # test_fraction=0: the test split is the held-out last 10% (the validation split)
               "data": lambda root: [f"data.path={root}/tinyshakespeare/input.txt", "data.val_fraction=0.1",
                                     "data.test_fraction=0.0"]},
    "sentiment": {"recipe": "sentiment_bilstm", "minutes": 10, "report": ["test/acc", "test/f1", "val/acc"],
                  "data": lambda root: [f"data.root={root}/sst2"]},
    "tagging": {"recipe": "tagger_bilstm", "minutes": 12, "report": ["test/acc", "test/f1", "val/acc"],
                "data": lambda root: [f"data.root={root}/ud-english-ewt"]},
    "translation": {"recipe": "seq2seq_attention", "minutes": 25, "report": ["test/bleu", "test/chrf", "val/bleu"],
                    "data": lambda root: [f"data.root={root}/multi30k"]},
    # the recipes on built-in data: trained as they are (their own epochs, no time budget)
    **{name: {"recipe": name, "minutes": None, "report": ["test/bleu4", "test/cider", "val/cider"],
              "data": lambda root: []} for name in ("neuraltalk", "show_and_tell", "show_attend_tell")},
    # photos (real emoji images, their names as captions): ImageNet features against a CNN trained
    # from scratch and against the blind model, each in the same CPU budget
    "captioning-real": {"recipe": "pretrained_captioner", "minutes": 8, "report": ["test/bleu4", "test/cider", "val/cider"],
                        "data": lambda root: ["data=karpathy", f"data.json_path={root}/emoji/dataset_emoji.json",
                                              f"data.image_dir={root}/emoji/images", "data.min_count=2",
                                              "trainer.max_epochs=100"],  # the budget ends each run, not epochs
                        # the same model with the CNN trained from scratch (the recipe freezes its encoder:
                        # a frozen scratch CNN would be random features), and blind
                        "compare": {"scratch": ["recipe=pretrained_captioner", "encoder=cnn", "encoder.freeze=false"],
                                    "blind": ["recipe=pretrained_captioner", "encoder=cnn", "encoder.freeze=false",
                                              "data.blind=true"]}},
    "row_lstm": {"recipe": "row_lstm", "minutes": None, "report": ["test/acc", "test/f1", "val/acc"],
                 "data": lambda root: []},
    # the papers' comparisons, each in the recipe's budget: RAM against a conv net of about the
    # same size (Mnih et al. 2014, Table 2), DRAW against itself without attention and a VAE
    "glimpse": {"recipe": "ram", "minutes": 12, "report": ["test/acc", "val/acc"], "data": lambda root: [],
                "compare": {"baseline": ["task=imageclass", "trainer.max_epochs=30"]}},
    "draw": {"recipe": "draw", "minutes": 9, "report": ["test/nll", "test/recon", "test/kl", "val/nll"],
             "data": lambda root: [],
             "compare": {"no_attention": ["recipe=draw", "task.attention=false"],
                         "vae": ["recipe=draw", "task.attention=false", "task.steps=1"]}},
}
EXPECTED = re.compile(r"^# Expected: (\S+) (>=|<=) ([0-9.]+)", re.MULTILINE)


def expected(recipe: str) -> tuple[str, str, float]:
    """What a recipe says it reaches: (metric, ">=" or "<=", value), from its ``# Expected:`` line."""
    from zoo.run.configs import config_dir

    text = (config_dir() / "recipe" / f"{recipe}.yaml").read_text()
    m = EXPECTED.search(text)
    if not m:
        raise ValueError(f"recipes/{recipe}.yaml has no '# Expected: <metric> >=|<= <value>' line")
    return m.group(1), m.group(2), float(m.group(3))


def meets(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(BENCHMARKS))
    p.add_argument("--data-root", default="../shared/data", help="folder with the real data sets")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: per task)")
    p.add_argument("--out", default="outputs/benchmarks", help="where the run folder goes")
    p.add_argument("--dry-run", action="store_true", help="compose and check the run's config, print it, train nothing")
    p.add_argument("overrides", nargs="*", help="extra python -m zoo overrides")
    args = p.parse_intermixed_args(argv)

    bench = BENCHMARKS[args.task]
    root = Path(args.data_root).expanduser().resolve()
    minutes = args.minutes or bench["minutes"]
    budget = []
    if minutes:
        h, m = divmod(int(minutes * 60), 3600)
        budget = [f"trainer.max_time=00:{h:02d}:{m // 60:02d}:{m % 60:02d}"]
    run_dir = Path(args.out).resolve() / f"{args.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = [f"recipe={bench['recipe']}", *bench["data"](root), *budget, "trainer.enable_progress_bar=false",
                 *args.overrides]
    metric, op, bound = expected(bench["recipe"])
    print("python -m zoo " + " ".join(overrides), flush=True)

    import logging

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from zoo.run.checks import check
    from zoo.run.configs import config_dir
    from zoo.run.train import train

    def composed(over: list[str]):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=over, return_hydra_config=True)
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        check(cfg, choices)
        return cfg

    common = [*bench["data"](root), *budget, "trainer.enable_progress_bar=false", *args.overrides]
    runs = {"": composed(overrides)}  # every config checked before anything trains
    for name, over in bench.get("compare", {}).items():
        print(f"{name}: python -m zoo " + " ".join([*over, *common]), flush=True)
        runs[name] = composed([*over, *common])
    if args.dry_run:
        return
    start = time.monotonic()
    result: dict = {"task": args.task}
    for name, cfg in runs.items():
        folder = run_dir if not name else run_dir.with_name(f"{run_dir.name}-{name}")
        train(cfg, run_dir=folder, name=f"quality-{args.task}{'-' + name if name else ''}")
        metrics = json.loads((folder / "metrics.json").read_text())
        if not name:
            main_metrics = metrics
            result.update({"run": str(folder), **{k: metrics[k] for k in bench["report"] if k in metrics},
                           **{k: v for k, v in metrics.items() if k.startswith("test/")}})
        else:
            result.update({f"{name}/run": str(folder),
                           **{f"{name}/{k}": v for k, v in metrics.items() if k.startswith("test/")}})
    result["minutes"] = round((time.monotonic() - start) / 60, 1)
    metrics = main_metrics
    # the recipe's own claim, checked: its "# Expected:" line
    result["expected"] = f"{metric} {op} {bound}"
    result["met"] = metric in metrics and meets(metrics[metric], op, bound)
    print(f"recipe {bench['recipe']}: expected {metric} {op} {bound}, got {metrics.get(metric)}: "
          f"{'met' if result['met'] else 'NOT MET'}", flush=True)
    print(json.dumps(result), flush=True)

if __name__ == "__main__":
    sys.exit(main())
