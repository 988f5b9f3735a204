"""Mini-batch iteration over uint8 images and labels, reshuffled each epoch from a seeded rng."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["BatchIterator"]


class BatchIterator:
    """Iterate over ``(images, labels)`` mini-batches; each ``iter()`` is one epoch.

    With ``shuffle=True`` every epoch draws a fresh permutation from ``rng``. The generator is
    the caller's own object, not a copy, so a trainer that saves and restores
    ``rng.bit_generator.state`` resumes the exact same sequence of batches.

    Batches are gathered with fancy indexing, so they are fresh in-memory copies even when
    ``images`` is a read-only memory map.

    Args:
        images: the images.
        labels: their labels (integer classes or soft-target rows).
        batch_size: images per batch.
        shuffle: a fresh order every epoch (else dataset order).
        rng: the generator of the orders; required with ``shuffle``.
        drop_last: leave out a last batch smaller than ``batch_size``.

    Shape:
        images: (N, H, W, C) uint8; labels: (N,) or (N, K). Each batch: (B, H, W, C) and (B,)
        or (B, K), with B = batch_size except possibly the last one.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        rng: np.random.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"BatchIterator: images and labels must have the same length, got "
                f"{images.shape[0]} images and {labels.shape[0]} labels"
            )
        if batch_size < 1:
            raise ValueError(f"BatchIterator: batch_size must be >= 1, got {batch_size}")
        if shuffle and rng is None:
            raise ValueError(
                "BatchIterator: shuffle=True needs rng, a seeded np.random.Generator, got None"
            )
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.rng = rng
        self.drop_last = drop_last

    @property
    def num_samples(self) -> int:
        """Number of images per epoch before batching."""
        return int(self.images.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)  # ceiling division

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.batches()

    def batches(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch's batches from batch ``start`` on (``iter(loader)`` is ``start=0``).

        The epoch's whole permutation is drawn first, so a trainer that restores ``rng`` to its
        state at the start of an interrupted epoch and asks for ``start=k`` gets exactly the
        batches that epoch had left.
        """
        for _, images, labels in self.indexed_batches(start):
            yield images, labels

    def indexed_batches(
        self, start: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`batches` with each batch's positions in ``images``: ``(indices, images,
        labels)``, for augmentations that depend on which images a batch holds
        (:class:`~scratchcnn.data.transforms.AlternatingFlip`). Draws what :meth:`batches` draws.

        Shape: ``indices (B,)`` int64.
        """
        if not 0 <= start <= len(self):
            raise ValueError(f"BatchIterator: start must be in [0, {len(self)}], got {start}")
        if self.shuffle:
            assert self.rng is not None  # checked in __init__
            order = self.rng.permutation(self.num_samples)
        else:
            order = np.arange(self.num_samples)
        for batch_index in range(start, len(self)):
            indices = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            yield indices, self.images[indices], self.labels[indices]
