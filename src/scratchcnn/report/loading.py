"""Loading what a report is about: a saved model with its normaliser, and its test images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.data import Normalizer
from scratchcnn.layers.base import Layer

__all__ = ["LoadedModel", "load_checkpoint", "load_test_images", "run_checkpoint"]


@dataclass
class LoadedModel:
    """A saved model with what is needed to feed it: class names, normaliser, input shape."""

    model: Layer
    metadata: dict[str, Any]
    class_names: list[str]
    normalizer: Normalizer
    image_shape: tuple[int, int, int]  # (H, W, C)
    path: Path

    @property
    def dtype(self) -> np.dtype:
        return next((p.dtype for p in self.model.parameters()), np.dtype(np.float32))

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, C)`` -> normalised ``(N, C, H, W)`` in the model's dtype."""
        return self.normalizer(np.asarray(images)).astype(self.dtype, copy=False)


def run_checkpoint(run_dir: str | Path) -> Path:
    """The model file of a run folder: ``best.safetensors``, else ``last.safetensors``."""
    run_dir = Path(run_dir)
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise FileNotFoundError(f"no best.safetensors or last.safetensors in {run_dir}")


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load a model file or training checkpoint written by the trainer."""
    from scratchcnn.serialization import load_model

    path = Path(path)
    model, meta = load_model(path)
    if "normalization" not in meta or "class_names" not in meta:
        raise ValueError(f"{path} lacks class names or normalisation statistics in its metadata")
    normalizer = Normalizer.from_dict(meta["normalization"])
    if "image_shape" in meta:
        shape = tuple(int(v) for v in meta["image_shape"])
    else:  # older files: guess square images of the first conv's channels
        first = next(m for m in model.modules() if hasattr(m, "in_channels"))
        shape = (32, 32, int(first.in_channels))
    return LoadedModel(model, meta, list(meta["class_names"]), normalizer, shape, path)  # type: ignore[arg-type]


def load_test_images(
    loaded: LoadedModel,
    data: str | None = None,
    cache_dir: str | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The test images and labels of the model's dataset (or ``data``), optionally a seeded
    random subset of ``max_images`` (kept in dataset order).

    Shape: returns ``images (N, H, W, C)`` uint8, ``labels (N,)`` int64 and the data spec.
    """
    from scratchcnn.data import load_dataset

    config = loaded.metadata.get("config", {})
    spec = data or config.get("data", "cifar10")
    dataset = load_dataset(spec, cache_dir=cache_dir or config.get("cache_dir"), progress=False)
    if list(dataset.class_names) != loaded.class_names:
        raise ValueError(
            f"the data's classes {list(dataset.class_names)} differ from the model's "
            f"{loaded.class_names}"
        )
    images, labels = dataset.test_images, dataset.test_labels
    if max_images is not None and max_images < len(labels):
        chosen = np.sort(np.random.default_rng(seed).choice(len(labels), max_images, False))
        images, labels = images[chosen], labels[chosen]
    return np.asarray(images), np.asarray(labels, dtype=np.int64), str(spec)
