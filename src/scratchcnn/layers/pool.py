"""Max, average and global average pooling layers."""

from __future__ import annotations

import numpy as np

from scratchcnn import functional as F
from scratchcnn.backend import PoolGeometry, current_backend
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
        self.geometry = PoolGeometry(self.kernel_size, self.stride, self.pad)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        n, c, h, w = input_shape
        return (n, c, *self.geometry.output_size((h, w)))

    def check(self, x: np.ndarray) -> None:
        """Raise a clear error unless ``x`` is an NCHW batch at least one window large."""
        check_input(self, x, 4, None, "(N, C, H, W)")
        if min(self.output_shape(x.shape)[2:]) < 1:
            raise ValueError(
                f"{self!r} got input of spatial size {x.shape[2:]}, smaller than the kernel"
            )

    def flops(self, input_shape: tuple[int, ...]) -> int:
        """One comparison or addition per window element."""
        n, c, out_h, out_w = self.output_shape(input_shape)
        return n * c * out_h * out_w * self.kernel_size[0] * self.kernel_size[1]

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        if rf is None:
            return None, jump
        return rf + (self.kernel_size[0] - 1) * jump, jump * self.stride[0]

    def describe(self) -> str:
        k = self.kernel_size
        return f"{type(self).__name__} {k[0]}x{k[1]} s{self.stride[0]}"

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

    Args:
        kernel_size: the window, an int or ``(kh, kw)``.
        stride: the step between windows; ``None`` (the default) means ``kernel_size``.
        padding: ``-inf`` added on each side (padding never wins), an int or ``(ph, pw)``.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check(x)
        backend = current_backend()
        keep = self._keeps_cache(training)
        out, saved = backend.max_pool2d_forward(x, self.geometry, keep)
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        return backend.max_pool2d_backward(saved, grad_out)

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

    Args:
        kernel_size: the window, an int or ``(kh, kw)``.
        stride: the step between windows; ``None`` (the default) means ``kernel_size``.
        padding: zeros added on each side, an int or ``(ph, pw)``.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check(x)
        backend = current_backend()
        keep = self._keeps_cache(training)
        out, saved = backend.avg_pool2d_forward(x, self.geometry, keep)
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        return backend.avg_pool2d_backward(saved, grad_out)


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

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        return None, jump  # every output sees the whole image

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))

    def config(self) -> dict:
        return {}
