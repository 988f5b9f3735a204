"""Train/validation splitting, uint8-to-float conversion and per-channel normalisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Normalizer", "split_train_val", "to_float_nchw"]


def split_train_val(
    labels: np.ndarray, val_size: int = 10_000, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into a stratified, seeded train/validation partition.

    Each class gets ``val_size * class_count / N`` validation images, rounded by largest
    remainder so the counts add up to ``val_size`` exactly; which images go is drawn from
    ``rng``. For CIFAR-10's 50,000 training images and ``val_size=10_000`` that is 1,000 per
    class, leaving 40,000 for training.

    Args:
        labels: integer class labels of the training set.
        val_size: number of validation images, ``0 <= val_size < N``.
        rng: the seeded generator to draw from (required: no global random state).

    Shape:
        labels: (N,). Returns train_idx (N - val_size,) and val_idx (val_size,), int64, each
        sorted ascending, disjoint, together covering ``range(N)``.
    """
    if rng is None:
        raise TypeError("split_train_val needs rng, a seeded np.random.Generator, got None")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    n = labels.shape[0]
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must lie in [0, {n}) for {n} labels, got {val_size}")
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * val_size / n
    per_class = np.floor(quotas).astype(np.int64)
    # Largest remainder: the classes whose quota was rounded down the most get one more;
    # a stable sort keeps ties in class order, so the result depends on rng alone.
    shortfall = val_size - int(per_class.sum())
    order = np.argsort(-(quotas - per_class), kind="stable")
    per_class[order[:shortfall]] += 1
    val_parts = []
    for class_id, take in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == class_id)
        val_parts.append(rng.choice(members, size=int(take), replace=False))
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    is_val = np.zeros(n, dtype=bool)
    is_val[val_idx] = True
    train_idx = np.flatnonzero(~is_val).astype(np.int64)
    return train_idx, val_idx


def to_float_nchw(images: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Convert a uint8 NHWC batch to floats in [0, 1], channels first.

    Shape:
        images: (N, H, W, C) uint8. Returns (N, C, H, W) of ``dtype``.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"to_float_nchw expects uint8 (N, H, W, C) images, got {images.dtype} {images.shape}"
        )
    scale = np.asarray(1.0 / 255.0, dtype=dtype)
    # (N, H, W, C) -> (N, C, H, W); the multiply makes a contiguous copy.
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=dtype) * scale


class Normalizer:
    """Per-channel standardisation ``(x - mean) / std`` with statistics in [0, 1] units.

    Fit it on the training split only, so validation and test images are scaled by numbers
    they did not contribute to.

    Shape:
        mean, std: (C,).
    """

    def __init__(self, mean: Any, std: Any) -> None:
        mean_array = np.asarray(mean, dtype=np.float64).reshape(-1)
        std_array = np.asarray(std, dtype=np.float64).reshape(-1)
        if mean_array.shape != std_array.shape or mean_array.size == 0:
            raise ValueError(
                f"Normalizer: mean and std must be non-empty and of one length, got "
                f"{mean_array.shape} and {std_array.shape}"
            )
        if np.any(std_array <= 0):
            raise ValueError(f"Normalizer: std must be > 0, got {std_array.tolist()}")
        self.mean = mean_array
        self.std = std_array

    @property
    def channels(self) -> int:
        """Number of channels the statistics describe."""
        return int(self.mean.size)

    @classmethod
    def fit(cls, images: np.ndarray, chunk_size: int = 1024) -> Normalizer:
        """Compute per-channel mean and (population) std of uint8 images, in [0, 1] units.

        Pixel sums and sums of squares are accumulated as int64 chunk by chunk, which is exact
        and never holds more than one chunk in a wider type (CIFAR-10's 150 MB of uint8 would
        be 1.2 GB as float64).

        Shape:
            images: (N, H, W, C) uint8.
        """
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"Normalizer.fit expects uint8 (N, H, W, C) images, got {images.dtype} "
                f"{images.shape}"
            )
        if images.shape[0] == 0:
            raise ValueError("Normalizer.fit needs at least one image, got 0")
        channels = images.shape[-1]
        total = np.zeros(channels, dtype=np.int64)
        total_sq = np.zeros(channels, dtype=np.int64)
        for start in range(0, images.shape[0], chunk_size):
            chunk = np.asarray(images[start : start + chunk_size]).reshape(-1, channels)
            total += chunk.sum(axis=0, dtype=np.int64)
            wide = chunk.astype(np.int64)
            total_sq += np.einsum("ij,ij->j", wide, wide)
        count = images.shape[0] * images.shape[1] * images.shape[2]
        mean = total / count
        variance = total_sq / count - mean**2
        return cls(mean / 255.0, np.sqrt(np.maximum(variance, 0.0)) / 255.0)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready ``{"mean": [...], "std": [...]}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(data["mean"], data["std"])
        except KeyError as error:
            raise ValueError(
                f"Normalizer.from_dict expects keys 'mean' and 'std', got {sorted(data)}"
            ) from error

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Normalise a batch: uint8 NHWC (converted first) or float NCHW in [0, 1].

        Shape:
            images: (N, H, W, C) uint8 or (N, C, H, W) float. Returns (N, C, H, W) float32
            (or the input's float dtype when it is float64).
        """
        if images.dtype == np.uint8:
            images = to_float_nchw(images)
        elif not np.issubdtype(images.dtype, np.floating) or images.ndim != 4:
            raise ValueError(
                f"Normalizer expects uint8 (N, H, W, C) or float (N, C, H, W) images, got "
                f"{images.dtype} {images.shape}"
            )
        if images.shape[1] != self.channels:
            raise ValueError(
                f"Normalizer fitted on {self.channels} channels, got images with "
                f"{images.shape[1]} (shape {images.shape}, expected (N, C, H, W))"
            )
        dtype = np.float64 if images.dtype == np.float64 else np.float32
        mean = self.mean.astype(dtype)[:, None, None]  # (C, 1, 1)
        inv_std = (1.0 / self.std).astype(dtype)[:, None, None]
        return ((images.astype(dtype, copy=False) - mean) * inv_std).astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"Normalizer(mean={self.mean.round(4).tolist()}, std={self.std.round(4).tolist()})"
