"""The character language model (synced many-to-many): predict the next character.

Trained with truncated backpropagation through time: each batch holds the next ``bptt``
characters of ``B`` parallel streams, and the recurrent state is carried from one batch to the
next and detached, so gradients flow ``bptt`` steps back while the state remembers further.
(Lightning 2 no longer does this: the task does it.) Validation and test carry their own state.
The training state is saved in checkpoints, so a run resumed mid-epoch reads on where it stopped.

Metrics: loss in nats per character, bits per character, perplexity. After training, the
model writes text (``sample.prime``, ``sample.temperature``) into the run folder.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from zoo.data.spec import DataSpec
from zoo.recurrence import build, map_state
from zoo.tasks.base import EVAL_SPLITS, Task, build_encoder


class CharLMTask(Task):
    inputs = {"tokens": ("tokens", "sequence")}
    modes = ("synced",)

    def __init__(self, *, encoder: Callable[..., nn.Module], cell: Callable[..., nn.Module],
                 head: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None,
                 sample: dict | None = None) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        self.encoder = build_encoder(encoder, spec)
        self.recurrence = build(cell, input_size=self.encoder.out_dim)
        if self.recurrence.num_directions != 1:
            raise ValueError("a language model reads left to right: set cell.bidirectional=false")
        self.head = head(input_size=self.recurrence.output_size, num_classes=spec.vocab_size)
        self.sample = {"prime": "The ", "length": 600, "temperature": 0.8, **(sample or {})}
        self._state: dict[str, tuple[int, list]] = {}  # split -> (window index, the state after it)
        for split in ("train",) + EVAL_SPLITS:
            self.add_split_metrics(split, {"loss": MeanMetric()})

    def _stream_step(self, split: str, batch: dict) -> Tensor:
        tokens = batch["tokens"]  # (B, bptt + 1)
        state = self._carried(split, int(batch["window"]), tokens.shape[0])
        out, state, _ = self.recurrence(self.encoder(tokens[:, :-1]), state=state)  # (B, T, H)
        self._state[split] = (int(batch["window"]), map_state(lambda t: t.detach(), state))  # not backpropagated into
        logits = self.head(out)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        self.split_metrics(split)["loss"].update(loss.detach(), weight=tokens[:, 1:].numel())
        return loss

    def _carried(self, split: str, window: int, batch_size: int):
        """The state the previous window left, if this window continues it (else None: zeros).
        Window 0 starts a pass; after a resume mid-epoch the checkpoint's state continues."""
        window_before, state = self._state.get(split) or (None, None)
        if window_before != window - 1 or _batch(state) != batch_size:
            return None
        return map_state(lambda t: t.to(self.device), state)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._state.get("train"):  # a run resumed mid-epoch continues the streams where they were
            window, state = self._state["train"]
            checkpoint["zoo"]["carried"] = {"window": window, "state": state}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        carried = (checkpoint.get("zoo") or {}).get("carried")
        if carried:
            self._state["train"] = (int(carried["window"]), carried["state"])

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.check_finite(self._stream_step("train", batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_split_metrics("train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._stream_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._stream_step("test", batch)

    def derived_metrics(self, split: str, values: dict[str, Tensor]) -> dict[str, Tensor]:
        loss = values[f"{split}/loss"]  # nats per character
        return {f"{split}/bpc": loss / math.log(2), f"{split}/ppl": loss.exp()}

    # -- generation -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prime: str, length: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> str:
        """``prime`` followed by ``length`` sampled characters (temperature -> 0: greedy)."""
        vocab = self.spec.vocab
        if not prime:
            raise ValueError("sample.prime must have at least one character")
        ids = vocab.encode(list(prime))
        state = self.recurrence.init_state(1, device=self.device)
        x = None
        for i in ids:  # read the prime
            x, state, _ = self.recurrence.step(self.encoder(torch.tensor([[i]], device=self.device))[:, 0], state)
        out = []
        for _ in range(length):
            logits = self.head(x.unsqueeze(1))[0, 0].float()
            logits[[vocab.pad_id, vocab.start_id, vocab.end_id]] = float("-inf")
            if temperature <= 0:
                nxt = int(logits.argmax())
            else:
                nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))
            out.append(vocab.itos[nxt])
            x, state, _ = self.recurrence.step(self.encoder(torch.tensor([[nxt]], device=self.device))[:, 0], state)
        return prime + "".join(out)

    def sample_text(self) -> str:
        """Text from the configured prime and temperature (seeded: the same model writes the same)."""
        was = self.training
        self.eval()
        g = torch.Generator(device=self.device).manual_seed(0)
        s = self.sample
        text = self.generate(s["prime"], int(s["length"]), float(s["temperature"]), generator=g)
        self.train(was)
        return text

    def predict_options(self, *, length: int | None = None, temperature: float | None = None, **_: Any) -> dict:
        return {k: v for k, v in (("length", length), ("temperature", temperature)) if v is not None}

    def predict_one(self, raw: str, *, length: int | None = None, temperature: float | None = None,
                    seed: int = 0, **_: Any) -> dict:
        """Text written after the prime ``raw``."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        length = int(length if length is not None else self.sample["length"])
        temperature = float(temperature if temperature is not None else self.sample["temperature"])
        return {"text": self.generate(raw, length, temperature, generator=g)}

    def write_artifacts(self, run_dir: Path, datamodule) -> list[Path]:
        """samples.txt: text the model writes from the prime, at the configured temperature."""
        path = run_dir / "samples.txt"
        path.write_text(f"# prime={self.sample['prime']!r} temperature={self.sample['temperature']}\n{self.sample_text()}\n")
        return [path]

    def media(self, datamodule) -> dict:
        return {"samples/text": {"text": self.sample_text()}}


def _batch(state) -> int | None:
    if not state:
        return None
    first = state[0]
    return (first[0] if isinstance(first, tuple) else first).shape[0]
