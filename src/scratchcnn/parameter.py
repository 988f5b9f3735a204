"""A trainable tensor: its value and its gradient, kept together (as in micrograd)."""

from __future__ import annotations

import numpy as np


class Parameter:
    """A named array with a gradient buffer of the same shape and dtype.

    Layers fill ``grad`` in ``backward``; optimizers read ``grad`` and update ``data`` in place,
    so an optimizer needs nothing but an iterable of parameters. A parameter with
    ``requires_grad = False`` is frozen: optimizers leave it alone, and layers may skip computing
    its gradient (see :meth:`scratchcnn.layers.Layer.freeze`).

    Args:
        data: the initial value (kept, not copied).
        name: the attribute name in its layer, e.g. ``"weight"``.
        requires_grad: ``False`` freezes it.

    Shape: ``data`` and ``grad`` share any shape, e.g. ``(out_channels, in_channels, kh, kw)``.
    """

    __slots__ = ("name", "data", "grad", "requires_grad")

    def __init__(self, data: np.ndarray, name: str = "", requires_grad: bool = True) -> None:
        self.name = name
        self.data = data
        self.grad = np.zeros_like(data)
        self.requires_grad = requires_grad

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``data``."""
        return self.data.shape

    @property
    def size(self) -> int:
        """The number of scalars in ``data``."""
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``data``."""
        return self.data.dtype

    def zero_grad(self) -> None:
        """Reset the gradient to zero in place."""
        self.grad.fill(0)

    def astype(self, dtype: np.dtype | type) -> None:
        """Cast value and gradient to ``dtype`` in place of the old arrays."""
        self.data = self.data.astype(dtype)
        self.grad = np.zeros_like(self.data)

    def __repr__(self) -> str:
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return (
            f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype}"
            f"{frozen})"
        )
