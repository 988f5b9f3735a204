"""Fully connected layer."""

from __future__ import annotations

import numpy as np

from scratchcnn.backend import current_backend
from scratchcnn.init import initialize
from scratchcnn.layers._checks import check_input, positive_int
from scratchcnn.layers.base import Layer
from scratchcnn.parameter import Parameter


class Linear(Layer):
    """Affine map ``y = x @ weight.T + bias``.

    Args:
        in_features: size of each input row.
        out_features: size of each output row.
        bias: whether to add a learned bias.
        init: the weight initialisation, a name of :func:`scratchcnn.init.initialize` (``"he"``,
            ``"xavier"``, ``"torch"``, ``"zeros"``, ...).
        rng: the generator the initial weights are drawn from; ``None`` draws a fresh one.
        dtype: dtype of the parameters (float32, or float64 for gradient checks).

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
        backend = current_backend()
        keep = self._keeps_cache(training)
        bias = None if self.bias is None else self.bias.data
        out, saved = backend.linear_forward(x, self.weight.data, bias, keep)
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        need_weight_grad = self.weight.requires_grad or (
            self.bias is not None and self.bias.requires_grad
        )
        grad_x, grad_w, grad_b = backend.linear_backward(saved, grad_out, True, need_weight_grad)
        if grad_w is not None:
            self.weight.grad[...] = grad_w
            if self.bias is not None:
                self.bias.grad[...] = grad_b
        return grad_x

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape[0], self.out_features

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return input_shape[0] * self.out_features * (2 * self.in_features + (self.bias is not None))

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        return None, jump

    def describe(self) -> str:
        return f"Linear {self.in_features}->{self.out_features}"

    def config(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
