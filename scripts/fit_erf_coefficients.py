"""Fit the rational approximation of erf that the fast backend's GELU kernels use.

``erf(x) ~ x P(x^2) / Q(x^2)`` on ``[0, 4]`` (odd, so ``[-4, 4]`` too; beyond, float32's erf is
+-1), with ``P`` of degree 6 and ``Q`` of degree 4 in ``x^2``, ``Q(0) = 1``. A polynomial and a
division are plain arithmetic, which Numba's compiler turns into vector instructions, where
``math.erf`` is a scalar library call (about 40 ns per element here against under 1 ns).

The fit: Sanathanan-Koerner iterations (linear least squares on ``x P - erf Q``, reweighted by
the previous ``1 / Q``) with Lawson's reweighting towards the largest errors, on 20,001 points.
Run ``python scripts/fit_erf_coefficients.py`` to print the coefficients and the largest error
(5.4e-8 in float64, against SciPy's erf); they are copied into
``src/scratchcnn/fast/kernels/activations.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf


def fit(numerator_terms: int = 7, denominator_terms: int = 4, iterations: int = 200):
    """Return ``(p, q, max_error)``: coefficients in increasing powers of ``x^2``."""
    x = np.linspace(0, 4, 20001)
    f = erf(x)
    t = x * x
    design = np.concatenate(
        [
            x[:, None] * t[:, None] ** np.arange(numerator_terms),
            -f[:, None] * t[:, None] ** np.arange(1, denominator_terms + 1),
        ],
        axis=1,
    )
    q_previous = np.ones_like(x)
    lawson = np.ones_like(x)
    for _ in range(iterations):
        weight = np.sqrt(lawson) / q_previous
        coef, *_ = np.linalg.lstsq(design * weight[:, None], f * weight, rcond=None)
        p = coef[:numerator_terms]
        q = np.concatenate([[1.0], coef[numerator_terms:]])
        q_previous = np.polyval(q[::-1], t)
        error = np.abs(x * np.polyval(p[::-1], t) / q_previous - f)
        lawson = lawson * (error + 1e-30)
        lawson /= lawson.sum()
    return p, q, float(error.max())


if __name__ == "__main__":
    p, q, error = fit()
    print("P =", [float(v) for v in p])
    print("Q =", [float(v) for v in q])
    print(f"largest |error| on [0, 4]: {error:.2e}")
