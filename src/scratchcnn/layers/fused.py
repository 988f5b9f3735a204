"""Fused layers, and :func:`fuse`, the explicit pass that puts them into a model.

A run of layers such as Conv2d -> ReLU -> MaxPool2d can be computed faster as one operation
than as three: the fast backend pools each chunk of the convolution's output while it is still
in cache, and applies ReLU to the four times smaller pooled output. Rather than have containers
look for such runs as they execute, :func:`fuse` does it once, visibly, as PyTorch's
``torch.ao.quantization.fuse_modules`` does::

    >>> fused = fuse(seed_cnn())
    >>> fused.summary((3, 32, 32))          # rows: ConvReLUMaxPool chains, Flatten, Linear ...

A fused layer is an ordinary layer: ``forward``, ``backward`` and one backend call each
(``backend.conv2d_relu_max_pool2d_forward`` ...), whose meaning is the composition of the parts
(:class:`scratchcnn.backend.Backend` defines it so; a backend may compute it faster). It holds
the very layers it fuses, so the fused model shares every parameter and buffer with the
original, and it stands in its container under the name ``""``: the parts keep their names,
and ``fused.state_dict()`` equals ``model.state_dict()``. :func:`unfuse` gives the plain model
back (checkpoints and exports describe the plain architecture).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np

from scratchcnn.backend import ConvBlock, current_backend
from scratchcnn.layers.activation import GELU, ReLU
from scratchcnn.layers.base import Layer
from scratchcnn.layers.concat import Concat
from scratchcnn.layers.container import Residual, Sequential
from scratchcnn.layers.conv import Conv2d
from scratchcnn.layers.norm import BatchNorm1d, BatchNorm2d
from scratchcnn.layers.pool import MaxPool2d


class Fused(Layer):
    """A layer computing its ``parts`` (``(name, layer)`` pairs) one after another, in one go.

    Subclasses implement ``forward`` and ``backward`` with one backend call; shapes, FLOPs,
    receptive field and names come from the parts.
    """

    def __init__(self, parts: list[tuple[str, Layer]]) -> None:
        super().__init__()
        self.parts = list(parts)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return iter(self.parts)

    def _layers(self) -> list[Layer]:
        return [layer for _, layer in self.parts]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        for layer in self._layers():
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def flops(self, input_shape: tuple[int, ...]) -> int:
        total = 0
        for layer in self._layers():
            total += layer.flops(input_shape)
            input_shape = layer.output_shape(input_shape)
        return total

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        for layer in self._layers():
            rf, jump = layer.receptive_field(rf, jump)
        return rf, jump

    def span(self) -> str:
        """The names of the first and last layer fused, e.g. ``"0-5"``."""
        names = [name for name, _ in _unfused_children(self)]
        return names[0] if len(names) == 1 else f"{names[0]}-{names[-1]}"

    def describe(self) -> str:
        return f"{type(self).__name__} ({self.span()})"

    def config(self) -> dict:
        raise TypeError(
            f"{type(self).__name__} is made by scratchcnn.layers.fuse and has no config of its "
            "own; describe the model before fusing it (scratchcnn.layers.unfuse gives it back)"
        )


class ReLUMaxPool(Fused):
    """``MaxPool2d(ReLU(x))`` in one step (the backend may pool first: ReLU commutes with max).

    Args:
        relu: ``(name, layer)``: the ReLU and its name in the parent container.
        pool: ``(name, layer)``: the max pool that follows it.

    Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
    """

    def __init__(self, relu: tuple[str, ReLU], pool: tuple[str, MaxPool2d]) -> None:
        super().__init__([relu, pool])
        self.pool = pool[1]

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.pool.check(x)
        backend = current_backend()
        keep = self._keeps_cache(training)
        out, saved = backend.relu_max_pool2d_forward(x, self.pool.geometry, keep)
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        return backend.relu_max_pool2d_backward(saved, grad_out)


class ConvReLUMaxPool(Fused):
    """``MaxPool2d(ReLU(Conv2d(x)))`` in one step.

    Args:
        conv: ``(name, layer)``: the convolution and its name in the parent container.
        relu: ``(name, layer)``: the ReLU that follows it.
        pool: ``(name, layer)``: the max pool that follows the ReLU.

    Shape: ``(N, C, H, W) -> (N, OC, PH, PW)``.
    """

    def __init__(
        self, conv: tuple[str, Conv2d], relu: tuple[str, ReLU], pool: tuple[str, MaxPool2d]
    ) -> None:
        super().__init__([conv, relu, pool])
        self.conv, self.pool = conv[1], pool[1]

    def check(self, x: np.ndarray) -> None:
        """The convolution's input checks, then that one pooling window fits its output."""
        self.conv.check(x)
        if min(self.output_shape(x.shape)[2:]) < 1:
            raise ValueError(
                f"{self.conv!r} + {self.pool!r}: input of spatial size {x.shape[2:]} is too small"
            )

    def describe(self) -> str:
        conv = self.conv
        k = conv.kernel_size
        return (
            f"ConvReLUMaxPool {conv.in_channels}->{conv.out_channels} {k[0]}x{k[1]} ({self.span()})"
        )

    def block(self) -> ConvBlock:
        """What the backend's chained inference needs of this block."""
        return ConvBlock(
            self.conv.weight.data, self.conv.bias_data(), self.conv.geometry, self.pool.geometry
        )

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check(x)
        backend = current_backend()
        keep = self._keeps_cache(training)
        conv, pool = self.conv, self.pool
        out, saved = backend.conv2d_relu_max_pool2d_forward(
            x, conv.weight.data, conv.bias_data(), conv.geometry, pool.geometry, keep
        )
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        backend, saved = self._pop_cache()
        grads = backend.conv2d_relu_max_pool2d_backward(
            saved, grad_out, self.conv.needs_input_grad, self.conv.needs_weight_grad()
        )
        return self.conv.store_grads(*grads)


class BatchNormActivation(Fused):
    """``act(BatchNorm(x))`` with ``act`` a ReLU or an erf-form GELU, in one step: the fast
    backend normalises, scales, shifts and activates in one pass, and keeps only the input.

    Args:
        norm: ``(name, layer)``: the batch norm and its name in the parent container.
        activation: ``(name, layer)``: the ReLU or GELU that follows it.

    Shape: ``(N, C)`` or ``(N, C, H, W)`` -> same.
    """

    def __init__(
        self,
        norm: tuple[str, BatchNorm1d | BatchNorm2d],
        activation: tuple[str, ReLU | GELU],
    ) -> None:
        super().__init__([norm, activation])
        self.norm = norm[1]
        self.activation = "relu" if isinstance(activation[1], ReLU) else "gelu"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        norm = self.norm
        norm.check(x, training)
        backend = current_backend()
        keep = self._keeps_cache(training)
        running = None if training else (norm.running_mean, norm.running_var)
        out, saved, mean, var = backend.batch_norm_activation_forward(
            x, norm.weight.data, norm.bias.data, norm.eps, self.activation, keep, running
        )
        if training:
            norm.update_running_statistics(mean, var, count=x.size // norm.num_features)
        if keep:
            self._cache = (backend, saved)
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        backend, saved = self._pop_cache()
        grads = backend.batch_norm_activation_backward(
            saved, grad_out, self.norm.needs_weight_grad()
        )
        return self.norm.store_grads(*grads)


class ConvReLUMaxPoolChain(Fused):
    """Back-to-back :class:`ConvReLUMaxPool` blocks.

    In inference the backend takes each chunk of images through every block while it is in
    cache (``backend.conv_relu_pool_chain_forward``); in training the blocks run one by one.

    Shape: ``(N, C, H, W)`` -> the last block's output.
    """

    def __init__(self, blocks: list[ConvReLUMaxPool]) -> None:
        super().__init__([("", block) for block in blocks])
        self.blocks = list(blocks)

    def describe(self) -> str:
        widths = [str(self.blocks[0].conv.in_channels)]
        widths += [str(block.conv.out_channels) for block in self.blocks]
        return f"{type(self).__name__} {'->'.join(widths)} ({self.span()})"

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if self._keeps_cache(training):
            for block in self.blocks:
                x = block.forward(x, training)
            self._cache = True  # the blocks hold their own caches
            return x
        block_input = x
        for block in self.blocks:  # every block's checks, before any work
            block.check(block_input)
            # a stand-in of the block's output shape that takes no memory
            block_input = np.broadcast_to(x.dtype.type(0), block.output_shape(block_input.shape))
        return current_backend().conv_relu_pool_chain_forward(
            x, [block.block() for block in self.blocks]
        )

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        self._pop_cache()
        for block in reversed(self.blocks):
            grad_out = block.backward(grad_out)
            if grad_out is None:  # as in Sequential: nothing before this block trains
                return None
        return grad_out


def fuse(model: Layer) -> Layer:
    """A model that computes what ``model`` computes, with runs of layers fused.

    Inside every ``Sequential`` (and the blocks of a ``Residual``, the branches of a ``Concat``):
    Conv2d -> ReLU -> MaxPool2d
    becomes :class:`ConvReLUMaxPool`, consecutive ones a :class:`ConvReLUMaxPoolChain`, a
    remaining ReLU -> MaxPool2d a :class:`ReLUMaxPool`, and BatchNorm -> ReLU or GELU (erf form)
    a :class:`BatchNormActivation`. Only these exact types fuse (a subclass may compute
    something else). The result shares every layer, parameter and buffer with
    ``model`` and has the same ``state_dict`` names; ``model`` itself is unchanged.
    """
    if isinstance(model, Sequential):
        return _fuse_sequential(model)
    if type(model) is Residual:
        fused = copy.copy(model)
        fused.block = fuse(model.block)
        fused.shortcut = None if model.shortcut is None else fuse(model.shortcut)
        return fused
    if type(model) is Concat:
        fused = copy.copy(model)
        fused.branches = [fuse(branch) for branch in model.branches]
        return fused
    return model


def _matches(children: list[tuple[str, Layer]], start: int, types: tuple[type, ...]) -> bool:
    window = children[start : start + len(types)]
    return len(window) == len(types) and all(
        type(layer) is kind for (_, layer), kind in zip(window, types, strict=True)
    )


def _is_norm_activation(pair: list[tuple[str, Layer]]) -> bool:
    if len(pair) != 2 or type(pair[0][1]) not in (BatchNorm1d, BatchNorm2d):
        return False
    activation = pair[1][1]
    return type(activation) is ReLU or (
        type(activation) is GELU and activation.approximate == "none"
    )


def _fuse_sequential(model: Sequential) -> Sequential:
    children = list(model.named_children())
    fused: list[tuple[str, Layer]] = []
    index = 0
    while index < len(children):
        if _matches(children, index, (Conv2d, ReLU, MaxPool2d)):
            block = ConvReLUMaxPool(*children[index : index + 3])
            previous = fused[-1][1] if fused else None
            if isinstance(previous, ConvReLUMaxPool):
                fused[-1] = ("", ConvReLUMaxPoolChain([previous, block]))
            elif isinstance(previous, ConvReLUMaxPoolChain):
                fused[-1] = ("", ConvReLUMaxPoolChain([*previous.blocks, block]))
            else:
                fused.append(("", block))
            index += 3
        elif _matches(children, index, (ReLU, MaxPool2d)):
            fused.append(("", ReLUMaxPool(*children[index : index + 2])))
            index += 2
        elif _is_norm_activation(children[index : index + 2]):
            fused.append(("", BatchNormActivation(*children[index : index + 2])))
            index += 2
        else:
            name, layer = children[index]
            fused.append((name, fuse(layer)))
            index += 1
    return Sequential.named(fused)


def unfuse(model: Layer) -> Layer:
    """The plain model behind a fused one (sharing its layers); a plain model comes back as is."""
    if isinstance(model, Sequential):
        return Sequential.named(list(_unfused_children(model)))
    if type(model) is Residual:
        plain = copy.copy(model)
        plain.block = unfuse(model.block)
        plain.shortcut = None if model.shortcut is None else unfuse(model.shortcut)
        return plain
    if type(model) is Concat:
        plain = copy.copy(model)
        plain.branches = [unfuse(branch) for branch in model.branches]
        return plain
    return model


def _unfused_children(layer: Layer) -> Iterator[tuple[str, Layer]]:
    for name, child in layer.named_children():
        if isinstance(child, Fused):
            yield from _unfused_children(child)
        else:
            yield name, unfuse(child)
