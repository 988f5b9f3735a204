"""GELU as vectorisable arithmetic, and the batch-norm kernels that apply an activation in passing.

``math.erf`` and ``math.exp`` are scalar library calls (about 40 ns per element for a GELU);
a polynomial or a ratio of polynomials is plain arithmetic that LLVM turns into vector
instructions (under 1 ns per element). So:

- ``erf(z) ~ z P(z^2) / Q(z^2)`` on ``[-4, 4]`` (clamped beyond, where float32's erf is +-1),
  a rational fit whose largest error is 5.6e-8 (``scripts/fit_erf_coefficients.py``);
- ``exp(y)`` for ``y <= 0`` as ``e(y / 32)^32``, ``e`` the degree-10 Taylor polynomial (its error
  on ``[-0.625, 0]`` is below 2e-10, 5e-9 after the five squarings); ``y`` is clamped at -20,
  where ``exp`` is 2e-9 and the GELU derivative's ``x * phi(x)`` term below 1e-8.

Both are computed in float64 whatever the array dtype, so the float32 GELU is as accurate as the
float32 result can hold. The kernels compile with ``error_model="numpy"`` (no division-by-zero
check in the loop, which would stop vectorisation) and with only the fast-math flags that allow
a reciprocal and fused multiply-adds: no ``nnan``, so a NaN input still gives a NaN output.
"""

from __future__ import annotations

from numba import njit

# Fast-math flags that keep NaN and infinity semantics (see the module docstring).
FASTMATH = {"contract", "arcp", "afn"}

_SQRT_HALF = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi)

# erf(z) ~ z P(z^2) / Q(z^2); coefficients in increasing powers of z^2.
_P0, _P1, _P2 = 1.128378679828028, 0.21398335992196207, 0.05243907107913722
_P3, _P4 = 0.004294737370465485, 0.00015557599352387737
_P5, _P6 = -1.990453804820831e-06, 1.9216023471287873e-08
_Q1, _Q2 = 0.522965489600417, 0.12081598238793831
_Q3, _Q4 = 0.015554621327324573, 0.001098438582872418

ACT_NONE, ACT_RELU, ACT_GELU = 0, 1, 2  # activation codes of the batch-norm kernels


@njit(cache=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _erf(z):
    """erf(z) by the rational fit (float64 in, float64 out)."""
    z = min(max(z, -4.0), 4.0)
    t = z * z
    p = (((((_P6 * t + _P5) * t + _P4) * t + _P3) * t + _P2) * t + _P1) * t + _P0
    q = (((_Q4 * t + _Q3) * t + _Q2) * t + _Q1) * t + 1.0
    return z * p / q


@njit(cache=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _exp_negative(y):
    """exp(y) for y <= 0, as (Taylor polynomial at y / 32) ** 32 (float64)."""
    u = max(y, -20.0) * 0.03125
    # sum_{k <= 10} u^k / k!, by Horner's rule from the highest term
    e = 1.0 + u / 10
    e = 1.0 + u / 9 * e
    e = 1.0 + u / 8 * e
    e = 1.0 + u / 7 * e
    e = 1.0 + u / 6 * e
    e = 1.0 + u / 5 * e
    e = 1.0 + u / 4 * e
    e = 1.0 + u / 3 * e
    e = 1.0 + u / 2 * e
    e = 1.0 + u * e
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    return e * e


@njit(cache=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _gelu(v):
    """GELU ``v * Phi(v)`` (float64)."""
    return 0.5 * v * (1.0 + _erf(v * _SQRT_HALF))


@njit(cache=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _gelu_slope(v):
    """GELU's derivative ``Phi(v) + v * phi(v)`` (float64)."""
    return 0.5 * (1.0 + _erf(v * _SQRT_HALF)) + v * _INV_SQRT_2PI * _exp_negative(-0.5 * v * v)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gelu(x, out):
    """``out = gelu(x)`` over flat arrays."""
    for k in range(x.shape[0]):
        out[k] = _gelu(float(x[k]))


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gelu_backward(x, grad_out, out):
    """``out = grad_out * gelu'(x)`` over flat arrays."""
    for k in range(x.shape[0]):
        out[k] = grad_out[k] * _gelu_slope(float(x[k]))


@njit(cache=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _activate(y, activation):
    if activation == ACT_RELU:
        return 0.0 if y <= 0 else y  # NaN stays NaN
    if activation == ACT_GELU:
        return _gelu(y)
    return y


@njit(cache=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _activation_slope(y, activation):
    if activation == ACT_RELU:
        return 1.0 if y > 0 else 0.0
    if activation == ACT_GELU:
        return _gelu_slope(y)
    return 1.0


# --- batch norm over channels-last rows ``(M, C)``, M = N * H * W ------------------------------


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def channel_sums(rows, sums, squares):
    """``sums[c] += sum_m rows[m, c]`` and ``squares[c] += sum_m rows[m, c]^2`` (float64)."""
    for m in range(rows.shape[0]):
        for c in range(rows.shape[1]):
            value = float(rows[m, c])
            sums[c] += value
            squares[c] += value * value


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def scale_shift_activate(rows, scale, shift, activation, out):
    """``out[m, c] = act(rows[m, c] * scale[c] + shift[c])``: normalisation, affine map and
    activation in one pass (``scale = weight / std``, ``shift = bias - mean * scale``)."""
    for m in range(rows.shape[0]):
        for c in range(rows.shape[1]):
            out[m, c] = _activate(float(rows[m, c]) * scale[c] + shift[c], activation)


@njit(cache=True, inline="always", fastmath=FASTMATH, error_model="numpy")
def _grad_sums_loop(rows, grad_out, scale, shift, activation, sums, cross, grad_pre):
    for m in range(rows.shape[0]):
        for c in range(rows.shape[1]):
            value = float(rows[m, c])
            g = grad_out[m, c] * _activation_slope(value * scale[c] + shift[c], activation)
            grad_pre[m, c] = g
            sums[c] += g
            cross[c] += g * value


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def activated_grad_sums(rows, grad_out, scale, shift, activation, sums, cross, grad_pre):
    """Backward pass 1: ``g = grad_out * act'(y)`` at the pre-activation ``y = rows * scale +
    shift`` (recomputed from the input, not stored by forward), written to ``grad_pre``, and
    ``sums[c] += sum g``, ``cross[c] += sum g * rows``.

    The loop is inlined once per activation, each with its code a constant: with the code
    tested inside the loop, LLVM vectorised the ReLU and identity loops less well (they took
    about twice as long on a 64-channel batch; the GELU loop, bound by its arithmetic, the
    same)."""
    if activation == ACT_RELU:
        _grad_sums_loop(rows, grad_out, scale, shift, ACT_RELU, sums, cross, grad_pre)
    elif activation == ACT_GELU:
        _grad_sums_loop(rows, grad_out, scale, shift, ACT_GELU, sums, cross, grad_pre)
    else:
        _grad_sums_loop(rows, grad_out, scale, shift, ACT_NONE, sums, cross, grad_pre)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def activated_grad_input(rows, grad_pre, grad_scale, x_coef, const, out):
    """Backward pass 2: ``out[m, c] = grad_scale[c] * g + x_coef[c] * rows[m, c] + const[c]``
    with ``g`` from pass 1 (the input gradient is affine in ``g`` and ``x`` per channel once the
    channel sums are known); ``out`` may be ``grad_pre`` itself."""
    for m in range(rows.shape[0]):
        for c in range(rows.shape[1]):
            out[m, c] = grad_scale[c] * grad_pre[m, c] + x_coef[c] * float(rows[m, c]) + const[c]
