"""Element-wise operations in one pass over memory, in whatever layout the input has.

NumPy's ``np.maximum(x, 0)`` plus ``x > 0`` reads ``x`` twice; the Numba kernel reads it once
and writes the output and the mask together. Both keep ``x``'s memory layout (channels-last
stays channels-last), so the next operation reads them without a copy. Large arrays are cut
into one stretch of memory per worker (:func:`scratchcnn.fast.runtime.split_batch`): on
airbench's first activation each pass, ReLU's and GELU's, forward and backward, measured
1.3-1.8x faster on two workers than on one (``benchmarks/activation_workers.py``).
"""

from __future__ import annotations

import numpy as np

from scratchcnn.fast.runtime import kernels, restored, split_batch, stored
from scratchcnn.fast.settings import Settings


def _flat_view(a: np.ndarray) -> np.ndarray | None:
    """``a``'s elements in memory order as a 1-D view, or ``None`` if that needs a copy."""
    flat = a.ravel(order="K")
    return flat if a.size == 0 or np.may_share_memory(flat, a) else None


def _element_strides(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s // a.itemsize for s in a.strides)


def relu_forward(
    x: np.ndarray, keep: bool, settings: Settings
) -> tuple[np.ndarray, np.ndarray | None]:
    """``max(x, 0)`` (NaN stays NaN) and, when ``keep``, the mask ``x > 0``, in ``x``'s layout.

    Shape: any -> same (twice).
    """
    out = np.empty_like(x)
    flat_x, flat_out = _flat_view(x), _flat_view(out)
    if not keep:  # one pass of NumPy's vectorised maximum, no mask
        if flat_x is None or flat_out is None:
            return np.maximum(x, 0, out=out), None
        split_batch(
            lambda part: np.maximum(flat_x[part], 0, out=flat_out[part]), x.size, x.nbytes, settings
        )
        return out, None
    compiled = kernels(settings)
    positive = np.empty_like(x, dtype=bool)
    flat_mask = _flat_view(positive)
    if compiled is None or flat_x is None or flat_out is None or flat_mask is None:
        np.maximum(x, 0, out=out)
        np.greater(x, 0, out=positive)
    else:
        split_batch(
            lambda part: compiled.relu(flat_x[part], flat_out[part], flat_mask[part]),
            x.size,
            x.nbytes,
            settings,
        )
    return out, positive


def relu_backward(positive: np.ndarray, grad_out: np.ndarray, settings: Settings) -> np.ndarray:
    """The gradient where the input was positive, zero elsewhere.

    Shape: any -> same.
    """
    compiled = kernels(settings)
    same_layout = _element_strides(grad_out) == _element_strides(positive)
    flat_grad, flat_mask = _flat_view(grad_out), _flat_view(positive)
    if compiled is None or not same_layout or flat_grad is None or flat_mask is None:
        # Computed in the mask's memory order: after Flatten the gradient arrives NCHW while the
        # mask is channels-last, and NumPy's own order for the mixed layouts measured ~7x slower.
        order = sorted(range(positive.ndim), key=lambda axis: -abs(positive.strides[axis]))
        out = np.multiply(grad_out.transpose(order), positive.transpose(order))
        return out.transpose(np.argsort(order))
    out = np.empty_like(grad_out)
    flat_out = _flat_view(out)
    split_batch(
        lambda part: compiled.relu_backward(flat_grad[part], flat_mask[part], flat_out[part]),
        out.size,
        out.nbytes,
        settings,
    )
    return out


def gelu_forward(
    x: np.ndarray, keep: bool, settings: Settings
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """GELU (erf form) by the vectorised kernel, in ``x``'s layout; ``None`` (the caller falls
    back to the exact reference) without Numba, for an array that is not one block of memory, or
    for float64: the kernel's erf is accurate to 6e-8, float32's own rounding, while float64
    (gradient checks) asks for more.

    Shape: any -> same; the input itself is what backward keeps.
    """
    if x.dtype != np.float32:
        return None
    compiled = kernels(settings)
    out = np.empty_like(x)
    flat_x, flat_out = _flat_view(x), _flat_view(out)
    if compiled is None or flat_x is None or flat_out is None:
        return None
    split_batch(
        lambda part: compiled.gelu(flat_x[part], flat_out[part]), x.size, x.nbytes, settings
    )
    return out, (stored(x, settings) if keep else None)


def gelu_backward(x: np.ndarray, grad_out: np.ndarray, settings: Settings) -> np.ndarray | None:
    """``grad_out * gelu'(x)``; ``None`` where the kernel cannot run (the caller falls back).

    Shape: any -> same.
    """
    compiled = kernels(settings)
    x = restored(x, grad_out.dtype)
    if compiled is None or _element_strides(grad_out) != _element_strides(x):
        return None
    out = np.empty_like(grad_out)
    flat_x, flat_grad, flat_out = _flat_view(x), _flat_view(grad_out), _flat_view(out)
    if flat_x is None or flat_grad is None or flat_out is None:
        return None
    split_batch(
        lambda part: compiled.gelu_backward(flat_x[part], flat_grad[part], flat_out[part]),
        out.size,
        out.nbytes,
        settings,
    )
    return out
