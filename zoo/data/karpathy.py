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

    def _load(self) -> list[dict]:
        if self._images is None:
            if not self.json_path.is_file():
                raise DataError(f"data.json_path={self.json_path}: file not found (a Karpathy-split dataset_*.json)")
            if not self.image_dir.is_dir():
                raise DataError(f"data.image_dir={self.image_dir}: folder not found")
            try:
                doc = json.loads(self.json_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"{self.json_path}: not valid JSON ({e})") from e
            images = doc.get("images") if isinstance(doc, dict) else None
            if not isinstance(images, list):
                raise DataError(f"{self.json_path}: expected an object with an 'images' list (Karpathy split format)")
            for k, im in enumerate(images):
                if not isinstance(im, dict) or "filename" not in im or "split" not in im or "sentences" not in im:
                    raise DataError(f"{self.json_path}: images[{k}] lacks 'filename', 'split' or 'sentences'")
            self._images = images
        return self._images

    def read_split(self, split: str) -> RawSplit:
        names = _SPLIT_NAMES[split] if (split != "train" or self.restval) else ("train",)
        chosen = [im for im in self._load() if im["split"] in names][: self.max_images]
        if not chosen:
            raise DataError(f"{self.json_path}: no images with split {' or '.join(names)}")
        paths, caps, labels = [], [], []
        for im in chosen:
            paths.append(self.image_dir / im.get("filepath", "") / im["filename"])
            caps.append([" ".join(s["tokens"]) if s.get("tokens") else s.get("raw", "") for s in im["sentences"]])
            labels.append(str(Path(im.get("filepath", "")) / im["filename"]))
        fp = hashlib.sha256(repr([(str(p), _stat(p)) for p in paths]).encode()).hexdigest()
        return RawSplit(FileStore(paths, self.image_size), labels, caps, sources=paths,
                        fingerprint=f"karpathy|{self.json_path}|{fp}")


def _stat(p: Path) -> tuple:
    try:
        st = p.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return ()
