"""2-D convolution layer."""

from __future__ import annotations

import numpy as np

from scratchcnn import functional as F
from scratchcnn.backend import functional_module, get_backend
from scratchcnn.functional import fast
from scratchcnn.functional.conv import Pad2d
from scratchcnn.init import initialize
from scratchcnn.layers._checks import check_input, pair, positive_int
from scratchcnn.layers.base import Layer
from scratchcnn.parameter import Parameter


def resolve_padding(
    padding: int | tuple[int, int] | str,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> Pad2d:
    """Turn an int, a pair, ``"same"`` or ``"valid"`` into ``((top, bottom), (left, right))``.

    ``"same"`` keeps the spatial size at stride 1: the total padding per axis is
    ``dilation * (kernel - 1)``, and when it is odd the extra row/column goes to the bottom/right,
    as in PyTorch.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' requires stride 1, got stride {stride}")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel_size, strict=True)]
            return tuple((t // 2, t - t // 2) for t in totals)  # type: ignore[return-value]
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    pad_h, pad_w = pair(padding, "padding", minimum=0)
    return (pad_h, pad_h), (pad_w, pad_w)


class Conv2d(Layer):
    """2-D convolution over an NCHW batch, computed with im2col and one matrix product.

    ``out[n, o] = bias[o] + sum_c weight[o, c] * x[n, c]`` (cross-correlation), with
    ``OH = floor((H + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``.

    Shape: ``(N, in_channels, H, W) -> (N, out_channels, OH, OW)``;
    ``weight (out_channels, in_channels, KH, KW)``, ``bias (out_channels,)``.

    Set ``needs_input_grad = False`` on a network's first layer to skip the input gradient
    (nothing uses it while training); ``backward`` then returns ``None``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        init: str = "he",
        rng: np.random.Generator | None = None,
        dtype: type = np.float32,
    ) -> None:
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", minimum=1)
        self.stride = pair(stride, "stride", minimum=1)
        self.dilation = pair(dilation, "dilation", minimum=1)
        self.padding = padding
        self.pad = resolve_padding(padding, self.kernel_size, self.stride, self.dilation)
        self.init = init
        rng = rng if rng is not None else np.random.default_rng()
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = Parameter(initialize(init, shape, rng, dtype), "weight")
        self.bias = Parameter(np.zeros(self.out_channels, dtype=dtype), "bias") if bias else None
        self.needs_input_grad = True

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, C, H, W) -> (N, out_channels, OH, OW)`` by the output-size formula."""
        n, _, h, w = input_shape
        out_h = F.conv_output_size(
            h, self.kernel_size[0], self.stride[0], self.pad[0], self.dilation[0]
        )
        out_w = F.conv_output_size(
            w, self.kernel_size[1], self.stride[1], self.pad[1], self.dilation[1]
        )
        return n, self.out_channels, out_h, out_w

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        check_input(self, x, 4, self.in_channels, "(N, C, H, W)")
        out_shape = self.output_shape(x.shape)
        if min(out_shape[2:]) < 1:
            raise ValueError(
                f"{self!r} got input of spatial size {x.shape[2:]}, too small for the kernel "
                f"(the output would be {out_shape[2:]})"
            )
        bias = self.bias.data if self.bias is not None else None
        backend = functional_module()  # the module of pure functions to compute with
        keep = self._keeps_cache(training)
        geometry = (self.stride, self.pad, self.dilation)
        # ``saved`` is what this backend's backward needs: the im2col matrix (reference) or the
        # input itself (fast, which rebuilds the matrix chunk by chunk, and in inference keeps
        # nothing at all).
        if backend is fast:
            out, saved = fast.conv2d_forward(
                x, self.weight.data, bias, *geometry, for_backward=keep
            )
        else:
            out, saved = backend.conv2d_forward(x, self.weight.data, bias, *geometry)
        if keep:
            self._cache = (backend, saved, x.shape)
        return out

    def forward_relu_max_pool(self, x: np.ndarray, pool: Layer) -> np.ndarray:
        """``pool(relu(self(x)))`` in evaluation mode on the fast backend, keeping no cache.

        ``Sequential`` fuses a Conv2d, ReLU, MaxPool2d run into this in inference: the pool
        runs on each batch chunk while its convolution output is still in cache.

        Shape: ``(N, in_channels, H, W) -> pool.output_shape(self.output_shape(...))``.
        """
        check_input(self, x, 4, self.in_channels, "(N, C, H, W)")
        if min(pool.output_shape(self.output_shape(x.shape))[2:]) < 1:
            raise ValueError(f"{self!r} + {pool!r}: input of spatial size {x.shape[2:]} too small")
        bias = self.bias.data if self.bias is not None else None
        return fast.conv2d_relu_max_pool2d_forward(
            x,
            self.weight.data,
            bias,
            self.stride,
            self.pad,
            self.dilation,
            pool.kernel_size,
            pool.stride,
            pool.pad,
        )

    def pools_on_winograd(self, pool: Layer, input_shape: tuple[int, ...]) -> bool:
        """Whether this layer, a ReLU and ``pool`` on an input of ``input_shape`` can join a
        :func:`relu_max_pool_chain`: the fast backend, a 3x3 stride-1 convolution (Winograd),
        a 2x2 / stride-2 max-pool, and a pooled output of at least one pixel."""
        return (
            get_backend() == "fast"
            and min(pool.output_shape(self.output_shape(input_shape))[2:]) >= 1
            and fast.pools_on_winograd(
                input_shape,
                self.weight.shape,
                self.stride,
                self.dilation,
                pool.kernel_size,
                pool.stride,
                pool.pad,
            )
        )

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        backend, saved, input_shape = self._pop_cache()
        grad_x, grad_w, grad_b = backend.conv2d_backward(
            grad_out,
            saved,
            input_shape,
            self.weight.data,
            self.stride,
            self.pad,
            self.dilation,
            need_input_grad=self.needs_input_grad,
        )
        self.weight.grad[...] = grad_w
        if self.bias is not None:
            self.bias.grad[...] = grad_b
        return grad_x

    def flops(self, input_shape: tuple[int, ...]) -> int:
        """Forward multiply-adds counted as 2 FLOPs each, bias adds included."""
        n, out_c, out_h, out_w = self.output_shape(input_shape)
        per_output = 2 * self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        return n * out_c * out_h * out_w * (per_output + (1 if self.bias is not None else 0))

    def config(self) -> dict:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, (str, int)) else list(self.padding),
            "dilation": list(self.dilation),
            "bias": self.bias is not None,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}, dilation={self.dilation}"
        )


def relu_max_pool_chain(blocks: list[tuple[Conv2d, Layer]], x: np.ndarray) -> np.ndarray:
    """``pool(relu(conv(...)))`` for several ``(conv, pool)`` blocks in a row, in evaluation mode.

    ``Sequential`` runs back-to-back Conv2d, ReLU, MaxPool2d blocks that all pass
    :meth:`Conv2d.pools_on_winograd` through this: each chunk of images goes through every
    block while it is in cache, and the workers are handed the batch once. Keeps no cache.

    Shape: ``(N, C, H, W)`` -> the last pool's output shape.
    """
    first = blocks[0][0]
    check_input(first, x, 4, first.in_channels, "(N, C, H, W)")
    params = [
        (conv.weight.data, None if conv.bias is None else conv.bias.data, conv.pad)
        for conv, _ in blocks
    ]
    return fast.conv2d_relu_max_pool2d_chain(x, params)
