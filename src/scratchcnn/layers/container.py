"""Layers made of layers: a chain, and a residual connection around a block."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from scratchcnn.backend import compute_scope, get_backend
from scratchcnn.layers.activation import ReLU
from scratchcnn.layers.base import Layer
from scratchcnn.layers.conv import Conv2d, relu_max_pool_chain
from scratchcnn.layers.pool import MaxPool2d


class Sequential(Layer):
    """Apply layers in order; backward runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... so parameter names match PyTorch's ``nn.Sequential``.

    Shape: whatever the first layer takes -> whatever the last layer returns.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {index} is not a Layer: {layer!r}")
        self.layers = list(layers)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return ((str(i), layer) for i, layer in enumerate(self.layers))

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __setitem__(self, index: int, layer: Layer) -> None:
        """Replace one layer (e.g. a new classifier head for transfer learning)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential item {index} must be a Layer, got {layer!r}")
        self.layers[index] = layer

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        fused_relus = []  # indices of ReLUs computed inside the following max-pool
        with compute_scope():  # the backend's BLAS threading for the whole chain
            index = 0
            while index < len(self.layers):
                layer = self.layers[index]
                fuses_next = self._fuses_relu_pool(index + 1, training)
                if type(layer) is Conv2d and fuses_next and not layer._keeps_cache(training):
                    # Inference: each convolution chunk is pooled while it is in cache; a run of
                    # such blocks on Winograd takes each chunk through all of them.
                    chain = self._winograd_chain(index, x.shape)
                    if len(chain) > 1:
                        x = relu_max_pool_chain(chain, x)
                        index += 3 * len(chain)
                        continue
                    x = layer.forward_relu_max_pool(x, self.layers[index + 2])
                    index += 3
                elif self._fuses_relu_pool(index, training):
                    # One pass instead of a full-size ReLU output (and mask) plus a pool.
                    x = self.layers[index + 1].forward_relu(x, training)
                    fused_relus.append(index)
                    index += 2
                else:
                    x = layer.forward(x, training)
                    index += 1
        if self._keeps_cache(training):
            self._cache = frozenset(fused_relus)
        return x

    def _winograd_chain(self, index: int, input_shape: tuple[int, ...]) -> list:
        """The ``(conv, pool)`` pairs of the Conv2d, ReLU, MaxPool2d blocks from ``index`` on that
        can run as one :func:`relu_max_pool_chain` in inference (possibly none)."""
        chain = []
        while (
            len(input_shape) == 4  # anything else gets the layer's own error message
            and index < len(self.layers)
            and type(self.layers[index]) is Conv2d
            and self._fuses_relu_pool(index + 1, training=False)
            and not self.layers[index]._keeps_cache(False)
            and self.layers[index].pools_on_winograd(self.layers[index + 2], input_shape)
        ):
            conv, pool = self.layers[index], self.layers[index + 2]
            chain.append((conv, pool))
            input_shape = pool.output_shape(conv.output_shape(input_shape))
            index += 3
        return chain

    def _fuses_relu_pool(self, index: int, training: bool) -> bool:
        """Whether layers ``index, index + 1`` are a ReLU and a max-pool to run as one (fast
        backend only; both must agree on keeping a cache)."""
        if get_backend() != "fast" or index + 1 >= len(self.layers):
            return False
        relu, pool = self.layers[index], self.layers[index + 1]
        return (
            type(relu) is ReLU
            and type(pool) is MaxPool2d
            and relu._keeps_cache(training) == pool._keeps_cache(training)
        )

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        fused_relus = self._pop_cache()
        with compute_scope():
            for index in reversed(range(len(self.layers))):
                if index not in fused_relus:  # a fused ReLU's gradient is in its pool's
                    grad_out = self.layers[index].backward(grad_out)
        return grad_out

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def flops(self, input_shape: tuple[int, ...]) -> int:
        total = 0
        for layer in self.layers:
            total += layer.flops(input_shape)
            input_shape = layer.output_shape(input_shape)
        return total


class Residual(Layer):
    """``block(x) + shortcut(x)``, the shortcut being the identity when ``None``.

    Shape: the block and the shortcut must map the input to the same shape.
    """

    def __init__(self, block: Layer, shortcut: Layer | None = None) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        yield "block", self.block
        if self.shortcut is not None:
            yield "shortcut", self.shortcut

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out = self.block.forward(x, training)
        skip = x if self.shortcut is None else self.shortcut.forward(x, training)
        if out.shape != skip.shape:
            raise ValueError(
                f"Residual: block output shape {out.shape} does not match shortcut output shape "
                f"{skip.shape}; give a shortcut layer that maps the input to the block's shape"
            )
        return out + skip

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        grad_in = self.block.backward(grad_out)
        if self.shortcut is None:
            return grad_in + grad_out
        return grad_in + self.shortcut.backward(grad_out)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.block.output_shape(input_shape)

    def flops(self, input_shape: tuple[int, ...]) -> int:
        shortcut = 0 if self.shortcut is None else self.shortcut.flops(input_shape)
        out_shape = self.block.output_shape(input_shape)
        return self.block.flops(input_shape) + shortcut + int(np.prod(out_shape))
