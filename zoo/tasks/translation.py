"""Translation (many-to-many, seq2seq): read a source sentence, then write the target.

A source embedding (the ``encoder`` group) and an encoder RNN (the ``cell`` config, optionally
bidirectional) turn the source into memory states; the seq2seq head (the decoder RNN, same
cell config, with attention by config) writes the target. Metrics on generated text only,
chosen by ``task.metrics`` among BLEU and chrF (sacreBLEU's, through torchmetrics; 0-100) and
word and character error rates (WER, CER; 0-1, lower is better), each computed on the
detokenised translation against the reference as the data has it (untokenised; cased unless
data.lowercase); ``lowercase_bleu`` adds lower-cased BLEU/chrF beside them (``bleu_lc``,
``chrf_lc``). The teacher-forced loss is always there. The test translations (source,
reference, hypothesis) go to ``test_translations.json`` in the run folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.text import CharErrorRate, CHRFScore, SacreBLEUScore, WordErrorRate

from zoo.data.spec import DataSpec
from zoo.data.tokenizers import TextTokenizer
from zoo.errors import ConfigError, ZooError
from zoo.heads.decoding import Generated, decode_options
from zoo.recurrence import build
from zoo.tasks.base import EVAL_SPLITS, EncoderExport, Task, build_encoder


class SourceEncoder(nn.Module):
    """Source tokens -> memory states (B, S, D*H), their mask (B, S), and a summary (B, D*H)."""

    def __init__(self, embed: nn.Module, recurrence: nn.Module) -> None:
        super().__init__()
        self.embed, self.recurrence = embed, recurrence

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        memory, final, _ = self.recurrence(self.embed(src), lengths)
        return self.outputs(memory, final, src, lengths)

    def outputs(self, memory: Tensor, final: list, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The recurrence's outputs and final state -> (memory, its padding mask, the summary)."""
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < lengths.to(src.device)[:, None]
        return memory, mask, self.recurrence.summary(final)


class ExportedSource(nn.Module):
    """The source encoder as a TorchScript trace records it (``--format torchscript``; torch.export
    records the loop as one scan instead). With a torch kernel, its recurrence is one op, so the
    trace holds for any source length. Without (a cell the loop steps), the traced loop has a fixed
    number of steps: sources are padded to ``pad_to`` first (padding never changes an example), so
    any source up to that length works."""

    def __init__(self, source: SourceEncoder, pad_to: int | None) -> None:
        super().__init__()
        self.source, self.pad_to = source, pad_to
        self.kernel = source.recurrence.as_torch_module() if pad_to is None else None

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        from zoo.recurrence.fused import run_kernel, to_kernel_state

        if self.kernel is None:
            return self.source(nn.functional.pad(src, (0, self.pad_to - src.shape[1])), lengths)
        rec = self.source.recurrence  # for the state layout and the summary
        hx = to_kernel_state(rec.init_state(src.shape[0], device=src.device))
        memory, final = run_kernel(self.kernel, None, self.source.embed(src), lengths, hx)
        return self.source.outputs(memory, final, src, lengths)


#: task.metrics: name -> the metric (given whether to lower-case first); all on generated text
METRICS: dict[str, Callable[[bool], Metric]] = {
    "bleu": lambda lc: SacreBLEUScore(lowercase=lc),  # 13a tokenisation, as sacreBLEU reports it
    "chrf": lambda lc: CHRFScore(n_word_order=0, lowercase=lc),  # chrF (sacreBLEU's default), not chrF++
    "wer": lambda _: WordErrorRate(),
    "cer": lambda _: CharErrorRate(),
}
PERCENT = ("bleu", "chrf")  # reported 0-100, as sacreBLEU does; error rates stay 0-1


def chosen_metrics(names: Sequence[str]) -> list[str]:
    """task.metrics, checked: known names, each once, at least one."""
    names = list(dict.fromkeys(str(n) for n in names))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ConfigError(f"task.metrics={names}: {'unknown ' + ', '.join(unknown) if unknown else 'none chosen'}; "
                          f"choose among {', '.join(METRICS)}, e.g. task.metrics=[bleu,chrf,wer,cer]")
    return names


class TranslationTask(Task):
    inputs = {"tokens": ("tokens", "sequence")}
    modes = ("seq2seq",)

    def __init__(self, *, encoder: Callable[..., nn.Module], cell: Callable[..., nn.Module],
                 head: Callable[..., nn.Module], spec: DataSpec, optimizer, scheduler=None,
                 bidirectional_encoder: bool = True, decode: dict | None = None, lowercase_bleu: bool = False,
                 metrics: Sequence[str] = ("bleu", "chrf")) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        vocab = spec.vocab
        embed = build_encoder(encoder, spec, vocab=spec.src_vocab)
        self.source = SourceEncoder(embed, build(cell, input_size=embed.out_dim, bidirectional=bidirectional_encoder))
        self.decoder = head(cell=cell, vocab_size=len(vocab), memory_dim=self.source.recurrence.output_size,
                            start_id=vocab.start_id, end_id=vocab.end_id, pad_id=vocab.pad_id)
        self.decode = {"strategy": "beam", "beam_size": 5, "length_penalty": 1.0, **(decode or {})}
        self.max_len = spec.max_len or 50
        self.metric_names = chosen_metrics(metrics)
        for split in EVAL_SPLITS:
            group: dict[str, nn.Module] = {name: METRICS[name](False) for name in self.metric_names}
            if lowercase_bleu:  # the lower-cased figures, beside the cased ones
                group.update({f"{name}_lc": METRICS[name](True) for name in self.metric_names if name in PERCENT})
            self.add_split_metrics(split, {**group, "loss": MeanMetric()})
        self.add_split_metrics("train", {"loss": MeanMetric()})
        self.translations: dict[int, dict[str, str]] = {}  # test index -> source, reference, hypothesis

    @property
    def encoder(self) -> nn.Module:
        return self.source.embed

    def encode_source(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """memory (B, S, D*H), mask (B, S), summary (B, D*H) of the source."""
        return self.source(src, lengths)

    def forward(self, src: Tensor, lengths: Tensor, **decode: Any) -> Generated:
        """Translate id sequences (B, S) with the configured decoding (overridable by keyword)."""
        return self.decoder.generate(self.encode_source(src, lengths), max_len=self.max_len,
                                     **{**self.decode, **decode})

    def _loss(self, split: str, batch: dict) -> Tensor:
        memory, mask, summary = self.encode_source(batch["src"], batch["src_lengths"])
        tgt = batch["tgt"]
        logits = self.decoder(memory, mask, summary, tgt[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=self.spec.vocab.pad_id)
        self.split_metrics(split)["loss"].update(loss.detach(), weight=int((tgt[:, 1:] != self.spec.vocab.pad_id).sum()))
        return loss

    def tokenizers(self) -> tuple[TextTokenizer, TextTokenizer]:
        """(source, target): the data's, from the spec (a checkpoint from before the spec carried
        them: the config's word tokenizer)."""
        if self.spec.tokenizer is not None:
            return self.spec.src_tokenizer or self.spec.tokenizer, self.spec.tokenizer
        data = (self.run_config or {}).get("data", {})
        words = TextTokenizer(data.get("tokenizer") or "words", lowercase=bool(data.get("lowercase", False)))
        return words, words

    def detokenize(self, ids: Sequence[int]) -> str:
        """Target ids -> text: the tokens the ids stand for, joined by the target's tokenizer."""
        return self.tokenizers()[1].join(self.spec.vocab.decode(ids))

    def translate(self, batch: dict) -> list[str]:
        out = self(batch["src"], batch["src_lengths"])
        return [self.detokenize(row) for row in out.tokens.tolist()]

    @torch.no_grad()
    def predict_one(self, raw: str, **decode: Any) -> dict:
        """Translate one sentence."""
        ids = self.spec.src_vocab.encode(self.tokenizers()[0].split(raw))
        if not ids:
            raise ZooError("an empty sentence")
        out = self(torch.tensor([ids], device=self.device), torch.tensor([len(ids)]), **decode)
        return {"translation": self.detokenize(out.tokens[0].tolist()), "score": float(out.scores[0])}

    def predict_options(self, **cli: Any) -> dict:
        return decode_options(**cli)

    def export_encoder(self, fmt: str) -> EncoderExport:
        """(source ids (B, S), lengths (B,)) -> (memory, mask, summary), for any B and S: torch.export
        records the source's loop as one scan (:mod:`zoo.recurrence.graph`). A TorchScript trace
        unrolls it instead (see :class:`ExportedSource`). The runner joins the target tokens
        with the data's tokenizer (subwords, characters: the text predict gives), carried here."""
        example = (torch.randint(4, len(self.spec.src_vocab), (2, 7)), torch.tensor([7, 4]))
        source, target = self.tokenizers()
        meta: dict[str, Any] = {"tokenizer": target.to_dict(), "source_tokenizer": source.to_dict()}
        module: nn.Module = self.source
        if fmt == "torchscript":
            has_kernel = getattr(type(self.source.recurrence.cells[0]), "fused_kernel", None) is not None
            pad_to = None if has_kernel else self.max_len
            module, meta["max_source_len"] = ExportedSource(self.source, pad_to), pad_to
        return EncoderExport(module, example, ({0: "batch", 1: "source"}, {0: "batch"}), meta)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.check_finite(self._loss("train", batch))
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_split_metrics("train")

    def _eval_step(self, split: str, batch: dict) -> None:
        self._loss(split, batch)
        hyps = self.translate(batch)
        for name, metric in self.split_metrics(split).items():
            if name == "loss":
                continue
            # BLEU and chrF take a list of references per sentence; WER and CER one reference
            metric.update(hyps, [[r] for r in batch["refs"]] if name.split("_")[0] in PERCENT else batch["refs"])
        if split == "test" and "index" in batch:
            self.translations.update({i: {"source": s, "reference": r, "hypothesis": h} for i, s, r, h in
                                      zip(batch["index"].tolist(), batch["sources"], batch["refs"], hyps)})

    def derived_metrics(self, split: str, values: dict[str, Tensor]) -> dict[str, Tensor]:
        if split == "train":
            return {}
        # 0-100, as sacreBLEU reports them
        return {k: v * 100 for k, v in values.items() if k.split("/", 1)[1].split("_")[0] in PERCENT}

    def on_fit_start(self) -> None:
        monitor = self._monitor()
        split, _, name = monitor.partition("/")
        if split == "val" and name not in self.split_metrics("val"):
            measured = ", ".join(f"val/{n}" for n in self.split_metrics("val"))
            raise ConfigError(f"monitor.metric={monitor} is not measured with task.metrics={self.metric_names}: "
                              f"add {name.split('_')[0]} to task.metrics, or monitor one of {measured} "
                              "(monitor.direction=minimize for wer, cer and loss)")

    def on_test_epoch_start(self) -> None:
        self.translations = {}

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        # each rank translated its shard: the file covers the whole split
        self.translations = {i: t for part in self.gather(self.translations) for i, t in part.items()}

    def write_artifacts(self, run_dir: Path, datamodule) -> list[Path]:
        """test_translations.json: every test sentence's source, reference and hypothesis, in order."""
        if not self.translations:
            return []
        path = run_dir / "test_translations.json"
        rows = [self.translations[i] for i in sorted(self.translations)]
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        return [path]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)
