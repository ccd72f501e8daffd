"""``python -m zoo.export <checkpoint or run folder> [--out DIR]``: the model as TorchScript.

For the generating tasks (captioning, translation) the export is three TorchScript files and
a JSON of what a runner needs:

    encoder.pt   images (B, 3, H, W)  -> what the decoder reads     (translation: src, lengths)
    start.pt     what the decoder reads -> the decoder's first state (a flat tuple of tensors)
    step.pt      tokens (N,), state ... -> logits (N, V), state ...  (one decoder step)
    export.json  vocabulary, special ids, max length, the state's layout, the image shape

:class:`ExportedDecoder` is the reference runner: it plugs the exported parts into the zoo's
own greedy / sampling / batched beam search, so exported and eager decoding are the same code.
(TorchScript is deprecated in favour of torch.export in recent torch; it is what runs in
libtorch/C++ today, and ``torch.jit.load`` still reads it.)
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.vocab import Vocabulary
from zoo.heads.decoding import Decoder

warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated.*", category=FutureWarning)


# -- states <-> flat tuples --------------------------------------------------------------------
def layout(state: Any) -> Any:
    """The nesting of a state (dicts, lists, tuples of tensors) without its tensors, JSON-able."""
    if isinstance(state, Tensor):
        return "T"
    if isinstance(state, dict):
        return {"dict": {k: layout(v) for k, v in state.items()}}
    return {"list" if isinstance(state, list) else "tuple": [layout(v) for v in state]}


def flatten(state: Any) -> list[Tensor]:
    if isinstance(state, Tensor):
        return [state]
    values = state.values() if isinstance(state, dict) else state
    return [t for v in values for t in flatten(v)]


def unflatten(flat: list[Tensor], spec: Any) -> Any:
    it = iter(flat)

    def build(s):
        if s == "T":
            return next(it)
        if "dict" in s:
            return {k: build(v) for k, v in s["dict"].items()}
        items = [build(v) for v in s.get("list", s.get("tuple", []))]
        return items if "list" in s else tuple(items)

    return build(spec)


# -- the exported parts -------------------------------------------------------------------------
class _Start(nn.Module):
    def __init__(self, decoder: Decoder, n_inputs: int) -> None:
        super().__init__()
        self.decoder, self.n_inputs = decoder, n_inputs

    def forward(self, *context: Tensor) -> tuple[Tensor, ...]:
        return tuple(flatten(self.decoder.start(context if self.n_inputs > 1 else context[0])))


class _Step(nn.Module):
    def __init__(self, decoder: Decoder, spec: Any) -> None:
        super().__init__()
        self.decoder, self.spec = decoder, spec

    def forward(self, tokens: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, new = self.decoder.step(tokens, unflatten(list(state), self.spec))
        return (logits, *flatten(new))


def export(model, out: Path) -> Path:
    """Trace a trained generating model (captioning, translation) into ``out``. The task says what
    its decoder reads (``export_encoder``); the decoder's start and step are the same for all."""
    model = model.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with torch.no_grad():
        encoder, example, extra_meta = model.export_encoder()
        vocab = model.spec.vocab
        context = encoder(*example)
        context = context if isinstance(context, tuple) else (context,)
        state = model.decoder.start(context if len(context) > 1 else context[0])
        spec = layout(state)
        tokens = torch.full((2,), vocab.start_id)
        traced = {
            "encoder": torch.jit.trace(encoder, example, check_trace=False),
            "start": torch.jit.trace(_Start(model.decoder, len(context)), context, check_trace=False),
            "step": torch.jit.trace(_Step(model.decoder, spec), (tokens, *flatten(state)), check_trace=False),
        }
    for name, module in traced.items():
        torch.jit.save(module, str(out / f"{name}.pt"))
    meta = {"task": type(model).__name__, **extra_meta, "vocab": vocab.itos, "start_id": vocab.start_id, "end_id": vocab.end_id,
            "pad_id": vocab.pad_id, "max_len": model.max_len, "state": spec, "context_inputs": len(context),
            "decode": model.decode, "image_shape": list(model.spec.image_shape or []),
            "src_vocab": model.spec.src_vocab.itos if model.spec.src_vocab else None}
    (out / "export.json").write_text(json.dumps(meta, indent=1))
    return out


class ExportedDecoder(Decoder):
    """The reference runner: the exported parts, decoded by the zoo's own greedy/beam search."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        folder = Path(folder)
        self.meta = json.loads((folder / "export.json").read_text())
        self.encoder = torch.jit.load(str(folder / "encoder.pt"))
        self.starter = torch.jit.load(str(folder / "start.pt"))
        self.stepper = torch.jit.load(str(folder / "step.pt"))
        self.vocab = Vocabulary(self.meta["vocab"])
        self.start_id, self.end_id, self.pad_id = self.meta["start_id"], self.meta["end_id"], self.meta["pad_id"]
        self.register_buffer("_device_anchor", torch.zeros(1))  # where generate() puts its tensors

    def start(self, context: Any) -> list[Tensor]:
        context = context if isinstance(context, tuple) else (context,)
        return list(self.starter(*context))

    def step(self, tokens: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        logits, *new = self.stepper(tokens, *state)
        return logits, list(new)

    def words(self, ids: list[int]) -> str:
        return " ".join(self.vocab.decode(ids))

    @torch.no_grad()
    def run(self, *inputs: Tensor, **decode: Any) -> list[str]:
        """Captions of images (B, 3, H, W), or translations of (src ids (B, S), lengths (B,))."""
        longest = self.meta.get("max_source_len")  # a step loop traced over that many steps
        if longest is not None and inputs[0].shape[1] > longest:
            from zoo.errors import ZooError

            raise ZooError(f"sources of up to {longest} tokens: this export traced its step loop over {longest} steps")
        context = self.encoder(*inputs)
        options = {**self.meta["decode"], **decode}
        out = self.generate(context, max_len=self.meta["max_len"], **options)
        return [self.words(row) for row in out.tokens.tolist()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint file or a run folder")
    p.add_argument("--out", help="folder for the export (default: <run folder>/export, or export/ beside a bare checkpoint)")
    args = p.parse_args(argv)
    from zoo.api import load, output_folder
    from zoo.errors import ZooError

    try:
        model = load(args.model)
        out = export(model, Path(args.out) if args.out else output_folder(args.model) / "export")
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
