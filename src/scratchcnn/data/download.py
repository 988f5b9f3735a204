"""Checksum-verified, atomic file downloads with a progress bar.

A download streams into a temporary file beside its destination and is renamed into place
(``os.replace``) only once it is complete and its md5 matches, so the destination either does
not exist or is the right file: an interrupted or corrupted transfer leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .dataset import ChecksumError, DownloadError

__all__ = ["download_url", "ensure_file"]

# Any callable shaped like urllib.request.urlopen(url, timeout=...) that returns a context
# manager with .read(n) and .headers; tests inject one to stay offline.
Opener = Callable[..., Any]


def download_url(
    url: str,
    destination: str | os.PathLike[str],
    expected_md5: str | None,
    progress: bool = True,
    opener: Opener | None = None,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``destination``, verifying its md5 before it appears there.

    Args:
        url: what to fetch (``https://``, ``http://`` or ``file://``).
        destination: final path of the file; its parent directory is created.
        expected_md5: hex md5 the file must have; None skips the check.
        progress: show a tqdm progress bar.
        opener: replacement for ``urllib.request.urlopen`` (for tests).
        timeout: socket timeout in seconds.

    Args:
        chunk_size: bytes read and written at a time.

    Returns:
        ``destination`` as a Path.

    Raises:
        DownloadError: the transfer failed; the message names the URL and how to pass a local
            copy instead (``--data PATH``).
        ChecksumError: the downloaded bytes have another md5 (expected and got are named).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    open_url = opener if opener is not None else urllib.request.urlopen
    handle, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    tmp_path = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(handle, "wb") as out:
            try:
                with open_url(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length") if response.headers else None
                    total = int(length) if length else None
                    with tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=destination.name,
                        disable=not progress,
                        leave=False,
                    ) as bar:
                        received = 0
                        while chunk := response.read(chunk_size):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    if total is not None and received != total:
                        raise DownloadError(
                            f"download of {url} stopped early: expected {total} bytes, got "
                            f"{received}"
                        )
            except DownloadError:
                raise
            except Exception as error:
                # URLError, socket errors, and http.client.IncompleteRead (an HTTPException,
                # not an OSError) all mean the same to a user: no complete file arrived.
                raise DownloadError(_no_download_message(url, destination, error)) from error
        got = digest.hexdigest()
        if expected_md5 is not None and got != expected_md5.lower():
            raise ChecksumError(
                f"md5 mismatch for {url}: expected {expected_md5.lower()}, got {got}. "
                "The download was corrupted; nothing was kept."
            )
        os.replace(tmp_path, destination)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return destination


def _no_download_message(url: str, destination: Path, error: BaseException) -> str:
    return (
        f"could not download {url} ({type(error).__name__}: {error}). If you have no network, "
        f"download it elsewhere and either place it at {destination} or pass its path with "
        f"--data PATH (load_dataset(PATH) in Python)."
    )


def ensure_file(
    url: str,
    destination: str | os.PathLike[str],
    expected_md5: str | None,
    download: bool = True,
    progress: bool = True,
    opener: Opener | None = None,
) -> Path:
    """Return ``destination`` if it already exists, else download it (when allowed).

    An existing file is trusted here; readers verify its md5 before using it.

    Raises:
        DownloadError: the file is absent and ``download`` is False, or the download failed.
    """
    destination = Path(destination)
    if destination.is_file():
        return destination
    if not download:
        raise DownloadError(
            f"{destination} is missing and downloading is off; it would come from {url}. "
            "Pass a local copy with --data PATH (load_dataset(PATH) in Python) or allow the "
            "download."
        )
    return download_url(url, destination, expected_md5, progress=progress, opener=opener)
