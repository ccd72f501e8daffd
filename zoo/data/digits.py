"""The built-in sequential-image data: scikit-learn's bundled 8x8 handwritten digits (1,797
images, shipped inside the scikit-learn package), split 70/15/15 with a fixed seed."""
from __future__ import annotations

import numpy as np

from zoo.data.image_classification import ImageClassificationData, Picture


class Digits(ImageClassificationData):
    def __init__(self, *, val_fraction: float = 0.15, test_fraction: float = 0.15, data_seed: int = 0,
                 **kwargs) -> None:
        super().__init__(labels=[str(d) for d in range(10)], **kwargs)
        self.val_fraction, self.test_fraction, self.data_seed = val_fraction, test_fraction, data_seed

    def read_split(self, split: str) -> list[Picture]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None]  # (N, 8, 8, 1)
        order = np.random.default_rng(self.data_seed).permutation(len(pixels))
        n_val, n_test = int(len(order) * self.val_fraction), int(len(order) * self.test_fraction)
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
        return [Picture(pixels[i], str(digits.target[i]), f"digits[{split}] #{i}") for i in parts[split]]
