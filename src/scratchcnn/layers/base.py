"""The layer contract every scratchcnn layer follows."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from scratchcnn.parameter import Parameter


class Layer:
    """Base class: ``forward(x, training)``, ``backward(grad_out) -> grad_in``, ``parameters()``.

    A layer keeps what its backward pass needs in one slot, ``self._cache``, written by
    ``forward`` when ``training`` is true and consumed by ``backward``. Calling ``backward``
    without a training forward first is an error, never a silent wrong gradient.

    Buffers (like batch-norm running statistics) are arrays that are saved in ``state_dict`` but
    are not trained; a layer lists their attribute names in ``_buffer_names``.

    A container names its children (``named_children``); names join with dots into parameter
    names (``3.block.0.weight``). A child named ``""`` adds no component: the fused layers of
    :func:`scratchcnn.layers.fuse` stand in their parent under that name, so the layers they
    fuse keep their own names (``0.weight``) and a fused model's ``state_dict`` is the original's.
    """

    _buffer_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._cache: object | None = None
        self.training = False
        self._record = False

    # --- the contract -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Compute the output; with ``training=True``, keep what ``backward`` needs in the cache.

        Args:
            x: the input batch, e.g. ``(N, C, H, W)`` for a convolution or ``(N, features)`` for a
                linear layer.
            training: training mode (batch statistics, dropout, and a cache for ``backward``);
                ``False`` is evaluation mode and keeps nothing, unless inside :meth:`recording`.

        Shape: each layer's own docstring gives its ``input -> output`` shapes.

        Example:
            >>> out = layer.forward(x, training=True)
            >>> grad_x = layer.backward(np.ones_like(out))
        """
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Fill each parameter's ``.grad`` (overwriting) and return the gradient of the input.

        Args:
            grad_out: ``d loss / d output``, shaped like the output of the last ``forward``.

        Raises:
            RuntimeError: when no training-mode ``forward`` (or one under :meth:`recording`) came
                first: a layer never returns a gradient computed from stale or missing state.

        Shape: ``grad_out`` like the output -> ``grad_in`` like the input (``None`` for a first
        layer that was told it needs no input gradient).
        """
        raise NotImplementedError

    def __call__(self, x: np.ndarray, training: bool | None = None) -> np.ndarray:
        return self.forward(x, self.training if training is None else training)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for a given input shape, without computing anything."""
        raise NotImplementedError(f"{type(self).__name__} does not define output_shape")

    def flops(self, input_shape: tuple[int, ...]) -> int:
        """Forward floating-point operations for an input of ``input_shape``."""
        return 0

    def config(self) -> dict:
        """Constructor arguments (JSON-able) that rebuild this layer's architecture."""
        return {}

    def describe(self) -> str:
        """A short label for the summary table, e.g. ``Conv2d 3->32 3x3 s1 p=same``."""
        return type(self).__name__

    def receptive_field(self, rf: int | None, jump: int) -> tuple[int | None, int]:
        """Grow a receptive field through this layer; ``(rf, jump)`` in pixels of the input.

        ``rf`` is the side of the input window one output pixel sees, ``jump`` the input
        distance between neighbouring output pixels; a ``k``-wide window with dilation ``d`` and
        stride ``s`` gives ``rf + (d (k - 1)) * jump`` and ``jump * s``. ``None`` once the
        spatial axes are gone. Element-wise layers (the default) change neither.
        """
        return rf, jump

    def units(self) -> list[Layer]:
        """The layers a forward pass runs one after another at the top level (the rows of the
        summary table and of the speed profile): ``[self]``, or a container's children."""
        return [self]

    # --- parameters and state -----------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Layer]]:
        """Direct sub-layers with their names (containers override this)."""
        return iter(())

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """All trainable parameters with PyTorch-style dotted names (``0.weight``)."""
        for name, param in self._own_parameters():
            yield prefix + name, param
        for child_name, child in self.named_children():
            yield from child.named_parameters(_join(prefix, child_name))

    def parameters(self) -> Iterator[Parameter]:
        """All trainable parameters; the only thing an optimizer needs."""
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """Buffers (saved, not trained: batch-norm running statistics) by dotted name.

        Args:
            prefix: prepended to every name (used by containers for their children).
        """
        for name in self._buffer_names:
            yield prefix + name, getattr(self, name)
        for child_name, child in self.named_children():
            yield from child.named_buffers(_join(prefix, child_name))

    def modules(self) -> Iterator[Layer]:
        """This layer and every layer below it, depth first."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def summary(self, input_shape: tuple[int, ...], print_fn=print) -> str:
        """Print (and return) the architecture table for one example of ``input_shape``.

        Shape: ``input_shape`` excludes the batch axis, e.g. ``(3, 32, 32)``.
        """
        from scratchcnn.layers.summary import format_summary  # the table code, kept apart

        dtype = next((p.dtype for p in self.parameters()), np.float32)
        text = format_summary(self, tuple(input_shape), dtype)
        if print_fn is not None:
            print_fn(text)
        return text

    def num_parameters(self) -> int:
        """The number of trainable scalars: the sum of every parameter's size."""
        return sum(p.size for p in self.parameters())

    def freeze(self, *patterns: str) -> list[str]:
        """Stop training the parameters whose names match any of ``patterns``; return their names.

        A pattern matches a parameter name exactly, as a prefix of dotted components (``"0"``
        matches ``0.weight`` and ``0.bias``; ``"3.block"`` matches everything in that block), or
        as a shell-style glob (``"*.bias"``). With no patterns, every parameter is frozen. A
        pattern that matches nothing is an error that lists the parameter names.
        """
        return self._set_requires_grad(patterns, False)

    def unfreeze(self, *patterns: str) -> list[str]:
        """Train again the parameters matching ``patterns`` (all with none); see :meth:`freeze`."""
        return self._set_requires_grad(patterns, True)

    def _set_requires_grad(self, patterns: tuple[str, ...], value: bool) -> list[str]:
        named = list(self.named_parameters())
        matched: dict[str, None] = {}  # ordered set
        for pattern in patterns or ("*",):
            hits = [
                name
                for name, _ in named
                if name == pattern
                or name.startswith(pattern + ".")
                or fnmatch.fnmatchcase(name, pattern)
            ]
            if not hits:
                raise ValueError(
                    f"pattern {pattern!r} matches no parameter; parameters are "
                    f"{[name for name, _ in named]}"
                )
            matched.update(dict.fromkeys(hits))
        for name, param in named:
            if name in matched:
                param.requires_grad = value
        return list(matched)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (``backward`` overwrites them anyway)."""
        for param in self.parameters():
            param.zero_grad()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by PyTorch-style name, as copies."""
        state = {name: param.data.copy() for name, param in self.named_parameters()}
        state.update({name: buf.copy() for name, buf in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into parameters and buffers; shapes must match exactly.

        With ``strict``, missing or unexpected names are an error that lists them.
        """
        targets: dict[str, tuple[Layer | None, Parameter | None, str]] = {}
        for name, param in self.named_parameters():
            targets[name] = (None, param, name)
        for layer_prefix, layer in self._named_modules():
            for buf_name in layer._buffer_names:
                targets[layer_prefix + buf_name] = (layer, None, buf_name)
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, (layer, param, attr) in targets.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            current = param.data if param is not None else getattr(layer, attr)
            if value.shape != current.shape:
                raise ValueError(
                    f"load_state_dict: {name} has shape {value.shape}, expected {current.shape}"
                )
            if param is not None:
                param.data = value.astype(current.dtype, copy=True)
                param.grad = np.zeros_like(param.data)
            else:
                setattr(layer, attr, value.astype(current.dtype, copy=True))

    def _named_modules(self, prefix: str = "") -> Iterator[tuple[str, Layer]]:
        yield prefix, self
        for child_name, child in self.named_children():
            yield from child._named_modules(_join(prefix, child_name))

    # --- modes and dtype ----------------------------------------------------------------------
    def train(self, mode: bool = True) -> Layer:
        """Set this layer and every sub-layer to training mode (``mode=False``: evaluation).

        Args:
            mode: the mode to set; ``layer(x)`` (``__call__``) uses it when no ``training`` is
                given.

        Returns the layer itself, so that ``model = build().train()`` works.
        """
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Layer:
        """Set this layer and every sub-layer to evaluation mode; returns the layer."""
        return self.train(False)

    def astype(self, dtype: np.dtype | type) -> Layer:
        """Cast every parameter and buffer to ``dtype`` (e.g. ``np.float64`` for gradcheck)."""
        for module in self.modules():
            for _, param in module._own_parameters():
                param.astype(dtype)
            for name in module._buffer_names:
                setattr(module, name, getattr(module, name).astype(dtype))
            module._cache = None
        return self

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters (float32 for a layer without any)."""
        return next((p.dtype for p in self.parameters()), np.dtype(np.float32))

    @contextmanager
    def recording(self) -> Iterator[Layer]:
        """Keep backward caches during evaluation-mode forwards (for saliency, Grad-CAM).

        Inside the block, ``forward(x, training=False)`` behaves as in evaluation (running
        batch-norm statistics, no dropout) but still allows ``backward``.
        """
        previous = [(module, module._record) for module in self.modules()]
        for module, _ in previous:
            module._record = True
        try:
            yield self
        finally:
            for module, was in previous:
                module._record = was

    # --- helpers for subclasses ---------------------------------------------------------------
    def _keeps_cache(self, training: bool) -> bool:
        return training or self._record

    def _pop_cache(self) -> object:
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward(x, training=True)"
            )
        cache, self._cache = self._cache, None
        return cache

    def extra_repr(self) -> str:
        """The hyperparameters shown in ``repr(layer)``, e.g. ``"3, 32, kernel_size=(3, 3)"``."""
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}" if name else f"  {child_repr}")
        lines.append(")")
        return "\n".join(lines)


def _join(prefix: str, child_name: str) -> str:
    """The prefix of a child's names: ``"3."`` + ``"block"`` -> ``"3.block."``; ``""`` adds
    nothing (a fused layer standing in for the layers it fuses)."""
    return f"{prefix}{child_name}." if child_name else prefix
