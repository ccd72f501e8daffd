"""COCO / Flickr8k / Flickr30k captions in the Karpathy-split JSON (``dataset_*.json``) plus an image folder.

The JSON holds ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"tokens", "raw"}]}]}``;
split ``restval`` (COCO) counts as training data, as in Karpathy & Fei-Fei's setup.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from zoo.data.captioning import CaptioningData, RawSplit
from zoo.data.images import FileStore
from zoo.errors import DataError

_SPLIT_NAMES = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}


class KarpathyCaptions(CaptioningData):
    def __init__(self, *, json_path: str, image_dir: str, image_size: int = 224, restval: bool = True,
                 max_images: int | None = None, **kwargs) -> None:
        super().__init__(image_size=image_size, **kwargs)
        self.json_path = Path(json_path).expanduser()
        self.image_dir = Path(image_dir).expanduser()
        self.restval = restval
        self.max_images = max_images
        self._images: list[dict] | None = None

    def setup(self, stage: str | None = None) -> None:
        try:
            super().setup(stage)
        except DataError as e:  # the checks downstream name the split and image; say which data set
            if str(self.json_path) in str(e):
                raise
            raise DataError(f"{self.json_path}: {e}") from e

    def _load(self) -> list[dict]:
        if self._images is None:
            if not self.json_path.is_file():
                raise DataError(f"data.json_path={self.json_path}: file not found (a Karpathy-split dataset_*.json)")
            if not self.image_dir.is_dir():
                raise DataError(f"data.image_dir={self.image_dir}: folder not found")
            try:
                doc = json.loads(self.json_path.read_bytes().decode("utf-8"))
            except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError; nesting too deep
                raise DataError(f"{self.json_path}: not valid JSON ({e})") from e
            images = doc.get("images") if isinstance(doc, dict) else None
            if not isinstance(images, list):
                raise DataError(f"{self.json_path}: expected an object with an 'images' list (Karpathy split format)")
            kept = []
            for k, im in enumerate(images):
                problem = _entry_problem(im)
                if problem:
                    self.bad(f"{self.json_path}: images[{k}] {problem}", "malformed entries")
                    continue
                sentences = []
                for j, sentence in enumerate(im["sentences"]):
                    problem = _sentence_problem(sentence)
                    if problem:
                        self.bad(f"{self.json_path}: images[{k}].sentences[{j}] {problem}", "malformed captions")
                        continue
                    sentences.append(sentence)
                kept.append({**im, "sentences": sentences})
            self._images = kept
        return self._images

    def read_split(self, split: str) -> RawSplit:
        names = _SPLIT_NAMES[split] if (split != "train" or self.restval) else ("train",)
        chosen = [im for im in self._load() if im["split"] in names][: self.max_images]
        if not chosen:
            raise DataError(f"{self.json_path}: no images with split {' or '.join(names)}")
        paths, caps, labels = [], [], []
        for im in chosen:
            paths.append(self.image_dir / im.get("filepath", "") / im["filename"])
            caps.append([" ".join(s["tokens"]) if s.get("tokens") else s.get("raw") or "" for s in im["sentences"]])
            labels.append(str(Path(im.get("filepath", "")) / im["filename"]))
        fp = hashlib.sha256(repr([(str(p), _stat(p)) for p in paths]).encode()).hexdigest()
        return RawSplit(FileStore(paths, self.image_size), labels, caps, sources=paths,
                        fingerprint=f"karpathy|{self.json_path}|{fp}")


def _entry_problem(im) -> str | None:
    """What is wrong with an entry of the ``images`` list, or None."""
    if not isinstance(im, dict):
        return f"is a {type(im).__name__}, not an object"
    missing = [k for k in ("filename", "split", "sentences") if k not in im]
    if missing:
        return f"lacks 'filename', 'split' or 'sentences' (no {', '.join(map(repr, missing))})"
    for key in ("filename", "split", "filepath"):
        if key in im and not isinstance(im[key], str):
            return f"has a {key!r} that is not a string ({type(im[key]).__name__})"
    if not im["filename"] or "\0" in im["filename"] + im.get("filepath", ""):
        return f"has no usable 'filename' ({im['filename']!r})"
    if not isinstance(im["sentences"], list):
        return f"has 'sentences' that are not a list ({type(im['sentences']).__name__})"
    return None


def _sentence_problem(sentence) -> str | None:
    """What is wrong with a caption (``{"tokens": [...], "raw": "..."}``), or None."""
    if not isinstance(sentence, dict):
        return f"is a {type(sentence).__name__}, not an object"
    tokens, raw = sentence.get("tokens"), sentence.get("raw")
    if tokens is not None and not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
        return "has 'tokens' that are not a list of strings"
    if raw is not None and not isinstance(raw, str):
        return f"has a 'raw' that is not a string ({type(raw).__name__})"
    return None


def _stat(p: Path) -> tuple:
    try:
        st = p.stat()
        return st.st_size, st.st_mtime_ns
    except (OSError, ValueError):  # ValueError: a name the file system cannot take
        return ()
