"""The parameter-free shortcut of a residual block that changes shape (He et al.'s option A)."""

from __future__ import annotations

import numpy as np

from scratchcnn.layers._checks import check_input, positive_int
from scratchcnn.layers.base import Layer


class ChannelPad(Layer):
    """Subsample by ``stride`` and zero-pad the channels from ``in_channels`` to ``out_channels``.

    He et al. 2016 (option A): where a residual block halves the grid and widens the channels,
    the shortcut keeps every ``stride``-th pixel of every ``stride``-th row and adds channels of
    zeros, so the shortcut stays an identity map without parameters. The new channels are
    split between both ends, ``(out_channels - in_channels) // 2`` before and the rest after
    (PyTorch's ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))`` in the usual implementation).

    ``OH = ceil(H / stride)``, the output size of a 3x3, padding-1 convolution with that stride.
    The backward pass routes each output gradient back to the pixel it was copied from; pixels
    that were skipped and the padded channels get none.

    Shape: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.stride = positive_int(stride, "stride")
        if self.out_channels < self.in_channels:
            raise ValueError(
                f"ChannelPad: out_channels must be >= in_channels ({self.in_channels}), "
                f"got {out_channels}"
            )
        self.pad_before = (self.out_channels - self.in_channels) // 2

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        check_input(self, x, 4, self.in_channels, "(N, C, H, W)")
        s = self.stride
        kept = x[:, :, ::s, ::s]  # (N, in_channels, OH, OW)
        n, _, out_h, out_w = kept.shape
        out = np.zeros((n, self.out_channels, out_h, out_w), dtype=x.dtype)
        out[:, self.pad_before : self.pad_before + self.in_channels] = kept
        if self._keeps_cache(training):
            self._cache = x.shape
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        input_shape = self._pop_cache()
        s = self.stride
        grad_in = np.zeros(input_shape, dtype=grad_out.dtype)
        grad_in[:, :, ::s, ::s] = grad_out[:, self.pad_before : self.pad_before + self.in_channels]
        return grad_in

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        n, _, h, w = input_shape
        s = self.stride
        return n, self.out_channels, -(-h // s), -(-w // s)  # ceil division

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        return rf, jump * self.stride  # a 1x1 window every ``stride`` pixels

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return 0  # copies only

    def config(self) -> dict:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "stride": self.stride,
        }

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
