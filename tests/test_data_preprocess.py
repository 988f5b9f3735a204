"""Splitting, conversion, normalisation and batching in scratchcnn.data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scratchcnn.data import BatchIterator, Normalizer, split_train_val, to_float_nchw

# ---------------------------------------------------------------- split_train_val


def test_split_cifar_sized_is_stratified_disjoint_and_covering():
    labels = np.repeat(np.arange(10), 5000)
    train_idx, val_idx = split_train_val(labels, 10_000, rng=np.random.default_rng(0))
    assert train_idx.shape == (40_000,) and val_idx.shape == (10_000,)
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(50_000))
    np.testing.assert_array_equal(np.bincount(labels[val_idx]), [1000] * 10)
    np.testing.assert_array_equal(np.bincount(labels[train_idx]), [4000] * 10)


def test_split_unbalanced_classes_proportional():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    _, val_idx = split_train_val(labels, 10, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(np.bincount(labels[val_idx], minlength=3), [7, 2, 1])
    # Fractional quotas (7 * 3/10 = 2.1 etc.) still add up to val_size exactly.
    labels = np.array([0] * 7 + [1] * 7 + [2] * 6)
    _, val_idx = split_train_val(labels, 3, rng=np.random.default_rng(1))
    assert val_idx.size == 3 and np.all(np.bincount(labels[val_idx], minlength=3) == 1)


def test_split_deterministic_under_seed():
    labels = np.random.default_rng(9).integers(0, 5, 1000)
    first = split_train_val(labels, 200, rng=np.random.default_rng(42))
    second = split_train_val(labels, 200, rng=np.random.default_rng(42))
    other = split_train_val(labels, 200, rng=np.random.default_rng(43))
    np.testing.assert_array_equal(first[1], second[1])
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[1], other[1])


def test_split_rejects_bad_arguments():
    labels = np.arange(10) % 2
    with pytest.raises(ValueError, match="val_size"):
        split_train_val(labels, 10, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        split_train_val(labels, 2)


# ---------------------------------------------------------------- to_float_nchw / Normalizer


def test_to_float_nchw_layout_and_range():
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    out = to_float_nchw(images)
    assert out.shape == (2, 3, 3, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, images.transpose(0, 3, 1, 2) / 255.0, rtol=1e-6)
    assert to_float_nchw(images, np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="uint8"):
        to_float_nchw(images.astype(np.float32))


def test_normalizer_fit_matches_numpy():
    images = np.random.default_rng(0).integers(0, 256, (37, 5, 6, 3), dtype=np.uint8)
    norm = Normalizer.fit(images, chunk_size=8)  # several chunks, one ragged
    as_float = images.astype(np.float64) / 255.0
    np.testing.assert_allclose(norm.mean, as_float.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(norm.std, as_float.std(axis=(0, 1, 2)), rtol=1e-10)


def test_normalizer_call_and_json_round_trip():
    images = np.random.default_rng(1).integers(0, 256, (16, 4, 4, 3), dtype=np.uint8)
    norm = Normalizer.fit(images)
    out = norm(images)
    assert out.shape == (16, 3, 4, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # Float NCHW input in [0, 1] gives the same result.
    np.testing.assert_allclose(norm(to_float_nchw(images)), out, atol=1e-6)
    restored = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(restored.mean, norm.mean)
    np.testing.assert_array_equal(restored.std, norm.std)
    with pytest.raises(ValueError, match="3 channels"):
        norm(np.zeros((1, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalizer([0.5], [0.0])


# ---------------------------------------------------------------- BatchIterator


def _data(n: int = 10):
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    return images, np.arange(n, dtype=np.int64)


def test_batch_iterator_sequential_and_lengths():
    images, labels = _data(10)
    loader = BatchIterator(images, labels, batch_size=4, shuffle=False)
    batches = list(loader)
    assert len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    for batch_images, batch_labels in batches:
        np.testing.assert_array_equal(batch_images[:, 0, 0, 0], batch_labels)  # pairs kept
    dropped = BatchIterator(images, labels, batch_size=4, shuffle=False, drop_last=True)
    assert len(dropped) == 2 and [len(b[1]) for b in dropped] == [4, 4]


def test_batch_iterator_reshuffles_each_epoch_deterministically():
    images, labels = _data(20)
    loader = BatchIterator(images, labels, 6, rng=np.random.default_rng(7))
    epoch1 = np.concatenate([b[1] for b in loader])
    epoch2 = np.concatenate([b[1] for b in loader])
    np.testing.assert_array_equal(np.sort(epoch1), labels)
    assert not np.array_equal(epoch1, epoch2)
    for batch_images, batch_labels in loader:
        np.testing.assert_array_equal(batch_images[:, 0, 0, 0], batch_labels)

    # The same seed replays the same epochs, and saving the generator's state resumes them.
    replay = BatchIterator(images, labels, 6, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in replay]), epoch1)
    state = replay.rng.bit_generator.state
    expected_next = np.concatenate([b[1] for b in replay])
    np.testing.assert_array_equal(expected_next, epoch2)
    resumed = BatchIterator(images, labels, 6, rng=np.random.default_rng(0))
    resumed.rng.bit_generator.state = state
    np.testing.assert_array_equal(np.concatenate([b[1] for b in resumed]), epoch2)


def test_batch_iterator_starts_mid_epoch_on_the_same_permutation():
    """What a trainer resumed mid-epoch needs: restore the epoch's starting generator state,
    ask for batches from k on, and get exactly the batches the epoch had left."""
    images, labels = _data(20)
    loader = BatchIterator(images, labels, 6, rng=np.random.default_rng(3))
    start_state = loader.rng.bit_generator.state
    full = [b[1] for b in loader]
    loader.rng.bit_generator.state = start_state
    rest = [b[1] for b in loader.batches(start=2)]
    assert len(rest) == 2
    for got, want in zip(rest, full[2:], strict=True):
        np.testing.assert_array_equal(got, want)
    assert list(loader.batches(start=len(loader))) == []
    with pytest.raises(ValueError, match=r"start must be in \[0, 4\], got 5"):
        list(loader.batches(start=5))


def test_batch_iterator_rejects_bad_arguments():
    images, labels = _data(4)
    with pytest.raises(ValueError, match="rng"):
        BatchIterator(images, labels, 2)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(images, labels, 0, shuffle=False)
    with pytest.raises(ValueError, match="same length"):
        BatchIterator(images, labels[:3], 2, shuffle=False)


def test_indexed_batches_give_each_batchs_positions_and_draw_what_batches_draw():
    images, labels = _data(20)
    loader = BatchIterator(images, labels, 6, rng=np.random.default_rng(3))
    indexed = list(loader.indexed_batches(start=1))
    loader.rng = np.random.default_rng(3)
    plain = list(loader.batches(start=1))
    assert len(indexed) == len(plain) == 3
    for (indices, batch_images, batch_labels), (same_images, same_labels) in zip(
        indexed, plain, strict=True
    ):
        np.testing.assert_array_equal(labels[indices], batch_labels)  # positions in the set
        np.testing.assert_array_equal(batch_images, same_images)
        np.testing.assert_array_equal(batch_labels, same_labels)
