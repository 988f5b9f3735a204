"""Max, average and global average pooling layers."""

from __future__ import annotations

import numpy as np

from scratchcnn import functional as F
from scratchcnn.backend import functional_module
from scratchcnn.functional import fast
from scratchcnn.layers._checks import check_input, pair
from scratchcnn.layers.base import Layer


class _Pool2d(Layer):
    """Shared argument handling: ``stride`` defaults to ``kernel_size`` as in PyTorch."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride if stride is not None else kernel_size, "stride", minimum=1)
        pad = pair(padding, "padding", minimum=0)
        if pad[0] > self.kernel_size[0] // 2 or pad[1] > self.kernel_size[1] // 2:
            raise ValueError(
                f"padding must be at most half the kernel size {self.kernel_size}, got {padding!r}"
            )
        self.padding = pad
        self.pad = ((pad[0], pad[0]), (pad[1], pad[1]))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        n, c, h, w = input_shape
        out_h = F.conv_output_size(h, self.kernel_size[0], self.stride[0], self.pad[0], 1)
        out_w = F.conv_output_size(w, self.kernel_size[1], self.stride[1], self.pad[1], 1)
        return n, c, out_h, out_w

    def _check(self, x: np.ndarray) -> None:
        check_input(self, x, 4, None, "(N, C, H, W)")
        if min(self.output_shape(x.shape)[2:]) < 1:
            raise ValueError(
                f"{self!r} got input of spatial size {x.shape[2:]}, smaller than the kernel"
            )

    def flops(self, input_shape: tuple[int, ...]) -> int:
        """One comparison or addition per window element."""
        n, c, out_h, out_w = self.output_shape(input_shape)
        return n * c * out_h * out_w * self.kernel_size[0] * self.kernel_size[1]

    def config(self) -> dict:
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Maximum over each window; backward routes the gradient to the winner only.

    Ties go to the first position in the window, so each output's gradient lands exactly once.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._check(x)
        backend = functional_module()  # the module of pure functions to compute with
        out, argmax = backend.max_pool2d_forward(x, self.kernel_size, self.stride, self.pad)
        if self._keeps_cache(training):
            self._cache = (backend, argmax, x.shape, None)
        return out

    def forward_relu(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``forward(relu(x))`` in one step (``Sequential`` fuses a ReLU and a max-pool into this).

        ReLU is monotone, so it commutes with the window maximum: the fast backend pools ``x``
        and applies ReLU to the 4x smaller output (in inference in a single pass). Backward then
        routes ``grad_out * (out > 0)`` to each window's winner, which is exactly the ReLU's
        gradient at that winner (a window whose maximum is <= 0 passes nothing either way).

        Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
        """
        self._check(x)
        backend = functional_module()
        keep = self._keeps_cache(training)
        if backend is fast and not keep:
            return fast.relu_max_pool2d_forward(x, self.kernel_size, self.stride, self.pad)
        if backend is fast:
            pooled, argmax = fast.max_pool2d_forward(x, self.kernel_size, self.stride, self.pad)
            out, positive = fast.relu_forward(pooled)
        else:
            out, argmax = F.max_pool2d_forward(
                np.maximum(x, 0), self.kernel_size, self.stride, self.pad
            )
            positive = out > 0
        if keep:
            self._cache = (backend, argmax, x.shape, positive)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, argmax, input_shape, positive = self._pop_cache()
        if positive is not None:  # forward_relu: the ReLU's gradient, on the pooled side
            grad_out = (
                fast.relu_backward(grad_out, positive) if backend is fast else grad_out * positive
            )
        return backend.max_pool2d_backward(
            grad_out, argmax, input_shape, self.kernel_size, self.stride, self.pad
        )

    def kink_distance(self, x: np.ndarray) -> float:
        """Smallest gap between a window's winner and runner-up (gradient checks avoid ties)."""
        if self.kernel_size[0] * self.kernel_size[1] < 2:
            return float("inf")
        out_size = self.output_shape(x.shape)[2:]
        padded = F.conv.pad_input(x, self.pad, value=-np.inf)
        windows = F.conv.sliding_windows(padded, self.kernel_size, self.stride, (1, 1), out_size)
        top2 = np.sort(windows.reshape(*windows.shape[:4], -1), axis=-1)[..., -2:]
        return float(np.min(top2[..., 1] - top2[..., 0]))


class AvgPool2d(_Pool2d):
    """Mean over each window (zero padding counts towards the mean, as in PyTorch).

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self._check(x)
        if self._keeps_cache(training):
            self._cache = x.shape
        return F.avg_pool2d_forward(x, self.kernel_size, self.stride, self.pad)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        input_shape = self._pop_cache()
        return F.avg_pool2d_backward(grad_out, input_shape, self.kernel_size, self.stride, self.pad)


class GlobalAvgPool2d(Layer):
    """Mean over all spatial positions of each channel.

    Shape: ``(N, C, H, W) -> (N, C)``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        check_input(self, x, 4, None, "(N, C, H, W)")
        if self._keeps_cache(training):
            self._cache = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        n, c, h, w = self._pop_cache()
        return np.broadcast_to(grad_out[:, :, None, None] / (h * w), (n, c, h, w)).copy()

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape[:2]

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))

    def config(self) -> dict:
        return {}
