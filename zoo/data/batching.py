"""Batches of similar lengths, sharded over ranks, resumable mid-epoch.

``BucketBatchSampler`` shuffles the examples, cuts them into pools of ``batch_size * pool``,
sorts each pool by length and cuts *global* batches of ``batch_size * num_replicas`` from it,
then shuffles the global batches. Rank r takes its slice of each global batch, so a run on N
ranks sees exactly the global batches that one process with an N times larger batch sees.
The order depends only on ``seed`` and the epoch; every example is in one batch per epoch.

Training (``pad=True``): every rank gets the same number of batches (a short last global
batch is topped up with repeats), since every step all-reduces gradients.
Evaluation (``pad=False``): no repeats, so metrics count every example exactly once; ranks
may get one batch less, which is safe because evaluation has no collective per step.

``StatefulLoader`` lets Lightning save how far into an epoch training got and skip those
batches after a resume (Lightning saves the state of loaders that have ``state_dict``).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Sampler


def dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, pool: int = 50,
                 seed: int = 0, pad: bool | None = None, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.shuffle, self.pool, self.seed = batch_size, shuffle, max(1, pool), seed
        self.pad = shuffle if pad is None else pad
        if num_replicas is None or rank is None:
            rank, num_replicas = dist_rank_world()
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.skip = 0  # batches of this epoch already consumed before a resume

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        size = self.batch_size * self.num_replicas
        batches = []
        for start in range(0, n, size * self.pool):
            chunk = order[start:start + size * self.pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [chunk[i:i + size].tolist() for i in range(0, len(chunk), size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def _mine(self, batch: list[int]) -> list[int]:
        """This rank's part of a global batch: near-equal contiguous slices."""
        W = self.num_replicas
        if self.pad and len(batch) < W:
            batch = (batch * W)[:W]  # a tiny last batch: repeat so that every rank has one
        per, extra = divmod(len(batch), W)
        start = self.rank * per + min(self.rank, extra)
        return batch[start:start + per + (self.rank < extra)]

    def __iter__(self) -> Iterator[list[int]]:
        mine = [self._mine(b) for b in self.global_batches()]
        mine = [b for b in mine if b]
        for b in mine[self.skip:]:
            yield b
        self.skip = 0

    def __len__(self) -> int:
        # the whole epoch, also after a resume: Lightning counts the batches done before it and
        # ends the epoch at this length (the skipped ones are not yielded again)
        return sum(1 for b in self.global_batches() if self._mine(b))


class StatefulLoader(DataLoader):
    """A DataLoader whose position in the epoch survives a checkpoint.

    It draws its workers' base seed from a generator of its own (seeded by the sampler's seed
    and epoch), never from torch's global one: starting an iterator must not move the random
    numbers that dropout draws, or a run resumed mid-epoch (whose iterator starts after the
    restored random state) would drop out other units than the run it continues."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(*args, **kwargs)
        self._seen = 0

    def __iter__(self):
        sampler = self.batch_sampler
        self.generator.manual_seed(getattr(sampler, "seed", 0) * 100003 + getattr(sampler, "epoch", 0))
        self._seen = getattr(sampler, "skip", 0)
        for batch in super().__iter__():
            self._seen += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": getattr(self.batch_sampler, "epoch", 0), "seen": self._seen}

    def load_state_dict(self, state: dict) -> None:
        sampler = self.batch_sampler
        if hasattr(sampler, "skip"):
            sampler.epoch = state["epoch"]
            sampler.skip = state["seen"]
