"""Loss layers: they take logits and targets, return a number, and start the backward pass."""

from __future__ import annotations

import numpy as np

from scratchcnn.functional.loss import cross_entropy, log_softmax, softmax

__all__ = ["CrossEntropyLoss", "log_softmax", "softmax"]


class CrossEntropyLoss:
    """Mean softmax cross-entropy over a batch, with optional label smoothing.

    ``target`` is either integer class labels or a probability matrix (soft targets from mixup
    or cutmix). With smoothing ``eps`` the target becomes ``(1 - eps) * target + eps / K``,
    as in PyTorch. ``backward()`` returns ``d loss / d logits = (softmax(logits) - target) / N``.

    Args:
        label_smoothing: ``eps`` in ``[0, 1)``; 0 leaves the targets as they are.

    Shape: ``logits (N, K)``, ``target (N,)`` ints in ``[0, K)`` or ``(N, K)`` -> scalar.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self._grad: np.ndarray | None = None

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        """The mean loss over the batch; keeps ``d loss / d logits`` for :meth:`backward`.

        Args:
            logits: the model's raw outputs.
            target: integer labels, or one probability row per example (soft targets).

        Shape: ``logits (N, K)``, ``target (N,)`` or ``(N, K)`` -> a float.
        """
        self._check(logits, target)
        loss, self._grad = cross_entropy(logits, target, self.label_smoothing)
        return loss

    __call__ = forward

    def backward(self) -> np.ndarray:
        """The gradient of the last forward's mean loss with respect to its logits."""
        if self._grad is None:
            raise RuntimeError("CrossEntropyLoss.backward called before forward")
        grad, self._grad = self._grad, None
        return grad

    @staticmethod
    def _check(logits: np.ndarray, target: np.ndarray) -> None:
        if logits.ndim != 2:
            raise ValueError(
                f"CrossEntropyLoss expected logits of shape (N, K), got shape {logits.shape}"
            )
        n, k = logits.shape
        if target.ndim == 1:
            if target.shape[0] != n:
                raise ValueError(
                    f"CrossEntropyLoss expected {n} labels for logits {logits.shape}, "
                    f"got shape {target.shape}"
                )
            if not np.issubdtype(target.dtype, np.integer):
                raise ValueError(
                    f"CrossEntropyLoss expected integer labels, got dtype {target.dtype}"
                )
            if n and (target.min() < 0 or target.max() >= k):
                raise ValueError(
                    f"CrossEntropyLoss labels must lie in [0, {k}), got values in "
                    f"[{target.min()}, {target.max()}]"
                )
        elif target.shape != logits.shape:
            raise ValueError(
                f"CrossEntropyLoss expected target of shape ({n},) or {logits.shape}, "
                f"got shape {target.shape}"
            )
