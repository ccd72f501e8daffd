"""Batches of similar lengths: less padding, less wasted compute on sequence tasks.

``BucketBatchSampler`` shuffles the examples, cuts them into pools of ``batch_size * pool``,
sorts each pool by length, cuts batches from it and shuffles the batches. Every example is in
exactly one batch per epoch; the order depends only on ``seed`` and the epoch. Under
distributed training each rank takes every ``num_replicas``-th batch (padded to equal counts
so no rank waits for a batch that never comes).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, pool: int = 50,
                 seed: int = 0, drop_last: bool = False, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.shuffle, self.pool, self.seed, self.drop_last = batch_size, shuffle, pool, seed, drop_last
        if num_replicas is None or rank is None:
            dist = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = torch.distributed.get_world_size() if dist else 1
            rank = torch.distributed.get_rank() if dist else 0
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, n, size):
            chunk = order[start:start + size]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1:
            per_rank = -(-len(batches) // self.num_replicas)
            batches += batches[: per_rank * self.num_replicas - len(batches)]  # equal counts on every rank
            batches = batches[self.rank::self.num_replicas]
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.lengths)
        total = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.pool and not self.drop_last:
            size = self.batch_size * self.pool
            total = sum(-(-min(size, n - s) // self.batch_size) for s in range(0, n, size))
        return -(-total // self.num_replicas)
