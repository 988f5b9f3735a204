"""The Numba kernels of the fast backend: loops over channels-last (NHWC) arrays.

Importing this package imports Numba (about half a second), so only
:func:`scratchcnn.fast.runtime.kernels` imports it, on first use. Every kernel is compiled with
``cache=True`` (compiled code is reused across processes) and ``nogil=True``, so the worker
threads of :mod:`scratchcnn.fast.runtime` run them in parallel on separate chunks of a batch.
The kernels themselves are serial: the threads already use every core.

Index conventions: an image is ``x[n, ih, iw, c]``; a Winograd tile ``t = (n * tiles_h + i) *
tiles_w + j`` covers output rows ``2i, 2i + 1`` and columns ``2j, 2j + 1`` (F(2x2, 3x3),
:mod:`.winograd`), or rows ``4i..4i + 3`` and columns ``4j..4j + 3`` (F(4x4, 3x3),
:mod:`.winograd4`).
"""

from scratchcnn.fast.kernels.activations import (
    activated_grad_input,
    activated_grad_sums,
    channel_sums,
    gelu,
    gelu_backward,
    scale_shift_activate,
)
from scratchcnn.fast.kernels.conv import add_bias, col2im, im2col
from scratchcnn.fast.kernels.elementwise import relu, relu_backward
from scratchcnn.fast.kernels.pool import (
    max_pool,
    max_pool_2x2,
    max_pool_2x2_backward,
    max_pool_2x2_bias_relu,
    max_pool_backward,
)
from scratchcnn.fast.kernels.winograd import (
    winograd_few_channels_relu_pool,
    winograd_input,
    winograd_output,
    winograd_output_grad,
    winograd_output_relu_pool,
    winograd_weight,
    winograd_weight_grad,
)
from scratchcnn.fast.kernels.winograd4 import (
    winograd4_input,
    winograd4_output,
    winograd4_output_grad,
    winograd4_weight,
    winograd4_weight_grad,
)

__all__ = [
    "activated_grad_input",
    "activated_grad_sums",
    "add_bias",
    "channel_sums",
    "col2im",
    "gelu",
    "gelu_backward",
    "im2col",
    "max_pool",
    "max_pool_2x2",
    "max_pool_2x2_backward",
    "max_pool_2x2_bias_relu",
    "max_pool_backward",
    "relu",
    "relu_backward",
    "scale_shift_activate",
    "winograd4_input",
    "winograd4_output",
    "winograd4_output_grad",
    "winograd4_weight",
    "winograd4_weight_grad",
    "winograd_few_channels_relu_pool",
    "winograd_input",
    "winograd_output",
    "winograd_output_grad",
    "winograd_output_relu_pool",
    "winograd_weight",
    "winograd_weight_grad",
]
