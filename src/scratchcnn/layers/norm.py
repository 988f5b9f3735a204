"""Batch normalisation: per-channel statistics over the batch (and spatial positions)."""

from __future__ import annotations

import numpy as np

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
    _reduce_axes: tuple[int, ...] = ()
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

    def _broadcast(self, v: np.ndarray) -> np.ndarray:
        """Shape a per-channel vector ``(C,)`` to broadcast against the input."""
        return v.reshape((1, -1) + (1,) * (self._ndim - 2))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        check_input(self, x, self._ndim, self.num_features, self._layout)
        if training:
            mean = x.mean(axis=self._reduce_axes)
            var = x.var(axis=self._reduce_axes)  # biased: what normalisation uses
            count = x.size // self.num_features
            if count < 2:
                raise ValueError(
                    f"{self!r} needs more than one value per channel to train, got shape {x.shape}"
                )
            unbiased = var * (count / (count - 1))
            self.running_mean *= 1 - self.momentum
            self.running_mean += self.momentum * mean.astype(self.running_mean.dtype)
            self.running_var *= 1 - self.momentum
            self.running_var += self.momentum * unbiased.astype(self.running_var.dtype)
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = (x - self._broadcast(mean)) * self._broadcast(inv_std)
        out = x_hat * self._broadcast(self.weight.data) + self._broadcast(self.bias.data)
        if self._keeps_cache(training):
            self._cache = (x_hat, inv_std, training)
        return out.astype(x.dtype, copy=False)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x_hat, inv_std, used_batch_stats = self._pop_cache()
        axes = self._reduce_axes
        grad_bias = grad_out.sum(axis=axes)
        grad_weight = (grad_out * x_hat).sum(axis=axes)
        self.bias.grad[...] = grad_bias
        self.weight.grad[...] = grad_weight
        scale = self._broadcast(self.weight.data * inv_std)
        if not used_batch_stats:  # fixed statistics: a plain per-channel affine map
            return grad_out * scale
        # The batch mean and variance depend on every input of the channel, hence two extra terms.
        count = grad_out.size // self.num_features
        mean_grad = self._broadcast(grad_bias / count)
        mean_grad_x_hat = self._broadcast(grad_weight / count)
        return scale * (grad_out - mean_grad - x_hat * mean_grad_x_hat)

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

    Shape: ``(N, C, H, W) -> (N, C, H, W)``; ``weight, bias, running_mean, running_var (C,)``.
    """

    _reduce_axes = (0, 2, 3)
    _ndim = 4
    _layout = "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch norm over the batch axis for each feature.

    Shape: ``(N, C) -> (N, C)``.
    """

    _reduce_axes = (0,)
    _ndim = 2
    _layout = "(N, C)"
