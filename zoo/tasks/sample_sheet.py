"""A picture of results: images beside the generated and the reference captions."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

THUMB = 128
TEXT_W = 360


def draw_caption_sheet(images: Sequence[Tensor], generated: Sequence[str], references: Sequence[Sequence[str]],
                       path: Path, columns: int = 2) -> None:
    """images (3, H, W) in [0, 1]; one tile per image: the picture, the generated caption in
    bold colour, then the references in grey."""
    font = ImageFont.load_default(size=13)
    tiles = []
    for img, gen, refs in zip(images, generated, references):
        lines = [("generated: " + (gen or "(empty)"), (20, 70, 170))]
        lines += [(f"ref {k + 1}: {r}", (90, 90, 90)) for k, r in enumerate(refs[:5])]
        wrapped = [(w, colour) for text, colour in lines for w in textwrap.wrap(text, 48)]
        h = max(THUMB, 16 * len(wrapped) + 8) + 8
        tile = Image.new("RGB", (THUMB + TEXT_W + 16, h), "white")
        pic = (img.clamp(0, 1) * 255).byte().permute(1, 2, 0).cpu().numpy()
        tile.paste(Image.fromarray(pic).resize((THUMB, THUMB), Image.Resampling.NEAREST), (4, 4))
        draw = ImageDraw.Draw(tile)
        for k, (text, colour) in enumerate(wrapped):
            draw.text((THUMB + 12, 4 + 16 * k), text, fill=colour, font=font)
        tiles.append(tile)
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    width = max(sum(t.width for t in row) for row in rows)
    sheet = Image.new("RGB", (width, sum(max(t.height for t in row) for row in rows)), "white")
    y = 0
    for row in rows:
        x = 0
        for t in row:
            sheet.paste(t, (x, y))
            x += t.width
        y += max(t.height for t in row)
    sheet.save(path)


def draw_attention(image: Tensor, words: Sequence[str], alpha: Tensor, path: Path, size: int = 96) -> None:
    """One panel per generated word: the image, brightened where the decoder looked.
    alpha (T, N) with N = h * w grid cells (a square grid)."""
    import math

    import numpy as np

    side = int(round(math.sqrt(alpha.shape[1])))
    pic = np.asarray(Image.fromarray((image.clamp(0, 1) * 255).byte().permute(1, 2, 0).cpu().numpy())
                     .resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    font = ImageFont.load_default(size=12)
    panels = []
    for word, a in zip(words, alpha):
        heat = Image.fromarray((a.view(side, side) / a.max().clamp(min=1e-8) * 255).byte().numpy())
        heat = np.asarray(heat.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)[..., None] / 255
        shown = (pic * (0.25 + 0.75 * heat)).clip(0, 255).astype(np.uint8)
        panel = Image.new("RGB", (size, size + 18), "white")
        panel.paste(Image.fromarray(shown), (0, 0))
        ImageDraw.Draw(panel).text((2, size + 2), word, fill=(0, 0, 0), font=font)
        panels.append(panel)
    sheet = Image.new("RGB", (max(1, len(panels)) * (size + 4), size + 18), "white")
    for k, panel in enumerate(panels):
        sheet.paste(panel, (k * (size + 4), 0))
    sheet.save(path)
