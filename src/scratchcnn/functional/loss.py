"""Softmax, log-softmax and cross-entropy, computed stably with log-sum-exp."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """``logits - logsumexp(logits)``, shifting by the maximum so nothing overflows.

    Args:
        logits: unnormalised log-probabilities.
        axis: the axis the normalisation runs over.

    Shape: any -> same.
    """
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities ``exp(x) / sum(exp(x))``, computed stably.

    Args:
        logits: unnormalised log-probabilities.
        axis: the axis that sums to 1.

    Shape: any -> same.
    """
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def target_distribution(
    target: np.ndarray, num_classes: int, label_smoothing: float, dtype: np.dtype
) -> np.ndarray:
    """Turn integer labels or a probability matrix into smoothed target probabilities.

    Follows PyTorch: ``(1 - eps) * target + eps / num_classes``.

    Shape: ``(N,)`` integers or ``(N, K)`` probabilities -> ``(N, K)``.
    """
    if target.ndim == 1:
        dist = np.zeros((target.shape[0], num_classes), dtype=dtype)
        dist[np.arange(target.shape[0]), target] = 1.0
    else:
        dist = target.astype(dtype, copy=True)
    if label_smoothing > 0:
        dist = (1.0 - label_smoothing) * dist + label_smoothing / num_classes
    return dist


def cross_entropy(
    logits: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy between ``softmax(logits)`` and the target, and its logit gradient.

    The gradient of the mean loss is ``(softmax(logits) - target_distribution) / N``.

    Args:
        logits: the model's raw outputs.
        target: integer labels, or one probability row per example (soft targets).
        label_smoothing: ``eps``: the target becomes ``(1 - eps) * target + eps / K``.

    Shape: ``logits (N, K)``, ``target (N,)`` or ``(N, K)`` -> ``(loss, grad (N, K))``.
    """
    n, k = logits.shape
    dist = target_distribution(target, k, label_smoothing, logits.dtype)
    log_probs = log_softmax(logits)
    loss = float(-(dist * log_probs).sum() / n)
    grad = (np.exp(log_probs) - dist) / n
    return loss, grad.astype(logits.dtype, copy=False)
