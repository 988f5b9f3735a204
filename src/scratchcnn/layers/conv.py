"""2-D convolution layer."""

from __future__ import annotations

import numpy as np

from scratchcnn.backend import ConvGeometry, current_backend
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
    """2-D convolution over an NCHW batch: every output pixel is a dot product of the filter with
    the input window under it (cross-correlation, as in every deep-learning library).

    ``out[n, o, i, j] = bias[o] + sum_{c, a, b} weight[o, c, a, b] *
    x_padded[n, c, i * stride + a * dilation, j * stride + b * dilation]``, with
    ``OH = floor((H + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``.

    Args:
        in_channels: ``C`` of the input.
        out_channels: the number of filters, ``C`` of the output.
        kernel_size: an int or ``(kh, kw)``.
        stride: the step between windows, an int or a pair.
        padding: zeros added on each side: an int, a pair, ``"same"`` (stride 1 only) or ``"valid"``
            (none).
        dilation: the spacing between kernel taps, an int or a pair.
        bias: whether to add a learned bias per output channel.
        init: the weight initialisation, a name of :func:`scratchcnn.init.initialize` (``"he"``,
            ``"xavier"``, ``"torch"``, ``"zeros"``, ...).
        rng: the generator the initial weights are drawn from; ``None`` draws a fresh one.
        dtype: dtype of the parameters (float32, or float64 for gradient checks).

    Shape: ``(N, in_channels, H, W) -> (N, out_channels, OH, OW)``;
    ``weight (out_channels, in_channels, KH, KW)``, ``bias (out_channels,)``.

    Set ``needs_input_grad = False`` on a network's first layer to skip the input gradient
    (nothing uses it while training); ``backward`` then returns ``None``. When both the weight and
    the bias are frozen (``requires_grad = False``, see :meth:`Layer.freeze`), their gradients
    are not computed at all.
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
        self.geometry = ConvGeometry(self.kernel_size, self.stride, self.pad, self.dilation)
        self.init = init
        rng = rng if rng is not None else np.random.default_rng()
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = Parameter(initialize(init, shape, rng, dtype), "weight")
        self.bias = Parameter(np.zeros(self.out_channels, dtype=dtype), "bias") if bias else None
        self.needs_input_grad = True

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, C, H, W) -> (N, out_channels, OH, OW)`` by the output-size formula."""
        n, _, h, w = input_shape
        return (n, self.out_channels, *self.geometry.output_size((h, w)))

    def check(self, x: np.ndarray) -> None:
        """Raise a clear error unless ``x`` is an NCHW batch this layer can convolve."""
        check_input(self, x, 4, self.in_channels, "(N, C, H, W)")
        out_size = self.output_shape(x.shape)[2:]
        if min(out_size) < 1:
            raise ValueError(
                f"{self!r} got input of spatial size {x.shape[2:]}, too small for the kernel "
                f"(the output would be {out_size})"
            )

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check(x)
        backend = current_backend()
        keep = self._keeps_cache(training)
        out, saved = backend.conv2d_forward(
            x, self.weight.data, self.bias_data(), self.geometry, keep
        )
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        backend, saved = self._pop_cache()
        grads = backend.conv2d_backward(
            saved, grad_out, self.needs_input_grad, self.needs_weight_grad()
        )
        return self.store_grads(*grads)

    def needs_weight_grad(self) -> bool:
        """Whether the weight or the bias is trained (else neither gradient is computed)."""
        return self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad)

    def bias_data(self) -> np.ndarray | None:
        """The bias array, or ``None`` for a layer without bias."""
        return None if self.bias is None else self.bias.data

    def store_grads(
        self, grad_x: np.ndarray | None, grad_w: np.ndarray | None, grad_b: np.ndarray | None
    ) -> np.ndarray | None:
        """Write the weight and bias gradients a backward pass computed; return ``grad_x``."""
        if grad_w is not None:
            self.weight.grad[...] = grad_w
            if self.bias is not None:
                self.bias.grad[...] = grad_b
        return grad_x

    def flops(self, input_shape: tuple[int, ...]) -> int:
        """Forward multiply-adds counted as 2 FLOPs each, bias adds included."""
        n, out_c, out_h, out_w = self.output_shape(input_shape)
        per_output = 2 * self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        return n * out_c * out_h * out_w * (per_output + (1 if self.bias is not None else 0))

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        if rf is None:
            return None, jump
        effective = self.dilation[0] * (self.kernel_size[0] - 1) + 1
        return rf + (effective - 1) * jump, jump * self.stride[0]

    def describe(self) -> str:
        k, s = self.kernel_size, self.stride
        text = (
            f"Conv2d {self.in_channels}->{self.out_channels} {k[0]}x{k[1]} s{s[0]} p={self.padding}"
        )
        return text + (f" d{self.dilation[0]}" if self.dilation != (1, 1) else "")

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
