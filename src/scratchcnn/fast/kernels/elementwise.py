"""Element-wise kernels over flat arrays (any memory layout, read in memory order)."""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def relu(x, out, positive):
    """``out = max(x, 0)`` and the mask ``x > 0``, in one pass over flat arrays.

    A NaN input stays NaN in ``out`` (as in NumPy and PyTorch) and is not ``positive``.
    """
    for k in range(x.shape[0]):
        value = x[k]
        positive[k] = value > 0
        out[k] = 0 if value <= 0 else value


@njit(cache=True, nogil=True)
def relu_backward(grad_out, positive, out):
    """``out = grad_out where positive else 0`` over flat arrays."""
    for k in range(grad_out.shape[0]):
        out[k] = grad_out[k] if positive[k] else 0
