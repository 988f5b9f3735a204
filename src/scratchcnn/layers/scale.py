"""Multiplication by a fixed constant."""

from __future__ import annotations

import math

import numpy as np

from scratchcnn.layers.base import Layer


class Scale(Layer):
    """``out = scale * x`` with a constant ``scale`` (a hyperparameter, never trained).

    Networks trained without a bias or a temperature on their logits use it to set the logits'
    size: airbench multiplies by 1/9, the DAWNBench ResNet-9 by 0.125. The gradient is the same
    constant: ``grad_in = scale * grad_out``.

    Shape: any -> same.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float, np.number))
            or not math.isfinite(scale)
        ):
            raise ValueError(f"Scale: scale must be a finite number, got {scale!r}")
        self.scale = float(scale)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self._keeps_cache(training):
            self._cache = x.dtype  # backward needs nothing but proof that forward ran
        return x * x.dtype.type(self.scale)  # keeps float32 float32

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dtype = self._pop_cache()
        return grad_out * dtype.type(self.scale)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))

    def config(self) -> dict:
        return {"scale": self.scale}

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
