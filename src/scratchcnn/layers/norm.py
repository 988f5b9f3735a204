"""Batch normalisation: per-channel statistics over the batch (and spatial positions)."""

from __future__ import annotations

import numpy as np

from scratchcnn.backend import current_backend
from scratchcnn.layers._checks import check_input, positive_int
from scratchcnn.layers.base import Layer
from scratchcnn.parameter import Parameter


class _BatchNorm(Layer):
    """Normalise each channel by its batch mean and variance, then scale and shift.

    While training, the statistics come from the batch (over every axis but the channel axis)
    and the running estimates are updated PyTorch's way: ``running = (1 - momentum) * running +
    momentum * batch``, with the unbiased variance. In evaluation the running estimates are used.
    """

    _buffer_names = ("running_mean", "running_var")
    _ndim = 0
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        self.num_features = positive_int(num_features, "num_features")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.weight = Parameter(np.ones(num_features, dtype=dtype), "weight")
        self.bias = Parameter(np.zeros(num_features, dtype=dtype), "bias")
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)

    def check(self, x: np.ndarray, training: bool) -> None:
        """Raise a clear error unless ``x`` is a batch this layer can normalise."""
        check_input(self, x, self._ndim, self.num_features, self._layout)
        if training and x.size // self.num_features < 2:
            raise ValueError(
                f"{self!r} needs more than one value per channel to train, got shape {x.shape}"
            )

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check(x, training)
        backend = current_backend()
        keep = self._keeps_cache(training)
        running = None if training else (self.running_mean, self.running_var)
        out, saved, mean, var = backend.batch_norm_forward(
            x, self.weight.data, self.bias.data, self.eps, keep, running
        )
        if training:
            self.update_running_statistics(mean, var, count=x.size // self.num_features)
        if keep:
            self._cache = (backend, saved)
        return out

    def update_running_statistics(self, mean: np.ndarray, var: np.ndarray, count: int) -> None:
        """``running = (1 - momentum) * running + momentum * batch``, PyTorch's way: the running
        variance takes the unbiased batch variance ``var * count / (count - 1)``."""
        unbiased = var * (count / (count - 1))
        self.running_mean *= 1 - self.momentum
        self.running_mean += self.momentum * mean.astype(self.running_mean.dtype)
        self.running_var *= 1 - self.momentum
        self.running_var += self.momentum * unbiased.astype(self.running_var.dtype)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        grads = backend.batch_norm_backward(saved, grad_out, self.needs_weight_grad())
        return self.store_grads(*grads)

    def needs_weight_grad(self) -> bool:
        """Whether the scale or the shift is trained (else neither gradient is computed)."""
        return self.weight.requires_grad or self.bias.requires_grad

    def store_grads(
        self, grad_x: np.ndarray, grad_weight: np.ndarray | None, grad_bias: np.ndarray | None
    ) -> np.ndarray:
        """Write the scale and shift gradients a backward pass computed; return ``grad_x``."""
        if grad_weight is not None:
            self.weight.grad[...] = grad_weight
            self.bias.grad[...] = grad_bias
        return grad_x

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return 2 * int(np.prod(input_shape))

    def config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    """Batch norm over ``(N, H, W)`` for each channel of an NCHW batch.

    Args:
        num_features: ``C``, the number of channels.
        eps: added to the variance before the square root.
        momentum: weight of the new batch in the running statistics, ``running = (1 - momentum) *
            running + momentum * batch`` (PyTorch's convention).
        dtype: dtype of the parameters and buffers.

    Shape: ``(N, C, H, W) -> (N, C, H, W)``; ``weight, bias, running_mean, running_var (C,)``.
    """

    _ndim = 4
    _layout = "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch norm over the batch axis for each feature.

    Args:
        num_features: ``C``, the number of features.
        eps: added to the variance before the square root.
        momentum: weight of the new batch in the running statistics, ``running = (1 - momentum) *
            running + momentum * batch`` (PyTorch's convention).
        dtype: dtype of the parameters and buffers.

    Shape: ``(N, C) -> (N, C)``.
    """

    _ndim = 2
    _layout = "(N, C)"
