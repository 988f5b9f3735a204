"""Batch norm over channels-last rows, with the activation after it applied in the same passes.

A channels-last batch is a matrix of rows ``(M, C)``, ``M = N * H * W`` (a ``(N, C)`` batch
already is one), so every statistic is a sum down the columns and every element-wise step a
pass along the rows, split between the workers. With the batch's statistics (training):

- forward, two passes: the channel sums and sums of squares (float64), then ``out = act(x *
  scale + shift)`` with ``scale = weight / std`` and ``shift = bias - mean * scale``;
- backward, two passes: ``g = grad_out * act'(y)`` (``y`` recomputed from ``x``, not stored)
  with the sums of ``g`` and of ``g * x``; then the input gradient, which is per channel an
  affine function of ``g`` and ``x``: ``grad_x = scale * (g - mean(g) - x_hat * mean(g x_hat))``,
  written over ``g`` (so the activation's slope is computed once per element).

Nothing but the input is kept for backward (the normalised values and the pre-activations are
recomputed on the fly). With fixed statistics (evaluation, recording) the layer is ``act(x *
scale + shift)`` and its input gradient ``scale * g``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from scratchcnn.fast.layout import to_nchw, to_nhwc
from scratchcnn.fast.runtime import even_slices, kernels, map_chunks, restored, stored
from scratchcnn.fast.settings import Settings

ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2}  # the kernels' codes (kernels.activations)


class NormSaved(NamedTuple):
    """What the fast batch norm keeps for backward."""

    rows: np.ndarray  # the input as channels-last rows (M, C), float16 with float16 storage
    shape: tuple[int, ...]  # the input's (NCHW) shape
    mean: np.ndarray  # (C,) float64
    inv_std: np.ndarray  # (C,) float64
    scale: np.ndarray  # (C,) float64: weight * inv_std
    shift: np.ndarray  # (C,) float64: bias - mean * scale
    batch_statistics: bool
    activation: int


def as_rows(x: np.ndarray) -> np.ndarray:
    """``x`` as channels-last rows ``(M, C)``: a view of channels-last memory, else a copy.

    Shape: ``(N, C)`` or ``(N, C, H, W)`` -> ``(M, C)``.
    """
    if x.ndim == 2:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(to_nhwc(x)).reshape(-1, x.shape[1])


def _from_rows(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`as_rows` for an output of ``shape`` (channels-last memory)."""
    if len(shape) == 2:
        return rows
    n, c, h, w = shape
    return to_nchw(rows.reshape(n, h, w, c))


def _row_slices(rows: np.ndarray, settings: Settings) -> list[slice]:
    parts = settings.workers if rows.nbytes >= settings.split_min_bytes else 1
    return even_slices(rows.shape[0], max(1, min(parts, rows.shape[0])))


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    eps: float,
    keep: bool,
    running: tuple[np.ndarray, np.ndarray] | None,
    activation: str | None,
    settings: Settings,
) -> tuple[np.ndarray, NormSaved | None, np.ndarray, np.ndarray] | None:
    """``act(batch_norm(x))``; ``None`` where the kernels are unavailable, or for a float64 GELU
    (see ``fast.elementwise.gelu_forward``): the caller falls back.

    Returns ``(out, saved, mean, var)``: the statistics used (in training the batch's mean and
    biased variance, in ``x``'s dtype).

    Shape: ``x (N, C)`` or ``(N, C, H, W)`` -> ``out`` alike (channels-last memory).
    """
    compiled = kernels(settings)
    if compiled is None or (activation == "gelu" and x.dtype != np.float32):
        return None
    rows = as_rows(x)
    slices = _row_slices(rows, settings)
    channels = rows.shape[1]
    if running is None:

        def sums(part: slice) -> tuple[np.ndarray, np.ndarray]:
            total, squares = np.zeros(channels), np.zeros(channels)
            compiled.channel_sums(rows[part], total, squares)
            return total, squares

        partial = map_chunks(sums, slices, settings.workers)
        count = rows.shape[0]
        mean = np.sum([total for total, _ in partial], axis=0) / count
        var = np.maximum(np.sum([sq for _, sq in partial], axis=0) / count - mean * mean, 0.0)
    else:
        mean, var = (np.asarray(v, dtype=np.float64) for v in running)
    inv_std = 1.0 / np.sqrt(var + eps)
    scale = weight.astype(np.float64) * inv_std
    shift = bias.astype(np.float64) - mean * scale
    code = ACTIVATIONS[activation]
    out = np.empty_like(rows)

    def apply(part: slice) -> None:
        compiled.scale_shift_activate(rows[part], scale, shift, code, out[part])

    map_chunks(apply, slices, settings.workers)
    saved = None
    if keep:
        kept = stored(rows, settings)
        saved = NormSaved(kept, x.shape, mean, inv_std, scale, shift, running is None, code)
    used_mean = mean.astype(x.dtype) if running is None else running[0]
    used_var = var.astype(x.dtype) if running is None else running[1]
    return _from_rows(out, x.shape), saved, used_mean, used_var


def batch_norm_backward(
    saved: NormSaved, grad_out: np.ndarray, need_weight_grad: bool, settings: Settings
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`batch_norm_forward` (activation included) with respect to the input,
    the weight and the bias (the last two ``None`` unless ``need_weight_grad``).

    Shape: ``grad_out`` like the input -> like the input (channels-last memory), ``(C,)``, ``(C,)``.
    """
    compiled = kernels(settings)
    grads = as_rows(grad_out)
    rows = restored(saved.rows, grads.dtype)
    slices = _row_slices(rows, settings)
    channels = rows.shape[1]
    count = rows.shape[0]
    scale, shift, code = saved.scale, saved.shift, saved.activation
    grad_w = grad_b = None
    out = np.empty_like(rows)  # first the pre-activation gradient, then the input gradient

    def sums(part: slice) -> tuple[np.ndarray, np.ndarray]:
        total, cross = np.zeros(channels), np.zeros(channels)
        compiled.activated_grad_sums(
            rows[part], grads[part], scale, shift, code, total, cross, out[part]
        )
        return total, cross

    partial = map_chunks(sums, slices, settings.workers)
    sum_g = np.sum([total for total, _ in partial], axis=0)
    sum_g_x_hat = (np.sum([c for _, c in partial], axis=0) - saved.mean * sum_g) * saved.inv_std
    if need_weight_grad:
        grad_w, grad_b = sum_g_x_hat.astype(rows.dtype), sum_g.astype(rows.dtype)
    x_coef = np.zeros(channels)
    const = np.zeros(channels)
    if saved.batch_statistics:
        # scale * (g - mean(g) - x_hat * mean(g x_hat)), x_hat = (x - mean) * inv_std
        x_coef = -scale * saved.inv_std * sum_g_x_hat / count
        const = -scale * sum_g / count - x_coef * saved.mean

    def apply(part: slice) -> None:
        compiled.activated_grad_input(rows[part], out[part], scale, x_coef, const, out[part])

    map_chunks(apply, slices, settings.workers)
    return _from_rows(out, saved.shape), grad_w, grad_b
