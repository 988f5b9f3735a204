"""Small image-folder datasets built on disk for training and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ("blue", "green", "red")


def make_image_folder(
    root: Path, train_per_class: int = 40, test_per_class: int = 10, size: int = 8, seed: int = 0
) -> Path:
    """Write ``root/{train,test}/<class>/*.png``: class k has channel ``2 - k`` brightened.

    The classes are learnable in a few epochs, and sorted class names give labels 0, 1, 2.
    """
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 120, size=(size, size, 3))
                pixels[..., 2 - label] += 100
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root
