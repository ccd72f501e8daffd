"""``python -m zoo.export <checkpoint or run folder> [--format torch_export|onnx|torchscript] [--out DIR]``.

For the generating tasks (captioning, translation) the export is three parts and a JSON of
what a runner needs:

    encoder   images (B, 3, H, W) -> what the decoder reads       (translation: src (B, S), lengths (B,))
    start     what the decoder reads -> the decoder's first state (a flat tuple of tensors)
    step      tokens (N,), state ... -> logits (N, V), state ...  (one decoder step)
    export.json  the format, vocabulary, special ids, max length, the state's layout, the image
                 shape, the tokenizer that turns target tokens into text (translation)

in one of three formats:

    torch_export  encoder.pt2 ...   ``torch.export``: what current torch reads (``torch.export.load``),
                                    and what AOTInductor and ExecuTorch compile (the default)
    onnx          encoder.onnx ...  ``torch.onnx.export(dynamo=True)``: onnxruntime and every ONNX
                                    runtime (``pip install 'zoo[onnx]'``)
    torchscript   encoder.pt ...    ``torch.jit.trace``: what libtorch (C++) loads today

The default is torch_export because TorchScript is deprecated upstream: torch.export is where
torch's compilers and mobile runtime read models from now on. TorchScript stays as a format
because libtorch reads nothing else yet, and a C++ service may rely on it.

Batch sizes are free in every format (beam search runs the step on B * beam rows), and so is
the source length of translation in torch_export and onnx: the source's loop is recorded as
one scan (:mod:`zoo.recurrence.graph`). A TorchScript trace unrolls the loop of a cell without
a torch kernel (cell=mingru) over sources padded to the model's max length; longer sources are
refused with a clear error.

:class:`ExportedDecoder` is the reference runner: it reads whichever format a folder holds,
plugs the parts into the zoo's own greedy / sampling / batched beam search, and returns the
text the eager model gives (predict's captions, translations detokenised by the data's
tokenizer), so exported and eager decoding are the same code.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor, nn

from zoo.data.tokenizers import TextTokenizer
from zoo.data.vocab import Vocabulary
from zoo.errors import ZooError
from zoo.heads.decoding import Decoder, Generated

warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated.*", category=FutureWarning)
# two inputs share the dimension "batch" (src, lengths): ONNX names it once, and says so
warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used", category=UserWarning)

#: format -> the parts' file extension
FORMATS = {"torch_export": "pt2", "onnx": "onnx", "torchscript": "pt"}
PARTS = ("encoder", "start", "step")
ONNX_HINT = "pip install 'zoo[onnx]'"


def check_format(fmt: str) -> str:
    """A known format whose packages are installed, or a ZooError that says what to do."""
    if fmt not in FORMATS:
        raise ZooError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        _need("onnx", "onnxscript", what="--format onnx")
    return fmt


def _need(*packages: str, what: str) -> None:
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ZooError(f"{what} needs {' and '.join(missing)}, which are not installed: {ONNX_HINT}")


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


class _Part(NamedTuple):
    """One part to write: the module, example inputs, the names of its inputs and outputs, and
    the dynamic dimensions of its inputs in torch.export's form (nested like its arguments)."""

    module: nn.Module
    example: tuple[Tensor, ...]
    inputs: list[str]
    outputs: list[str]
    dynamic: Any


def _write_torch_export(part: _Part, path: Path) -> None:
    program = torch.export.export(part.module, part.example, dynamic_shapes=part.dynamic)
    serde = logging.getLogger("torch._export.serde.serialize")
    level = serde.level
    serde.setLevel(logging.ERROR)  # a scan's empty list of extra inputs: "unsure how to serialize" (it is right)
    try:
        torch.export.save(program, path)
    finally:
        serde.setLevel(level)


def _write_onnx(part: _Part, path: Path) -> None:
    program = torch.onnx.export(part.module, part.example, dynamo=True, dynamic_shapes=part.dynamic,
                                input_names=part.inputs, output_names=part.outputs, verbose=False)
    program.save(str(path))  # the weights inside the file (beside it, as path.data, past protobuf's 2 GB)


def _write_torchscript(part: _Part, path: Path) -> None:
    torch.jit.save(torch.jit.trace(part.module, part.example, check_trace=False), str(path))


WRITERS: dict[str, Callable[[_Part, Path], None]] = {
    "torch_export": _write_torch_export, "onnx": _write_onnx, "torchscript": _write_torchscript}


def _parts(model, fmt: str) -> tuple[dict[str, _Part], dict]:
    """The encoder, start and step of a trained generating model, with what the runner needs."""
    from torch.export import Dim

    encoder, example, dims, meta = model.export_encoder(fmt)
    named = {name: Dim(name) for d in dims for name in d.values()}
    context = encoder(*example)
    context = context if isinstance(context, tuple) else (context,)
    state = model.decoder.start(context if len(context) > 1 else context[0])
    spec, flat = layout(state), flatten(state)
    tokens = torch.full((2,), model.spec.vocab.start_id)
    # start and step: every dimension as free as their code allows (batch, the source's length)
    auto = lambda tensors: tuple({i: Dim.AUTO for i in range(t.dim())} for t in tensors)
    n_ctx, n_state = [f"context_{i}" for i in range(len(context))], [f"state_{i}" for i in range(len(flat))]
    parts = {
        "encoder": _Part(encoder, example, list(inspect.signature(encoder.forward).parameters)[:len(example)], n_ctx,
                         tuple({i: named[n] for i, n in d.items()} for d in dims)),
        "start": _Part(_Start(model.decoder, len(context)).eval(), context, n_ctx, n_state, {"context": auto(context)}),
        "step": _Part(_Step(model.decoder, spec).eval(), (tokens, *flat), ["tokens", *n_state],
                      ["logits", *(f"next_{n}" for n in n_state)],
                      {"tokens": {0: Dim.AUTO}, "state": auto(flat)}),
    }
    return parts, {**meta, "state": spec, "context_inputs": len(context)}


def export(model, out: Path, fmt: str = "torch_export") -> Path:
    """Write a trained generating model (captioning, translation) to ``out`` in ``fmt``. The
    task says what its decoder reads (``export_encoder``); the decoder's start and step are the
    same for all."""
    check_format(fmt)
    model = model.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        parts, extra_meta = _parts(model, fmt)
        out.mkdir(parents=True, exist_ok=True)
        for name in PARTS:  # a folder holds one format: the parts of an earlier export go
            for ext in FORMATS.values():
                (out / f"{name}.{ext}").unlink(missing_ok=True)
            (out / f"{name}.onnx.data").unlink(missing_ok=True)
        for name, part in parts.items():
            WRITERS[fmt](part, out / f"{name}.{FORMATS[fmt]}")
    vocab = model.spec.vocab
    meta = {"format": fmt, "torch": torch.__version__, "task": type(model).__name__, **extra_meta,
            "vocab": vocab.itos, "start_id": vocab.start_id, "end_id": vocab.end_id, "pad_id": vocab.pad_id,
            "max_len": model.max_len, "decode": model.decode, "image_shape": list(model.spec.image_shape or []),
            "src_vocab": model.spec.src_vocab.itos if model.spec.src_vocab else None}
    (out / "export.json").write_text(json.dumps(meta, indent=1))
    return out


# -- running the parts ----------------------------------------------------------------------------
class _OnnxPart:
    """An ONNX part in onnxruntime (CPU), called like the torch parts: tensors in, tensors out."""

    def __init__(self, path: Path) -> None:
        _need("onnxruntime", what="running an ONNX export")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many threads as torch computes on
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        feed = {name: t.numpy() for name, t in zip(self.names, inputs)}
        return tuple(torch.from_numpy(o) for o in self.session.run(None, feed))


LOADERS: dict[str, Callable[[Path], Callable[..., Any]]] = {
    "torch_export": lambda path: torch.export.load(str(path)).module(),
    "onnx": _OnnxPart,
    "torchscript": lambda path: torch.jit.load(str(path)),
}


class ExportedDecoder(Decoder):
    """The reference runner: the exported parts, decoded by the zoo's own greedy/beam search."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        folder = Path(folder)
        self.meta = json.loads((folder / "export.json").read_text())
        self.format = self.meta.get("format", "torchscript")  # exports from before the formats were TorchScript
        if self.format not in FORMATS:
            raise ZooError(f"{folder}: an export in format {self.format!r}, which this zoo does not read")
        load = LOADERS[self.format]
        self.encoder, self.starter, self.stepper = (load(folder / f"{p}.{FORMATS[self.format]}") for p in PARTS)
        self.vocab = Vocabulary(self.meta["vocab"])
        # how target tokens become text (translation: the data's tokenizer); captions: words and spaces
        self.tokenizer = TextTokenizer.from_dict(self.meta["tokenizer"]) if self.meta.get("tokenizer") else None
        self.start_id, self.end_id, self.pad_id = self.meta["start_id"], self.meta["end_id"], self.meta["pad_id"]
        self.register_buffer("_device_anchor", torch.zeros(1))  # where generate() puts its tensors

    def start(self, context: tuple[Tensor, ...]) -> list[Tensor]:
        return list(self.starter(*context))

    def step(self, tokens: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        logits, *new = self.stepper(tokens, *state)
        return logits, list(new)

    def words(self, ids: list[int]) -> str:
        """Ids -> the text the eager model gives for them."""
        tokens = self.vocab.decode(ids)
        return self.tokenizer.join(tokens) if self.tokenizer else " ".join(tokens)

    @torch.no_grad()
    def encode(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """What the decoder reads, from images (B, 3, H, W) or from (src ids (B, S), lengths (B,))."""
        longest = self.meta.get("max_source_len")  # a step loop traced over that many steps
        if longest is not None and inputs[0].shape[1] > longest:
            raise ZooError(f"sources of up to {longest} tokens: this export traced its step loop over {longest} steps")
        context = self.encoder(*inputs)
        return tuple(context) if isinstance(context, (tuple, list)) else (context,)

    @torch.no_grad()
    def decode(self, *inputs: Tensor, **decode: Any) -> Generated:
        """The ids (and scores) for the inputs, with the model's decoding options unless
        overridden (``strategy="greedy"``, ``beam_size=5``, ...)."""
        return self.generate(self.encode(*inputs), max_len=self.meta["max_len"], **{**self.meta["decode"], **decode})

    def run(self, *inputs: Tensor, **decode: Any) -> list[str]:
        """Captions of images (B, 3, H, W), or translations of (src ids (B, S), lengths (B,)): the
        text the eager model gives."""
        return [self.words(row) for row in self.decode(*inputs, **decode).tokens.tolist()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a checkpoint file or a run folder")
    p.add_argument("--format", default="torch_export", help=f"one of {', '.join(FORMATS)} (default: torch_export)")
    p.add_argument("--out", help="folder for the export (default: <run folder>/export, or export/ beside a bare checkpoint)")
    args = p.parse_args(argv)
    from zoo.api import load, output_folder

    try:
        check_format(args.format)  # before the model is built
        model = load(args.model)
        out = export(model, Path(args.out) if args.out else output_folder(args.model) / "export", args.format)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported to {out} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
