"""The in-memory dataset type, the error types, and the on-disk cache of decoded arrays.

Every reader in this package ends in a :class:`Dataset` of uint8 NHWC images and int64 labels.
Decoding an archive is slow (seconds for CIFAR-10 JPEGs), so the decoded arrays are kept as
plain ``.npy`` files plus a small JSON file under a cache directory and memory-mapped on the
next load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchcnn.errors import DataError

__all__ = [
    "ChecksumError",
    "DataError",
    "Dataset",
    "DownloadError",
    "default_cache_dir",
    "load_cached",
    "md5_file",
    "save_cached",
]

# Bumped whenever the cache layout changes, so an old cache is rebuilt instead of misread.
CACHE_FORMAT_VERSION = 1
_ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels")


class ChecksumError(DataError):
    """A file's md5 checksum differs from the published one."""


class DownloadError(DataError):
    """A file could not be downloaded (no network, HTTP error, interrupted transfer)."""


@dataclass
class Dataset:
    """A labelled image dataset with its official train/test split, kept as uint8.

    Shape:
        train_images: (N_train, H, W, C) uint8, C = 3 (RGB) or 1 (greyscale).
        train_labels: (N_train,) int64 in ``[0, len(class_names))``.
        test_images: (N_test, H, W, C) uint8.
        test_labels: (N_test,) int64.

    ``name`` is the dataset's name as the loaders give it (e.g. ``"cifar10"``); ``class_names``
    name the labels in order.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    name: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
                raise DataError(
                    f"Dataset {self.name!r}: {split}_images must be uint8 (N, H, W, C) with "
                    f"C in (1, 3), got {images.dtype} {images.shape}"
                )
            if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
                raise DataError(
                    f"Dataset {self.name!r}: {split}_labels must be int64 ({images.shape[0]},), "
                    f"got {labels.dtype} {labels.shape}"
                )
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
                raise DataError(
                    f"Dataset {self.name!r}: {split}_labels must lie in [0, "
                    f"{len(self.class_names)}), got [{labels.min()}, {labels.max()}]"
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DataError(
                f"Dataset {self.name!r}: train and test images differ in shape: "
                f"{self.train_images.shape[1:]} vs {self.test_images.shape[1:]}"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        height, width, channels = self.train_images.shape[1:]
        return int(height), int(width), int(channels)


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the cache directory: the argument, else ``$SCRATCHCNN_DATA``, else
    ``~/.cache/scratchcnn``.

    Args:
        cache_dir: an explicit directory, which wins when given.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from_env = os.environ.get("SCRATCHCNN_DATA")
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "scratchcnn"


def md5_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex md5 digest of a file, read in chunks so large archives never sit in memory twice.

    Args:
        path: the file to hash.
        chunk_size: bytes read at a time.
    """
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike[str], expected_md5: str | None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has md5 ``expected_md5`` (None skips)."""
    if expected_md5 is None:
        return
    got = md5_file(path)
    if got != expected_md5.lower():
        raise ChecksumError(
            f"md5 mismatch for {path}: expected {expected_md5.lower()}, got {got}. The file is "
            "corrupt or incomplete; delete it and download it again."
        )


def source_key(path: str | os.PathLike[str], *extra: object) -> str:
    """A short hash naming a cache entry for a file or folder: its absolute path, size and
    modification time (for a folder, those of every file in it) and any ``extra`` settings.

    A changed file therefore gets a new cache entry instead of a stale one.
    """
    path = Path(path).resolve()
    digest = hashlib.sha256(str(path).encode())
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"|{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        stat = path.stat()
        digest.update(f"|{stat.st_size}|{stat.st_mtime_ns}".encode())
    for item in extra:
        digest.update(f"|{item!r}".encode())
    return digest.hexdigest()[:16]


def save_cached(dataset: Dataset, entry_dir: str | os.PathLike[str]) -> None:
    """Write ``dataset`` as four ``.npy`` files and ``meta.json`` into ``entry_dir``, atomically.

    Everything goes to a temporary sibling directory first that is renamed into place only
    when complete, so an interrupted run never leaves a half-written entry behind.
    """
    entry_dir = Path(entry_dir)
    entry_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=entry_dir.parent, prefix=f".{entry_dir.name}.part-"))
    try:
        for array_name in _ARRAY_NAMES:
            np.save(
                tmp_dir / f"{array_name}.npy", np.ascontiguousarray(getattr(dataset, array_name))
            )
        meta = {
            "format_version": CACHE_FORMAT_VERSION,
            "name": dataset.name,
            "class_names": list(dataset.class_names),
        }
        (tmp_dir / "meta.json").write_text(json.dumps(meta, indent=1))
        if entry_dir.exists():
            # A stale or broken entry: replace it rather than fail.
            shutil.rmtree(entry_dir)
        os.replace(tmp_dir, entry_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def load_cached(entry_dir: str | os.PathLike[str]) -> Dataset | None:
    """Memory-map a cache entry written by :func:`save_cached`; None when absent or unreadable.

    Arrays come back read-only (``mmap_mode="r"``) and never through pickle.
    """
    entry_dir = Path(entry_dir)
    try:
        meta = json.loads((entry_dir / "meta.json").read_text())
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            return None
        arrays = {
            array_name: np.load(entry_dir / f"{array_name}.npy", mmap_mode="r", allow_pickle=False)
            for array_name in _ARRAY_NAMES
        }
        return Dataset(**arrays, class_names=list(meta["class_names"]), name=str(meta["name"]))
    except (OSError, ValueError, KeyError, DataError):
        return None
