"""Layers made of layers: a chain, and a residual connection around a block."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from scratchcnn.layers.base import Layer
from scratchcnn.layers.conv import Conv2d


class Sequential(Layer):
    """Apply layers in order; backward runs them in reverse.

    Children are named ``"0"``, ``"1"``, ... so parameter names match PyTorch's ``nn.Sequential``
    (:meth:`named` builds one with other names, as the fusion pass does).

    Shape: whatever the first layer takes -> whatever the last layer returns.
    """

    def __init__(self, *layers: Layer) -> None:
        super().__init__()
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential item {index} is not a Layer: {layer!r}")
        self.layers = list(layers)
        self.names = [str(i) for i in range(len(layers))]

    @classmethod
    def named(cls, children: list[tuple[str, Layer]]) -> Sequential:
        """A Sequential whose children have the given names (``""``: see ``Layer``)."""
        model = cls(*(layer for _, layer in children))
        model.names = [name for name, _ in children]
        return model

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return zip(self.names, self.layers, strict=True)

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
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
            if grad_out is None:  # a layer that needs no input gradient: nothing before it trains
                return None
        return grad_out

    def units(self) -> list[Layer]:
        return list(self.layers)

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

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        for layer in self.layers:
            rf, jump = layer.receptive_field(rf, jump)
        return rf, jump


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

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        return self.block.receptive_field(rf, jump)  # the widest path: the block's

    def flops(self, input_shape: tuple[int, ...]) -> int:
        shortcut = 0 if self.shortcut is None else self.shortcut.flops(input_shape)
        out_shape = self.block.output_shape(input_shape)
        return self.block.flops(input_shape) + shortcut + int(np.prod(out_shape))


def skip_untrained_input_gradient(model: Layer) -> Layer | None:
    """Spare the backward pass the input gradient nobody needs: find the first layer, along the
    chain of Sequentials the input enters, that has a trained parameter; when it is a Conv2d,
    switch off its ``needs_input_grad`` (and switch it back on for every other Conv2d). Returns
    that convolution, or ``None``.

    Nothing upstream of it trains (the images, parameterless or frozen layers such as a frozen
    whitening convolution), so its ``backward`` returns ``None`` and :meth:`Sequential.backward`
    stops there. Call it again whenever parameters are frozen or unfrozen.

    Args:
        model: the model, changed in place.
    """
    for module in model.modules():
        if hasattr(module, "needs_input_grad"):
            module.needs_input_grad = True
    layer = model
    while True:
        if isinstance(layer, Sequential):
            ahead = [child for child in layer if _trains(child)]
            if not ahead:
                return None
            layer = ahead[0]
            continue
        if type(layer) is Conv2d:  # the layer type that can skip its input gradient
            layer.needs_input_grad = False
            return layer
        return None


def _trains(layer: Layer) -> bool:
    return any(param.requires_grad for param in layer.parameters())
