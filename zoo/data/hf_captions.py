"""Image-caption sets through Hugging Face ``datasets``: a hub name, or a local folder
(``name=imagefolder data_dir=...`` with captions in ``metadata.jsonl``).

A caption column may hold one string or a list of strings per row; rows that share an
image (one caption per row, as some hub sets have) are grouped into one image with several
references. Splits missing from the set are cut from ``train`` with a fixed seed.
"""
from __future__ import annotations

import hashlib

from zoo.data.captioning import CaptioningData, RawSplit
from zoo.data.hf import HFSplits
from zoo.data.images import FileStore
from zoo.errors import DataError


class HFCaptions(CaptioningData):
    def __init__(
        self,
        *,
        name: str,
        data_dir: str | None = None,
        data_files: dict | None = None,
        config_name: str | None = None,
        image_column: str = "image",
        caption_column: str = "caption",
        splits: dict | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        image_size: int = 224,
        **kwargs,
    ) -> None:
        super().__init__(image_size=image_size, **kwargs)
        self.hf = HFSplits(name, config_name=config_name, data_dir=data_dir, data_files=data_files, splits=splits,
                           val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed,
                           columns=(image_column, caption_column))
        self.image_column, self.caption_column = image_column, caption_column

    def read_split(self, split: str) -> RawSplit:
        import datasets

        # the image files themselves (bytes or path), decoded and checked by the zoo
        rows = self.hf.split(split).cast_column(self.image_column, datasets.Image(decode=False))
        groups: dict[str, int] = {}
        sources, names, caps = [], [], []
        for k, row in enumerate(rows):
            img = row[self.image_column] or {}
            key = img.get("path") or hashlib.sha1(img.get("bytes") or b"").hexdigest()
            src = img.get("bytes") or img.get("path")
            if src is None:
                raise DataError(f"{self.hf.name} [{split}] row {k}: no image")
            text = row[self.caption_column]
            texts = list(text) if isinstance(text, (list, tuple)) else [text]
            if key in groups:
                caps[groups[key]].extend(texts)
                continue
            groups[key] = len(sources)
            sources.append(src)
            names.append(str(img.get("path") or f"{split}[{k}]"))
            caps.append(texts)
        fp = hashlib.sha256((self.hf.name + str(self.hf.data_dir) + rows._fingerprint).encode()).hexdigest()
        return RawSplit(FileStore(sources, self.image_size), names, caps, sources=sources, fingerprint=f"hf|{fp}")
