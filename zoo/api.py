"""The Python API: ``zoo.build(...)`` an untrained model from config names, ``zoo.load(path)``
a trained one from a checkpoint or a run folder, with nothing else at hand.

A checkpoint carries the resolved config and the data spec (vocabularies, label sets, image
shape), so loading needs no config files and no data. It is read with
``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code; a
truncated, tampered or foreign file gives a clear error. Its config is checked before anything
is built from it: every ``_target_`` must be one the zoo builds (:mod:`zoo.run.trust`).
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from zoo.errors import ZooError


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its best checkpoint, else its last)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt"):
            if (p / name).is_file():
                return p / name
        raise ZooError(f"{p}: a folder without checkpoints/best.ckpt or checkpoints/last.ckpt (not a zoo run folder?)")
    if not p.is_file():
        raise ZooError(f"{p}: no such checkpoint file or run folder")
    return p


def output_folder(path: str | Path) -> Path:
    """Where results about a model go: its run folder when given one (or a checkpoint inside
    one's checkpoints/), else the folder that holds the checkpoint file."""
    ckpt = checkpoint_path(path)
    if ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / "config.yaml").is_file():
        return ckpt.parent.parent
    return ckpt.parent


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict:
    import torch

    p = checkpoint_path(path)
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ZooError(f"{p}: not a readable checkpoint: it is truncated, damaged or not a zoo checkpoint "
                       f"({type(e).__name__}: {first[:200]})") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("zoo"), dict) or "state_dict" not in ckpt:
        raise ZooError(f"{p}: a checkpoint, but not of a zoo run (no config and data spec in it)")
    return ckpt


def load(path: str | Path, map_location: str = "cpu"):
    """A trained task (a LightningModule in eval mode) from a checkpoint file or a run folder."""
    from zoo.data.spec import DataSpec
    from zoo.run.train import build_task
    from zoo.run.trust import check_targets

    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt["zoo"].get("config"), dict):
        raise ZooError(f"{checkpoint_path(path)}: a zoo checkpoint without its config (saved by a run that did not finish setting up?)")
    check_targets(ckpt["zoo"]["config"], str(checkpoint_path(path)))  # before anything from it is built
    cfg = OmegaConf.create(ckpt["zoo"]["config"])
    encoder = cfg.get("encoder")
    if encoder is not None and "pretrained" in encoder:  # the checkpoint holds the weights: no download, no file
        encoder.pretrained = False
        if "weights" in encoder:
            encoder.weights = None
    spec = DataSpec.from_dict(ckpt["zoo"]["spec"])
    task = build_task(cfg, spec)
    try:
        task.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ZooError(f"{checkpoint_path(path)}: the weights do not fit the model its config describes ({e})") from e
    task.run_config = ckpt["zoo"]["config"]
    return task.eval()


def compose_config(overrides: list[str]) -> tuple[DictConfig, dict]:
    """The config ``python -m zoo <overrides>`` would run, and its group choices."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from zoo.run.configs import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def build(task: str = "captioning", *, overrides: list[str] | tuple[str, ...] = (), **groups: str):
    """An untrained model, composed like ``python -m zoo``: ``build(task="captioning", cell="gru",
    overrides=["cell.hidden_size=64"])``. Sizes come from the config's data set (its vocabulary)."""
    from hydra.utils import instantiate

    from zoo.run.checks import check
    from zoo.run.train import build_task

    cfg, choices = compose_config([f"task={task}", *(f"{k}={v}" for k, v in groups.items()), *overrides])
    check(cfg, choices)
    data = instantiate(cfg.data)
    data.setup("fit")
    model = build_task(cfg, data.spec)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    return model
