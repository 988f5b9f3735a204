"""Element-wise activations and their derivatives."""

from __future__ import annotations

import math

import numpy as np

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, to double precision.

    SciPy's ``special.erf`` is used when SciPy is installed; otherwise Python's ``math.erf``
    element by element (exact, but slow), so the engine itself needs nothing but NumPy.

    Args:
        x: any array of floats.

    Shape: any -> same.
    """
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:  # pragma: no cover - exercised only without SciPy
        return np.vectorize(math.erf, otypes=[x.dtype])(x)
    return scipy_erf(x).astype(x.dtype, copy=False)


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``; NaN stays NaN. Its derivative is 1 where ``x > 0`` and 0 elsewhere.

    Shape: any -> same.
    """
    return np.maximum(x, 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-x))``, stable for large ``|x|``.

    Shape: any -> same.
    """
    z = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(x.dtype, copy=False)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate="tanh"`` uses the tanh form.

    Shape: any -> same.
    """
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / _SQRT_2))


def gelu_grad(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """Derivative of :func:`gelu`: ``Phi(x) + x * phi(x)`` (or that of the tanh form).

    Args:
        x: the GELU's input.
        approximate: ``"none"`` (erf form) or ``"tanh"``, as the forward pass used.

    Shape: any -> same.
    """
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x**3)
        t = np.tanh(inner)
        d_inner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x**2)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner
    cdf = 0.5 * (1.0 + erf(x / _SQRT_2))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return (cdf + x * pdf).astype(x.dtype, copy=False)
