"""Readers for the two official CIFAR-10 archives: the binary and the python version.

Both are read straight from the ``.tar.gz`` in memory; nothing is extracted to disk, so a
member with an unsafe path (``../x``, ``/etc/x``) can never be written anywhere. Only regular
files with the official names are read.

The python version holds pickles. Unpickling runs code, so it goes through
:class:`RestrictedUnpickler`, which can rebuild dicts, lists, bytes and NumPy arrays and refuses
every other global.
"""

from __future__ import annotations

import io
import os
import pickle
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import DataError, Dataset, verify_md5

__all__ = [
    "CIFAR10_BINARY_MD5",
    "CIFAR10_BINARY_URL",
    "CIFAR10_CLASS_NAMES",
    "CIFAR10_PYTHON_MD5",
    "CIFAR10_PYTHON_URL",
    "RestrictedUnpickler",
    "read_cifar10_archive",
    "read_cifar10_binary",
    "read_cifar10_python",
    "restricted_loads",
]

CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_BINARY_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_PYTHON_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_PYTHON_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

_HEIGHT = _WIDTH = 32
_CHANNELS = 3
_PIXELS_PER_IMAGE = _CHANNELS * _HEIGHT * _WIDTH  # 3072, stored channel-major (CHW)
_BINARY_RECORD = 1 + _PIXELS_PER_IMAGE  # one label byte, then the image
_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_BATCH = "test_batch"


def _numpy_core() -> Any:
    # NumPy 2 renamed numpy.core to numpy._core; importing the old name warns.
    try:
        from numpy import _core as core  # type: ignore[attr-defined]
    except ImportError:  # NumPy 1.x
        from numpy import core  # type: ignore[no-redef]
    return core


def _allowed_globals() -> dict[tuple[str, str], Any]:
    core = _numpy_core()
    reconstruct = core.multiarray._reconstruct
    frombuffer = core.numeric._frombuffer
    import _codecs

    return {
        # Pickles written under NumPy 1.x (the official files) name numpy.core; NumPy 2 writes
        # numpy._core. Both resolve to the same functions here, without importing numpy.core.
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy.core.numeric", "_frombuffer"): frombuffer,
        ("numpy._core.numeric", "_frombuffer"): frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Protocol-2 pickles written by Python 3 spell bytes objects as _codecs.encode(str).
        ("_codecs", "encode"): _codecs.encode,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain containers and NumPy arrays and nothing else.

    ``find_class`` resolves only the handful of NumPy globals an array pickle needs; any other
    global (``os.system``, ``builtins.eval``, ...) raises ``pickle.UnpicklingError`` naming it,
    before it can be called.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(
            f"refused to unpickle global {module}.{name}: only NumPy array reconstruction "
            f"({', '.join(sorted(f'{m}.{n}' for m, n in allowed))}) is allowed"
        )


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` and ``encoding="bytes"`` (as the
    official CIFAR loader does, so Python-2 strings come back as bytes)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


_BINARY_NAMES = {f"{b}.bin" for b in _TRAIN_BATCHES} | {f"{_TEST_BATCH}.bin", "batches.meta.txt"}
_PYTHON_NAMES = {*_TRAIN_BATCHES, _TEST_BATCH, "batches.meta"}


def _read_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """Read the regular-file members whose base names are in ``wanted`` into memory."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = posixpath.basename(member.name)
                if base not in wanted or not member.isfile():
                    continue
                if base in found:
                    raise DataError(f"{archive}: member {base!r} appears twice")
                extracted = tar.extractfile(member)
                if extracted is None:
                    continue
                found[base] = extracted.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DataError(
            f"{archive} is not a readable tar archive (truncated or corrupt?): "
            f"{type(error).__name__}: {error}"
        ) from error
    return found


def _require(members: dict[str, bytes], wanted: set[str], archive: Path) -> None:
    missing = sorted(wanted - members.keys())
    if missing:
        raise DataError(f"{archive} lacks the CIFAR-10 files {missing}")


def _parse_binary_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) % _BINARY_RECORD != 0:
        raise DataError(
            f"{where}: size {len(data)} is not a multiple of the {_BINARY_RECORD}-byte record "
            "(1 label byte + 3072 image bytes)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _BINARY_RECORD)
    labels = records[:, 0].astype(np.int64)
    # (N, 3072) -> (N, C, H, W) -> (N, H, W, C)
    images = records[:, 1:].reshape(-1, _CHANNELS, _HEIGHT, _WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{where}: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )


def read_cifar10_binary(
    archive: str | os.PathLike[str], expected_md5: str | None = CIFAR10_BINARY_MD5
) -> Dataset:
    """Read ``cifar-10-binary.tar.gz``: records of 1 label byte + 3072 CHW pixel bytes.

    Args:
        archive: path to the tar.gz holding ``data_batch_1..5.bin``, ``test_batch.bin`` and
            ``batches.meta.txt``.
        expected_md5: md5 to verify first; None skips it (for test archives).

    Shape:
        Returns train images (50000, 32, 32, 3) uint8 and test images (10000, 32, 32, 3) for
        the official file.
    """
    archive = Path(archive)
    verify_md5(archive, expected_md5)
    return _binary_from_members(_read_members(archive, _BINARY_NAMES), archive)


def _binary_from_members(members: dict[str, bytes], archive: Path) -> Dataset:
    _require(members, _BINARY_NAMES, archive)
    class_names = [line.strip() for line in members["batches.meta.txt"].decode().splitlines()]
    class_names = [name for name in class_names if name]
    if len(class_names) != len(CIFAR10_CLASS_NAMES):
        raise DataError(
            f"{archive}: batches.meta.txt must list {len(CIFAR10_CLASS_NAMES)} class names, "
            f"got {class_names}"
        )
    parts = [_parse_binary_batch(members[f"{b}.bin"], f"{archive}:{b}.bin") for b in _TRAIN_BATCHES]
    test_images, test_labels = _parse_binary_batch(
        members[f"{_TEST_BATCH}.bin"], f"{archive}:{_TEST_BATCH}.bin"
    )
    train_images = np.concatenate([images for images, _ in parts])
    train_labels = np.concatenate([labels for _, labels in parts])
    _check_labels(train_labels, len(class_names), f"{archive} (train)")
    _check_labels(test_labels, len(class_names), f"{archive} (test)")
    return Dataset(train_images, train_labels, test_images, test_labels, class_names, "cifar10")


def _parse_python_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = restricted_loads(data)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(f"{where}: {error}") from error
    except Exception as error:
        raise DataError(f"{where}: not a readable CIFAR-10 pickle: {error}") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: expected a dict with keys b'data' and b'labels'")
    pixels = batch[b"data"]
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise DataError(f"{where}: b'data' must be a uint8 (N, 3072) array, got {pixels!r:.80}")
    if pixels.shape[1] != _PIXELS_PER_IMAGE:
        raise DataError(f"{where}: b'data' must be (N, 3072), got {pixels.shape}")
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if labels.shape != (pixels.shape[0],):
        raise DataError(f"{where}: expected {pixels.shape[0]} labels, got shape {labels.shape}")
    # (N, 3072) -> (N, C, H, W) -> (N, H, W, C)
    images = pixels.reshape(-1, _CHANNELS, _HEIGHT, _WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar10_python(
    archive: str | os.PathLike[str], expected_md5: str | None = CIFAR10_PYTHON_MD5
) -> Dataset:
    """Read ``cifar-10-python.tar.gz`` (pickled dicts) through a restricted unpickler.

    The md5 is verified before any byte is unpickled; pass ``expected_md5=None`` only for an
    archive you built yourself.

    Shape:
        Returns train images (50000, 32, 32, 3) uint8 and test images (10000, 32, 32, 3) for
        the official file.

    Raises:
        pickle.UnpicklingError: a pickle names a global other than NumPy array reconstruction.
    """
    archive = Path(archive)
    verify_md5(archive, expected_md5)
    return _python_from_members(_read_members(archive, _PYTHON_NAMES), archive)


def _python_from_members(members: dict[str, bytes], archive: Path) -> Dataset:
    _require(members, _PYTHON_NAMES, archive)
    try:
        meta = restricted_loads(members["batches.meta"])
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(f"{archive}:batches.meta: {error}") from error
    if not isinstance(meta, dict) or b"label_names" not in meta:
        raise DataError(f"{archive}: batches.meta must be a dict with key b'label_names'")
    class_names = [
        name.decode() if isinstance(name, bytes) else str(name) for name in meta[b"label_names"]
    ]
    parts = [_parse_python_batch(members[b], f"{archive}:{b}") for b in _TRAIN_BATCHES]
    test_images, test_labels = _parse_python_batch(members[_TEST_BATCH], f"{archive}:{_TEST_BATCH}")
    train_images = np.concatenate([images for images, _ in parts])
    train_labels = np.concatenate([labels for _, labels in parts])
    _check_labels(train_labels, len(class_names), f"{archive} (train)")
    _check_labels(test_labels, len(class_names), f"{archive} (test)")
    return Dataset(train_images, train_labels, test_images, test_labels, class_names, "cifar10")


def read_cifar10_archive(archive: str | os.PathLike[str], expected_md5: str | None) -> Dataset:
    """Read either official CIFAR-10 archive, telling them apart by their member names.

    Args:
        archive: ``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz`` (any name).
        expected_md5: the md5 the archive must have; ``None`` skips the check.

    Shape:
        Returns (N, 32, 32, 3) uint8 images, as :func:`read_cifar10_binary`.
    """
    archive = Path(archive)
    verify_md5(archive, expected_md5)
    # One pass over the archive: decompressing 170 MB twice would double the load time.
    members = _read_members(archive, _BINARY_NAMES | _PYTHON_NAMES)
    if "data_batch_1.bin" in members:
        return _binary_from_members(members, archive)
    if "data_batch_1" in members:
        return _python_from_members(members, archive)
    raise DataError(
        f"{archive} holds neither CIFAR-10 layout: expected data_batch_1.bin (binary version) "
        "or data_batch_1 (python version)"
    )
