"""``load_dataset``: one entry point for named datasets, official archives, folders and zips.

Every path through here ends in the decoded-array cache (:mod:`.dataset`), so only the first
load of a source pays for downloading, checksumming and decoding.

Cache layout under the cache directory::

    downloads/<official file names>           # verified downloads
    cifar10/, fashion-mnist/, svhn/           # decoded named datasets
    archives/<stem>-<key>/                    # decoded user archives, files and folders
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .cifar import (
    CIFAR10_BINARY_MD5,
    CIFAR10_BINARY_URL,
    CIFAR10_PYTHON_MD5,
    read_cifar10_archive,
)
from .dataset import (
    DataError,
    Dataset,
    default_cache_dir,
    load_cached,
    save_cached,
    source_key,
)
from .download import Opener, ensure_file
from .fashion_mnist import FASHION_MNIST_FILES, FASHION_MNIST_URL, read_fashion_mnist
from .folders import read_image_folder
from .svhn import SVHN_FILES, SVHN_URL, read_svhn

__all__ = [
    "DATASET_NAMES",
    "is_dataset_name",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_svhn",
]

DATASET_NAMES = ("cifar10", "fashion-mnist", "svhn")
# Spellings users type for the same dataset.
_ALIASES = {
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "svhn": "svhn",
}
# An archive under one of these names is checked against the published md5; a renamed one
# (such as a small test archive) is taken as it is.
_OFFICIAL_MD5 = {
    "cifar-10-binary.tar.gz": CIFAR10_BINARY_MD5,
    "cifar-10-python.tar.gz": CIFAR10_PYTHON_MD5,
}
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_dataset_name(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a dataset (``cifar10``, ``fashion-mnist``, ...) rather than a path.

    A name that is also an existing path is a path, as :func:`load_dataset` reads it.
    """
    return str(spec).strip().lower() in _ALIASES and not Path(spec).exists()


def load_dataset(
    spec: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: tuple[int, int] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load a dataset by name or path, decoding it once and memory-mapping it afterwards.

    Args:
        spec: a name (``"cifar10"``, ``"fashion-mnist"``, ``"svhn"``); a CIFAR-10 archive
            (``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz``, md5-verified under
            those names); a folder holding the official Fashion-MNIST or SVHN files; or an
            image folder or ``.zip`` with ``train/<class>/*`` and ``test/<class>/*``.
        cache_dir: where downloads and decoded arrays go; default ``$SCRATCHCNN_DATA``, else
            ``~/.cache/scratchcnn``.
        image_size: ``(height, width)`` to resize image-folder images to; None keeps their size
            (and requires them all to match). Ignored by the fixed-size official formats.
        download: fetch a named dataset that is not in the cache yet.
        progress: show progress bars.

    Shape:
        Returns a Dataset with uint8 (N, H, W, C) images and int64 (N,) labels.

    Raises:
        DataError: unknown spec, unreadable file; its subclasses ChecksumError (md5 mismatch)
            and DownloadError (no network; the message names the URL and ``--data PATH``).
    """
    cache = default_cache_dir(cache_dir)
    if is_dataset_name(spec):
        name = _ALIASES[str(spec).strip().lower()]
        if name == "cifar10":
            return load_cifar10(cache, download=download, progress=progress)
        if name == "fashion-mnist":
            return load_fashion_mnist(cache, download=download, progress=progress)
        return load_svhn(cache, download=download, progress=progress)

    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(
            f"no dataset {str(spec)!r}: expected one of {list(DATASET_NAMES)} or the path of an "
            "archive, folder or .zip that exists"
        )
    if path.is_dir():
        if all((path / f).is_file() for f in FASHION_MNIST_FILES):
            return _cached(cache, path, None, lambda: read_fashion_mnist(path))
        if all((path / f).is_file() for f in SVHN_FILES):
            return _cached(cache, path, None, lambda: read_svhn(path))
        return _cached(
            cache, path, image_size, lambda: read_image_folder(path, image_size, progress)
        )
    lower = path.name.lower()
    if lower.endswith(_TAR_SUFFIXES):
        md5 = _OFFICIAL_MD5.get(lower)
        return _cached(cache, path, None, lambda: read_cifar10_archive(path, expected_md5=md5))
    if lower.endswith(".zip"):
        return _cached(
            cache, path, image_size, lambda: read_image_folder(path, image_size, progress)
        )
    raise DataError(
        f"cannot tell the format of {path}: expected a .tar.gz CIFAR-10 archive, a .zip or a "
        "folder of images, or a folder with the official Fashion-MNIST or SVHN files"
    )


def _cached(
    cache: Path, source: Path, image_size: tuple[int, int] | None, read: Callable[[], Dataset]
) -> Dataset:
    """Load the cache entry for ``source`` (keyed by path, size and mtime), else build it."""
    stem = source.name.split(".")[0] or "dataset"
    return _from_cache_or_build(
        cache / "archives" / f"{stem}-{source_key(source, image_size)}", read
    )


def _from_cache_or_build(entry: Path, build: Callable[[], Dataset]) -> Dataset:
    dataset = load_cached(entry)
    if dataset is None:
        save_cached(build(), entry)
        dataset = load_cached(entry)
        if dataset is None:
            raise DataError(f"cache entry {entry} could not be read back after writing it")
    return dataset


def load_cifar10(
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
    url: str = CIFAR10_BINARY_URL,
    md5: str = CIFAR10_BINARY_MD5,
    opener: Opener | None = None,
) -> Dataset:
    """CIFAR-10 from the cache, else from the official binary archive (downloaded if needed).

    ``url``, ``md5`` and ``opener`` exist so tests can serve a small archive offline.

    Args:
        cache_dir: where downloads and decoded arrays go; ``None``: :func:`default_cache_dir`.
        download: fetch the files when they are not in the cache (else raise :class:`DataError`).
        progress: show progress bars.
        url: where to download the binary archive from.
        md5: the archive's expected md5.
        opener: replacement for ``urllib.request.urlopen`` (for tests).

    Shape:
        Returns train images (50000, 32, 32, 3) uint8 and test images (10000, 32, 32, 3).
    """
    cache = default_cache_dir(cache_dir)

    def build() -> Dataset:
        archive = ensure_file(
            url, cache / "downloads" / url.rsplit("/", 1)[-1], md5, download, progress, opener
        )
        return read_cifar10_archive(archive, expected_md5=md5)

    return _from_cache_or_build(cache / "cifar10", build)


def load_fashion_mnist(
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
    base_url: str = FASHION_MNIST_URL,
    md5s: dict[str, str] | None = None,
    opener: Opener | None = None,
) -> Dataset:
    """Fashion-MNIST from the cache, else from the four official IDX files.

    Args:
        cache_dir: where downloads and decoded arrays go; ``None``: :func:`default_cache_dir`.
        download: fetch the files when they are not in the cache (else raise :class:`DataError`).
        progress: show progress bars.
        base_url: the folder URL holding the four IDX files.
        md5s: expected md5 of each file by name; ``None``: the official ones.
        opener: replacement for ``urllib.request.urlopen`` (for tests).

    Shape:
        Returns train images (60000, 28, 28, 1) uint8 and test images (10000, 28, 28, 1).
    """
    md5s = dict(FASHION_MNIST_FILES) if md5s is None else md5s
    return _load_official_files(
        "fashion-mnist", read_fashion_mnist, cache_dir, download, progress, base_url, md5s, opener
    )


def load_svhn(
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
    base_url: str = SVHN_URL,
    md5s: dict[str, str] | None = None,
    opener: Opener | None = None,
) -> Dataset:
    """SVHN (cropped digits) from the cache, else from the two official ``.mat`` files.

    Args:
        cache_dir: where downloads and decoded arrays go; ``None``: :func:`default_cache_dir`.
        download: fetch the files when they are not in the cache (else raise :class:`DataError`).
        progress: show progress bars.
        base_url: the folder URL holding ``train_32x32.mat`` and ``test_32x32.mat``.
        md5s: expected md5 of each file by name; ``None``: the official ones.
        opener: replacement for ``urllib.request.urlopen`` (for tests).

    Shape:
        Returns train images (73257, 32, 32, 3) uint8 and test images (26032, 32, 32, 3).
    """
    md5s = dict(SVHN_FILES) if md5s is None else md5s
    return _load_official_files(
        "svhn", read_svhn, cache_dir, download, progress, base_url, md5s, opener
    )


def _load_official_files(
    name: str,
    reader: Callable[[Path, dict[str, str]], Dataset],
    cache_dir: str | os.PathLike[str] | None,
    download: bool,
    progress: bool,
    base_url: str,
    md5s: dict[str, str],
    opener: Opener | None,
) -> Dataset:
    """A dataset published as several md5-checked files: cached arrays, else fetch and read."""
    cache = default_cache_dir(cache_dir)

    def build() -> Dataset:
        folder = cache / "downloads" / name
        for file_name, md5 in md5s.items():
            ensure_file(base_url + file_name, folder / file_name, md5, download, progress, opener)
        return reader(folder, md5s)

    return _from_cache_or_build(cache / name, build)
