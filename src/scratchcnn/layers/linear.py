"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from scratchcnn.backend import get_backend
from scratchcnn.functional import fast
from scratchcnn.init import initialize
from scratchcnn.layers._checks import check_input, positive_int
from scratchcnn.layers.base import Layer
from scratchcnn.parameter import Parameter


class Linear(Layer):
    """Affine map ``y = x @ weight.T + bias``.

    Shape: ``(N, in_features) -> (N, out_features)``; ``weight (out_features, in_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        rng = rng if rng is not None else np.random.default_rng()
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(initialize(init, shape, rng, dtype), "weight")
        self.bias = Parameter(np.zeros(self.out_features, dtype=dtype), "bias") if bias else None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        check_input(self, x, 2, self.in_features, "(N, in_features)")
        matmul = fast.matmul if get_backend() == "fast" else np.matmul
        out = matmul(x, self.weight.data.T)
        if self.bias is not None:
            out += self.bias.data
        if self._keeps_cache(training):
            self._cache = x
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x = self._pop_cache()
        matmul = fast.matmul if get_backend() == "fast" else np.matmul
        self.weight.grad[...] = matmul(grad_out.T, x)
        if self.bias is not None:
            self.bias.grad[...] = grad_out.sum(axis=0)
        return matmul(grad_out, self.weight.data)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape[0], self.out_features

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return input_shape[0] * self.out_features * (2 * self.in_features + (self.bias is not None))

    def config(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
