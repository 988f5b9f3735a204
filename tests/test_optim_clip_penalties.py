"""Gradient clipping by global norm and the explicit L1/L2 penalties."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from scratchcnn.optim import clip_grad_norm, l1_penalty, l2_penalty
from scratchcnn.parameter import Parameter

Penalty = Callable[[Iterable[Parameter], float], float]


def params_with_grads(dtype: type = np.float64, scale: float = 1.0) -> list[Parameter]:
    rng = np.random.default_rng(0)
    params = [
        Parameter(rng.standard_normal((2, 3)).astype(dtype), name="weight"),
        Parameter(rng.standard_normal(3).astype(dtype), name="bias"),
    ]
    for p in params:
        p.grad[...] = scale * rng.standard_normal(p.shape)
    return params


# --- clip_grad_norm ------------------------------------------------------------------------------


def test_clip_by_hand() -> None:
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    a.grad[...] = [3.0, 0.0]
    b.grad[...] = [4.0]
    norm = clip_grad_norm([a, b], max_norm=1.0)
    # global norm sqrt(9 + 16) = 5; scale 1 / (5 + 1e-6)
    assert norm == 5.0
    np.testing.assert_allclose(a.grad, [3.0 / (5 + 1e-6), 0.0], rtol=1e-15)
    np.testing.assert_allclose(b.grad, [4.0 / (5 + 1e-6)], rtol=1e-15)


def test_clip_leaves_frozen_parameters_out() -> None:
    a, frozen, b = Parameter(np.zeros(2)), Parameter(np.zeros(2)), Parameter(np.zeros(1))
    a.grad[...] = [3.0, 0.0]
    frozen.grad[...] = [100.0, 100.0]  # stale: no optimizer reads it
    frozen.requires_grad = False
    b.grad[...] = [4.0]
    norm = clip_grad_norm([a, frozen, b], max_norm=1.0)
    # the norm of a and b alone, sqrt(9 + 16); the frozen gradient is neither counted nor scaled
    assert norm == 5.0
    np.testing.assert_allclose(b.grad, [4.0 / (5 + 1e-6)], rtol=1e-15)
    np.testing.assert_array_equal(frozen.grad, [100.0, 100.0])


def test_no_clip_below_max_norm() -> None:
    params = params_with_grads()
    before = [p.grad.copy() for p in params]
    norm = clip_grad_norm(params, max_norm=1e6)
    expected = math.sqrt(sum(float(np.sum(g**2)) for g in before))
    assert norm == pytest.approx(expected, rel=1e-15)
    for p, g in zip(params, before, strict=True):
        np.testing.assert_array_equal(p.grad, g)


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 3.0, 100.0])
def test_clip_matches_torch(max_norm: float) -> None:
    torch = pytest.importorskip("torch")
    params = params_with_grads(scale=2.0)
    tensors = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    for p, t in zip(params, tensors, strict=True):
        t.grad = torch.from_numpy(p.grad.copy())
    norm = clip_grad_norm(params, max_norm)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert norm == pytest.approx(float(torch_norm), rel=1e-12)
    for p, t in zip(params, tensors, strict=True):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12, atol=0)


def test_clip_keeps_float32_and_accepts_generators() -> None:
    params = params_with_grads(np.float32, scale=5.0)
    norm = clip_grad_norm((p for p in params), max_norm=1.0)
    assert isinstance(norm, float) and norm > 1.0
    assert all(p.grad.dtype == np.float32 for p in params)
    clipped = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-5)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_clip_nonfinite() -> None:
    params = params_with_grads()
    params[0].grad[0, 0] = np.inf
    with pytest.raises(RuntimeError, match="total gradient norm is inf"):
        clip_grad_norm(params, 1.0, error_if_nonfinite=True)
    assert clip_grad_norm(params, 1.0) == math.inf


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan")])
def test_clip_rejects_bad_max_norm(max_norm: float) -> None:
    with pytest.raises(ValueError, match=f"max_norm must be > 0, got {max_norm}"):
        clip_grad_norm(params_with_grads(), max_norm)


# --- penalties -----------------------------------------------------------------------------------


def test_l2_by_hand() -> None:
    w = Parameter(np.array([[1.0, -2.0]]), name="weight")
    bias = Parameter(np.array([5.0]), name="bias")
    w.grad[...] = [[0.5, 0.5]]
    bias.grad[...] = [1.0]
    value = l2_penalty([w, bias], strength=0.1)
    # 0.5 * 0.1 * (1 + 4) = 0.25; grad += 0.1 * w; the 1-D bias is skipped
    assert value == pytest.approx(0.25, rel=1e-15)
    np.testing.assert_allclose(w.grad, [[0.6, 0.3]], rtol=1e-15)
    np.testing.assert_array_equal(bias.grad, [1.0])
    value = l2_penalty([w, bias], strength=0.1, skip_1d=False)
    # 0.25 + 0.5 * 0.1 * 25
    assert value == pytest.approx(1.5, rel=1e-15)
    np.testing.assert_allclose(bias.grad, [1.5], rtol=1e-15)


def test_l1_by_hand() -> None:
    w = Parameter(np.array([[1.0, -2.0, 0.0]]), name="weight")
    value = l1_penalty([w], strength=0.1)
    # 0.1 * (1 + 2 + 0) = 0.3; grad += 0.1 * sign(w), sign(0) = 0
    assert value == pytest.approx(0.3, rel=1e-15)
    np.testing.assert_allclose(w.grad, [[0.1, -0.1, 0.0]], rtol=1e-15)


@pytest.mark.parametrize("penalty", [l1_penalty, l2_penalty])
def test_penalty_skips_frozen_parameters(penalty: Penalty) -> None:
    w = Parameter(np.array([[1.0, -2.0]]), name="weight")
    frozen = Parameter(np.array([[3.0, 4.0]]), name="frozen", requires_grad=False)
    alone = penalty([w], strength=0.1)
    w.grad[...] = 0.0
    assert penalty([w, frozen], strength=0.1) == alone
    np.testing.assert_array_equal(frozen.grad, [[0.0, 0.0]])
    assert np.any(w.grad != 0.0)


@pytest.mark.parametrize("penalty", [l1_penalty, l2_penalty])
def test_penalty_gradient_matches_finite_differences(penalty: Penalty) -> None:
    rng = np.random.default_rng(1)
    w = Parameter(rng.standard_normal((3, 4)) + 0.5, name="weight")  # away from |w| = 0
    penalty([w], strength=0.3)
    eps = 1e-6
    numeric = np.zeros_like(w.data)
    for idx in np.ndindex(w.shape):
        original = w.data[idx]
        w.data[idx] = original + eps
        plus = penalty([Parameter(w.data.copy())], strength=0.3)
        w.data[idx] = original - eps
        minus = penalty([Parameter(w.data.copy())], strength=0.3)
        w.data[idx] = original
        numeric[idx] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(w.grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("penalty", [l1_penalty, l2_penalty])
def test_penalty_keeps_float32(penalty: Penalty) -> None:
    params = params_with_grads(np.float32)
    assert isinstance(penalty(params, strength=0.01), float)
    assert all(p.grad.dtype == np.float32 for p in params)


@pytest.mark.parametrize("penalty", [l1_penalty, l2_penalty])
def test_penalty_rejects_negative_strength(penalty: Penalty) -> None:
    with pytest.raises(ValueError, match="strength must be a finite number >= 0, got -0.1"):
        penalty(params_with_grads(), strength=-0.1)
