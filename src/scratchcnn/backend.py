"""The one interface between layers and the code that computes: a :class:`Backend`.

A layer holds its parameters and hyperparameters; to compute, it asks for the current backend
once per forward pass and calls one of its operations, the same call whichever backend runs::

    out, saved = backend.conv2d_forward(x, weight, bias, geometry, keep)   # forward
    grad_x, grad_w, grad_b = backend.conv2d_backward(saved, grad_out)      # backward

``saved`` is whatever that backend needs for the backward pass (an im2col matrix, a channels-last
view of the input, max-pool winners ...): opaque to the layer, which keeps it, with the backend
that made it, until ``backward``. With ``keep=False`` (inference) nothing is kept and ``saved``
is ``None``.

Two backends implement the interface:

- ``"reference"`` (:class:`ReferenceBackend`): the readable NCHW code of
  :mod:`scratchcnn.functional` (im2col convolution, pooling by strided windows, ...), the version
  to read and step through.
- ``"fast"`` (the default; :class:`scratchcnn.fast.FastBackend`): channels-last memory, batches
  in cache-sized chunks over worker threads, Numba kernels and Winograd convolutions. What it
  does not speed up, it inherits from the reference backend.

Fused operations (``conv2d_relu_max_pool2d_forward`` ...) are what the fused layers of
:func:`scratchcnn.layers.fuse` call. :class:`Backend` defines each as the composition of the
plain operations, which is also its meaning; a backend overrides one only with something faster
that computes the same.

Select a backend with ``with use_backend("reference"): ...`` (scoped, restored on exit) or
``set_backend("reference")`` (for the rest of the current thread or task); the choice lives in a
context variable, so threads and asyncio tasks do not see each other's choice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from scratchcnn import functional as F
from scratchcnn.errors import ConfigError
from scratchcnn.functional.conv import Pad2d, conv_output_size

Saved = Any  # what a backend keeps for backward; opaque to layers


@dataclass(frozen=True)
class ConvGeometry:
    """Where a convolution's kernel goes: ``kernel_size``, ``stride``, ``padding``
    (``((top, bottom), (left, right))``) and ``dilation``, each per spatial axis."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: Pad2d
    dilation: tuple[int, int] = (1, 1)

    def output_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """``(OH, OW)`` for an input of spatial size ``hw``, by the output-size formula."""
        return tuple(  # type: ignore[return-value]
            conv_output_size(size, k, s, p, d)
            for size, k, s, p, d in zip(
                hw, self.kernel_size, self.stride, self.padding, self.dilation, strict=True
            )
        )


@dataclass(frozen=True)
class PoolGeometry:
    """Where a pooling window goes: ``kernel_size``, ``stride`` and ``padding`` per axis."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: Pad2d

    def output_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        """``(OH, OW)`` for an input of spatial size ``hw``."""
        return ConvGeometry(self.kernel_size, self.stride, self.padding).output_size(hw)


class ConvBlock(NamedTuple):
    """One conv + ReLU + max-pool block of :meth:`Backend.conv_relu_pool_chain_forward`."""

    weight: np.ndarray  # (OC, C, KH, KW)
    bias: np.ndarray | None  # (OC,)
    conv: ConvGeometry
    pool: PoolGeometry


class Backend:
    """The operations a layer may ask for. Subclasses implement the plain operations; the fused
    ones here compose them (a subclass may override those with a faster equivalent).

    Every ``*_forward`` takes ``keep`` (keep what backward needs) and returns ``(out, saved)``,
    ``saved`` being ``None`` unless ``keep``. Every ``*_backward`` takes that ``saved`` first.
    Shapes are NCHW (or ``(N, features)``) at this interface, whatever the memory layout inside.
    """

    name = "abstract"

    # --- convolution --------------------------------------------------------------------------
    def conv2d_forward(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        geometry: ConvGeometry,
        keep: bool,
    ) -> tuple[np.ndarray, Saved]:
        """Cross-correlation of ``x`` with ``weight`` plus ``bias``.

        Shape: ``x (N, C, H, W)``, ``weight (OC, C, KH, KW)``, ``bias (OC,)`` ->
        ``(N, OC, OH, OW)``.
        """
        raise NotImplementedError

    def conv2d_backward(
        self, saved: Saved, grad_out: np.ndarray, need_input_grad: bool, need_weight_grad: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Gradients of the input, weight and bias (``None`` for those not needed).

        Shape: ``grad_out (N, OC, OH, OW)`` -> ``(N, C, H, W)``, ``(OC, C, KH, KW)``, ``(OC,)``.
        """
        raise NotImplementedError

    # --- pooling ------------------------------------------------------------------------------
    def max_pool2d_forward(
        self, x: np.ndarray, geometry: PoolGeometry, keep: bool
    ) -> tuple[np.ndarray, Saved]:
        """Maximum of each window (ties go to the first position; padding never wins).

        Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
        """
        raise NotImplementedError

    def max_pool2d_backward(self, saved: Saved, grad_out: np.ndarray) -> np.ndarray:
        """Each output gradient routed to its window's winner.

        Shape: ``(N, C, OH, OW) -> (N, C, H, W)``.
        """
        raise NotImplementedError

    def avg_pool2d_forward(
        self, x: np.ndarray, geometry: PoolGeometry, keep: bool
    ) -> tuple[np.ndarray, Saved]:
        """Mean of each window, zero padding counted (PyTorch's default).

        Shape: ``(N, C, H, W) -> (N, C, OH, OW)``.
        """
        raise NotImplementedError

    def avg_pool2d_backward(self, saved: Saved, grad_out: np.ndarray) -> np.ndarray:
        """Each output gradient spread evenly over its window.

        Shape: ``(N, C, OH, OW) -> (N, C, H, W)``.
        """
        raise NotImplementedError

    # --- element-wise -------------------------------------------------------------------------
    def relu_forward(self, x: np.ndarray, keep: bool) -> tuple[np.ndarray, Saved]:
        """``max(x, 0)`` (NaN stays NaN). Shape: any -> same."""
        raise NotImplementedError

    def relu_backward(self, saved: Saved, grad_out: np.ndarray) -> np.ndarray:
        """``grad_out`` where the input was positive, 0 elsewhere. Shape: any -> same."""
        raise NotImplementedError

    def gelu_forward(self, x: np.ndarray, approximate: str, keep: bool) -> tuple[np.ndarray, Saved]:
        """``x * Phi(x)`` (``approximate="tanh"``: the tanh form). Shape: any -> same."""
        raise NotImplementedError

    def gelu_backward(self, saved: Saved, grad_out: np.ndarray) -> np.ndarray:
        """``grad_out * gelu'(x)``. Shape: any -> same."""
        raise NotImplementedError

    # --- linear and normalisation -------------------------------------------------------------
    def linear_forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, keep: bool
    ) -> tuple[np.ndarray, Saved]:
        """``x @ weight.T + bias``.

        Shape: ``x (N, in)``, ``weight (out, in)``, ``bias (out,)`` -> ``(N, out)``.
        """
        raise NotImplementedError

    def linear_backward(
        self, saved: Saved, grad_out: np.ndarray, need_input_grad: bool, need_weight_grad: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Gradients of the input, weight and bias (``None`` for those not needed).

        Shape: ``grad_out (N, out)`` -> ``(N, in)``, ``(out, in)``, ``(out,)``.
        """
        raise NotImplementedError

    def batch_norm_forward(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        eps: float,
        keep: bool,
        running: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, Saved, np.ndarray, np.ndarray]:
        """Per-channel normalisation, scale and shift: with the batch's own statistics when
        ``running`` is ``None`` (training), else with ``running = (mean, var)``.

        Returns ``(out, saved, mean, var)``: the statistics used (the batch's biased variance in
        training, for the layer's running estimates).

        Shape: ``x (N, C)`` or ``(N, C, H, W)``, vectors ``(C,)`` -> ``out`` like ``x``.
        """
        raise NotImplementedError

    def batch_norm_backward(
        self, saved: Saved, grad_out: np.ndarray, need_weight_grad: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Gradients of the input, weight and bias (the last two ``None`` unless needed).

        Shape: ``grad_out`` like the input -> like the input, ``(C,)``, ``(C,)``.
        """
        raise NotImplementedError

    # --- fused operations: defined by composition ---------------------------------------------
    def relu_max_pool2d_forward(
        self, x: np.ndarray, geometry: PoolGeometry, keep: bool
    ) -> tuple[np.ndarray, Saved]:
        """``max_pool(relu(x))``. Shape: ``(N, C, H, W) -> (N, C, OH, OW)``."""
        y, relu_saved = self.relu_forward(x, keep)
        out, pool_saved = self.max_pool2d_forward(y, geometry, keep)
        return out, ((relu_saved, pool_saved) if keep else None)

    def relu_max_pool2d_backward(self, saved: Saved, grad_out: np.ndarray) -> np.ndarray:
        """Backward of :meth:`relu_max_pool2d_forward`. Shape: as ``max_pool2d_backward``."""
        relu_saved, pool_saved = saved
        return self.relu_backward(relu_saved, self.max_pool2d_backward(pool_saved, grad_out))

    def conv2d_relu_max_pool2d_forward(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        conv: ConvGeometry,
        pool: PoolGeometry,
        keep: bool,
    ) -> tuple[np.ndarray, Saved]:
        """``max_pool(relu(conv2d(x)))``. Shape: ``(N, C, H, W) -> (N, OC, PH, PW)``."""
        y, conv_saved = self.conv2d_forward(x, weight, bias, conv, keep)
        out, pool_saved = self.relu_max_pool2d_forward(y, pool, keep)
        return out, ((conv_saved, pool_saved) if keep else None)

    def conv2d_relu_max_pool2d_backward(
        self, saved: Saved, grad_out: np.ndarray, need_input_grad: bool, need_weight_grad: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Backward of :meth:`conv2d_relu_max_pool2d_forward`: as ``conv2d_backward``."""
        conv_saved, pool_saved = saved
        grad_conv = self.relu_max_pool2d_backward(pool_saved, grad_out)
        return self.conv2d_backward(conv_saved, grad_conv, need_input_grad, need_weight_grad)

    def batch_norm_activation_forward(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        eps: float,
        activation: str,
        keep: bool,
        running: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, Saved, np.ndarray, np.ndarray]:
        """``activation(batch_norm(x))`` with ``activation`` ``"relu"`` or ``"gelu"`` (erf form);
        returns ``(out, saved, mean, var)`` as :meth:`batch_norm_forward` does.

        Shape: ``x (N, C)`` or ``(N, C, H, W)`` -> ``out`` like ``x``.
        """
        y, norm_saved, mean, var = self.batch_norm_forward(x, weight, bias, eps, keep, running)
        if activation == "relu":
            out, act_saved = self.relu_forward(y, keep)
        else:
            out, act_saved = self.gelu_forward(y, "none", keep)
        saved = (norm_saved, act_saved, activation) if keep else None
        return out, saved, mean, var

    def batch_norm_activation_backward(
        self, saved: Saved, grad_out: np.ndarray, need_weight_grad: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Backward of :meth:`batch_norm_activation_forward`: as ``batch_norm_backward``."""
        norm_saved, act_saved, activation = saved
        if activation == "relu":
            grad_y = self.relu_backward(act_saved, grad_out)
        else:
            grad_y = self.gelu_backward(act_saved, grad_out)
        return self.batch_norm_backward(norm_saved, grad_y, need_weight_grad)

    def conv_relu_pool_chain_forward(self, x: np.ndarray, blocks: list[ConvBlock]) -> np.ndarray:
        """Several conv + ReLU + max-pool blocks in a row, for inference (keeps nothing).

        Shape: ``(N, C, H, W)`` -> the last block's ``(N, OC, PH, PW)``.
        """
        for block in blocks:
            x, _ = self.conv2d_relu_max_pool2d_forward(
                x, block.weight, block.bias, block.conv, block.pool, keep=False
            )
        return x

    # --- scope --------------------------------------------------------------------------------
    def compute_scope(self) -> contextlib.AbstractContextManager:
        """A scope for many operations in a row (a training loop, an evaluation), in which the
        backend may hold process-level settings it would otherwise set per operation."""
        return contextlib.nullcontext()

    def mixed_precision_scope(self) -> contextlib.AbstractContextManager:
        """A scope in which a float32 forward pass keeps what its backward needs in float16
        (mixed precision: half the activation memory; the arithmetic stays in float32).

        The reference backend keeps every array in its compute dtype, so it refuses.
        """
        raise ConfigError(
            f"the {self.name!r} backend has no mixed precision (it keeps every array in its "
            "compute dtype); use the fast backend, or precision 'float32'"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class _ConvSaved(NamedTuple):
    cols: np.ndarray  # (N*OH*OW, C*KH*KW)
    input_shape: tuple[int, int, int, int]
    weight: np.ndarray
    geometry: ConvGeometry


class ReferenceBackend(Backend):
    """The readable backend: each operation is a call to a pure function of
    :mod:`scratchcnn.functional` (NCHW arrays, im2col convolution, strided-window pooling)."""

    name = "reference"

    def conv2d_forward(self, x, weight, bias, geometry, keep):
        g = geometry
        out, cols = F.conv2d_forward(x, weight, bias, g.stride, g.padding, g.dilation)
        return out, (_ConvSaved(cols, x.shape, weight, g) if keep else None)

    def conv2d_backward(self, saved, grad_out, need_input_grad=True, need_weight_grad=True):
        g = saved.geometry
        return F.conv2d_backward(
            grad_out,
            saved.cols,
            saved.input_shape,
            saved.weight,
            g.stride,
            g.padding,
            g.dilation,
            need_input_grad=need_input_grad,
            need_weight_grad=need_weight_grad,
        )

    def max_pool2d_forward(self, x, geometry, keep):
        g = geometry
        out, argmax = F.max_pool2d_forward(x, g.kernel_size, g.stride, g.padding)
        return out, ((argmax, x.shape, g) if keep else None)

    def max_pool2d_backward(self, saved, grad_out):
        argmax, input_shape, g = saved
        return F.max_pool2d_backward(
            grad_out, argmax, input_shape, g.kernel_size, g.stride, g.padding
        )

    def avg_pool2d_forward(self, x, geometry, keep):
        g = geometry
        out = F.avg_pool2d_forward(x, g.kernel_size, g.stride, g.padding)
        return out, ((x.shape, g) if keep else None)

    def avg_pool2d_backward(self, saved, grad_out):
        input_shape, g = saved
        return F.avg_pool2d_backward(grad_out, input_shape, g.kernel_size, g.stride, g.padding)

    def relu_forward(self, x, keep):
        out = F.relu(x)
        return out, (out > 0 if keep else None)

    def relu_backward(self, saved, grad_out):
        return grad_out * saved

    def gelu_forward(self, x, approximate, keep):
        return F.gelu(x, approximate), ((x, approximate) if keep else None)

    def gelu_backward(self, saved, grad_out):
        x, approximate = saved
        return grad_out * F.gelu_grad(x, approximate)

    def linear_forward(self, x, weight, bias, keep):
        return F.linear_forward(x, weight, bias), ((x, weight) if keep else None)

    def linear_backward(self, saved, grad_out, need_input_grad=True, need_weight_grad=True):
        x, weight = saved
        grad_x, grad_w, grad_b = F.linear_backward(grad_out, x, weight)
        return (
            grad_x if need_input_grad else None,
            grad_w if need_weight_grad else None,
            grad_b if need_weight_grad else None,
        )

    def batch_norm_forward(self, x, weight, bias, eps, keep, running=None):
        mean, var = F.batch_norm_statistics(x) if running is None else running
        out, x_hat, inv_std = F.batch_norm_forward(x, weight, bias, mean, var, eps)
        saved = (x_hat, inv_std, weight, running is None) if keep else None
        return out, saved, mean, var

    def batch_norm_backward(self, saved, grad_out, need_weight_grad=True):
        x_hat, inv_std, weight, batch_statistics = saved
        grad_x, grad_w, grad_b = F.batch_norm_backward(
            grad_out, x_hat, inv_std, weight, batch_statistics
        )
        if not need_weight_grad:
            return grad_x, None, None
        return grad_x, grad_w, grad_b


# --- selection ---------------------------------------------------------------------------------
_BACKENDS: dict[str, Backend] = {"reference": ReferenceBackend()}
DEFAULT_BACKEND = "fast"
_current: ContextVar[str] = ContextVar("scratchcnn_backend", default=DEFAULT_BACKEND)


def register_backend(backend: Backend) -> None:
    """Make ``backend`` selectable by its ``name`` (the fast package registers itself)."""
    _BACKENDS[backend.name] = backend


def available_backends() -> tuple[str, ...]:
    """The names :func:`set_backend` accepts."""
    return tuple(sorted(_BACKENDS))


def get_backend() -> str:
    """The name of the backend that layers use here and now."""
    return _current.get()


def current_backend() -> Backend:
    """The backend object that layers use here and now."""
    return _BACKENDS[_current.get()]


def _check_name(name: str) -> None:
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {available_backends()}, got {name!r}")


def set_backend(name: str) -> None:
    """Select the backend for the rest of the current thread (or asyncio task).

    Args:
        name: ``"reference"`` or ``"fast"`` (see :func:`available_backends`).
    """
    _check_name(name)
    _current.set(name)


@contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Use backend ``name`` inside a ``with`` block, then restore the previous one.

    Args:
        name: ``"reference"`` or ``"fast"`` (see :func:`available_backends`).
    """
    _check_name(name)
    token = _current.set(name)
    try:
        yield _BACKENDS[name]
    finally:
        _current.reset(token)
