"""Image captioning (one-to-many): an image encoder gives v, a decoder writes the caption.

Quality is measured on generated captions only (BLEU-1..4 from torchmetrics, CIDEr-D),
never teacher-forced; the teacher-forced loss and perplexity are reported beside them.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torchmetrics.text import BLEUScore, Perplexity

from zoo.data.images import read_picture
from zoo.heads.decoding import Generated, decode_options, sample_with_grad
from zoo.metrics.cider import CIDErD, CorpusCIDErD
from zoo.tasks.base import EVAL_SPLITS, EncoderExport, Task
from zoo.tasks.feature_cache import shared_features
from zoo.tasks.sample_sheet import draw_attention, draw_caption_sheet


def image_features(encoder: nn.Module, images: Tensor, grid: bool) -> Tensor:
    return encoder.grid(images) if grid else encoder(images)


log = logging.getLogger(__name__)

class CaptionEncoder(nn.Module):
    """Images -> what the decoder reads, as one module (for export)."""

    def __init__(self, encoder: nn.Module, grid: bool) -> None:
        super().__init__()
        self.encoder, self.grid = encoder, grid

    def forward(self, images: Tensor) -> Tensor:
        return image_features(self.encoder, images, self.grid)


class CaptioningTask(Task):
    inputs = {"image": ("image", "vector")}
    modes = ("one_to_many",)

    def __init__(
        self,
        *,
        encoder: Callable[..., nn.Module],
        cell: Callable[..., nn.Module],
        head: Callable[..., nn.Module],
        spec,
        optimizer,
        scheduler=None,
        decode: dict | None = None,
        feature_cache: str | None = None,
        samples: int = 16,
        scst: dict | None = None,
    ) -> None:
        super().__init__(spec=spec, optimizer=optimizer, scheduler=scheduler)
        vocab = spec.vocab
        self.encoder = encoder()
        self.decoder = head(cell=cell, vocab_size=len(vocab), cond_dim=self.encoder.out_dim,
                            grid_dim=self.encoder.grid_dim, start_id=vocab.start_id, end_id=vocab.end_id,
                            pad_id=vocab.pad_id)
        self.vocab = vocab
        self.decode = {"strategy": "beam", "beam_size": 3, "temperature": 1.0, "length_penalty": 1.0, "min_length": 1,
                       **(decode or {})}
        # decode.suppress_unk: a caption never says <UNK> (the word is ranked among the others in
        # training, and left out when writing), as captioning codebases do by default
        self.decode["suppress"] = [vocab.unk_id] if self.decode.pop("suppress_unk", True) else []
        self.max_len = spec.max_len or 20
        self.feature_cache = feature_cache
        self.n_samples = samples
        self.loss_fn = nn.CrossEntropyLoss(ignore_index=vocab.pad_id)
        for split in EVAL_SPLITS:
            self.add_split_metrics(split, {
                **{f"bleu{n}": BLEUScore(n_gram=n) for n in range(1, 5)},
                "cider": CIDErD(),
                "ppl": Perplexity(ignore_index=vocab.pad_id),
            })
        self.generated: dict[int, str] = {}  # test image index -> caption, for the sample sheet
        # self-critical sequence training in the last scst.epochs epochs (0: off)
        self.scst = {"epochs": 0, "baseline": "greedy", "samples": 5, "lr": None, "temperature": 1.0, **(scst or {})}
        if self.scst["baseline"] not in ("greedy", "mean"):
            raise ValueError(f"task.scst.baseline must be greedy or mean, got {self.scst['baseline']!r}")
        if self.scst["baseline"] == "mean" and self.scst["samples"] < 2:
            raise ValueError("task.scst.baseline=mean needs task.scst.samples >= 2 (the others' mean is each one's baseline)")
        self.reward: CorpusCIDErD | None = None

    # -- the model ------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """What the decoder reads: v (B, D), or the grid (B, N, C) for an attention decoder."""
        return image_features(self.encoder, images, self.decoder.uses_grid)

    def features(self, batch: dict) -> Tensor:
        """Cached features when the encoder is frozen, else the encoder's output."""
        if "features" in batch and ("images" not in batch or getattr(self.encoder, "frozen", False)):
            return batch["features"]
        return self.encode(batch["images"])

    def forward(self, images: Tensor, **decode: Any) -> Generated:
        """Caption images (B, 3, H, W) with the configured decoding (overridable by keyword)."""
        return self.decoder.generate(self.encode(images), max_len=self.max_len, **{**self.decode, **decode})

    def caption(self, v: Tensor) -> list[str]:
        out = self.decoder.generate(v, max_len=self.max_len, **self.decode)
        return [" ".join(self.vocab.decode(row)) for row in out.tokens.tolist()]

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if self.scst["epochs"] and stage == "fit" and dm is not None and self.reward is None:
            self.reward = CorpusCIDErD(dm.splits["train"].refs)  # the idf of the training references
        if getattr(self.encoder, "frozen", False) and self.feature_cache and dm is not None:
            for split in ("train",) + EVAL_SPLITS:
                store = dm.image_store(split)
                if not hasattr(store, "features"):  # not attached yet
                    dm.attach_features(split, shared_features(self.trainer, self.encoder, store, dm.fingerprint(split),
                                                              self.feature_cache, grid=self.decoder.uses_grid),
                                       keep_images=getattr(self.encoder, "finetune_after", None) is not None)

    # -- fine-tuning the encoder (encoder.finetune_after) ----------------------------------
    def _maybe_start_finetuning(self) -> None:
        at = getattr(self.encoder, "finetune_after", None)
        if at is not None and self.current_epoch >= at and self.encoder.frozen:  # also when resumed after it
            self.encoder.start_finetuning()  # from now on features() reads the images the batches also carry
            self.encoder.train(self.training)
            log.info("from epoch %d: fine-tuning the encoder's last %d block(s)", self.current_epoch,
                     self.encoder.finetune_blocks)

    # -- steps ------------------------------------------------------------------------
    @property
    def self_critical(self) -> bool:
        """In the self-critical epochs (the last task.scst.epochs of training)."""
        n = self.scst["epochs"]
        return bool(n) and self._trainer is not None and self.current_epoch >= self.trainer.max_epochs - n

    def on_train_epoch_start(self) -> None:
        self._maybe_start_finetuning()
        if self.self_critical and self.scst["lr"] and self.current_epoch == self.trainer.max_epochs - self.scst["epochs"]:
            for group in self.trainer.optimizers[0].param_groups:  # a smaller step for the policy gradient
                group["lr"] = self.scst["lr"]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.self_critical:
            return self._self_critical_step(batch)
        caps = batch["captions"]  # (B, L): <START> w.. <END> <PAD>..
        logits = self.decoder(self.features(batch), caps[:, :-1])  # (B, L-1, V)
        loss = self.check_finite(self.loss_fn(logits.flatten(0, 1), caps[:, 1:].flatten()))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/ppl", loss.detach().exp())
        return loss

    def _self_critical_step(self, batch: dict) -> Tensor:
        """Self-critical sequence training (Rennie et al. 2017): sample K captions per image,
        reward each with its CIDEr-D against the image's references, and follow the policy
        gradient -(r - b) log p(caption) with the baseline b the reward of the greedy caption
        (scst.baseline=greedy) or the mean of the image's other samples (mean)."""
        v, index = self.features(batch), batch["index"].tolist()
        K, s = self.scst["samples"], self.scst
        sampled = sample_with_grad(self.decoder, v, n=K, max_len=self.max_len, temperature=s["temperature"],
                                   min_length=self.decode.get("min_length", 0),
                                   no_repeat_ngram=self.decode.get("no_repeat_ngram", 0),
                                   suppress=self.decode["suppress"])
        words = lambda out: [" ".join(self.vocab.decode(row)) for row in out.tokens.tolist()]
        reward = torch.tensor(self.reward.scores(words(sampled), [i for i in index for _ in range(K)]),
                              device=v.device).view(-1, K)  # (B, K)
        if s["baseline"] == "greedy":  # the caption the model writes at test time: eval mode (no dropout)
            was_training = self.training
            self.eval()
            with torch.no_grad():
                greedy = self.decoder.generate(self.features(batch), strategy="greedy", max_len=self.max_len,
                                               min_length=self.decode.get("min_length", 0),
                                               suppress=self.decode["suppress"])
            self.train(was_training)
            baseline = torch.tensor(self.reward.scores(words(greedy), index), device=v.device).unsqueeze(1)
        else:
            baseline = (reward.sum(1, keepdim=True) - reward) / (K - 1)
        loss = self.check_finite(-((reward - baseline) * sampled.scores.view(-1, K)).mean())
        self.log_dict({"train/loss": loss, "train/reward": reward.mean(), "train/reward_baseline": baseline.mean()},
                      prog_bar=True)
        return loss

    def _eval_step(self, split: str, batch: dict) -> None:
        v = self.features(batch)  # (B, D)
        caps = batch["captions"]  # (R, L): all references of the batch's images
        logits = self.decoder(v[batch["owner"]], caps[:, :-1])
        m = self.split_metrics(split)
        m["ppl"].update(logits.float(), caps[:, 1:])
        hyps = self.caption(v)
        for n in range(1, 5):
            m[f"bleu{n}"].update(hyps, batch["refs"])
        m["cider"].update(hyps, batch["refs"])
        if split == "test":
            self.generated.update(zip(batch["index"].tolist(), hyps))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_start(self) -> None:
        self.generated = {}

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        # each rank captioned its shard: the run's captions, samples and tables cover the whole split
        self.generated = {i: c for part in self.gather(self.generated) for i, c in part.items()}

    def derived_metrics(self, split: str, values: dict[str, Tensor]) -> dict[str, Tensor]:
        return {f"{split}/loss": values[f"{split}/ppl"].log()}  # nats per word, teacher-forced

    @torch.no_grad()
    def predict_one(self, raw: str, **decode: Any) -> dict:
        """Caption an image file."""
        image = read_picture(raw, self.spec.image_shape).unsqueeze(0).to(self.device)
        out = self(image, **decode)
        return {"caption": " ".join(self.vocab.decode(out.tokens[0].tolist())), "score": float(out.scores[0])}

    def predict_options(self, **cli: Any) -> dict:
        return decode_options(**cli)

    def export_encoder(self, fmt: str) -> EncoderExport:
        """Images (B, 3, H, W) -> v (B, D), or the grid (B, N, C) for an attention decoder; any
        number of images of the data's size. Captions are the words joined by spaces (as predict)."""
        return EncoderExport(CaptionEncoder(self.encoder, self.decoder.uses_grid),
                             (torch.rand(2, *self.spec.image_shape),), ({0: "batch"},), {})

    def media(self, datamodule) -> dict:
        """A table of test images with their generated and reference captions."""
        from PIL import Image

        split = datamodule.splits["test"]
        rows = []
        for i in sorted(self.generated)[: self.n_samples]:
            pic = (split.display[i].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
            rows.append([Image.fromarray(pic), self.generated[i], " | ".join(split.refs[i])])
        return {"test/samples": {"table": {"columns": ["image", "generated", "references"], "rows": rows}}}

    # -- artefacts ----------------------------------------------------------------------
    def write_artifacts(self, run_dir: Path, datamodule) -> list[Path]:
        """samples.png: test images with the generated and the reference captions;
        test_captions.json: the caption of every test image; with an attention decoder also
        attention/<image>.png: where it looked for each word."""
        split = datamodule.splits["test"]
        chosen = sorted(self.generated)[: self.n_samples]
        if not chosen:
            return []
        names = {split.names[i]: self.generated[i] for i in sorted(self.generated)}
        (run_dir / "test_captions.json").write_text(json.dumps(names, indent=1) + "\n")
        path = run_dir / "samples.png"
        images = [split.display[i] for i in chosen]
        draw_caption_sheet(images, [self.generated[i] for i in chosen], [split.refs[i] for i in chosen], path)
        written = [path, run_dir / "test_captions.json"]
        if self.decoder.uses_grid:
            (run_dir / "attention").mkdir(exist_ok=True)
            for i, image in zip(chosen, images):
                words = self.generated[i].split()
                grid = self.encode(image.unsqueeze(0).to(self.device))
                ids = torch.tensor([[self.vocab.start_id] + self.vocab.encode(words)], device=self.device)
                with torch.no_grad():
                    self.decoder.eval()
                    _, alpha = self.decoder(grid, ids, return_attention=True)  # (1, T, N)
                out = run_dir / "attention" / f"{split.names[i].replace('/', '_')}.png"
                draw_attention(image, words, alpha[0, : len(words)].cpu(), out)
                written.append(out)
        return written
