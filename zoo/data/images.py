"""Image stores: the unique images of a split, indexed by position, as float tensors in [0, 1].

A caption data set refers to images by index, so a frozen encoder's features can replace
the images (:class:`FeatureStore`) without the rest of the pipeline noticing, and the blind
ablation is one more store (:class:`BlindStore`).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from zoo.errors import DataError

ImageSource = Union[str, Path, bytes]


def _opaque_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparent parts (an alpha channel, or a palette's or grey image's transparent
    colour) composited onto white: a plain ``convert("RGB")`` drops the alpha and shows the
    colour stored under it, which in most transparent PNGs (emoji, clip art, icons) is black."""
    if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in im.info:
        return im.convert("RGB")
    im = im.convert("RGBA")
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    white.alpha_composite(im)
    return white.convert("RGB")


def read_image(source: ImageSource, size: int) -> np.ndarray:
    """Decode a file (or bytes), make it RGB (transparency onto white), resize the shorter side to
    ``size`` and crop the centre."""
    where = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im = _opaque_rgb(im)
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            return np.array(im.crop((left, top, left + size, top + size)))
    except FileNotFoundError as e:
        raise DataError(f"image not found: {where}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {where}: {e}. Replace or remove the file, "
                        f"or set data.on_bad=skip to leave such images out") from e


def check_image(source: ImageSource) -> str | None:
    """Why an image cannot be used (missing, corrupt, truncated), or None if it decodes.

    It really decodes: ``verify()`` alone passes a truncated JPEG (and a PNG whose data stream
    ends early), which would then fail mid-epoch in :func:`read_image`. JPEGs decode at 1/8
    scale (``draft``), which still reads every byte of the entropy-coded data but skips most
    of the inverse DCT."""
    try:
        if not isinstance(source, bytes) and not Path(source).is_file():
            return "file not found"
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if im.format == "JPEG":
                im.draft(None, (1, 1))  # the smallest scale the decoder offers
            im.load()
        return None
    except Exception as e:  # PIL raises many types for bad files (OSError, SyntaxError, DecompressionBombError, ...)
        return f"not a readable image ({type(e).__name__}: {e})"


def to_tensor(pixels: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)


class ArrayStore:
    """Images held in memory: (N, H, W, 3) uint8."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> Tensor:
        return to_tensor(self.pixels[i])


class FileStore:
    """Images decoded on access from files or bytes, resized to ``size``."""

    def __init__(self, sources: Sequence[ImageSource], size: int) -> None:
        self.sources = list(sources)
        self.size = size

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> Tensor:
        return to_tensor(read_image(self.sources[i], self.size))


class BlindStore:
    """The blind ablation: every image is zeros of the same shape."""

    def __init__(self, store, image_size: int) -> None:
        self.store = store
        self.shape = (3, image_size, image_size)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> Tensor:
        return torch.zeros(self.shape)


class FeatureStore:
    """Precomputed encoder features (N, D) or (N, cells, C) standing in for the images (frozen
    encoders): an array (usually memory-mapped from the cache) read one row at a time."""

    def __init__(self, features) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(np.array(self.features[i]))  # a copy of one row; the rest stays on disk


class FeaturesAndImages:
    """Both, for an encoder frozen now and fine-tuned later (``encoder.finetune_after``): the task
    reads the features while the encoder is frozen and the images after, with the same batches."""

    def __init__(self, features, images) -> None:
        self.features, self.images = FeatureStore(features), images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"features": self.features[i], "images": self.images[i]}


def read_picture(source: ImageSource, shape: tuple[int, int, int]) -> Tensor:
    """An image file as the model's input (C, H, W) in [0, 1]: RGB (C=3, the shorter side resized
    and the centre cropped, as in training) or grey (C=1, resized to H x W)."""
    c, h, w = shape
    if c == 3:
        return to_tensor(read_image(source, h))
    where = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            pixels = np.array(im.convert("L").resize((w, h), Image.Resampling.BILINEAR))
    except FileNotFoundError as e:
        raise DataError(f"image not found: {where}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {where}: {e}") from e
    return torch.from_numpy(pixels).float().div_(255.0).unsqueeze(0)
