"""Reader for SVHN (Street View House Numbers) in its official cropped-digit ``.mat`` files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dataset import DataError, Dataset, verify_md5

__all__ = ["SVHN_CLASS_NAMES", "SVHN_FILES", "SVHN_URL", "read_svhn", "read_svhn_mat"]

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
# File name -> official md5.
SVHN_FILES = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b9d6d7b3e1",
}
SVHN_CLASS_NAMES = [str(digit) for digit in range(10)]


def read_svhn_mat(
    path: str | os.PathLike[str], expected_md5: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one SVHN ``.mat`` file; label 10 (the official code for digit 0) becomes 0.

    Args:
        path: ``train_32x32.mat`` or ``test_32x32.mat``.
        expected_md5: the md5 the file must have; ``None`` skips the check.

    Shape:
        The file holds X (32, 32, 3, N) and y (N, 1) in 1..10; returns images (N, 32, 32, 3)
        uint8 and labels (N,) int64 in 0..9.
    """
    path = Path(path)
    verify_md5(path, expected_md5)
    # SciPy is an optional dependency needed only for this format.
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise DataError("reading SVHN needs SciPy: pip install scipy") from error
    try:
        mat = loadmat(path)
    except Exception as error:
        raise DataError(
            f"{path}: not a readable .mat file (truncated or corrupt?): {error}"
        ) from error
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: expected variables 'X' and 'y', got {sorted(mat)}")
    pixels, digits = mat["X"], mat["y"]
    if pixels.ndim != 4 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise DataError(
            f"{path}: X must be uint8 (32, 32, 3, N), got {pixels.dtype} {pixels.shape}"
        )
    labels = digits.reshape(-1).astype(np.int64)
    if labels.shape != (pixels.shape[3],):
        raise DataError(f"{path}: {pixels.shape[3]} images but {labels.size} labels")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels must lie in 1..10, got [{labels.min()}, {labels.max()}]")
    images = np.ascontiguousarray(pixels.transpose(3, 0, 1, 2))  # (H, W, C, N) -> (N, H, W, C)
    return images, labels % 10


def read_svhn(
    directory: str | os.PathLike[str], md5s: dict[str, str] | None = SVHN_FILES
) -> Dataset:
    """Read ``train_32x32.mat`` and ``test_32x32.mat`` from ``directory``.

    ``md5s`` maps file names to the md5 to verify (the official sums by default); None skips
    the check (for test fixtures).

    Shape:
        Returns train images (73257, 32, 32, 3) uint8 and test images (26032, 32, 32, 3).
    """
    directory = Path(directory)
    splits = []
    for file_name in SVHN_FILES:
        path = directory / file_name
        if not path.is_file():
            raise DataError(f"{directory}: missing SVHN file {file_name}")
        splits.append(read_svhn_mat(path, None if md5s is None else md5s.get(file_name)))
    (train_images, train_labels), (test_images, test_labels) = splits
    return Dataset(
        train_images, train_labels, test_images, test_labels, list(SVHN_CLASS_NAMES), "svhn"
    )
