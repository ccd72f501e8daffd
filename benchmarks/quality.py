"""Quality on real data: train a task's model on a real data set within a CPU time budget and
print the test metrics (last line: one JSON object).

    python -m benchmarks.quality charlm --data-root ../shared/data
    python -m benchmarks.quality sentiment --data-root ../shared/data
    python -m benchmarks.quality tagging --data-root ../shared/data
    python -m benchmarks.quality translation --data-root ../shared/data
    python -m benchmarks.quality tagging --data-root ../shared/data --minutes 5 cell=gru   # extra overrides

Each task runs ``python -m zoo task=TASK`` with the real data in place of the built-in set and
the sizes below (the task's own model family: only widths, depths, regularisation and the
budget change, each with its reason). ``trainer.max_time`` stops training within the budget;
the best checkpoint on the validation split is tested. The run folder is kept (printed).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCHMARKS: dict[str, dict] = {
    "charlm": {
        "data": lambda root: ["data=text_file", f"data.path={root}/tinyshakespeare/input.txt",
                              "data.val_fraction=0.1", "data.test_fraction=0.0"],  # test = the last 10%
        "model": [
            "cell.hidden_size=512", "cell.num_layers=2",  # char-rnn's classic size for this corpus
            "cell.dropout=0.2", "head.dropout=0.2", "encoder.dim=64",
            "data.bptt=100", "data.batch_size=64", "optimizer.lr=0.002",
            "trainer.max_epochs=100", "trainer.gradient_clip_val=5.0",
        ],
        "minutes": 22,
        "report": ["test/loss", "test/bpc", "val/loss"],
    },
    "sentiment": {
        "data": lambda root: ["data=sst2", f"data.root={root}/sst2"],
        "model": [
            "encoder.dim=300", "encoder.dropout=0.5",  # no pretrained vectors: regularise hard
            "cell.hidden_size=256", "head.dropout=0.5", "head.pool=max",
            "optimizer.lr=0.001", "optimizer.weight_decay=0.0001", "trainer.max_epochs=12",
        ],
        "minutes": 10,
        "report": ["test/acc", "test/f1", "val/acc"],
    },
    "tagging": {
        "data": lambda root: ["data=conllu", f"data.root={root}/ud-english-ewt", "data.column=upos",
                              "data.min_count=2"],  # training words seen once become <UNK>: it learns unseen words
        "model": [
            "encoder.dim=128", "encoder.dropout=0.3", "encoder.word_dropout=0.05",
            "cell.hidden_size=256", "cell.num_layers=2", "cell.dropout=0.3", "head.dropout=0.3",
            "optimizer.lr=0.003", "trainer.max_epochs=40",
        ],
        "minutes": 12,
        "report": ["test/acc", "test/f1", "val/acc"],
    },
    "translation": {
        "data": lambda root: ["data=parallel_files", f"data.root={root}/multi30k", "data.lowercase=true"],
        "model": [
            "cell=gru", "head.attention=additive", "task.bidirectional_encoder=true",
            "encoder.dim=256", "encoder.dropout=0.3", "cell.hidden_size=256",
            "head.embed_dim=256", "head.attention_dim=256", "head.dropout=0.3",
            "optimizer.lr=0.001", "trainer.max_epochs=30", "data.batch_size=64",
            "task.decode.beam_size=5", "task.decode.length_penalty=1.0",
        ],
        "minutes": 25,
        "report": ["test/bleu", "test/chrf", "val/bleu"],
    },
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(BENCHMARKS))
    p.add_argument("--data-root", default="../shared/data", help="folder with the real data sets")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: per task)")
    p.add_argument("--out", default="outputs/benchmarks", help="where the run folder goes")
    p.add_argument("overrides", nargs="*", help="extra python -m zoo overrides")
    args = p.parse_intermixed_args(argv)

    bench = BENCHMARKS[args.task]
    root = Path(args.data_root).expanduser().resolve()
    minutes = args.minutes or bench["minutes"]
    h, m = divmod(int(minutes * 60), 3600)
    run_dir = Path(args.out).resolve() / f"{args.task}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = [f"task={args.task}", *bench["data"](root), *bench["model"],
                 f"trainer.max_time=00:{h:02d}:{m // 60:02d}:{m % 60:02d}", "trainer.enable_progress_bar=false",
                 *args.overrides]
    print("python -m zoo " + " ".join(overrides), flush=True)

    import logging

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")
    from hydra import compose, initialize_config_dir

    from zoo.compose import check, config_dir
    from zoo.train import train

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    from omegaconf import open_dict

    with open_dict(cfg):
        del cfg["hydra"]
    check(cfg, choices)
    start = time.monotonic()
    train(cfg, run_dir=run_dir, name=f"quality-{args.task}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = {"task": args.task, "minutes": round((time.monotonic() - start) / 60, 1), "run": str(run_dir),
              **{k: metrics[k] for k in bench["report"] if k in metrics}, **{k: v for k, v in metrics.items()
                                                                               if k.startswith("test/")}}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
