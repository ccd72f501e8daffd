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


def to_picture(image: Tensor, scale: int = 1) -> Image.Image:
    """(C, H, W) in [0, 1], C = 1 or 3 -> an RGB picture, ``scale`` times larger (nearest)."""
    pic = (image.clamp(0, 1) * 255).byte().cpu()
    pic = Image.fromarray(pic[0].numpy(), "L").convert("RGB") if pic.shape[0] == 1 else Image.fromarray(
        pic.permute(1, 2, 0).numpy())
    return pic.resize((pic.width * scale, pic.height * scale), Image.Resampling.NEAREST) if scale > 1 else pic


def grid_of(panels: Sequence[Sequence[Image.Image]], gap: int = 4) -> Image.Image:
    """Rows of panels -> one picture."""
    width = max(sum(p.width + gap for p in row) for row in panels)
    height = sum(max(p.height for p in row) + gap for row in panels)
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for row in panels:
        x = 0
        for p in row:
            sheet.paste(p, (x, y))
            x += p.width + gap
        y += max(p.height for p in row) + gap
    return sheet


STEP_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 160, 0), (0, 130, 200), (145, 30, 180), (70, 240, 240),
                (240, 50, 230), (210, 245, 60)]


def draw_glimpse_sheet(images: Sequence[Tensor], boxes: Tensor, predicted: Sequence[str], truth: Sequence[str],
                       path: Path, scale: int = 3) -> None:
    """One row per image: a panel per glimpse, each with the path so far (boxes (n, T, 4):
    centre x, centre y, width, height in pixels), the last with the prediction."""
    font = ImageFont.load_default(size=12)
    rows = []
    for img, bx, pred, true in zip(images, boxes, predicted, truth):
        row = []
        for t in range(len(bx)):
            panel = Image.new("RGB", (img.shape[2] * scale, img.shape[1] * scale + 16), "white")
            panel.paste(to_picture(img, scale), (0, 0))
            draw = ImageDraw.Draw(panel)
            for s in range(t + 1):
                cx, cy, w, h = (float(v) * scale for v in bx[s])
                colour = STEP_COLOURS[s % len(STEP_COLOURS)]
                draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], outline=colour, width=2 if s == t else 1)
                if s > 0:
                    px, py = (float(v) * scale for v in bx[s - 1][:2])
                    draw.line([px, py, cx, cy], fill=colour, width=1)
            label = f"glimpse {t + 1}" if t < len(bx) - 1 else f"says {pred} (is {true})"
            draw.text((2, img.shape[1] * scale + 2), label, fill=(0, 0, 0) if pred == true or t < len(bx) - 1
                      else (200, 0, 0), font=font)
            row.append(panel)
        rows.append(row)
    grid_of(rows).save(path)


def draw_canvas_sheet(canvases: Tensor, path: Path, scale: int = 2, every: int = 1) -> None:
    """canvases (n, T, C, H, W) in [0, 1]: one row per image, a column per step (every ``every``th
    and the last): how the image was drawn, one piece at a time."""
    T = canvases.shape[1]
    steps = sorted(set(range(0, T, every)) | {T - 1})
    grid_of([[to_picture(c[t], scale) for t in steps] for c in canvases]).save(path)


def save_canvas_gif(canvases: Tensor, path: Path, columns: int = 8, scale: int = 2, ms: int = 120) -> None:
    """canvases (n, T, C, H, W): an animated GIF, a frame per step, the n images side by side."""
    frames = []
    for t in range(canvases.shape[1]):
        pics = [to_picture(c[t], scale) for c in canvases]
        frames.append(grid_of([pics[i:i + columns] for i in range(0, len(pics), columns)]))
    frames[0].save(path, save_all=True, append_images=frames[1:] + [frames[-1]] * 8, duration=ms, loop=0)


def draw_image_grid(images: Sequence[Tensor], path: Path, columns: int = 8, scale: int = 2) -> None:
    """Images (C, H, W) in [0, 1], ``columns`` a row."""
    pics = [to_picture(img, scale) for img in images]
    grid_of([pics[i:i + columns] for i in range(0, len(pics), columns)]).save(path)
