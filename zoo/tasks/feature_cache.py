"""Frozen encoders see each image once: features computed on the first run, kept on disk.

The key is the encoder (class, every weight and buffer, so also which weights file it loaded, and
its input transform: resize, crop, normalisation) and the data
(the DataModule's fingerprint of a split: source, files, image size, blind). Any change in
either gives a new file, so a stale cache is never read.

A cache file is a ``.npy`` array written batch by batch into a memory map and read back
memory-mapped, so features of any size (COCO's grids) never have to fit in RAM at once. It is
written under a temporary name unique to the host and process, then renamed: a reader (another
rank, another run) sees a whole file or none. Under DDP, the first rank of each node computes
it while the others wait (:func:`shared_features`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def encoder_key(encoder: nn.Module) -> str:
    h = hashlib.sha256(f"{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    h.update(repr(getattr(encoder, "input_transform", None)).encode())  # zoo.encoders.transform.InputTransform
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


def cache_path(encoder: nn.Module, data_key: str, cache_dir: str | Path, grid: bool = False) -> Path:
    return Path(cache_dir) / f"{encoder_key(encoder)}-{data_key}{'-grid' if grid else ''}.npy"


@torch.no_grad()
def encode_store(encoder: nn.Module, store, path: Path, batch_size: int = 128, grid: bool = False) -> None:
    """All images of a store -> features in a ``.npy`` file at ``path``: (N, D), or with ``grid``
    (N, cells, C); written batch by batch, never all in memory, and renamed into place at the end."""
    if len(store) == 0:
        raise ValueError("no images to encode")
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    out = None
    try:
        for start in range(0, len(store), batch_size):
            images = torch.stack([store[i] for i in range(start, min(start + batch_size, len(store)))]).to(device)
            feats = (encoder.grid(images) if grid else encoder(images)).float().cpu().numpy()
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(store), *feats.shape[1:]))
            out[start:start + len(feats)] = feats
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        encoder.train(was_training)
        tmp.unlink(missing_ok=True)


def read_features(path: Path, n: int, dims: int) -> np.ndarray | None:
    """The cached features, memory-mapped, or None if the file is missing or does not fit the data."""
    if not path.exists():
        return None
    try:
        feats = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:  # a truncated or foreign file: recompute, never crash
        log.warning("features: cannot read %s (%s); computing again", path, e)
        return None
    if feats.ndim != dims or len(feats) != n or feats.dtype != np.float32:
        log.warning("features: %s does not match the data (shape %s); computing again", path, feats.shape)
        return None
    return feats


def cached_features(encoder: nn.Module, store, data_key: str, cache_dir: str | Path, grid: bool = False,
                    compute: bool = True) -> np.ndarray | None:
    """Features of every image in ``store`` (memory-mapped), from ``cache_dir`` when this encoder saw
    these images before; computed and written when not (``compute=False``: None instead)."""
    path = cache_path(encoder, data_key, cache_dir, grid)
    dims = 3 if grid else 2
    feats = read_features(path, len(store), dims)
    if feats is not None:
        log.info("features: read %s", path)
        return feats
    if not compute:
        return None
    encode_store(encoder, store, path, grid=grid)
    log.info("features: wrote %s", path)
    return read_features(path, len(store), dims)


def shared_features(trainer, encoder: nn.Module, store, data_key: str, cache_dir: str | Path,
                    grid: bool = False) -> np.ndarray:
    """:func:`cached_features` under DDP: each node's first rank computes what is missing, the
    others wait at a barrier and then read the same file."""
    if trainer is None or trainer.world_size == 1:
        return cached_features(encoder, store, data_key, cache_dir, grid)
    feats = cached_features(encoder, store, data_key, cache_dir, grid) if trainer.local_rank == 0 else None
    trainer.strategy.barrier("zoo.feature_cache")
    if feats is None:
        feats = cached_features(encoder, store, data_key, cache_dir, grid, compute=False)
    if feats is None:
        from zoo.errors import ZooError

        raise ZooError(f"features: rank {trainer.global_rank} cannot read {cache_path(encoder, data_key, cache_dir, grid)} "
                       f"after the first rank of its node wrote it (is paths.cache_dir on a disk every rank sees?)")
    return feats
