"""``python -m zoo.evaluate <checkpoint or run folder> [split=test] [data overrides ...]``.

Recomputes a trained model's metrics on a split of its own data or of another data set, and
writes them as JSON (``--out``, default ``<run folder>/eval-<split>.json``, or beside a checkpoint
file that is not in a run folder):

    python -m zoo.evaluate outputs/tagging/RUN split=val
    python -m zoo.evaluate outputs/tagging/RUN data=conllu data.root=../shared/data/ud-english-ewt
    python -m zoo.evaluate outputs/captioning/RUN data.test_images=1000 data.data_seed=7

The data is encoded with the model's own vocabularies and label sets (from the checkpoint);
data overrides are applied to the data config the model was trained with (``data=NAME``
starts from that data set's config).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def data_config(trained: dict, overrides: list[str]):
    """The data config: the model's, with ``data=NAME`` / ``data.key=value`` overrides applied."""
    from omegaconf import OmegaConf

    from zoo.run.configs import config_dir
    from zoo.errors import ConfigError

    data = OmegaConf.create(trained["data"])
    for o in overrides:
        key, _, value = o.partition("=")
        if key == "data":
            path = config_dir() / "data" / f"{value}.yaml"
            if not path.is_file():
                raise ConfigError(f"data={value}: no such data set (see python -m zoo.list data)")
            fresh = OmegaConf.load(path)
            fresh.seed = trained["seed"]
            data = fresh
        elif key.startswith("data."):  # values are read as YAML, as on Hydra's command line
            OmegaConf.update(data, key[5:], yaml.safe_load(value), merge=False)
        else:
            raise ConfigError(f"{o}: only split=... and data overrides (data=NAME, data.key=value) apply here")
    if data.get("image_size", 0) is None:  # null: the size the model was trained at (its encoder's choice then)
        data.image_size = trained["data"].get("image_size")
    missing = [k for k in data if OmegaConf.is_missing(data, k)]
    if missing:
        raise ConfigError(f"data.{missing[0]} must be set: add data.{missing[0]}=... to the command line")
    return data


def evaluate(model_path: str, split: str = "test", overrides: list[str] = (), device: str = "cpu") -> dict:
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from zoo.api import load
    from zoo.errors import ConfigError

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split={split}: choose train, val or test")
    model = load(model_path)
    cfg = model.run_config
    data = instantiate(data_config(cfg, list(overrides)))
    data.use_spec(model.spec)
    data.setup("test")
    loader = data.eval_dataloader(split)
    trainer = pl.Trainer(accelerator=device, devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    results = trainer.test(model, dataloaders=loader, verbose=False)[0]
    # the test hooks log test/<name>: name them by the split that was evaluated
    return {f"{split}/{k.split('/', 1)[1]}": float(v) for k, v in sorted(results.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint file or a run folder")
    p.add_argument("overrides", nargs="*", help="split=train|val|test, data=NAME, data.key=value")
    p.add_argument("--out", help="where to write the JSON (default: <run folder>/eval-<split>.json)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from zoo.api import checkpoint_path, output_folder
    from zoo.errors import ZooError

    split = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("split=")), "test")
    rest = [o for o in args.overrides if not o.startswith("split=")]
    try:
        metrics = evaluate(args.model, split, rest, args.device)
        ckpt = checkpoint_path(args.model)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else output_folder(args.model) / f"eval-{split}.json"
    out.write_text(json.dumps({"model": str(ckpt), "split": split, "overrides": rest, **metrics}, indent=1) + "\n")
    print(json.dumps(metrics))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
