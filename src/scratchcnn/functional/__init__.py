"""Pure math: the forward and backward passes as functions of arrays, with no state."""

from scratchcnn.functional.activations import erf, gelu, gelu_grad, relu, sigmoid
from scratchcnn.functional.conv import (
    col2im,
    conv2d_backward,
    conv2d_forward,
    conv_output_size,
    im2col,
)
from scratchcnn.functional.linear import linear_backward, linear_forward
from scratchcnn.functional.loss import cross_entropy, log_softmax, softmax
from scratchcnn.functional.norm import (
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_statistics,
)
from scratchcnn.functional.pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "avg_pool2d_backward",
    "batch_norm_backward",
    "batch_norm_forward",
    "batch_norm_statistics",
    "avg_pool2d_forward",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "conv_output_size",
    "cross_entropy",
    "erf",
    "gelu",
    "gelu_grad",
    "im2col",
    "linear_backward",
    "linear_forward",
    "log_softmax",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "relu",
    "sigmoid",
    "softmax",
]
