"""What every task shares: wiring an encoder to the data, optimiser and scheduler from config,
split metrics, a finite-loss guard, and checkpoints that carry the data spec and the config."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from zoo.data.spec import DataSpec
from zoo.data.vocab import Vocabulary
from zoo.errors import TrainingDiverged, ZooError

EVAL_SPLITS = ("val", "test")


def encoder_class(factory: Callable[..., nn.Module]) -> type:
    return factory.func if isinstance(factory, functools.partial) else factory


def build_encoder(factory: Callable[..., nn.Module], spec: DataSpec, vocab: Vocabulary | None = None) -> nn.Module:
    """Give an encoder the sizes it needs from the data: a vocabulary for token encoders, the
    image shape for encoders that read an image as a sequence or by glimpses, the number of
    channels for image encoders that take it (a CNN on grey digits), nothing otherwise."""
    import inspect

    cls = encoder_class(factory)
    if cls.consumes == "tokens":
        vocab = vocab or spec.vocab
        return factory(vocab_size=len(vocab), pad_id=vocab.pad_id)
    if cls.produces in ("sequence", "glimpse"):
        return factory(image_shape=spec.image_shape)
    if spec.image_shape and "in_channels" in inspect.signature(cls).parameters:
        return factory(in_channels=spec.image_shape[0])
    return factory()


class EncoderExport(NamedTuple):
    """What a generating task gives ``zoo.export``: the module from the raw input to what its
    decoder reads, example inputs to record it with, each input's dynamic dimensions by name
    (``{0: "batch"}``: the same name, the same size), and what a runner must know (JSON)."""

    module: nn.Module
    example: tuple[Tensor, ...]
    dynamic: tuple[dict[int, str], ...]
    meta: dict[str, Any]


class Task(pl.LightningModule):
    #: what the data provides -> the (consumes, produces) an encoder must have for it
    inputs: ClassVar[dict[str, tuple[str, str]]]
    #: the head modes this task can drive
    modes: ClassVar[tuple[str, ...]]
    #: the config groups the task is built from (a task without recurrence has no cell)
    parts: ClassVar[tuple[str, ...]] = ("encoder", "cell", "head")

    def __init__(self, *, spec: DataSpec, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.run_config: dict | None = None  # the resolved config, stored in checkpoints
        # split -> {name: torchmetrics.Metric}, logged as split/name (see split_metrics)
        self.metrics = nn.ModuleDict()

    def configure_optimizers(self):
        later = getattr(getattr(self, "encoder", None), "finetune_parameters", lambda: [])()
        params: list = [p for p in self.parameters() if p.requires_grad]
        if later:  # the encoder's blocks to fine-tune: in the optimizer from the start (they have no
            # gradient while frozen, so it leaves them alone), with their own learning rate; the
            # optimizer's groups are then the same before and after, and resume= just works
            lr = self.encoder.lr if self.encoder.lr is not None else self._optimizer.keywords.get("lr", 1e-3) * 0.1
            params = [{"params": params}, {"params": later, "lr": lr}]
        optimizer = self._optimizer(params=params)
        if self._scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self._scheduler(optimizer=optimizer),
                                                         "monitor": self._monitor()}}

    def _monitor(self) -> str:
        return ((self.run_config or {}).get("monitor") or {}).get("metric", "val/loss")

    def check_finite(self, loss: Tensor) -> Tensor:
        """Stop with a clear error on a NaN/inf loss; checkpoints already written stay intact.
        Under DDP the decision is reduced over the ranks, so every rank stops at the same step
        (one rank raising alone would leave the others waiting in the next all-reduce)."""
        here = bool(torch.isfinite(loss))
        finite = here
        if self._trainer is not None and self.trainer.world_size > 1:
            finite = self.trainer.strategy.reduce_boolean_decision(here, all=True)
        if not finite:
            what = f"became {loss.item()}" if not here else "became NaN or infinite on another rank"
            raise TrainingDiverged(
                f"the training loss {what} at step {self.global_step} (epoch {self.current_epoch}). "
                "Checkpoints saved so far are kept. Lower the learning rate (optimizer.lr), clip gradients "
                "(trainer.gradient_clip_val), or check the data for extreme values")
        return loss

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj`` (any picklable value), in rank order: what each rank generated
        from its shard of a split, for results that cover the whole split. [obj] in one process."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return [obj]
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out

    # -- split metrics ----------------------------------------------------------------
    @staticmethod
    def _metrics_key(split: str) -> str:
        return "fit" if split == "train" else split  # "train" is taken (nn.Module.train)

    def add_split_metrics(self, split: str, metrics: dict[str, nn.Module]) -> None:
        if split == "train":  # an epoch's running totals are saved with a mid-epoch checkpoint (resume)
            for metric in metrics.values():
                metric.persistent(True)
        self.metrics[self._metrics_key(split)] = nn.ModuleDict(metrics)

    def split_metrics(self, split: str) -> nn.ModuleDict:
        return self.metrics[self._metrics_key(split)]

    def derived_metrics(self, split: str, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """Metrics computed from others (e.g. loss from perplexity); none by default."""
        return {}

    def log_split_metrics(self, split: str) -> None:
        """Compute, log as ``split/name`` and reset every metric of a split."""
        group = self.split_metrics(split)
        values = {f"{split}/{name}": metric.compute() for name, metric in group.items()}
        values.update(self.derived_metrics(split, values))
        if split == "train":  # per epoch; the step-wise train/loss stays as it is
            values = {f"{k}_epoch" if k == "train/loss" else k: v for k, v in values.items()}
        self.log_dict(values, prog_bar=split == "val")
        for metric in group.values():
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self.log_split_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_split_metrics("test")

    # -- run folder -------------------------------------------------------------------------
    def write_artifacts(self, run_dir: Path, datamodule) -> list[Path]:
        """Task-specific results next to metrics.json (samples, generated text). None by default."""
        return []

    # -- use ----------------------------------------------------------------------------------
    def predict_inputs(self, inputs: list[str], **options: Any) -> list[dict]:
        """One result per input (a file, a sentence, a prime): {"input": ..., <results>} or
        {"input": ..., "error": "..."}; an unreadable input does not stop the others."""
        out = []
        for raw in inputs:
            try:
                out.append({"input": raw, **self.predict_one(raw, **options)})
            except ZooError as e:
                out.append({"input": raw, "error": str(e)})
        return out

    def predict_one(self, raw: str, **options: Any) -> dict:
        raise NotImplementedError(f"{type(self).__name__} has no predict")

    def predict_options(self, **cli: Any) -> dict:
        """The options of ``predict_one`` that ``python -m zoo.predict``'s flags set (``beam``,
        ``greedy``, ``sample``, ``temperature``, ``length``: None where not given); none by default."""
        return {}

    def export_encoder(self, fmt: str) -> EncoderExport:
        """For ``python -m zoo.export --format fmt``: a module from the raw input to what the
        decoder reads, how to record it, and what a runner must know about it."""
        raise ZooError(f"export covers the generating tasks (captioning, translation), not {type(self).__name__}")

    def text_tokenizer(self):
        """How the training data split raw text into tokens (for predict)."""
        from zoo.data.sequences import make_tokenizer

        data = (self.run_config or {}).get("data", {})
        return make_tokenizer(data.get("tokenizer") or "whitespace", bool(data.get("lowercase", False)))

    def media(self, datamodule) -> dict:
        """Rich results for dashboards (see zoo.run.loggers.log_media); none by default."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["zoo"] = {"spec": self.spec.to_dict(), "config": self.run_config, "rng": rng_states()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # a resumed run draws the random numbers the interrupted one would have drawn next
        states = (checkpoint.get("zoo") or {}).get("rng")
        if states and self._trainer is not None and self.trainer.state.fn == "fit":
            set_rng_states(states)


def rng_states() -> dict:
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})}


def set_rng_states(states: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
