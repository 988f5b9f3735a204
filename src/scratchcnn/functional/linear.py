"""The affine map of a fully connected layer and its gradients."""

from __future__ import annotations

import numpy as np


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ weight.T + bias``.

    Shape: ``x (N, in_features)``, ``weight (out_features, in_features)``,
    ``bias (out_features,)`` -> ``(N, out_features)``.
    """
    out = x @ weight.T
    if bias is not None:
        out += bias
    return out


def linear_backward(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients with respect to ``x``, ``weight`` and ``bias``: ``g @ W``, ``g^T x``, ``sum g``.

    Shape: ``grad_out (N, out_features)``, ``x (N, in_features)`` -> ``grad_x (N, in_features)``,
    ``grad_weight (out_features, in_features)``, ``grad_bias (out_features,)``.
    """
    return grad_out @ weight, grad_out.T @ x, grad_out.sum(axis=0)
