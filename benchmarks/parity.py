"""Parity: a zoo recipe against the same model written by hand in plain PyTorch, at equal steps.

    python -m benchmarks.parity charlm --steps 300 --data-root ../shared/data        # char_rnn, tiny-shakespeare
    python -m benchmarks.parity tagging --steps 300 --data-root ../shared/data       # tagger_bilstm, UD English-EWT
    python -m benchmarks.parity sentiment --steps 300 --seeds 3 --data-root ../shared/data   # sentiment_bilstm, SST-2
    python -m benchmarks.parity translation --steps 300 --data-root ../shared/data   # seq2seq_attention, Multi30k
    python -m benchmarks.parity tagging --steps 50 cell.hidden_size=64               # extra overrides: both sides

The zoo side is the real path: ``python -m zoo recipe=<recipe> trainer.max_steps=N`` through
``zoo.run.train.train`` (Lightning, the recipe's optimiser, clipping and data), with validation
during training left out (``trainer.limit_val_batches=0``: no best checkpoint is picked), so that
both sides are evaluated on their final weights, and translation decoding greedily on both sides.

The plain side is a model of the same architecture written below in plain PyTorch
(``nn.Embedding``, ``nn.LSTM``/``nn.GRU``/``nn.GRUCell``, ``nn.Linear``, torch's own
initialisation; no zoo model code), its sizes, dropouts, AdamW settings and gradient clipping
read from the same composed config, trained in a plain loop for the same number of optimizer
steps. It reads its batches from the zoo's DataModule of the same config and seed, so both
sides see identical data in identical order (the plain loop calls the batch sampler's
``set_epoch`` at each epoch start, as its contract asks). Both are evaluated the same way on
the same split: the test split's loss, token accuracy (tagging), accuracy (sentiment), greedy
BLEU (sacreBLEU's, through torchmetrics; translation); charlm's test split is the held-out
last 10% of the text, read as streams with the state carried, as the zoo reads it.

Both sides run in one process, one after the other (the order alternates over seeds), with
the torch thread count pinned; ``step_time_ratio`` is the geometric mean over seeds of the zoo's
median step time (batch start to next batch start) over the plain loop's. ``--seeds K`` runs K seeds of each and prints
mean ± std. The last line is one JSON object: ``zoo/<metric>``, ``plain/<metric>`` (means),
``*_std`` with several seeds, ``zoo/steps``, ``plain/steps``, ``step_time_ratio`` (and each seed's,
``step_time_ratio_pairs``).

``--same-init`` starts the plain model from the zoo model's initial weights (the zoo's cells have
torch's parameters, both biases included), so that the two take the same steps:
with the dropouts at 0 their training losses agree step by step (``train_loss_gap_max``).
``trainer.limit_test_batches`` limits both sides' evaluation alike.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

IGNORE = -100  # the label of padding in tagging batches


@dataclass
class Bench:
    recipe: str
    data: Callable[[Path], list[str]]
    metrics: list[str]  # reported, from the test split
    extra: list[str] = field(default_factory=list)  # zoo overrides that make the eval comparable


BENCHMARKS: dict[str, Bench] = {
    # test_fraction=0: the test split is the held-out last 10% (the validation split)
    "charlm": Bench("char_rnn", lambda root: [f"data.path={root}/tinyshakespeare/input.txt", "data.val_fraction=0.1",
                                              "data.test_fraction=0.0"], ["test/loss"], ["task.sample.length=50"]),
    "tagging": Bench("tagger_bilstm", lambda root: [f"data.root={root}/ud-english-ewt"], ["test/acc", "test/loss"]),
    "sentiment": Bench("sentiment_bilstm", lambda root: [f"data.root={root}/sst2"], ["test/acc", "test/loss"]),
    "translation": Bench("seq2seq_attention", lambda root: [f"data.root={root}/multi30k"],
                         ["test/bleu", "test/bleu_lc", "test/loss"],
                         ["task.decode.strategy=greedy", "task.lowercase_bleu=true", "task.metrics=[bleu]"]),
}

#: the zoo cell -> the torch kernel of the same math
KERNELS = {"zoo.cells.lstm.LSTMCell": nn.LSTM, "zoo.cells.gru.GRUCell": nn.GRU, "zoo.cells.rnn.RNNCell": nn.RNN}


def _kernel(cfg) -> type[nn.RNNBase]:
    from zoo.errors import ConfigError

    target = cfg.cell._target_
    if target not in KERNELS:
        raise ConfigError(f"benchmarks.parity writes plain models for cell=lstm, gru or rnn, not {target}")
    return KERNELS[target]


def _rnn(cfg, input_size: int, *, bidirectional: bool | None = None) -> nn.RNNBase:
    """The plain kernel a ``cell`` config describes, torch's initialisation, plus the cell's
    forget-gate bias where it sets one."""
    c = cfg.cell
    kind = _kernel(cfg)
    bi = bool(c.bidirectional) if bidirectional is None else bidirectional
    rnn = kind(input_size, c.hidden_size, num_layers=c.num_layers, dropout=c.dropout if c.num_layers > 1 else 0.0,
               bidirectional=bi, batch_first=True)
    forget = float(c.get("forget_bias", 0.0) or 0.0)
    if forget and kind is nn.LSTM:
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if name.startswith("bias_ih"):
                    p[c.hidden_size:2 * c.hidden_size] += forget
    return rnn


class WordInput(nn.Module):
    """Embedding with word dropout (a token becomes <UNK> with probability p in training) and
    dropout; sizes and rates from an ``encoder`` config."""

    def __init__(self, encoder, vocab) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(vocab), encoder.dim, padding_idx=vocab.pad_id)
        self.drop = nn.Dropout(encoder.dropout)
        self.p, self.pad_id, self.unk_id = encoder.word_dropout, vocab.pad_id, vocab.unk_id

    def forward(self, tokens: Tensor) -> Tensor:
        if self.training and self.p:
            hit = (torch.rand(tokens.shape) < self.p) & (tokens != self.pad_id)
            tokens = tokens.masked_fill(hit, self.unk_id)
        return self.drop(self.embed(tokens))


def _packed(rnn: nn.RNNBase, x: Tensor, lengths: Tensor):
    out, hn = rnn(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], hn


# -- the plain models ------------------------------------------------------------------------------
class PlainCharLM(nn.Module):
    """Embedding -> stacked LSTM (state carried by the caller) -> dropout -> Linear."""

    def __init__(self, cfg, spec) -> None:
        super().__init__()
        self.input = WordInput(cfg.encoder, spec.vocab)
        self.rnn = _rnn(cfg, cfg.encoder.dim)
        self.drop = nn.Dropout(cfg.head.dropout)
        self.out = nn.Linear(cfg.cell.hidden_size, len(spec.vocab))

    def forward(self, tokens: Tensor, state=None):
        out, state = self.rnn(self.input(tokens), state)  # (B, T, H)
        return self.out(self.drop(out)), state


class PlainTagger(nn.Module):
    """Embedding -> (bidirectional) LSTM over packed sentences -> dropout -> Linear, a tag per word."""

    def __init__(self, cfg, spec) -> None:
        super().__init__()
        self.input = WordInput(cfg.encoder, spec.vocab)
        self.rnn = _rnn(cfg, cfg.encoder.dim)
        self.drop = nn.Dropout(cfg.head.dropout)
        self.out = nn.Linear(self.rnn.hidden_size * (2 if self.rnn.bidirectional else 1), spec.num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        states, _ = _packed(self.rnn, self.input(tokens), lengths)  # (B, T, D*H)
        return self.out(self.drop(states))


class PlainClassifier(nn.Module):
    """Embedding -> (bidirectional) LSTM over packed sentences -> pooled over real words -> Linear."""

    def __init__(self, cfg, spec) -> None:
        super().__init__()
        self.input = WordInput(cfg.encoder, spec.vocab)
        self.rnn = _rnn(cfg, cfg.encoder.dim)
        self.pool = cfg.head.pool
        size = self.rnn.hidden_size * (2 if self.rnn.bidirectional else 1)
        layers: list[nn.Module] = [nn.Dropout(cfg.head.dropout)]
        if cfg.head.hidden:
            layers += [nn.Linear(size, cfg.head.hidden), nn.Tanh(), nn.Dropout(cfg.head.dropout)]
            size = cfg.head.hidden
        self.out = nn.Sequential(*layers, nn.Linear(size, spec.num_classes))

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        states, hn = _packed(self.rnn, self.input(tokens), lengths)  # (B, T, D*H)
        real = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).unsqueeze(2)  # (B, T, 1)
        if self.pool == "max":
            pooled = states.masked_fill(~real, float("-inf")).amax(1)
        elif self.pool == "mean":
            pooled = (states * real).sum(1) / lengths[:, None].to(states.dtype)
        else:  # last: the top layer's final states, both directions
            h = hn[0] if isinstance(hn, tuple) else hn
            pooled = torch.cat(list(h[-(2 if self.rnn.bidirectional else 1):]), 1)
        return self.out(pooled)


class PlainSeq2Seq(nn.Module):
    """Bahdanau et al.: a bidirectional GRU reads the source; a GRU decoder starts from
    tanh(W_b [h_fwd; h_bwd]) and, at each step, attends with its previous state
    (v^T tanh(W_q h + W_k m)); the context enters the GRU beside the word and the output layer
    reads tanh(W_o [h; c])."""

    def __init__(self, cfg, spec) -> None:
        super().__init__()
        from zoo.errors import ConfigError

        c, h = cfg.cell, cfg.head
        if _kernel(cfg) is not nn.GRU or c.num_layers != 1 or h.attention != "additive" or h.teacher_forcing != 1.0:
            raise ConfigError("benchmarks.parity's plain seq2seq is one GRU layer with additive attention and "
                              "teacher forcing (cell=gru, cell.num_layers=1, head.attention=additive)")
        sv, tv = spec.src_vocab, spec.vocab
        H, M = c.hidden_size, 2 * c.hidden_size if cfg.task.bidirectional_encoder else c.hidden_size
        self.src = WordInput(cfg.encoder, sv)
        self.encoder = nn.GRU(cfg.encoder.dim, H, batch_first=True, bidirectional=bool(cfg.task.bidirectional_encoder))
        self.bridge = nn.Linear(M, H)
        self.embed = nn.Embedding(len(tv), h.embed_dim, padding_idx=tv.pad_id)
        self.drop = nn.Dropout(h.dropout)
        self.W_q = nn.Linear(H, h.attention_dim, bias=False)
        self.W_k = nn.Linear(M, h.attention_dim)
        self.v = nn.Linear(h.attention_dim, 1, bias=False)
        self.cell = nn.GRUCell(h.embed_dim + M, H)
        self.W_o = nn.Linear(H + M, H)
        self.out = nn.Linear(H, len(tv))

    def encode(self, src: Tensor, lengths: Tensor):
        memory, hn = _packed(self.encoder, self.src(src), lengths)  # (B, S, M), (D, B, H)
        mask = torch.arange(src.shape[1])[None, :] < lengths[:, None]  # (B, S)
        h = torch.tanh(self.bridge(torch.cat(list(hn), 1)))  # (B, H)
        return memory, self.W_k(memory), mask, h

    def step(self, words: Tensor, h: Tensor, memory: Tensor, keys: Tensor, mask: Tensor):
        x = self.drop(self.embed(words))  # (B, E)
        scores = self.v(torch.tanh(self.W_q(h).unsqueeze(1) + keys)).squeeze(2).masked_fill(~mask, float("-inf"))
        context = (scores.softmax(-1).unsqueeze(1) @ memory).squeeze(1)  # (B, M)
        h = self.cell(torch.cat([x, context], 1), h)
        return self.out(self.drop(torch.tanh(self.W_o(torch.cat([h, context], 1))))), h

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V) for the target inputs (B, T) (<START> w1 ..)."""
        memory, keys, mask, h = self.encode(src, lengths)
        logits = []
        for words in tgt_in.unbind(1):
            y, h = self.step(words, h, memory, keys, mask)
            logits.append(y)
        return torch.stack(logits, 1)

    @torch.no_grad()
    def greedy(self, src: Tensor, lengths: Tensor, *, max_len: int, min_length: int, start: int, end: int,
               pad: int) -> Tensor:
        """Greedy ids (B, <= max_len + 1); never <PAD>/<START>, no <END> before min_length words."""
        memory, keys, mask, h = self.encode(src, lengths)
        words = torch.full((src.shape[0],), start, dtype=torch.long)
        done = torch.zeros_like(words, dtype=torch.bool)
        out = []
        for t in range(max_len + 1):
            y, h = self.step(words, h, memory, keys, mask)
            y[:, [pad, start]] = float("-inf")
            if t < min_length:
                y[:, end] = float("-inf")
            words = y.argmax(-1).masked_fill(done, pad)
            out.append(words)
            done |= words == end
            if done.all():
                break
        return torch.stack(out, 1)


# -- the plain side: a model, its loss on a batch, its evaluation ---------------------------------
class Plain:
    """What the plain loop needs of a task: the model, the loss of a training batch, the test metrics."""

    model_class: type[nn.Module]

    def __init__(self, cfg, spec) -> None:
        self.cfg, self.spec = cfg, spec
        self.model = self.model_class(cfg, spec)

    def loss(self, batch: dict) -> Tensor:
        raise NotImplementedError

    def start_epoch(self) -> None:
        """Called before each epoch's first batch."""

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        raise NotImplementedError


class PlainCharLMSide(Plain):
    model_class = PlainCharLM

    def __init__(self, cfg, spec) -> None:
        super().__init__(cfg, spec)
        self.state = None

    def start_epoch(self) -> None:
        self.state = None  # each pass reads the streams from their starts

    def _window(self, batch: dict, state):
        tokens = batch["tokens"]  # (B, bptt + 1)
        logits, state = self.model(tokens[:, :-1], state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        return nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()), state

    def loss(self, batch: dict) -> Tensor:
        loss, self.state = self._window(batch, self.state)
        return loss

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        total, count, state = 0.0, 0, None
        for batch in loader:
            loss, state = self._window(batch, state)
            n = batch["tokens"][:, 1:].numel()
            total, count = total + float(loss) * n, count + n
        return {"test/loss": total / count}


class PlainLabelSide(Plain):
    """Tagging (a label per word) and sentence classification (a label per sentence)."""

    def _loss(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        logits = self.model(batch["tokens"], batch["lengths"])
        logits, labels = logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1)
        return nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE), logits, labels

    def loss(self, batch: dict) -> Tensor:
        return self._loss(batch)[0]

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        total, count, right = 0.0, 0, 0
        for batch in loader:
            loss, logits, labels = self._loss(batch)
            real = labels != IGNORE
            n = int(real.sum())
            total, count = total + float(loss) * n, count + n
            right += int((logits.argmax(-1)[real] == labels[real]).sum())
        return {"test/acc": right / count, "test/loss": total / count}


class PlainTaggerSide(PlainLabelSide):
    model_class = PlainTagger


class PlainClassifierSide(PlainLabelSide):
    model_class = PlainClassifier


class PlainTranslationSide(Plain):
    model_class = PlainSeq2Seq

    def _loss(self, batch: dict) -> Tensor:
        tgt, pad = batch["tgt"], self.spec.vocab.pad_id
        logits = self.model(batch["src"], batch["src_lengths"], tgt[:, :-1])
        return nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=pad)

    def loss(self, batch: dict) -> Tensor:
        return self._loss(batch)

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        from torchmetrics.text import SacreBLEUScore

        v, decode = self.spec.vocab, self.cfg.task.decode
        if decode.get("no_repeat_ngram"):
            raise ValueError("benchmarks.parity's plain greedy decoding has no no_repeat_ngram")
        bleu, bleu_lc = SacreBLEUScore(), SacreBLEUScore(lowercase=True)
        total, count = 0.0, 0
        for batch in loader:
            n = int((batch["tgt"][:, 1:] != v.pad_id).sum())
            total, count = total + float(self._loss(batch)) * n, count + n
            max_len = self.spec.max_len or 50
            ids = self.model.greedy(batch["src"], batch["src_lengths"], max_len=max_len,
                                    min_length=min(int(decode.get("min_length", 0)), max_len), start=v.start_id,
                                    end=v.end_id, pad=v.pad_id)
            hyps = [self.spec.tokenizer.join(v.decode(row)) for row in ids.tolist()]
            refs = [[r] for r in batch["refs"]]
            bleu.update(hyps, refs)
            bleu_lc.update(hyps, refs)
        return {"test/bleu": float(bleu.compute()) * 100, "test/bleu_lc": float(bleu_lc.compute()) * 100,
                "test/loss": total / count}


PLAIN: dict[str, type[Plain]] = {"charlm": PlainCharLMSide, "tagging": PlainTaggerSide,
                                 "sentiment": PlainClassifierSide, "translation": PlainTranslationSide}


def copy_zoo_weights(plain: nn.Module, zoo: nn.Module) -> None:
    """Give a plain model the zoo model's weights (for checking that the two compute the same
    function): the zoo's parameters, renamed into torch's layout (the zoo's cells have torch's
    two biases: b is bias_ih, b_hh bias_hh; a GRU's bias_hh is [b_hh, b_hn])."""
    zp = dict(zoo.named_parameters())

    def rnn(cells: list[str], into: nn.RNNBase | nn.GRUCell, extra: bool = False) -> None:
        for k, cell in enumerate(cells):
            layer, direction = divmod(k, 2 if getattr(into, "bidirectional", False) else 1)
            suffix = "" if isinstance(into, nn.GRUCell) else f"_l{layer}" + ("_reverse" if direction else "")
            w_ih = zp[f"{cell}.W_xh"]
            if extra:
                w_ih = torch.cat([w_ih, zp[f"{cell}.W_ih"]], 1)
            b_hh = zp[f"{cell}.b_hh"]
            if f"{cell}.b_hn" in zp:
                b_hh = torch.cat([b_hh, zp[f"{cell}.b_hn"]])
            for name, value in (("weight_ih", w_ih), ("weight_hh", zp[f"{cell}.W_hh"]), ("bias_ih", zp[f"{cell}.b"]),
                                ("bias_hh", b_hh)):
                getattr(into, name + suffix).copy_(value)

    def cells(prefix: str) -> list[str]:
        return sorted({n.rsplit(".", 1)[0] for n in zp if n.startswith(prefix + ".cells.")},
                      key=lambda n: int(n.rsplit(".", 1)[1]))

    def linear(src: str, into: nn.Linear) -> None:
        into.weight.copy_(zp[f"{src}.weight"])
        if into.bias is not None:
            into.bias.copy_(zp[f"{src}.bias"])

    with torch.no_grad():
        if isinstance(plain, PlainSeq2Seq):
            plain.src.embed.weight.copy_(zp["source.embed.embed.weight"])
            rnn(cells("source.recurrence"), plain.encoder)
            linear("decoder.W_b", plain.bridge)
            plain.embed.weight.copy_(zp["decoder.embed.weight"])
            for name in ("W_q", "W_k", "v"):
                linear(f"decoder.attend.{name}", getattr(plain, name))
            rnn(cells("decoder.recurrence"), plain.cell, extra=True)
            linear("decoder.W_o", plain.W_o)
            linear("decoder.W_hy", plain.out)
            return
        plain.input.embed.weight.copy_(zp["encoder.embed.weight"])
        rnn(cells("recurrence"), plain.rnn)
        if isinstance(plain, PlainClassifier):
            zoo_linears = [n.rsplit(".", 1)[0] for n in zp if n.startswith("head.W_hy.") and n.endswith(".weight")]
            for src, into in zip(zoo_linears, [m for m in plain.out if isinstance(m, nn.Linear)]):
                linear(src, into)
        else:
            linear("head.W_hy", plain.out)


# -- running both sides ----------------------------------------------------------------------------
@dataclass
class Result:
    metrics: dict[str, float]
    steps: int
    step_times: list[float]
    train_losses: list[float]
    initial: nn.Module | None = None  # the zoo model as built, before its first step

    @property
    def step_s(self) -> float:
        times = self.step_times[2:] or self.step_times  # after a warm-up
        return statistics.median(times) if times else math.nan


@contextmanager
def clocked(result: Result) -> Iterator[None]:
    """While inside: every task the zoo's training path builds records its step times (batch
    start to next batch start, as benchmarks.speed measures them) and its training losses."""
    import zoo.run.train as zoo_train

    build = zoo_train.build_task

    def build_clocked(cfg, spec):
        task = build(cfg, spec)
        result.initial = copy.deepcopy(task)
        task.on_train_batch_start = lambda batch, batch_idx: result.step_times.append(time.perf_counter())
        task.on_train_batch_end = lambda outputs, batch, batch_idx: result.train_losses.append(
            float(outputs["loss"] if isinstance(outputs, dict) else outputs))
        return task

    zoo_train.build_task = build_clocked
    try:
        yield
    finally:
        zoo_train.build_task = build


def run_zoo(cfg) -> Result:
    """The recipe through the zoo's own training path (zoo.run.train.train), in a temporary run folder."""
    from zoo.run.train import train

    result = Result({}, 0, [], [])
    with tempfile.TemporaryDirectory(prefix="parity-") as tmp, clocked(result):
        train(cfg, run_dir=tmp, name="parity")
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    result.metrics = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
    result.steps = len(result.train_losses)
    marks = result.step_times
    result.step_times = [b - a for a, b in itertools.pairwise(marks)]
    return result


def limited(loader, limit: float):
    """The first batches of an evaluation loader, as ``trainer.limit_*_batches`` counts them."""
    n = limit if isinstance(limit, int) else int(len(loader) * limit)
    for k, batch in enumerate(loader):
        if k >= n:
            return
        yield batch


def run_plain(task: str, cfg, seed: int, initial: nn.Module | None = None) -> Result:
    """The plain model in a plain loop on the zoo DataModule's batches: AdamW with the config's
    settings, gradient-norm clipping, ``trainer.max_steps`` optimizer steps. With ``initial`` (a
    zoo model), it starts from that model's weights."""
    from hydra.utils import instantiate

    data = instantiate(cfg.data)
    data.setup("fit")
    torch.manual_seed(seed)
    side = PLAIN[task](cfg, data.spec)
    model = side.model
    if initial is not None:
        copy_zoo_weights(model, initial)
    opt = cfg.optimizer
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opt.lr,
                                  weight_decay=opt.get("weight_decay", 0.0))
    if cfg.get("scheduler"):
        raise ValueError("benchmarks.parity's plain loop has no learning-rate scheduler; the recipe sets one")
    clip = cfg.trainer.gradient_clip_val
    steps = int(cfg.trainer.max_steps)
    loader = data.train_dataloader()
    marks, losses, epoch = [], [], 0
    model.train()
    while len(losses) < steps:
        loader.batch_sampler.set_epoch(epoch)
        side.start_epoch()
        for batch in loader:
            marks.append(time.perf_counter())
            loss = side.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            losses.append(float(loss))
            if len(losses) == steps:
                marks.append(time.perf_counter())
                break
        epoch += 1
    model.eval()
    metrics = side.evaluate(limited(data.test_dataloader(), cfg.trainer.limit_test_batches))
    return Result(metrics, len(losses), [b - a for a, b in itertools.pairwise(marks)], losses)


def composed(overrides: list[str]):
    from zoo.api import compose_config
    from zoo.run.checks import check

    cfg, choices = compose_config(overrides)
    check(cfg, choices)
    return cfg


def curve(losses: list[float], points: int = 5) -> list[float]:
    """The training loss averaged over ``points`` equal stretches of the run."""
    n = len(losses)
    if n == 0:
        return []
    cuts = [round(n * k / points) for k in range(points + 1)]
    return [statistics.fmean(losses[a:b]) for a, b in itertools.pairwise(cuts) if b > a]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(BENCHMARKS))
    p.add_argument("--steps", type=int, default=300, help="optimizer steps, the same on both sides")
    p.add_argument("--seeds", type=int, default=1, help="seeds of each side (mean ± std)")
    p.add_argument("--seed", type=int, default=1234, help="the first seed")
    p.add_argument("--data-root", default="../shared/data", help="folder with the real data sets")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (pinned)")
    p.add_argument("--same-init", action="store_true", help="the plain model starts from the zoo's initial weights")
    p.add_argument("--dry-run", action="store_true", help="compose and check the zoo's config, print it, train nothing")
    p.add_argument("overrides", nargs="*", help="extra python -m zoo overrides (the plain model follows them)")
    args = p.parse_intermixed_args(argv)
    if args.steps < 1 or args.seeds < 1:
        p.error("--steps and --seeds must be >= 1")

    bench = BENCHMARKS[args.task]
    root = Path(args.data_root).expanduser().resolve()
    overrides = [f"recipe={bench.recipe}", *bench.data(root), *bench.extra, f"trainer.max_steps={args.steps}",
                 "trainer.max_epochs=-1", "trainer.limit_val_batches=0",  # no validation: final weights, both sides
                 "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", *args.overrides]
    print("zoo: python -m zoo " + " ".join(overrides), flush=True)
    configs = [composed([*overrides, f"seed={args.seed + k}"]) for k in range(args.seeds)]  # checked before training
    if args.dry_run:
        return

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # Lightning leaves the thread count alone then
    torch.set_num_threads(args.threads)
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "zoo"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    print(f"parity {args.task}: {args.steps} steps, {args.seeds} seed(s), {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}", flush=True)

    runs: dict[str, list[Result]] = {"zoo": [], "plain": []}
    firsts: list[str] = []  # the side each seed ran first
    for k, cfg in enumerate(configs):
        seed = args.seed + k
        # alternate, so that a drift of the machine's speed hits both sides (--same-init: the zoo first)
        order = ("zoo", "plain") if k % 2 == 0 or args.same_init else ("plain", "zoo")
        firsts.append(order[0])
        for side in order:
            torch.set_num_threads(args.threads)
            initial = runs["zoo"][-1].initial if args.same_init and side == "plain" else None
            r = run_zoo(cfg) if side == "zoo" else run_plain(args.task, cfg, seed, initial)
            runs[side].append(r)
            shown = ", ".join(f"{m}={r.metrics.get(m, math.nan):.4f}" for m in bench.metrics)
            print(f"  seed {seed} {side:<5} {shown}  steps {r.steps}  median step {r.step_s * 1e3:.1f} ms  "
                  f"train loss by fifths {' '.join(f'{x:.3f}' for x in curve(r.train_losses))}", flush=True)

    result: dict = {"task": args.task, "recipe": bench.recipe, "steps": args.steps, "seeds": args.seeds,
                    "threads": torch.get_num_threads()}
    print(f"{args.task} at {args.steps} steps ({args.seeds} seed(s), mean ± std):")
    for m in bench.metrics:
        for side in ("zoo", "plain"):
            mean, std = mean_std([r.metrics.get(m, math.nan) for r in runs[side]])
            result[f"{side}/{m}"] = round(mean, 5)
            if args.seeds > 1:
                result[f"{side}/{m}_std"] = round(std, 5)
        print(f"  {m:<14} zoo {result[f'zoo/{m}']:.4f} ± {result.get(f'zoo/{m}_std', 0):.4f}   "
              f"plain {result[f'plain/{m}']:.4f} ± {result.get(f'plain/{m}_std', 0):.4f}")
    for side in ("zoo", "plain"):
        result[f"{side}/steps"] = min(r.steps for r in runs[side])
        result[f"{side}/step_ms"] = round(statistics.median(r.step_s for r in runs[side]) * 1e3, 2)
        result[f"{side}/train_loss_last_fifth"] = round(statistics.fmean(curve(r.train_losses)[-1] for r in runs[side]), 5)
    # each seed's two runs are a pair, run one after the other, in alternating order: the ratio is
    # the geometric mean of the pairs' ratios, so that a machine that speeds up or slows down over
    # the benchmark (measured here: 125 -> 91 ms a step over 8 runs, monotone) biases the zoo-first
    # and the plain-first pairs in opposite directions and cancels, to first order, with an even
    # number of seeds; the ratio of the two sides' medians is kept beside it
    pairs = [z.step_s / q.step_s for z, q in zip(runs["zoo"], runs["plain"])]
    result["step_time_ratio"] = round(math.exp(statistics.fmean(math.log(r) for r in pairs)), 4)
    result["step_time_ratio_pairs"] = [round(r, 4) for r in pairs]
    result["step_time_ratio_of_medians"] = round(result["zoo/step_ms"] / result["plain/step_ms"], 4)
    if args.same_init:  # the same weights and batches: how far apart the two runs' training losses got
        result["train_loss_gap_max"] = max(abs(a - b) for z, q in zip(runs["zoo"], runs["plain"])
                                           for a, b in zip(z.train_losses, q.train_losses))
        print(f"  same initial weights: training losses differ by at most {result['train_loss_gap_max']:.2e}")
    print(f"  median step: zoo {result['zoo/step_ms']:.1f} ms, plain {result['plain/step_ms']:.1f} ms; per seed zoo / plain "
          + ", ".join(f"{r:.3f} ({first} first)" for r, first in zip(pairs, firsts))
          + f"; ratio (geometric mean) {result['step_time_ratio']:.3f} (target <= 1.05)"
          + ("" if firsts.count("zoo") == firsts.count("plain") else
             " -- an odd number of seeds or --same-init leaves the drift of the machine in it"))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
