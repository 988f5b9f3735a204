"""Readers, cache and downloads of scratchcnn.data, on small archives built here in each
official format (the real files are far too big for unit tests)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scratchcnn.data import (
    ChecksumError,
    DataError,
    Dataset,
    DownloadError,
    download_url,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_svhn,
    read_cifar10_binary,
    read_cifar10_python,
    read_fashion_mnist,
    read_image_folder,
    read_svhn,
)
from scratchcnn.data.cifar import CIFAR10_BINARY_URL, CIFAR10_CLASS_NAMES
from scratchcnn.data.fashion_mnist import FASHION_MNIST_FILES
from scratchcnn.data.svhn import SVHN_FILES

TRAIN_PER_BATCH = 4
TEST_COUNT = 6


# ---------------------------------------------------------------- archive builders


def _fake_cifar(
    seed: int = 0,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Five small training batches and a test batch of random 32x32 RGB images."""
    rng = np.random.default_rng(seed)
    batches = [
        (
            rng.integers(0, 256, (TRAIN_PER_BATCH, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, TRAIN_PER_BATCH),
        )
        for _ in range(5)
    ]
    test_images = rng.integers(0, 256, (TEST_COUNT, 32, 32, 3), dtype=np.uint8)
    test_labels = rng.integers(0, 10, TEST_COUNT)
    return batches, test_images, test_labels


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _chw_rows(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # (N, H, W, C) -> (N, 3072)


def build_binary_archive(path: Path, seed: int = 0, extra: dict[str, bytes] | None = None):
    batches, test_images, test_labels = _fake_cifar(seed)
    with tarfile.open(path, "w:gz") as tar:
        for index, (images, labels) in enumerate(batches, start=1):
            records = np.concatenate([labels[:, None].astype(np.uint8), _chw_rows(images)], axis=1)
            _add_member(tar, f"cifar-10-batches-bin/data_batch_{index}.bin", records.tobytes())
        records = np.concatenate([test_labels[:, None].astype(np.uint8), _chw_rows(test_images)], 1)
        _add_member(tar, "cifar-10-batches-bin/test_batch.bin", records.tobytes())
        # The official file ends in blank lines.
        _add_member(
            tar,
            "cifar-10-batches-bin/batches.meta.txt",
            ("\n".join(CIFAR10_CLASS_NAMES) + "\n\n").encode(),
        )
        for name, data in (extra or {}).items():
            _add_member(tar, name, data)
    return batches, test_images, test_labels


def build_python_archive(path: Path, seed: int = 0, poison: object | None = None, protocol=2):
    batches, test_images, test_labels = _fake_cifar(seed)

    def batch_dict(images, labels, label):
        return {
            b"batch_label": label,
            b"labels": [int(v) for v in labels],
            b"data": _chw_rows(images).copy(),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        }

    with tarfile.open(path, "w:gz") as tar:
        for index, (images, labels) in enumerate(batches, start=1):
            content = batch_dict(images, labels, f"training batch {index} of 5".encode())
            if poison is not None and index == 1:
                content[b"data"] = poison
            _add_member(
                tar, f"cifar-10-batches-py/data_batch_{index}", pickle.dumps(content, protocol)
            )
        content = batch_dict(test_images, test_labels, b"testing batch 1 of 1")
        _add_member(tar, "cifar-10-batches-py/test_batch", pickle.dumps(content, protocol))
        meta = {
            b"label_names": [name.encode() for name in CIFAR10_CLASS_NAMES],
            b"num_cases_per_batch": 10000,
            b"num_vis": 3072,
        }
        _add_member(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol))
    return batches, test_images, test_labels


def _assert_cifar_equal(dataset: Dataset, expected) -> None:
    batches, test_images, test_labels = expected
    np.testing.assert_array_equal(dataset.train_images, np.concatenate([b[0] for b in batches]))
    np.testing.assert_array_equal(dataset.train_labels, np.concatenate([b[1] for b in batches]))
    np.testing.assert_array_equal(dataset.test_images, test_images)
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.dtype == np.int64
    assert dataset.class_names == CIFAR10_CLASS_NAMES


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- CIFAR-10 binary / python


def test_cifar_binary_round_trip(tmp_path):
    archive = tmp_path / "small-binary.tar.gz"
    expected = build_binary_archive(archive)
    dataset = read_cifar10_binary(archive, expected_md5=_md5(archive))
    _assert_cifar_equal(dataset, expected)
    assert dataset.train_images.shape == (5 * TRAIN_PER_BATCH, 32, 32, 3)


def test_cifar_binary_ignores_unsafe_members_and_writes_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "small.tar.gz"
    expected = build_binary_archive(
        archive, extra={"../escaped.txt": b"x", "/tmp/abs_escape_scratchcnn": b"y"}
    )
    before = _files_under(tmp_path)
    _assert_cifar_equal(read_cifar10_binary(archive, expected_md5=None), expected)
    assert _files_under(tmp_path) == before
    assert not Path("/tmp/abs_escape_scratchcnn").exists()


def test_cifar_binary_bad_record_size(tmp_path):
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for index in range(1, 6):
            _add_member(tar, f"d/data_batch_{index}.bin", b"\x00" * 3073)
        _add_member(tar, "d/test_batch.bin", b"\x00" * 3000)
        _add_member(tar, "d/batches.meta.txt", "\n".join(CIFAR10_CLASS_NAMES).encode())
    with pytest.raises(DataError, match="test_batch.bin.*3073"):
        read_cifar10_binary(archive, expected_md5=None)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_python_round_trip(tmp_path, protocol):
    archive = tmp_path / "small-python.tar.gz"
    expected = build_python_archive(archive, protocol=protocol)
    _assert_cifar_equal(read_cifar10_python(archive, expected_md5=_md5(archive)), expected)


class _Evil:
    """Unpickling this object would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_python_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    archive = tmp_path / "evil-python.tar.gz"
    build_python_archive(archive, poison=_Evil(marker))
    with pytest.raises(pickle.UnpicklingError, match=r"(posix|os|nt)\.system"):
        read_cifar10_python(archive, expected_md5=None)
    assert not marker.exists()
    # load_dataset takes the same path (the archive is sniffed as the python version).
    with pytest.raises(pickle.UnpicklingError):
        load_dataset(archive, cache_dir=tmp_path / "cache", progress=False)
    assert not marker.exists()
    assert _files_under(tmp_path / "cache") == []


def test_load_dataset_sniffs_both_cifar_layouts_and_caches(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    binary, python = tmp_path / "mine-bin.tar.gz", tmp_path / "mine-py.tar.gz"
    expected_binary = build_binary_archive(binary, seed=1)
    expected_python = build_python_archive(python, seed=2)
    _assert_cifar_equal(load_dataset(binary, cache_dir=cache, progress=False), expected_binary)
    _assert_cifar_equal(load_dataset(python, cache_dir=cache, progress=False), expected_python)

    # A second load must come from the memory-mapped cache, not from the archive.
    def fail(*args, **kwargs):
        raise AssertionError("archive decoded again")

    monkeypatch.setattr("scratchcnn.data.load.read_cifar10_archive", fail)
    again = load_dataset(binary, cache_dir=cache, progress=False)
    assert isinstance(again.train_images, np.memmap)
    _assert_cifar_equal(again, expected_binary)
    assert list(cache.rglob("*.npy"))
    assert not [p for p in cache.rglob("*") if "part" in p.name]


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    archive = tmp_path / "env.tar.gz"
    build_binary_archive(archive)
    monkeypatch.setenv("SCRATCHCNN_DATA", str(tmp_path / "envcache"))
    load_dataset(archive, progress=False)
    assert list((tmp_path / "envcache").rglob("meta.json"))


def test_official_name_with_wrong_md5_is_refused_and_nothing_cached(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    build_binary_archive(archive)  # a valid archive, but not the official bytes
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as error:
        load_dataset(archive, cache_dir=cache, progress=False)
    message = str(error.value)
    assert "c32a1d4ab5d03f1284b67883e8d87530" in message and _md5(archive) in message
    assert _files_under(cache) == []


def test_truncated_archive_clear_error_and_nothing_cached(tmp_path):
    archive = tmp_path / "cut.tar.gz"
    build_binary_archive(archive)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(archive, cache_dir=cache, progress=False)
    assert _files_under(cache) == []


def test_unknown_spec(tmp_path):
    with pytest.raises(DataError, match="cifar10"):
        load_dataset("imagenet-22k", cache_dir=tmp_path)


# ---------------------------------------------------------------- downloads


def test_download_file_url_verifies_and_renames(tmp_path):
    archive = tmp_path / "src" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    expected = build_binary_archive(archive)
    cache = tmp_path / "cache"
    dataset = load_cifar10(cache, progress=False, url=archive.as_uri(), md5=_md5(archive))
    _assert_cifar_equal(dataset, expected)
    downloads = cache / "downloads"
    assert [p.name for p in downloads.iterdir()] == ["cifar-10-binary.tar.gz"]
    assert _md5(downloads / "cifar-10-binary.tar.gz") == _md5(archive)
    # The named dataset is cached now: a second load needs neither network nor archive.
    (downloads / "cifar-10-binary.tar.gz").unlink()
    again = load_cifar10(cache, download=False, progress=False, url="file:///nonexistent")
    _assert_cifar_equal(again, expected)


def test_download_md5_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(b"not the file you wanted" * 100)
    destination = tmp_path / "dl" / "payload.bin"
    with pytest.raises(ChecksumError) as error:
        download_url(source.as_uri(), destination, "0" * 32, progress=False)
    assert "0" * 32 in str(error.value) and _md5(source) in str(error.value)
    assert _files_under(tmp_path / "dl") == []


class _FakeResponse:
    """Stands in for urlopen's response: serves ``chunks`` then optionally fails mid-stream."""

    def __init__(self, chunks: list[bytes], length: int | None, fail: Exception | None = None):
        self.chunks = list(chunks)
        self.headers = {"Content-Length": str(length)} if length is not None else {}
        self.fail = fail

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.fail is not None:
            raise self.fail
        return b""


@pytest.mark.parametrize(
    "response",
    [
        _FakeResponse([b"a" * 10], 100, http.client.IncompleteRead(b"a" * 10, 90)),
        _FakeResponse([b"a" * 10], 100),  # server closed early without an error
    ],
    ids=["incomplete-read", "short-body"],
)
def test_interrupted_download_leaves_nothing(tmp_path, response):
    destination = tmp_path / "dl" / "file.tar.gz"
    with pytest.raises(DownloadError, match="http://example.invalid/file.tar.gz"):
        download_url(
            "http://example.invalid/file.tar.gz",
            destination,
            None,
            progress=False,
            opener=lambda url, timeout: response,
        )
    assert _files_under(tmp_path / "dl") == []


def test_no_network_error_names_url_and_data_flag(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(DownloadError) as error:
        load_cifar10(tmp_path, progress=False, opener=offline)
    message = str(error.value)
    assert CIFAR10_BINARY_URL in message and "--data PATH" in message
    assert _files_under(tmp_path) == []

    with pytest.raises(DownloadError) as error:
        load_dataset("cifar10", cache_dir=tmp_path, download=False, progress=False)
    assert CIFAR10_BINARY_URL in str(error.value) and "--data PATH" in str(error.value)


# ---------------------------------------------------------------- Fashion-MNIST (IDX)


def _write_idx_gz(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _build_fashion(directory: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 7, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write_idx_gz(directory / name, array)
    return arrays


def _assert_fashion_equal(dataset: Dataset, arrays: dict[str, np.ndarray]) -> None:
    assert dataset.train_images.shape == (7, 28, 28, 1)
    np.testing.assert_array_equal(
        dataset.train_images[..., 0], arrays["train-images-idx3-ubyte.gz"]
    )
    np.testing.assert_array_equal(dataset.train_labels, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(dataset.test_images[..., 0], arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(dataset.test_labels, arrays["t10k-labels-idx1-ubyte.gz"])
    assert dataset.train_labels.dtype == np.int64
    assert len(dataset.class_names) == 10


def test_fashion_mnist_round_trip(tmp_path):
    arrays = _build_fashion(tmp_path / "fm")
    _assert_fashion_equal(read_fashion_mnist(tmp_path / "fm", md5s=None), arrays)
    # Under the official names the official md5s are checked.
    with pytest.raises(ChecksumError, match=FASHION_MNIST_FILES["train-images-idx3-ubyte.gz"]):
        load_dataset(tmp_path / "fm", cache_dir=tmp_path / "cache", progress=False)


def test_fashion_mnist_download(tmp_path):
    source = tmp_path / "server"
    arrays = _build_fashion(source)
    md5s = {name: _md5(source / name) for name in FASHION_MNIST_FILES}
    dataset = load_fashion_mnist(
        tmp_path / "cache", progress=False, base_url=source.as_uri() + "/", md5s=md5s
    )
    _assert_fashion_equal(dataset, arrays)


def test_idx_size_mismatch(tmp_path):
    directory = tmp_path / "fm"
    _build_fashion(directory)
    path = directory / "t10k-labels-idx1-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-1]))
    with pytest.raises(DataError, match="t10k-labels"):
        read_fashion_mnist(directory, md5s=None)


# ---------------------------------------------------------------- SVHN (.mat)


def test_svhn_round_trip(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(4)
    expected = {}
    for name, count in (("train_32x32.mat", 5), ("test_32x32.mat", 3)):
        pixels = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        digits = np.array([10, 1, 9, 10, 5][:count], dtype=np.uint8)[:, None]  # 10 means 0
        savemat(tmp_path / name, {"X": pixels, "y": digits})
        expected[name] = (pixels.transpose(3, 0, 1, 2), digits[:, 0] % 10)
    dataset = read_svhn(tmp_path, md5s=None)
    np.testing.assert_array_equal(dataset.train_images, expected["train_32x32.mat"][0])
    np.testing.assert_array_equal(dataset.train_labels, [0, 1, 9, 0, 5])
    np.testing.assert_array_equal(dataset.test_images, expected["test_32x32.mat"][0])
    np.testing.assert_array_equal(dataset.test_labels, [0, 1, 9])
    assert dataset.class_names[0] == "0" and dataset.train_labels.dtype == np.int64


def test_svhn_download_checks_md5_and_caches(tmp_path):
    from scipy.io import savemat

    source = tmp_path / "server"
    source.mkdir()
    rng = np.random.default_rng(5)
    for name in SVHN_FILES:
        savemat(
            source / name,
            {
                "X": rng.integers(0, 256, (32, 32, 3, 2), dtype=np.uint8),
                "y": np.array([[10], [3]], dtype=np.uint8),
            },
        )
    md5s = {name: _md5(source / name) for name in SVHN_FILES}
    dataset = load_svhn(
        tmp_path / "cache", progress=False, base_url=source.as_uri() + "/", md5s=md5s
    )
    np.testing.assert_array_equal(dataset.train_labels, [0, 3])
    assert (tmp_path / "cache" / "downloads" / "svhn" / "train_32x32.mat").is_file()
    bad = {name: "0" * 32 for name in SVHN_FILES}
    with pytest.raises(ChecksumError):
        load_svhn(tmp_path / "other", progress=False, base_url=source.as_uri() + "/", md5s=bad)


# ---------------------------------------------------------------- image folders and zips


CLASSES = ["cat", "ant", "bee"]  # deliberately unsorted: ids come from sorted names


def _build_folder(root: Path, mode: str = "RGB", fmt: str = "PNG", size=(8, 6)):
    """Write train/<class>/*.png and test/<class>/*.png; return the expected arrays."""
    rng = np.random.default_rng(5)
    expected: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    sorted_classes = sorted(CLASSES)
    for split, per_class in (("train", 3), ("test", 1)):
        for class_name in CLASSES:
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                suffix = "png" if fmt == "PNG" else "jpg"
                Image.fromarray(pixels, mode).save(folder / f"{index:04d}.{suffix}", fmt)
                expected[split].append((pixels, sorted_classes.index(class_name)))
    return expected


def _assert_folder_equal(dataset: Dataset, expected) -> None:
    # Files are read in sorted path order, which is sorted class order here.
    for split in ("train", "test"):
        images = getattr(dataset, f"{split}_images")
        labels = getattr(dataset, f"{split}_labels")
        pairs = sorted(expected[split], key=lambda item: item[1])
        want = np.stack([p for p, _ in pairs])
        if want.ndim == 3:
            want = want[..., None]
        np.testing.assert_array_equal(images, want)
        np.testing.assert_array_equal(labels, [label for _, label in pairs])
    assert dataset.class_names == sorted(CLASSES)


def _zip_folder(folder: Path, archive: Path, prefix: str = "") -> None:
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, prefix + path.relative_to(folder).as_posix())


def test_image_folder_png_round_trip(tmp_path):
    expected = _build_folder(tmp_path / "imgs")
    dataset = read_image_folder(tmp_path / "imgs", progress=False)
    assert dataset.train_images.shape == (9, 6, 8, 3)
    _assert_folder_equal(dataset, expected)


def test_image_folder_greyscale_is_one_channel(tmp_path):
    expected = _build_folder(tmp_path / "grey", mode="L")
    dataset = read_image_folder(tmp_path / "grey", progress=False)
    assert dataset.train_images.shape == (9, 6, 8, 1)
    _assert_folder_equal(dataset, expected)


def test_image_zip_round_trip_and_cache(tmp_path, monkeypatch):
    expected = _build_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "cat" / "notes.txt").write_text("not an image")
    archive = tmp_path / "imgs.zip"
    _zip_folder(tmp_path / "imgs", archive, prefix="wrapped/")
    cache = tmp_path / "cache"
    dataset = load_dataset(archive, cache_dir=cache, progress=False)
    _assert_folder_equal(dataset, expected)
    assert dataset.name == "imgs"

    def fail(*args, **kwargs):
        raise AssertionError("zip decoded again")

    monkeypatch.setattr("scratchcnn.data.load.read_image_folder", fail)
    _assert_folder_equal(load_dataset(archive, cache_dir=cache, progress=False), expected)
    # A changed archive (new mtime) gets a fresh entry instead of the stale one.
    os.utime(archive, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(archive, cache_dir=cache, progress=False)


def test_image_zip_of_jpegs(tmp_path):
    expected = _build_folder(tmp_path / "jpgs", fmt="JPEG", size=(16, 16))
    archive = tmp_path / "jpgs.zip"
    _zip_folder(tmp_path / "jpgs", archive)
    dataset = load_dataset(archive, cache_dir=tmp_path / "cache", progress=False)
    assert dataset.train_images.shape == (9, 16, 16, 3) and dataset.test_images.shape[0] == 3
    np.testing.assert_array_equal(np.bincount(dataset.train_labels), [3, 3, 3])
    # JPEG is lossy: the decoded pixels only approximate the random originals.
    first = sorted(expected["train"], key=lambda item: item[1])[0][0]
    assert np.abs(dataset.train_images[0].astype(int) - first).mean() < 64


def test_image_folder_wrong_size_names_file_unless_resizing(tmp_path):
    _build_folder(tmp_path / "imgs")
    odd = tmp_path / "imgs" / "test" / "bee" / "0007.png"
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(odd)
    with pytest.raises(DataError, match=r"test/bee/0007\.png.*5x5"):
        read_image_folder(tmp_path / "imgs", progress=False)
    resized = load_dataset(
        tmp_path / "imgs", cache_dir=tmp_path / "cache", image_size=(4, 7), progress=False
    )
    assert resized.train_images.shape == (9, 4, 7, 3)
    assert resized.test_images.shape == (4, 4, 7, 3)


def test_image_folder_missing_split(tmp_path):
    _build_folder(tmp_path / "imgs")
    for path in (tmp_path / "imgs" / "test").rglob("*.png"):
        path.unlink()
    with pytest.raises(DataError, match="test/<class>"):
        read_image_folder(tmp_path / "imgs", progress=False)
