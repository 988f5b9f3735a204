"""Global max pooling: the largest value of each channel."""

from __future__ import annotations

import numpy as np

from scratchcnn.layers._checks import check_input
from scratchcnn.layers.base import Layer


class GlobalMaxPool2d(Layer):
    """Maximum over all spatial positions of each channel (PyTorch: ``AdaptiveMaxPool2d(1)``
    followed by ``Flatten()``).

    Backward sends each channel's gradient to the position that won (the first one on a tie, so
    each gradient lands exactly once), as ``MaxPool2d`` does for each window.

    Shape: ``(N, C, H, W) -> (N, C)``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        check_input(self, x, 4, None, "(N, C, H, W)")
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        winner = flat.argmax(axis=2)  # (N, C), a flat index into H * W
        out = np.take_along_axis(flat, winner[:, :, None], axis=2)[:, :, 0]
        if self._keeps_cache(training):
            self._cache = (winner, x.shape)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        winner, (n, c, h, w) = self._pop_cache()
        grad_in = np.zeros((n, c, h * w), dtype=grad_out.dtype)
        np.put_along_axis(grad_in, winner[:, :, None], grad_out[:, :, None], axis=2)
        return grad_in.reshape(n, c, h, w)

    def kink_distance(self, x: np.ndarray) -> float:
        """Smallest gap between a channel's winner and runner-up (gradient checks avoid ties)."""
        n, c, h, w = x.shape
        if h * w < 2:
            return float("inf")
        top2 = np.sort(x.reshape(n, c, h * w), axis=2)[:, :, -2:]
        return float(np.min(top2[:, :, 1] - top2[:, :, 0]))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape[:2]

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        return None, jump  # every output sees the whole image

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))  # one comparison per element

    def config(self) -> dict:
        return {}
