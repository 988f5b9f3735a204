"""Element-wise activation layers and Flatten: no parameters, shape unchanged (but Flatten)."""

from __future__ import annotations

import numpy as np

from scratchcnn import functional as F
from scratchcnn.backend import current_backend
from scratchcnn.layers.base import Layer


class _Elementwise(Layer):
    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))

    def config(self) -> dict:
        return {}


class ReLU(_Elementwise):
    """``max(x, 0)``; the gradient passes where the input was positive.

    Shape: any -> same.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        backend = current_backend()
        keep = self._keeps_cache(training)
        out, saved = backend.relu_forward(x, keep)
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        return backend.relu_backward(saved, grad_out)

    def kink_distance(self, x: np.ndarray) -> float:
        """The smallest ``|x|``: the distance to the kink at 0 (gradient checks keep it large)."""
        return float(np.min(np.abs(x)))


class LeakyReLU(_Elementwise):
    """``x`` where positive, ``negative_slope * x`` elsewhere.

    Shape: any -> same.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if not np.isfinite(negative_slope) or negative_slope < 0:
            raise ValueError(f"negative_slope must be a finite number >= 0, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        positive = x > 0
        if self._keeps_cache(training):
            self._cache = positive
        return np.where(positive, x, x * self.negative_slope)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        positive = self._pop_cache()
        return np.where(positive, grad_out, grad_out * self.negative_slope)

    def kink_distance(self, x: np.ndarray) -> float:
        """The smallest ``|x|``: the distance to the kink at 0 (gradient checks keep it large)."""
        return float(np.min(np.abs(x)))

    def config(self) -> dict:
        return {"negative_slope": self.negative_slope}

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class GELU(_Elementwise):
    """Gaussian error linear unit ``x * Phi(x)``, the erf form by default (PyTorch's default).

    Args:
        approximate: ``"none"`` for the exact ``x * Phi(x)`` with the error function, ``"tanh"`` for
            the tanh approximation (as PyTorch's ``approximate`` argument).

    Shape: any -> same.
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        backend = current_backend()
        keep = self._keeps_cache(training)
        out, saved = backend.gelu_forward(x, self.approximate, keep)
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        return backend.gelu_backward(saved, grad_out)

    def config(self) -> dict:
        return {"approximate": self.approximate}

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Tanh(_Elementwise):
    """Hyperbolic tangent; derivative ``1 - tanh(x)^2``.

    Shape: any -> same.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out = np.tanh(x)
        if self._keeps_cache(training):
            self._cache = out
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        out = self._pop_cache()
        return grad_out * (1 - out * out)


class Sigmoid(_Elementwise):
    """Logistic function; derivative ``s * (1 - s)``.

    Shape: any -> same.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out = F.sigmoid(x)
        if self._keeps_cache(training):
            self._cache = out
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        out = self._pop_cache()
        return grad_out * out * (1 - out)


class Flatten(Layer):
    """Keep the batch axis, flatten the rest.

    Shape: ``(N, C, H, W) -> (N, C * H * W)``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if x.ndim < 2:
            raise ValueError(f"{self!r} expected input with a batch axis, got shape {x.shape}")
        if self._keeps_cache(training):
            self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(self._pop_cache())

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape[0], int(np.prod(input_shape[1:]))

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        return None, jump

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return 0

    def config(self) -> dict:
        return {}
