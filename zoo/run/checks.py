"""Checks on a composed config that Hydra cannot make: combinations that cannot work.

They run right after composition, before any data is read, and fail with a message that
says why and what to choose instead. One value is settled here too, the one a config leaves to
its parts: ``data.image_size=null`` becomes the size the encoder asks for.
"""
from __future__ import annotations

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError
from zoo.run.configs import config_dir, group_options


def _target(node: DictConfig, what: str):
    target = OmegaConf.select(node, "_target_")
    if target is None:
        raise ConfigError(f"{what} has no _target_: choose one of {', '.join(group_options(what))}")
    try:
        return get_object(target)
    except Exception as e:
        raise ConfigError(f"{what}._target_={target} cannot be imported: {e}") from e


def _options_where(group: str, predicate) -> list[str]:
    ok = []
    for name in group_options(group):
        node = OmegaConf.load(config_dir() / group / f"{name}.yaml")
        try:
            if predicate(get_object(node["_target_"])):
                ok.append(name)
        except Exception:
            continue
    return ok


#: the heads that give a label per example: what data with a label per image or sequence can train
PER_EXAMPLE = ("one_to_one", "many_to_one")


def settle_image_size(cfg: DictConfig) -> None:
    """``data.image_size=null``: the side the encoder asks for (its class's ``requested_image_size``
    from its config: a pretrained one the resize of its weights' recipe, 256 for a 224 crop; the
    scratch CNN a small one), so that images are decoded once at the size the network reads."""
    data = cfg.get("data")
    if data is None or data.get("image_size", 0) is not None:
        return
    if not getattr(_target(data, "data"), "image_size_from_encoder", False):
        return  # null means something of the data's own (hf_image_classification: keep each image's size)
    encoder = cfg.get("encoder")
    ask = getattr(_target(encoder, "encoder"), "requested_image_size", None) if encoder is not None else None
    size = ask(**{k: v for k, v in OmegaConf.to_container(encoder, resolve=True).items()
                  if not k.startswith("_")}) if ask else None
    if size is None:
        raise ConfigError("data.image_size=null takes the size the encoder asks for, and this encoder asks for none "
                          "(encoder.input_size=null): set data.image_size=N")
    cfg.data.image_size = int(size)


def check(cfg: DictConfig, choices: dict[str, str]) -> None:
    """Raise ConfigError if data, encoder, head and cell cannot work with the task."""
    task = _target(cfg.task, "task")
    name = choices.get("task", "?")
    parts = getattr(task, "parts", ("encoder", "cell", "head"))
    for part in ("encoder", "cell", "head"):  # what the task builds, and only that
        if part in parts and part not in cfg:
            raise ConfigError(f"task={name} needs a {part}: add {part}=... (one of: {', '.join(group_options(part))})")
        if part not in parts and part in cfg:
            raise ConfigError(f"task={name} has no {part} (it builds {', '.join(parts) or 'its parts itself'}): "
                              f"leave out {part}=...")
    data = _target(cfg.data, "data")
    provides = getattr(data, "provides", None)
    if provides not in task.inputs:
        fits = _options_where("data", lambda t: getattr(t, "provides", None) in task.inputs)
        raise ConfigError(
            f"task={name} cannot read data={choices.get('data')} ({provides} input). "
            f"Choose data= one of: {', '.join(fits)}")
    if "encoder" in parts:
        needed = task.inputs[provides]
        encoder = _target(cfg.encoder, "encoder")
        kind = (getattr(encoder, "consumes", None), getattr(encoder, "produces", None))
        if kind != needed:
            fits = _options_where("encoder", lambda t: (getattr(t, "consumes", None), getattr(t, "produces", None)) == needed)
            raise ConfigError(
                f"task={name} on data={choices.get('data')} needs an encoder from {needed[0]} to a {needed[1]}, but "
                f"encoder={choices.get('encoder')} turns {kind[0]} into a {kind[1]}. Choose encoder= one of: {', '.join(fits)}")
    if "head" in parts:
        _check_head(cfg, choices, task, name, data)
    settle_image_size(cfg)


def _check_head(cfg: DictConfig, choices: dict[str, str], task, name: str, data) -> None:
    head = _target(cfg.head, "head")
    if getattr(head, "mode", None) not in task.modes:
        fits = _options_where("head", lambda t: getattr(t, "mode", None) in task.modes)
        raise ConfigError(
            f"task={name} needs a {' or '.join(task.modes)} head, but head={choices.get('head')} is "
            f"{getattr(head, 'mode', '?')}. Choose head= one of: {', '.join(fits)}")
    label_mode = getattr(data, "label_mode", None)
    fitting = PER_EXAMPLE if label_mode == "many_to_one" else (label_mode,)
    if label_mode and head.mode not in fitting:
        fits = _options_where("head", lambda t: getattr(t, "mode", None) in fitting and getattr(t, "mode", None) in task.modes)
        raise ConfigError(
            f"data={choices.get('data')} has a label per {'sequence' if label_mode == 'many_to_one' else 'step'}, "
            f"but head={choices.get('head')} is {head.mode}. Choose head= one of: {', '.join(fits)}")
    if head.mode in ("one_to_many", "seq2seq") and OmegaConf.select(cfg, "cell.bidirectional", default=False):
        raise ConfigError(
            f"head={choices.get('head')} generates left to right, one token at a time, so its cell cannot be "
            f"bidirectional. Set cell.bidirectional=false" + (
                " (task.bidirectional_encoder=true makes the source encoder bidirectional)" if head.mode == "seq2seq" else ""))
    for key, allowed in (("condition", "conditions"), ("pool", "pools"), ("attention", "attentions")):
        options = getattr(head, allowed, None)
        value = OmegaConf.select(cfg, f"head.{key}")
        if options and value not in options:
            raise ConfigError(f"head.{key}={value} is not one of: {', '.join(options)}")
