"""Parallel branches on one input, their outputs concatenated on the channel axis."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from scratchcnn.layers.base import Layer


class Concat(Layer):
    """Run every branch on the same input and stack the outputs along axis 1 (channels).

    The container behind Inception modules (Szegedy et al. 2015): e.g. a 1x1, a 3x3, a 5x5 and a
    pooling branch side by side. ``out = concatenate([b(x) for b in branches], axis=1)``, so
    every branch must return the same shape except on axis 1.

    Backward splits ``grad_out`` back into the branches' channel ranges; since every branch read
    the same ``x``, the input gradient is the sum of the branches' input gradients.

    Children are named ``branches.0``, ``branches.1``, ... (parameters ``branches.1.0.weight``),
    as a ``nn.ModuleList`` called ``branches`` names them in PyTorch.

    Shape: ``(N, C, H, W) -> (N, C_0 + C_1 + ..., H', W')`` where branch ``b`` maps the input to
    ``(N, C_b, H', W')``; ``(N, F) -> (N, F_0 + F_1 + ...)`` works the same way.
    """

    def __init__(self, *branches: Layer) -> None:
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch, got none")
        for index, branch in enumerate(branches):
            if not isinstance(branch, Layer):
                raise TypeError(f"Concat branch {index} is not a Layer: {branch!r}")
        self.branches = list(branches)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        return ((f"branches.{i}", branch) for i, branch in enumerate(self.branches))

    def __len__(self) -> int:
        return len(self.branches)

    def __getitem__(self, index: int) -> Layer:
        return self.branches[index]

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        outputs = [branch.forward(x, training) for branch in self.branches]
        self._check_shapes([out.shape for out in outputs])
        if self._keeps_cache(training):
            self._cache = [out.shape[1] for out in outputs]  # each branch's channel count
        return np.concatenate(outputs, axis=1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        channels = self._pop_cache()
        boundaries = np.cumsum(channels)[:-1]  # where one branch's channels end
        grads = np.split(grad_out, boundaries, axis=1)  # views, (N, C_b, H', W') each
        grad_in = self.branches[0].backward(grads[0])
        for branch, grad in zip(self.branches[1:], grads[1:], strict=True):
            grad_in = grad_in + branch.backward(grad)
        return grad_in

    def _check_shapes(self, shapes: list[tuple[int, ...]]) -> None:
        """All branch outputs must agree on every axis but the channel axis."""
        reference = shapes[0][:1] + shapes[0][2:]
        if len(shapes[0]) < 2 or any(s[:1] + s[2:] != reference for s in shapes):
            raise ValueError(
                f"Concat: branch output shapes {shapes} must agree on every axis but axis 1 "
                "(channels); give every branch the same stride and padding"
            )

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The branches' common shape with their channel counts added up."""
        shapes = [tuple(branch.output_shape(input_shape)) for branch in self.branches]
        self._check_shapes(shapes)
        return (shapes[0][0], sum(s[1] for s in shapes), *shapes[0][2:])

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        """The widest branch's field (``None`` if any branch ends the spatial axes); the branches
        keep one grid, so the first branch's jump."""
        fields = [branch.receptive_field(rf, jump) for branch in self.branches]
        if rf is None or any(field is None for field, _ in fields):
            return None, fields[0][1]
        return max(field for field, _ in fields), fields[0][1]

    def describe(self) -> str:
        return f"Concat ({len(self.branches)} branches)"

    def units(self) -> list[Layer]:
        return [self]

    def flops(self, input_shape: tuple[int, ...]) -> int:
        """The branches' FLOPs; the concatenation itself only copies."""
        return sum(branch.flops(input_shape) for branch in self.branches)
