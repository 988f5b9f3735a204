"""Batch normalisation: per-channel statistics over every axis but the channel axis (axis 1).

For an input ``x`` of shape ``(N, C)`` or ``(N, C, H, W)``, channel ``c`` is normalised with the
mean and (biased) variance of all its ``m = N`` or ``m = N * H * W`` values, then scaled and
shifted::

    x_hat = (x - mean) / sqrt(var + eps),    out = weight * x_hat + bias.

Backward, when the statistics came from the batch (training), every input of a channel affects
its mean and variance, which gives the compact three-term formula (Ioffe & Szegedy, 2015)::

    grad_x = weight / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat)),

with ``g = grad_out`` and the means over the channel's ``m`` values. With fixed statistics
(evaluation) the layer is a per-channel affine map and ``grad_x = weight / sqrt(var + eps) * g``.
"""

from __future__ import annotations

import numpy as np


def channel_axes(x: np.ndarray) -> tuple[int, ...]:
    """Every axis of ``x`` but the channel axis 1: ``(0,)`` or ``(0, 2, 3)``."""
    return (0, *range(2, x.ndim))


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Shape a per-channel vector to broadcast against an input of ``ndim`` axes.

    Shape: ``(C,) -> (1, C)`` or ``(1, C, 1, 1)``.
    """
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and biased variance of each channel of the batch.

    Args:
        x: the batch, channels on axis 1.

    Shape: ``(N, C, ...) -> (C,), (C,)``.
    """
    axes = channel_axes(x)
    return x.mean(axis=axes), x.var(axis=axes)


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise each channel with ``mean`` and ``var``, then scale by ``weight``, add ``bias``.

    Args:
        x: the batch, channels on axis 1.
        weight: the per-channel scale (gamma).
        bias: the per-channel shift (beta).
        mean: the per-channel mean to subtract (the batch's in training, the running one in
            evaluation).
        var: the per-channel variance to divide by.
        eps: added to ``var`` before the square root.

    Shape: ``x (N, C, ...)``, ``weight, bias, mean, var (C,)`` -> ``out`` like ``x``, and for
    backward ``x_hat`` like ``x`` and ``inv_std (C,)``.
    """
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - per_channel(mean, x.ndim)) * per_channel(inv_std, x.ndim)
    out = x_hat * per_channel(weight, x.ndim) + per_channel(bias, x.ndim)
    return out.astype(x.dtype, copy=False), x_hat, inv_std


def batch_norm_backward(
    grad_out: np.ndarray,
    x_hat: np.ndarray,
    inv_std: np.ndarray,
    weight: np.ndarray,
    batch_statistics: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batch_norm_forward` with respect to ``x``, ``weight`` and ``bias``.

    ``batch_statistics`` says whether the mean and variance were the batch's own (training), in
    which case the input gradient has the two extra terms of the module docstring.

    Shape: ``grad_out, x_hat (N, C, ...)``, ``inv_std, weight (C,)`` -> ``grad_x`` like
    ``grad_out``, ``grad_weight (C,)``, ``grad_bias (C,)``.
    """
    axes = channel_axes(grad_out)
    ndim = grad_out.ndim
    grad_bias = grad_out.sum(axis=axes)
    grad_weight = (grad_out * x_hat).sum(axis=axes)
    scale = per_channel(weight * inv_std, ndim)
    if not batch_statistics:  # fixed statistics: a plain per-channel affine map
        return grad_out * scale, grad_weight, grad_bias
    count = grad_out.size // grad_out.shape[1]
    mean_grad = per_channel(grad_bias / count, ndim)
    mean_grad_x_hat = per_channel(grad_weight / count, ndim)
    return scale * (grad_out - mean_grad - x_hat * mean_grad_x_hat), grad_weight, grad_bias
