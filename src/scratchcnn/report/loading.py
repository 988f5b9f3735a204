"""Loading what a report is about: the run's model file, and its test images.

Models are loaded by the one checked loader, :func:`scratchcnn.serialization.load_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scratchcnn.serialization import LoadedModel, load_checkpoint

__all__ = ["LoadedModel", "load_checkpoint", "load_test_images", "run_checkpoint"]


def run_checkpoint(run_dir: str | Path) -> Path:
    """The model file of a run folder: ``best.safetensors``, else ``last.safetensors``.

    Args:
        run_dir: the run folder.
    """
    run_dir = Path(run_dir)
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise FileNotFoundError(f"no best.safetensors or last.safetensors in {run_dir}")


def load_test_images(
    loaded: LoadedModel,
    data: str | None = None,
    cache_dir: str | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The test images and labels of the model's dataset (or ``data``), optionally a seeded
    random subset of ``max_images`` (kept in dataset order).

    Args:
        loaded: the loaded model, whose metadata names its data.
        data: a dataset name or path instead of the model's.
        cache_dir: the dataset cache; ``None``: the model's, else the default.
        max_images: a random subset of this many; ``None``: all.
        seed: seeds the subset.

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
