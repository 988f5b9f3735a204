"""The learning-rate range test on a least-squares problem whose stable range is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratchcnn.optim import SGD, LRFinderResult, lr_range_test
from scratchcnn.optim.lr_finder import suggest_lr
from scratchcnn.parameter import Parameter


class LeastSquares:
    """``L(w) = ||A w - b||^2 / (2 N)``; gradient descent diverges once ``lr > 2 / lambda_max``.

    Shape: ``A`` is ``(N, 5)``, ``w`` and its gradient are ``(5,)``.
    """

    def __init__(self, seed: int = 0, n: int = 64) -> None:
        rng = np.random.default_rng(seed)
        self.design = rng.standard_normal((n, 5))
        self.target = self.design @ rng.standard_normal(5) + 0.01 * rng.standard_normal(n)
        hessian = self.design.T @ self.design / n  # (5, 5)
        self.max_stable_lr = 2.0 / float(np.linalg.eigvalsh(hessian).max())
        self.weight = Parameter(np.zeros(5), name="w")

    def step_fn(self) -> float:
        residual = self.design @ self.weight.data - self.target  # (N,)
        n = residual.shape[0]
        self.weight.grad[...] = self.design.T @ residual / n
        return 0.5 * float(residual @ residual) / n


@pytest.mark.parametrize("smooth", [0.0, 0.5, 0.9, 0.98])
def test_range_test_finds_a_stable_lr_and_stops_on_divergence(smooth: float) -> None:
    problem = LeastSquares()
    opt = SGD([problem.weight], lr=0.5)
    result = lr_range_test(
        problem.step_fn, opt, start_lr=1e-5, end_lr=100.0, num_steps=100, smooth=smooth
    )
    assert isinstance(result, LRFinderResult)
    n = len(result.lrs)
    assert result.losses.shape == result.smoothed.shape == (n,)
    assert np.all(np.diff(result.lrs) > 0)
    assert result.lrs[0] == pytest.approx(1e-5)
    # it stopped early, and only after passing the edge of stability
    assert n < 100
    assert result.lrs[-1] > problem.max_stable_lr
    assert result.smoothed[-1] > 4.0 * result.smoothed.min()
    # the suggestion is a learning rate that trains, neither tiny nor unstable
    assert 1e-3 < result.suggested_lr < problem.max_stable_lr
    assert opt.lr == 0.5  # restored


def test_range_test_schedule_is_exponential() -> None:
    losses = iter(np.linspace(10.0, 1.0, 5))
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    seen = []

    def step_fn() -> float:
        seen.append(opt.lr)
        return float(next(losses))

    result = lr_range_test(step_fn, opt, start_lr=1e-4, end_lr=1.0, num_steps=5, smooth=0.0)
    np.testing.assert_allclose(result.lrs, [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    np.testing.assert_allclose(seen, result.lrs)
    np.testing.assert_allclose(result.smoothed, result.losses)  # smooth=0: no smoothing
    assert opt.step_count == 5


def test_smoothing_is_bias_corrected() -> None:
    losses = iter([2.0, 4.0, 1.0])
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    result = lr_range_test(
        lambda: next(losses), opt, start_lr=1e-3, end_lr=1e-1, num_steps=3, smooth=0.5
    )
    # avg: 1.0, 2.5, 1.75; bias corrections 0.5, 0.75, 0.875
    np.testing.assert_allclose(result.smoothed, [2.0, 2.5 / 0.75, 1.75 / 0.875])


def test_nonfinite_loss_stops_without_recording_or_stepping() -> None:
    losses = iter([3.0, 2.0, 1.0, math.nan, 0.5])
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    result = lr_range_test(lambda: next(losses), opt, num_steps=5, smooth=0.0)
    np.testing.assert_array_equal(result.losses, [3.0, 2.0, 1.0])
    assert opt.step_count == 3


def test_needs_two_finite_losses() -> None:
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    with pytest.raises(RuntimeError, match="recorded 0 finite loss"):
        lr_range_test(lambda: math.inf, opt)
    assert opt.lr == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_lr": 0.0}, "start_lr must be a finite number > 0, got 0.0"),
        ({"start_lr": 1.0, "end_lr": 0.5}, "end_lr must be finite and > start_lr=1.0, got 0.5"),
        ({"num_steps": 1}, "num_steps must be an int >= 2, got 1"),
        ({"smooth": 1.0}, r"smooth must be in \[0, 1\), got 1.0"),
        ({"diverge_factor": 1.0}, "diverge_factor must be a finite number > 1, got 1.0"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=message):
        lr_range_test(lambda: 1.0, opt, **kwargs)


def test_suggestion_is_the_steepest_descent_before_the_minimum() -> None:
    """A curve with a dip in its first steps (the moving average settling: the steepest slope
    of all), a real descent centred on lr 1e-2, its minimum, then the blow-up: the suggestion
    is the real descent."""
    lrs = np.geomspace(1e-5, 10.0, 60)
    log_lr = np.log(lrs)
    smoothed = 2.3 - 1.5 / (1 + np.exp(-(log_lr - np.log(1e-2)) * 3))  # falls fastest at 1e-2
    smoothed[1] -= 0.5
    smoothed[-10:] = np.linspace(smoothed[-11] + 0.1, 8.0, 10)  # the blow-up
    slope = np.gradient(smoothed, log_lr)
    assert np.argmin(slope) < 3  # the settling dip is what "steepest overall" would pick
    lr, rule = suggest_lr(lrs, smoothed)
    assert 5e-3 < lr < 2e-2
    assert "steepest descent" in rule and "between steps 7 and 50" in rule


def test_suggestion_falls_back_to_a_tenth_of_the_minimum_when_there_is_no_slope() -> None:
    lrs = np.geomspace(1e-3, 1.0, 20)
    smoothed = np.linspace(1.0, 3.0, 20)  # rises from the start: the minimum is the first step
    lr, rule = suggest_lr(lrs, smoothed)
    assert lr == pytest.approx(1e-4)
    assert "too early to measure a slope" in rule


def test_range_test_reports_its_rule() -> None:
    problem = LeastSquares()
    result = lr_range_test(problem.step_fn, SGD([problem.weight], lr=0.1), start_lr=1e-5,
                           end_lr=100.0)  # fmt: skip
    assert result.suggestion_rule.startswith("steepest descent of the smoothed loss")
    assert (result.suggested_lr, result.suggestion_rule) == suggest_lr(result.lrs, result.smoothed)
