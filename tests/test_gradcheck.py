"""Tier 1: every backward pass against centred finite differences, and the checker itself."""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.backend import available_backends, use_backend
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.parameter import Parameter
from scratchcnn.tools.gradcheck import (
    CheckResult,
    all_passed,
    builtin_checks,
    check_layer,
    check_model,
    format_results,
    numerical_gradient,
    relative_error,
)

THRESHOLD = 1e-6


@pytest.fixture(scope="module", autouse=True, params=available_backends())
def each_backend(request):
    """Every test in this file runs on each backend (a bug in either fails its own test)."""
    with use_backend(request.param):
        yield request.param


@pytest.fixture(scope="module")
def builtin_results(each_backend) -> list[CheckResult]:
    """The built-in checks, once per backend."""
    return builtin_checks(np.random.default_rng(0))


def test_builtin_checks_all_below_threshold(builtin_results: list[CheckResult]) -> None:
    failing = [r for r in builtin_results if not r.error < THRESHOLD]
    assert not failing, "\n" + format_results(failing, THRESHOLD)
    assert all_passed(builtin_results, THRESHOLD)


@pytest.mark.parametrize(
    "layer_name",
    [
        "Conv2d",
        "MaxPool2d",
        "AvgPool2d",
        "GlobalAvgPool2d",
        "ReLU",
        "LeakyReLU",
        "GELU erf",
        "GELU tanh",
        "Tanh",
        "Sigmoid",
        "Flatten",
        "Linear",
        "Dropout p=0.3 train",
        "Dropout p=0.3 eval",
        "BatchNorm2d train",
        "BatchNorm2d eval",
        "BatchNorm1d train",
        "BatchNorm1d eval",
        "Sequential",
        "Residual identity",
        "Residual 1x1-conv shortcut",
        "ConvReLUMaxPoolChain (fused)",
        "ReLUMaxPool (fused)",
        "BatchNormActivation (fused)",
        "CrossEntropyLoss int labels",
        "CrossEntropyLoss soft targets",
        "CrossEntropyLoss label_smoothing",
        "seed_cnn",
    ],
)
def test_builtin_checks_cover_layer(builtin_results: list[CheckResult], layer_name: str) -> None:
    mine = [r for r in builtin_results if r.name.startswith(layer_name)]
    assert mine, f"no built-in check for {layer_name}"
    assert all(r.error < THRESHOLD for r in mine), format_results(mine)


def test_builtin_conv_checks_cover_parameters_and_settings(
    builtin_results: list[CheckResult],
) -> None:
    conv_names = {r.name for r in builtin_results if r.name.startswith("Conv2d")}
    for needed in ("same", "valid", "asymmetric", "s2", "d2", "no bias"):
        assert any(needed in name for name in conv_names), needed
    tensors = {r.tensor for r in builtin_results if r.name.startswith("seed_cnn")}
    assert tensors == {"input", "0.weight", "0.bias", "3.weight", "3.bias"} | {
        "7.weight",
        "7.bias",
        "9.weight",
        "9.bias",
    }


# --- check_layer directly, over a few shapes ---------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [(3, 1, "same", 1), (2, 1, "same", 1), (3, 2, 1, 1), ((1, 3), (1, 2), (0, 1), 1), (2, 1, 0, 3)],
)
def test_check_layer_conv(kernel, stride, padding, dilation) -> None:
    rng = np.random.default_rng(5)
    conv = L.Conv2d(2, 3, kernel, stride, padding, dilation, rng=rng)
    errors = check_layer(conv, (2, 2, 6, 7), rng)
    assert set(errors) == {"input", "weight", "bias"}
    assert max(errors.values()) < THRESHOLD, errors
    assert conv.weight.dtype == np.float64  # cast in place, as documented


def test_check_layer_max_entries_subset() -> None:
    rng = np.random.default_rng(6)
    errors = check_layer(L.Linear(50, 40, rng=rng), (3, 50), rng, max_entries=25)
    assert max(errors.values()) < THRESHOLD, errors


def test_check_layer_restores_batchnorm_running_stats() -> None:
    rng = np.random.default_rng(7)
    bn = L.BatchNorm2d(3)
    bn.running_mean[:] = [1.0, 2.0, 3.0]
    check_layer(bn, (4, 3, 2, 2), rng, training=True)
    np.testing.assert_array_equal(bn.running_mean, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(bn.running_var, [1.0, 1.0, 1.0])


def test_check_model_small_net_with_relu_before_maxpool() -> None:
    """ReLU zeros tie inside max-pool windows; the pattern check keeps the differences honest."""
    rng = np.random.default_rng(8)
    model = L.Sequential(
        L.Conv2d(3, 4, 3, padding=1, rng=rng),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(4 * 4 * 4, 5, rng=rng),
    )
    labels = rng.integers(0, 5, size=3)
    errors = check_model(model, CrossEntropyLoss(), (3, 3, 8, 8), labels, rng)
    assert set(errors) == {"input", "0.weight", "0.bias", "4.weight", "4.bias"}
    assert max(errors.values()) < THRESHOLD, errors


# --- the checker catches broken backward passes ------------------------------------------------


class Square(Layer):
    """``x ** 2`` with a backward that forgets the factor 2 (a classic slip)."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self._keeps_cache(training):
            self._cache = x
        return x * x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._pop_cache()


class Scale(Layer):
    """``x * weight`` per feature, whose weight gradient forgets to sum over the batch."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = Parameter(np.linspace(0.5, 1.5, features), "weight")

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self._keeps_cache(training):
            self._cache = x
        return x * self.weight.data

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self._pop_cache()
        self.weight.grad[...] = (grad_out * x)[0]  # wrong: only the first example
        return grad_out * self.weight.data


class ConvWithFlippedGrad(L.Conv2d):
    """A convolution whose weight gradient is spatially flipped (convolution vs correlation)."""

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad_x = super().backward(grad_out)
        self.weight.grad[...] = self.weight.grad[:, :, ::-1, ::-1].copy()
        return grad_x


class BatchNormPerActivation(L.BatchNorm2d):
    """A batch norm whose backward drops the terms from the batch statistics."""

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, (x_hat, inv_std, weight, _) = self._cache  # the reference backend's saved
        self._cache = (backend, (x_hat, inv_std, weight, False))
        return super().backward(grad_out)


def test_catches_wrong_elementwise_backward() -> None:
    errors = check_layer(Square(), (3, 4), np.random.default_rng(0))
    assert errors["input"] > 0.1


def test_catches_wrong_parameter_gradient() -> None:
    errors = check_layer(Scale(4), (3, 4), np.random.default_rng(0))
    assert errors["input"] < THRESHOLD
    assert errors["weight"] > 0.1


def test_catches_flipped_conv_weight_gradient() -> None:
    rng = np.random.default_rng(0)
    errors = check_layer(ConvWithFlippedGrad(2, 2, 3, rng=rng), (2, 2, 5, 5), rng)
    assert errors["input"] < THRESHOLD
    assert errors["weight"] > 0.1


def test_catches_batchnorm_missing_statistics_terms() -> None:
    rng = np.random.default_rng(0)
    with use_backend("reference"):
        errors = check_layer(BatchNormPerActivation(3), (4, 3, 2, 2), rng, training=True)
    assert errors["input"] > 0.1


def test_catches_wrong_gradient_inside_a_model() -> None:
    rng = np.random.default_rng(0)
    model = L.Sequential(L.Linear(4, 4, rng=rng), Square(), L.Linear(4, 3, rng=rng))
    errors = check_model(model, CrossEntropyLoss(), (5, 4), rng.integers(0, 3, 5), rng)
    assert errors["input"] > 0.1
    assert errors["0.weight"] > 0.1
    assert errors["2.weight"] < THRESHOLD  # above the broken layer, still right
    assert not all_passed([CheckResult("model", k, v) for k, v in errors.items()])


# --- numerical_gradient, relative_error and the report -----------------------------------------


def test_numerical_gradient_of_known_function() -> None:
    a = np.array([[1.0, -2.0], [0.5, 3.0]])
    grad = numerical_gradient(lambda: float(np.sum(a**3)), a)
    np.testing.assert_allclose(grad, 3 * a**2, rtol=1e-8)
    np.testing.assert_array_equal(a, [[1.0, -2.0], [0.5, 3.0]])  # restored exactly
    some = numerical_gradient(lambda: float(np.sum(a**3)), a, indices=np.array([0, 3]))
    np.testing.assert_allclose(some, [3.0, 27.0], rtol=1e-8)


def test_relative_error_is_normwise() -> None:
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0
    # A tiny entry that is off by 100% barely moves a norm-wise error.
    assert relative_error(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) < 1e-11
    assert relative_error(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(2**0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(np.zeros(2), np.zeros(3))


def test_format_results_and_all_passed() -> None:
    results = [
        CheckResult("Conv2d", "weight", 1e-9),
        CheckResult("Broken", "input", 0.5),
        CheckResult("Nan", "input", float("nan")),
    ]
    text = format_results(results)
    lines = text.splitlines()
    assert "check" in lines[0] and "relative error" in lines[0]
    assert "PASS" in lines[2] and "1.00e-09" in lines[2]
    assert "FAIL" in lines[3] and "FAIL" in lines[4]
    assert "2 of 3" in lines[-1]
    assert not all_passed(results)
    assert all_passed(results[:1])
    assert not all_passed(results[2:])
