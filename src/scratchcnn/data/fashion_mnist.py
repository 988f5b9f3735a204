"""Reader for Fashion-MNIST in its official IDX gzip files.

IDX is a tiny big-endian format: a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one uint32 per dimension, then the raw values.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .dataset import DataError, Dataset, verify_md5

__all__ = [
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_URL",
    "read_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# File name -> official md5.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_UBYTE_TYPE_CODE = 0x08


def read_idx(path: str | os.PathLike[str], expected_md5: str | None = None) -> np.ndarray:
    """Read one unsigned-byte IDX file, gzipped (``.gz``) or plain.

    Args:
        path: the IDX file.
        expected_md5: the md5 the file must have; ``None`` skips the check.

    Shape:
        Returns a uint8 array of the dimensions in the header, e.g. (N, 28, 28) or (N,).
    """
    path = Path(path)
    verify_md5(path, expected_md5)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot read (truncated or corrupt?): {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (expected magic 0x0000TTDD, got {data[:4]!r})")
    type_code, ndim = data[2], data[3]
    if type_code != _UBYTE_TYPE_CODE:
        raise DataError(f"{path}: expected unsigned-byte IDX (type 0x08), got 0x{type_code:02x}")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path}: header truncated ({len(data)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected_size = header_size + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_size:
        raise DataError(
            f"{path}: header says shape {shape} ({expected_size} bytes), file has {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def read_fashion_mnist(
    directory: str | os.PathLike[str], md5s: dict[str, str] | None = FASHION_MNIST_FILES
) -> Dataset:
    """Read the four official Fashion-MNIST files from ``directory``.

    Args:
        directory: folder holding ``train-images-idx3-ubyte.gz`` and its three siblings.
        md5s: file name -> md5 to verify (the official sums by default); None skips the
            check (for test fixtures).

    Shape:
        Returns train images (60000, 28, 28, 1) uint8 and test images (10000, 28, 28, 1).
    """
    directory = Path(directory)
    arrays = {}
    for file_name in FASHION_MNIST_FILES:
        path = directory / file_name
        if not path.is_file():
            raise DataError(f"{directory}: missing Fashion-MNIST file {file_name}")
        arrays[file_name] = read_idx(path, None if md5s is None else md5s.get(file_name))
    splits = []
    for prefix in ("train", "t10k"):
        images = arrays[f"{prefix}-images-idx3-ubyte.gz"]
        labels = arrays[f"{prefix}-labels-idx1-ubyte.gz"].astype(np.int64)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DataError(
                f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not "
                "match (expected (N, H, W) and (N,))"
            )
        splits.append((images[..., None], labels))  # (N, H, W) -> (N, H, W, 1)
    (train_images, train_labels), (test_images, test_labels) = splits
    return Dataset(
        train_images,
        train_labels,
        test_images,
        test_labels,
        list(FASHION_MNIST_CLASS_NAMES),
        "fashion-mnist",
    )
