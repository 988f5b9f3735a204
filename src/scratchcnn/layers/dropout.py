"""Inverted dropout."""

from __future__ import annotations

import numpy as np

from scratchcnn.layers.base import Layer


class Dropout(Layer):
    """Zero each element with probability ``p`` while training and scale the rest by ``1/(1-p)``.

    Scaling at training time ("inverted" dropout) makes evaluation the identity. The mask comes
    from the layer's own seeded generator ``rng``, whose state a checkpoint saves.

    Shape: any -> same.
    """

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.p = float(p)
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.p == 0.0:
            if self._keeps_cache(training):
                self._cache = None, x.dtype
            return x
        keep = self.rng.random(x.shape, dtype=np.float64) >= self.p
        mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        self._cache = mask, x.dtype
        return x * mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("Dropout.backward called before forward(x, training=True)")
        mask, _ = self._cache
        self._cache = None
        return grad_out if mask is None else grad_out * mask

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))

    def config(self) -> dict:
        return {"p": self.p}

    def extra_repr(self) -> str:
        return f"p={self.p}"
