"""Frozen encoders see each image once: features computed on the first run, kept on disk.

The key is the encoder (class, every weight and buffer, input size) and the data
(the DataModule's fingerprint of a split: source, files, image size, blind). Any change in
either gives a new file, so a stale cache is never read. Files are written atomically.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


def encoder_key(encoder: nn.Module) -> str:
    h = hashlib.sha256(f"{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    h.update(repr(getattr(encoder, "input_size", None)).encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


@torch.no_grad()
def encode_store(encoder: nn.Module, store, batch_size: int = 128, grid: bool = False) -> torch.Tensor:
    """All images of a store -> features on the CPU: (N, D), or with ``grid`` (N, cells, C)."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = []
    for start in range(0, len(store), batch_size):
        images = torch.stack([store[i] for i in range(start, min(start + batch_size, len(store)))])
        images = images.to(device)
        out.append((encoder.grid(images) if grid else encoder(images)).float().cpu())
    encoder.train(was_training)
    return torch.cat(out)


def cached_features(encoder: nn.Module, store, data_key: str, cache_dir: str | Path, grid: bool = False) -> torch.Tensor:
    """Features of every image in ``store``, from ``cache_dir`` when this encoder saw these images before."""
    path = Path(cache_dir) / f"{encoder_key(encoder)}-{data_key}{'-grid' if grid else ''}.pt"
    if path.exists():
        try:
            feats = torch.load(path, weights_only=True, map_location="cpu")
            if isinstance(feats, torch.Tensor) and feats.dim() == (3 if grid else 2) and len(feats) == len(store):
                log.info("features: read %s", path)
                return feats
            log.warning("features: %s does not match the data (shape %s); computing again", path, tuple(feats.shape))
        except Exception as e:  # a truncated or foreign file: recompute, never crash
            log.warning("features: cannot read %s (%s); computing again", path, e)
    feats = encode_store(encoder, store, grid=grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(feats, tmp)
    os.replace(tmp, path)
    log.info("features: wrote %s %s", path, tuple(feats.shape))
    return feats
