"""The real CIFAR-10 (JPEG copy) from ../shared/datasets, loaded end to end."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from scratchcnn.data import Normalizer, load_dataset, split_train_val

CIFAR_ZIP = Path(__file__).resolve().parents[1].parent / "shared/datasets/cifar10-jpeg.zip"


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_ZIP.is_file(), reason=f"{CIFAR_ZIP} not present")
def test_real_cifar10_jpeg_zip(tmp_path):
    dataset = load_dataset(CIFAR_ZIP, cache_dir=tmp_path, progress=False)
    assert dataset.train_images.shape == (50_000, 32, 32, 3)
    assert dataset.test_images.shape == (10_000, 32, 32, 3)
    assert dataset.train_images.dtype == np.uint8 and dataset.train_labels.dtype == np.int64
    assert dataset.class_names == [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    np.testing.assert_array_equal(np.bincount(dataset.train_labels), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(dataset.test_labels), [1000] * 10)
    normalizer = Normalizer.fit(dataset.train_images)
    np.testing.assert_allclose(normalizer.mean, [0.4917, 0.4826, 0.4472], atol=0.002)
    np.testing.assert_allclose(normalizer.std, [0.2452, 0.2427, 0.2606], atol=0.002)
    train_idx, val_idx = split_train_val(dataset.train_labels, 10_000, np.random.default_rng(0))
    assert train_idx.size == 40_000
    np.testing.assert_array_equal(np.bincount(dataset.train_labels[val_idx]), [1000] * 10)

    # The second load is a memory map of the cached arrays: no decoding.
    start = time.perf_counter()
    again = load_dataset(CIFAR_ZIP, cache_dir=tmp_path, progress=False)
    assert time.perf_counter() - start < 2.0
    assert isinstance(again.train_images, np.memmap)
    np.testing.assert_array_equal(again.test_images[:100], dataset.test_images[:100])
