"""The fast backend: the :class:`~scratchcnn.backend.Backend` interface on the fast code.

Each operation reads the current :class:`~scratchcnn.fast.settings.Settings` once and hands
them down. What is not overridden here (average pooling), or where the Numba kernels are
unavailable, runs the reference backend's code, which the fast layouts pass through unchanged.
"""

from __future__ import annotations

import contextlib

from scratchcnn.backend import ReferenceBackend
from scratchcnn.fast import conv, linear, norm, pool, winograd
from scratchcnn.fast.elementwise import gelu_backward, gelu_forward, relu_backward, relu_forward
from scratchcnn.fast.layout import to_nchw, to_nhwc
from scratchcnn.fast.runtime import blas_limit, restored, stored
from scratchcnn.fast.settings import current_settings, settings


class FastBackend(ReferenceBackend):
    """Channels-last memory, chunks on worker threads, Numba kernels, Winograd convolutions."""

    name = "fast"

    def conv2d_forward(self, x, weight, bias, geometry, keep):
        return conv.conv2d_forward(x, weight, bias, geometry, keep, current_settings())

    def conv2d_backward(self, saved, grad_out, need_input_grad=True, need_weight_grad=True):
        settings = current_settings()
        return conv.conv2d_backward(saved, grad_out, need_input_grad, need_weight_grad, settings)

    def max_pool2d_forward(self, x, geometry, keep):
        return pool.max_pool2d_forward(x, geometry, keep, current_settings())

    def max_pool2d_backward(self, saved, grad_out):
        return pool.max_pool2d_backward(saved, grad_out, current_settings())

    def relu_forward(self, x, keep):
        return relu_forward(x, keep, current_settings())

    def relu_backward(self, saved, grad_out):
        return relu_backward(saved, grad_out, current_settings())

    def gelu_forward(self, x, approximate, keep):
        if approximate == "none":
            done = gelu_forward(x, keep, current_settings())
            if done is not None:
                return done[0], (("fast", done[1]) if keep else None)
        out, saved = super().gelu_forward(x, approximate, keep)
        return out, (("reference", saved) if keep else None)

    def gelu_backward(self, saved, grad_out):
        kind, kept = saved
        if kind == "fast":
            grad_x = gelu_backward(kept, grad_out, current_settings())
            if grad_x is not None:
                return grad_x
            kept = (restored(kept, grad_out.dtype), "none")  # the reference's saved form
        return super().gelu_backward(kept, grad_out)

    def batch_norm_forward(self, x, weight, bias, eps, keep, running=None):
        return self.batch_norm_activation_forward(x, weight, bias, eps, None, keep, running)

    def batch_norm_backward(self, saved, grad_out, need_weight_grad=True):
        return self.batch_norm_activation_backward(saved, grad_out, need_weight_grad)

    def batch_norm_activation_forward(self, x, weight, bias, eps, activation, keep, running=None):
        settings = current_settings()
        done = norm.batch_norm_forward(x, weight, bias, eps, keep, running, activation, settings)
        if done is not None:
            out, saved, mean, var = done
            return out, (("fast", saved) if keep else None), mean, var
        if activation is None:
            out, saved, mean, var = super().batch_norm_forward(x, weight, bias, eps, keep, running)
        else:
            out, saved, mean, var = super().batch_norm_activation_forward(
                x, weight, bias, eps, activation, keep, running
            )
        return out, ((("reference", activation), saved) if keep else None), mean, var

    def batch_norm_activation_backward(self, saved, grad_out, need_weight_grad=True):
        kind, kept = saved
        if kind == "fast":
            return norm.batch_norm_backward(kept, grad_out, need_weight_grad, current_settings())
        _, activation = kind
        if activation is None:
            return super().batch_norm_backward(kept, grad_out, need_weight_grad)
        return super().batch_norm_activation_backward(kept, grad_out, need_weight_grad)

    def linear_forward(self, x, weight, bias, keep):
        settings = current_settings()
        out = linear.matmul(x, weight.T, settings)
        if bias is not None:
            out += bias
        return out, ((stored(x, settings), weight) if keep else None)

    def linear_backward(self, saved, grad_out, need_input_grad=True, need_weight_grad=True):
        settings = current_settings()
        x, weight = saved
        x = restored(x, grad_out.dtype)
        grad_x = linear.matmul(grad_out, weight, settings) if need_input_grad else None
        grad_w = grad_b = None
        if need_weight_grad:
            grad_w = linear.matmul(grad_out.T, x, settings)
            grad_b = grad_out.sum(axis=0)
        return grad_x, grad_w, grad_b

    # --- fused operations ---------------------------------------------------------------------
    def relu_max_pool2d_forward(self, x, geometry, keep):
        return pool.relu_max_pool2d_forward(x, geometry, keep, current_settings())

    def relu_max_pool2d_backward(self, saved, grad_out):
        return pool.max_pool2d_backward(saved, grad_out, current_settings())

    def conv2d_relu_max_pool2d_forward(self, x, weight, bias, conv_geometry, pool_geometry, keep):
        if not keep:
            settings = current_settings()
            out = conv.conv2d_relu_max_pool2d_inference(
                x, weight, bias, conv_geometry, pool_geometry, settings
            )
            if out is not None:
                return out, None
        return super().conv2d_relu_max_pool2d_forward(
            x, weight, bias, conv_geometry, pool_geometry, keep
        )

    def conv_relu_pool_chain_forward(self, x, blocks):
        """Runs of blocks that all pool inside Winograd's tiles go through
        :func:`.winograd.conv_relu_pool_chain` together (each chunk of images through every
        block while it is in cache); the other blocks run one by one."""
        settings = current_settings()
        index = 0
        while index < len(blocks):
            run = []
            shape = (x.shape[0], x.shape[2], x.shape[3], x.shape[1])  # NHWC
            for block in blocks[index:]:
                if not (
                    conv.pools_in_tiles(block.pool)
                    and winograd.applies(shape, block.weight.shape, block.conv, settings, True)
                ):
                    break
                run.append((block.weight, block.bias, block.conv.padding))
                pooled_hw = block.pool.output_size(block.conv.output_size(shape[1:3]))
                shape = (shape[0], *pooled_hw, block.weight.shape[0])
            if len(run) > 1:
                x = to_nchw(winograd.conv_relu_pool_chain(to_nhwc(x), run, settings))
                index += len(run)
            else:
                block = blocks[index]
                x, _ = self.conv2d_relu_max_pool2d_forward(
                    x, block.weight, block.bias, block.conv, block.pool, keep=False
                )
                index += 1
        return x

    def compute_scope(self):
        """NumPy's BLAS at ``settings.blas_threads`` for the whole scope (a training loop), so
        that single operations do not set and restore it each time."""
        threads = current_settings().blas_threads
        return blas_limit(threads) if threads is not None else contextlib.nullcontext()

    def mixed_precision_scope(self):
        """The current settings with ``storage="float16"``: what backward keeps is float16."""
        return settings(storage="float16")
