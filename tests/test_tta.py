"""Test-time augmentation: the views by hand, results as weighted averages of the views,
mirror symmetry, batch-size invariance, and use through the evaluation code."""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.data import Normalizer
from scratchcnn.functional.loss import log_softmax
from scratchcnn.layers import Conv2d, GlobalAvgPool2d, Linear, ReLU, Sequential
from scratchcnn.training.evaluate import evaluate, predict_proba
from scratchcnn.training.tta import TTAModel, predict_logits_tta, tta_logits, tta_views


def small_model(symmetric: bool = False, seed: int = 0) -> Sequential:
    rng = np.random.default_rng(seed)
    conv = Conv2d(3, 4, 3, padding=1, rng=rng, dtype=np.float64)
    if symmetric:  # kernels equal to their mirror: the network cannot tell left from right
        conv.weight.data = (conv.weight.data + conv.weight.data[..., ::-1]) / 2
    return Sequential(conv, ReLU(), GlobalAvgPool2d(), Linear(4, 5, rng=rng, dtype=np.float64))


def images(n: int = 6, size: int = 7, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size))


def shifted_by_hand(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[i, j] = x[i - dy, j - dx]``, reflecting indices that fall off the image."""

    def reflect(index: int, size: int) -> int:
        return -index if index < 0 else 2 * (size - 1) - index if index >= size else index

    height, width = x.shape[2:]
    out = np.empty_like(x)
    for i in range(height):
        for j in range(width):
            out[:, :, i, j] = x[:, :, reflect(i - dy, height), reflect(j - dx, width)]
    return out


def test_views_by_hand() -> None:
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
    views = tta_views(x, 2)
    assert [w for w, _ in views] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    image = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    down_right = [[5, 4, 5], [2, 1, 2], [5, 4, 5]]  # x[i - 1, j - 1], reflected at the edges
    up_left = [[5, 6, 5], [8, 9, 8], [5, 6, 5]]  # x[i + 1, j + 1]

    def mirror(rows: list[list[int]]) -> list[list[int]]:
        return [row[::-1] for row in rows]

    expected = [image, mirror(image), down_right, mirror(down_right), up_left, mirror(up_left)]
    for (_, view), want in zip(views, expected, strict=True):
        np.testing.assert_array_equal(view[0, 0], want)
    assert [w for w, _ in tta_views(x, 1)] == [0.5, 0.5]
    assert len(tta_views(x, 0)) == 1 and tta_views(x, 0)[0][1] is x


def test_levels_are_weighted_averages_of_the_views() -> None:
    model = small_model()
    x = images()

    def f(view: np.ndarray) -> np.ndarray:
        return model.forward(np.ascontiguousarray(view))

    def m(view: np.ndarray) -> np.ndarray:
        return 0.5 * f(view) + 0.5 * f(view[..., ::-1])

    np.testing.assert_allclose(tta_logits(model, x, 0), f(x), rtol=1e-13)
    np.testing.assert_allclose(tta_logits(model, x, 1), m(x), rtol=1e-13)
    translated = 0.5 * (m(shifted_by_hand(x, 1, 1)) + m(shifted_by_hand(x, -1, -1)))
    np.testing.assert_allclose(tta_logits(model, x, 2), 0.5 * m(x) + 0.5 * translated, rtol=1e-13)
    # the levels really differ on a model that is not mirror-symmetric
    assert not np.allclose(tta_logits(model, x, 1), tta_logits(model, x, 0), atol=1e-6)
    assert not np.allclose(tta_logits(model, x, 2), tta_logits(model, x, 1), atol=1e-6)


def test_mirror_level_on_a_symmetric_model_equals_no_tta() -> None:
    model = small_model(symmetric=True)
    x = images()
    np.testing.assert_allclose(model.forward(x[..., ::-1].copy()), model.forward(x), atol=1e-12)
    np.testing.assert_allclose(tta_logits(model, x, 1), tta_logits(model, x, 0), atol=1e-12)


def test_batch_size_does_not_change_the_result() -> None:
    model = small_model()
    x = images(n=11)
    whole = predict_logits_tta(model, x, level=2, batch_size=100)
    assert whole.shape == (11, 5)
    for batch_size in (1, 3, 4):
        np.testing.assert_allclose(
            predict_logits_tta(model, x, level=2, batch_size=batch_size), whole, rtol=1e-12
        )
    np.testing.assert_allclose(whole[:4], tta_logits(model, x[:4], 2), rtol=1e-12)


def test_tta_model_runs_through_evaluate_and_predict_proba() -> None:
    model = small_model()
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (9, 7, 7, 3), dtype=np.uint8)  # (N, H, W, C) as stored
    labels = rng.integers(0, 5, 9)
    normalizer = Normalizer.fit(raw)
    wrapped = TTAModel(model, level=2)
    result = evaluate(wrapped, raw, labels, normalizer, batch_size=4, dtype=np.float64)
    logits = predict_logits_tta(model, normalizer(raw).astype(np.float64), level=2)
    expected = np.exp(log_softmax(logits))
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-12)
    assert result.accuracy == np.mean(expected.argmax(axis=1) == labels)
    plain = predict_proba(model, raw, normalizer, dtype=np.float64)
    np.testing.assert_allclose(
        predict_proba(TTAModel(model, 0), raw, normalizer, dtype=np.float64), plain, rtol=1e-13
    )
    assert not np.allclose(result.probabilities, plain, atol=1e-6)
    assert list(wrapped.parameters()) == list(model.parameters())
    assert wrapped.output_shape((2, 3, 7, 7)) == (2, 5)


def test_bad_arguments() -> None:
    model = small_model()
    x = images(n=2)
    with pytest.raises(ValueError, match=r"tta level must be one of \(0, 1, 2\).*got 3"):
        tta_logits(model, x, 3)
    with pytest.raises(ValueError, match="got True"):
        TTAModel(model, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) batch, got shape \(3, 7, 7\)"):
        tta_views(x[0], 1)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        predict_logits_tta(model, x, 1, batch_size=0)
    with pytest.raises(ValueError, match="for evaluation"):
        TTAModel(model, 1).forward(x, training=True)
    with pytest.raises(RuntimeError, match="no backward pass"):
        TTAModel(model, 1).backward(np.zeros((2, 5)))
