"""The captioning DataModule: images with several reference captions each.

A source (built-in shapes, a Karpathy-split JSON, a Hugging Face set) only says how to read
one split: :meth:`CaptioningData.read_split` returns a :class:`RawSplit` (an image store plus
the captions of each image). Everything else lives here once: checking the input
(missing/corrupt images, empty or too long captions: an error, or a counted skip), the
vocabulary (training captions, min-count), the blind ablation, swapping images for cached
encoder features, and the batches.

Batches (dicts):
    train   images (B, 3, S, S) or features (B, D); captions (B, L) = <START> w.. <END> <PAD>..;
            index (B,) the image's position in the training split (its references: self-critical training)
    eval    images/features (B, ...); captions (R, L): every reference of the B images,
            owner (R,) the image each belongs to; refs: B lists of reference strings;
            index (B,) the image's position in its split
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from zoo.data.bad_input import BadInput
from zoo.data.batching import BucketBatchSampler, StatefulLoader
from zoo.data.images import BlindStore, FeaturesAndImages, FeatureStore, check_image
from zoo.data.spec import DataSpec
from zoo.data.vocab import Vocabulary, tokenize_caption
from zoo.errors import DataError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


@dataclass
class RawSplit:
    """What a source reads: an image store, a name per image, and each image's captions.

    ``sources`` (paths or bytes) are given when images come from files, so they can be checked.
    """

    store: object  # supports len() and [i] -> (3, S, S) float tensor
    names: list[str]
    captions: list[list[str]]
    sources: Sequence | None = None
    fingerprint: str = ""


@dataclass
class CaptionSplit:
    store: object
    names: list[str]
    refs: list[list[str]]  # tokenised, space-joined references per image
    ids: list[list[list[int]]]  # per image, per reference: <START> ... <END>
    fingerprint: str
    display: object  # the images as they are (also under blind or cached features), for pictures


class CaptioningData(pl.LightningDataModule):
    provides = "image"
    #: image_size=None in a config: the size the encoder asks for (zoo.run.checks.settle_image_size)
    image_size_from_encoder = True

    def __init__(
        self,
        *,
        batch_size: int = 64,
        eval_batch_size: int = 100,
        num_workers: int = 0,
        image_size: int = 32,
        max_len: int = 16,
        min_count: int = 1,
        blind: bool = False,
        on_bad: Literal["error", "skip"] = "error",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.max_len = max_len
        self.min_count = min_count
        self.blind = blind
        self.seed = seed  # batch order
        self.bad = BadInput(on_bad)
        self.fixed: DataSpec | None = None  # a trained model's vocabulary (evaluation)
        self.splits: dict[str, CaptionSplit] = {}
        self.vocab: Vocabulary | None = None

    # -- what a source implements ------------------------------------------------------
    def read_split(self, split: str) -> RawSplit:
        raise NotImplementedError

    # -- set-up ------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        raw = {s: self.read_split(s) for s in SPLITS}
        tokenised = {s: self._check(s, r) for s, r in raw.items()}
        self.vocab = self.fixed.vocab if self.fixed else Vocabulary.build(
            (c for caps in tokenised["train"][1] for c in caps), self.min_count)
        for s, r in raw.items():
            keep, caps = tokenised[s]
            store = r.store if keep is None else _Subset(r.store, keep)
            names = r.names if keep is None else [r.names[i] for i in keep]
            display = store
            if self.blind:
                store = BlindStore(store, self.image_size)
            ids = [[self.vocab.encode(c, start=True, end=True) for c in cs] for cs in caps]
            fp = hashlib.sha256(f"{type(self).__name__}|{s}|{r.fingerprint}|{self.image_size}|{self.blind}|{keep}".encode()).hexdigest()[:16]
            self.splits[s] = CaptionSplit(store, names, [[" ".join(c) for c in cs] for cs in caps], ids, fp, display)
        self.bad.report()
        log.info("data: %s; vocabulary of %d words (min_count=%d)",
                 ", ".join(f"{s} {len(v.names)} images" for s, v in self.splits.items()), len(self.vocab), self.min_count)

    def _check(self, split: str, raw: RawSplit) -> tuple[list[int] | None, list[list[list[str]]]]:
        """Tokenise captions; find empty or too long captions and unreadable images."""
        if len(raw.captions) != len(raw.store) or len(raw.names) != len(raw.store):
            raise DataError(f"{split}: {len(raw.store)} images but {len(raw.captions)} caption lists")
        keep, out, dropped = [], [], False
        for i, caps in enumerate(raw.captions):
            problem = check_image(raw.sources[i]) if raw.sources is not None else None
            if problem:
                self.bad(f"{split}: image {raw.names[i]}: {problem}", "unreadable images")
                dropped = True
                continue
            good = []
            for k, text in enumerate(caps):
                toks = tokenize_caption(text) if isinstance(text, str) else []
                if not toks:
                    self.bad(f"{split}: image {raw.names[i]}, caption {k}: empty caption {text!r}", "empty captions")
                elif len(toks) > self.max_len:
                    self.bad(f"{split}: image {raw.names[i]}, caption {k}: {len(toks)} words, longer than "
                              f"data.max_len={self.max_len}. Raise data.max_len", "captions longer than data.max_len")
                else:
                    good.append(toks)
            if not good:
                self.bad(f"{split}: image {raw.names[i]} has no usable caption", "images without captions")
                dropped = True
                continue
            keep.append(i)
            out.append(good)
        if not keep:
            raise DataError(f"{split}: no usable image-caption pairs left (see the warnings above)")
        return (keep if dropped else None), out

    def use_spec(self, spec: DataSpec) -> None:
        """Encode with a trained model's vocabulary instead of building one."""
        self.fixed = spec

    def eval_dataloader(self, split: str) -> DataLoader:
        return self._eval_loader(split)

    @property
    def spec(self) -> DataSpec:
        if self.vocab is None:
            raise RuntimeError("call setup() first")
        return DataSpec(vocab=self.vocab, image_shape=(3, self.image_size, self.image_size), max_len=self.max_len)

    def fingerprint(self, split: str) -> str:
        """Identifies a split's images (source, files, size, blind): a key for feature caches."""
        return self.splits[split].fingerprint

    def image_store(self, split: str):
        return self.splits[split].store

    def attach_features(self, split: str, features, keep_images: bool = False) -> None:
        """Replace a split's images by precomputed encoder features, an array (N, D) or (N, cells, C)
        (a frozen encoder's, memory-mapped from the cache); with ``keep_images`` batches carry both
        (an encoder fine-tuned later)."""
        s = self.splits[split]
        if len(features) != len(s.store):
            raise ValueError(f"{split}: {len(features)} feature rows for {len(s.store)} images")
        s.store = FeaturesAndImages(features, s.store) if keep_images else FeatureStore(features)

    # -- loaders -----------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        s = self.splits["train"]
        pairs = [(i, ids) for i, caps in enumerate(s.ids) for ids in caps]
        # plain shuffled batches: captions are short (little padding to save), and length buckets
        # would gather one kind of scene per batch, which trains the CNN's batch norm badly
        sampler = BucketBatchSampler([0] * len(pairs), self.batch_size, shuffle=True, seed=self.seed)
        return StatefulLoader(_Pairs(s.store, pairs), batch_sampler=sampler, num_workers=self.num_workers,
                              collate_fn=_collate_pairs, persistent_workers=self.num_workers > 0)

    def _eval_loader(self, split: str) -> DataLoader:
        s = self.splits[split]
        sampler = BucketBatchSampler([0] * len(s.names), self.eval_batch_size, shuffle=False)  # sharded over ranks
        return DataLoader(_Images(s), batch_sampler=sampler, num_workers=self.num_workers, collate_fn=_collate_images)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class _Subset:
    def __init__(self, store, index: list[int]) -> None:
        self.store, self.index = store, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Tensor:
        return self.store[self.index[i]]


def _image_key(store) -> str:
    return "features" if isinstance(store, FeatureStore) else "both" if isinstance(store, FeaturesAndImages) else "images"


def _stacked(key: str, inputs: list) -> dict[str, Tensor]:
    """The batch's images and/or features: {"images": (B, ...)}, {"features": ...} or both."""
    if key == "both":
        return {k: torch.stack([x[k] for x in inputs]) for k in ("features", "images")}
    return {key: torch.stack(inputs)}


class _Pairs(Dataset):
    def __init__(self, store, pairs: list[tuple[int, list[int]]]) -> None:
        self.store, self.pairs, self.key = store, pairs, _image_key(store)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int):
        i, ids = self.pairs[k]
        return self.key, self.store[i], ids, i


class _Images(Dataset):
    def __init__(self, split: CaptionSplit) -> None:
        self.split, self.key = split, _image_key(split.store)

    def __len__(self) -> int:
        return len(self.split.names)

    def __getitem__(self, i: int):
        return self.key, self.split.store[i], self.split.ids[i], self.split.refs[i], i


def pad(seqs: Sequence[Sequence[int]], pad_id: int = Vocabulary.pad_id) -> Tensor:
    """Token id lists -> (N, L) right-padded."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def _collate_pairs(items):
    key = items[0][0]
    return {**_stacked(key, [it[1] for it in items]), "captions": pad([it[2] for it in items]),
            "index": torch.tensor([it[3] for it in items])}


def _collate_images(items):
    key = items[0][0]
    caps = [c for it in items for c in it[2]]
    owner = torch.tensor([b for b, it in enumerate(items) for _ in it[2]])
    return {**_stacked(key, [it[1] for it in items]), "captions": pad(caps), "owner": owner,
            "refs": [it[3] for it in items], "index": torch.tensor([it[4] for it in items])}
