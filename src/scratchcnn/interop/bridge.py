"""The PyTorch bridge: the same model, the same weights, in either framework.

``to_torch(model)`` builds the identical ``torch.nn`` module (weights, biases and batch-norm
running statistics copied bit for bit, hyperparameters such as ``eps``, ``momentum``, dropout
``p`` and GELU's ``approximate`` carried over), and ``from_torch(module)`` goes the other way for
the torch layers scratchcnn has. Both sides name parameters the same way (``0.weight``,
``3.block.1.running_mean``), so state dicts move between them with
:func:`scratchcnn_state_to_torch` and :func:`load_torch_state_dict`.

=====================  ==========================================================
scratchcnn             torch
=====================  ==========================================================
Sequential             nn.Sequential
Residual               :class:`TorchResidual` (``block(x) + shortcut(x)``)
Conv2d                 nn.Conv2d (``padding`` int, pair, ``"same"`` or ``"valid"``)
Linear                 nn.Linear
MaxPool2d, AvgPool2d   nn.MaxPool2d, nn.AvgPool2d (``count_include_pad=True``)
Concat                 :class:`TorchConcat` (``branches`` as an ``nn.ModuleList``)
GlobalAvgPool2d        :class:`TorchGlobalAvgPool2d` (AdaptiveAvgPool2d(1) + Flatten)
GlobalMaxPool2d        :class:`TorchGlobalMaxPool2d` (AdaptiveMaxPool2d(1) + Flatten)
Scale                  :class:`TorchScale` (``x * scale``)
ChannelPad             :class:`TorchChannelPad` (``F.pad(x[:, :, ::s, ::s], channels)``)
BatchNorm1d/2d         nn.BatchNorm1d/2d
ReLU, LeakyReLU, GELU, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid,
Tanh, Sigmoid,         nn.Flatten, nn.Dropout
Flatten, Dropout
=====================  ==========================================================

The layer types are those of :data:`scratchcnn.layers.registry.LAYER_TYPES`, matched exactly.
A parameter's ``requires_grad`` (e.g. a frozen batch-norm scale) carries over both ways.

``from_torch`` also reads a plain ``nn.AdaptiveAvgPool2d(1)`` (or ``nn.AdaptiveMaxPool2d(1)``)
directly followed by ``nn.Flatten()`` (the usual torch spelling of global pooling) as
``GlobalAvgPool2d`` (``GlobalMaxPool2d``) + ``Flatten``, which keeps the layer indices, and so
the names, aligned. torch's ``num_batches_tracked`` counter has no scratchcnn counterpart and is
dropped.

PyTorch is an optional dependency: ``pip install 'scratchcnn[torch]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "scratchcnn.interop.bridge needs PyTorch; install it with pip install 'scratchcnn[torch]'"
    ) from error

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.layers.registry import is_registered, unsupported_layer_error

__all__ = [
    "TorchChannelPad",
    "TorchConcat",
    "TorchGlobalAvgPool2d",
    "TorchGlobalMaxPool2d",
    "TorchResidual",
    "TorchScale",
    "from_torch",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "scratchcnn_state_to_torch",
    "to_torch",
    "torch_state_to_scratchcnn",
]

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


class TorchResidual(nn.Module):
    """``block(x) + shortcut(x)``, the shortcut being the identity when ``None``.

    The torch twin of :class:`scratchcnn.layers.Residual`; its children are named ``block`` and
    ``shortcut`` so that parameter names match scratchcnn's.

    Shape: the block and the shortcut must map the input to the same shape.
    """

    def __init__(self, block: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.block(x) + skip


class TorchGlobalAvgPool2d(nn.Sequential):
    """Mean over all spatial positions: ``AdaptiveAvgPool2d(1)`` then ``Flatten()``.

    One module in the parent (so the indices of the layers after it match scratchcnn's), and
    parameter-free, so its two internal children never show up in a state dict.

    Shape: ``(N, C, H, W) -> (N, C)``.
    """

    def __init__(self) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten())


class TorchGlobalMaxPool2d(nn.Sequential):
    """Maximum over all spatial positions: ``AdaptiveMaxPool2d(1)`` then ``Flatten()``.

    The torch twin of :class:`scratchcnn.layers.GlobalMaxPool2d` (one module, no parameters).

    Shape: ``(N, C, H, W) -> (N, C)``.
    """

    def __init__(self) -> None:
        super().__init__(nn.AdaptiveMaxPool2d(1), nn.Flatten())


class TorchConcat(nn.Module):
    """Every branch on the same input, outputs concatenated on the channel axis.

    The torch twin of :class:`scratchcnn.layers.Concat`; the branches sit in an
    ``nn.ModuleList`` called ``branches``, so parameter names (``branches.1.0.weight``) match.

    Shape: ``(N, C, H, W) -> (N, C_0 + C_1 + ..., H', W')``.
    """

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class TorchScale(nn.Module):
    """``x * scale`` with a constant ``scale`` (the twin of :class:`scratchcnn.layers.Scale`).

    Shape: any -> same.
    """

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class TorchChannelPad(nn.Module):
    """Subsample by ``stride``, zero-pad channels (twin of :class:`~scratchcnn.layers.ChannelPad`).

    Shape: ``(N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = (self.out_channels - self.in_channels) // 2
        after = self.out_channels - self.in_channels - before
        kept = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(kept, (0, 0, 0, 0, before, after))  # (W, W, H, H, C, C)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


# --- scratchcnn -> torch ---------------------------------------------------------------------
def _tensor(array: np.ndarray) -> torch.Tensor:
    """A torch tensor holding a copy of ``array`` (same dtype, bit for bit)."""
    return torch.from_numpy(np.array(array, copy=True))


def _torch_dtype(layer: Layer) -> torch.dtype:
    dtype = np.dtype(layer.weight.dtype)
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"to_torch: {layer!r} has dtype {dtype}; expected float32 or float64")
    return _TORCH_DTYPES[dtype]


def _copy_into(target: torch.Tensor, source: np.ndarray) -> None:
    with torch.no_grad():
        target.copy_(_tensor(source))


def to_torch(model: Layer) -> nn.Module:
    """The identical ``torch.nn`` module, with copies of every weight and buffer.

    The result is in training mode exactly when ``model.training`` is set, like torch's own
    modules; call ``.eval()`` for inference.

    Shape: the torch module maps the same NCHW input to the same output as ``model``.
    """
    module = _to_torch(model, "")
    module.train(bool(model.training))
    torch_parameters = dict(module.named_parameters())
    for name, param in model.named_parameters():
        torch_parameters[name].requires_grad_(param.requires_grad)
    return module


def _to_torch(layer: Layer, path: str) -> nn.Module:
    if not is_registered(layer):  # exact types only: a subclass may compute something else
        raise unsupported_layer_error("to_torch", layer, path.rstrip(".") or "<root>")
    if isinstance(layer, L.Sequential):
        return nn.Sequential(
            *(_to_torch(child, f"{path}{name}.") for name, child in layer.named_children())
        )
    if isinstance(layer, L.Residual):
        shortcut = None if layer.shortcut is None else _to_torch(layer.shortcut, path + "shortcut.")
        return TorchResidual(_to_torch(layer.block, path + "block."), shortcut)
    if isinstance(layer, L.Concat):
        return TorchConcat(
            *(_to_torch(child, f"{path}{name}.") for name, child in layer.named_children())
        )
    if isinstance(layer, L.Conv2d):
        conv = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=_torch_conv_padding(layer),
            dilation=layer.dilation,
            bias=layer.bias is not None,
            dtype=_torch_dtype(layer),
        )
        _copy_into(conv.weight, layer.weight.data)
        if layer.bias is not None:
            _copy_into(conv.bias, layer.bias.data)
        return conv
    if isinstance(layer, L.Linear):
        linear = nn.Linear(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            dtype=_torch_dtype(layer),
        )
        _copy_into(linear.weight, layer.weight.data)
        if layer.bias is not None:
            _copy_into(linear.bias, layer.bias.data)
        return linear
    if isinstance(layer, (L.BatchNorm1d, L.BatchNorm2d)):
        cls = nn.BatchNorm2d if isinstance(layer, L.BatchNorm2d) else nn.BatchNorm1d
        norm = cls(
            layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=_torch_dtype(layer)
        )
        _copy_into(norm.weight, layer.weight.data)
        _copy_into(norm.bias, layer.bias.data)
        _copy_into(norm.running_mean, layer.running_mean)
        _copy_into(norm.running_var, layer.running_var)
        return norm
    if isinstance(layer, L.MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, L.AvgPool2d):
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, count_include_pad=True)
    if isinstance(layer, L.GlobalAvgPool2d):
        return TorchGlobalAvgPool2d()
    if isinstance(layer, L.GlobalMaxPool2d):
        return TorchGlobalMaxPool2d()
    if isinstance(layer, L.Scale):
        return TorchScale(layer.scale)
    if isinstance(layer, L.ChannelPad):
        return TorchChannelPad(layer.in_channels, layer.out_channels, layer.stride)
    if isinstance(layer, L.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    if isinstance(layer, L.GELU):
        return nn.GELU(approximate=layer.approximate)
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.p)
    simple = {L.ReLU: nn.ReLU, L.Tanh: nn.Tanh, L.Sigmoid: nn.Sigmoid, L.Flatten: nn.Flatten}
    if type(layer) in simple:
        return simple[type(layer)]()
    raise AssertionError(f"to_torch: {type(layer).__name__} is listed but not handled")


def _torch_conv_padding(layer: L.Conv2d) -> int | tuple[int, int] | str:
    """torch's spelling of the layer's padding; ``"same"`` keeps PyTorch's own asymmetric rule."""
    if isinstance(layer.padding, str):
        return layer.padding
    (top, bottom), (left, right) = layer.pad
    return (top, left)


# --- torch -> scratchcnn ---------------------------------------------------------------------
def from_torch(module: nn.Module, rng: np.random.Generator | None = None) -> Layer:
    """The identical scratchcnn model, with copies of every weight and buffer.

    ``rng`` seeds the dropout layers' mask generators (the only randomness a model owns).
    Raises ``ValueError`` naming the first unsupported layer and where it sits, e.g.
    ``from_torch: unsupported layer nn.LSTM at '3'``.

    Shape: the scratchcnn model maps the same NCHW input to the same output as ``module``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    model = _from_torch(module, "", rng)
    model.train(bool(module.training))
    torch_parameters = dict(module.named_parameters())
    for name, param in model.named_parameters():
        param.requires_grad = bool(torch_parameters[name].requires_grad)
    return model


def _torch_name(module: nn.Module) -> str:
    cls = type(module)
    if cls.__module__.startswith("torch.nn"):
        return f"nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _unsupported(module: nn.Module, path: str, why: str = "") -> ValueError:
    where = path.rstrip(".") or "<root>"
    detail = f" ({why})" if why else ""
    return ValueError(f"from_torch: unsupported layer {_torch_name(module)} at {where!r}{detail}")


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _np_dtype(module: nn.Module, path: str) -> type:
    dtype = module.weight.dtype
    if dtype not in (torch.float32, torch.float64):
        raise _unsupported(module, path, f"dtype {dtype}; expected float32 or float64")
    return np.float32 if dtype == torch.float32 else np.float64


def _from_torch(module: nn.Module, path: str, rng: np.random.Generator) -> Layer:
    cls = type(module)
    if cls is TorchGlobalAvgPool2d:
        return L.GlobalAvgPool2d()
    if cls is TorchGlobalMaxPool2d:
        return L.GlobalMaxPool2d()
    if cls is nn.Sequential:
        children = list(module.named_children())
        converted = []
        global_pools = {
            nn.AdaptiveAvgPool2d: L.GlobalAvgPool2d,
            nn.AdaptiveMaxPool2d: L.GlobalMaxPool2d,
        }
        for index, (name, child) in enumerate(children):
            if type(child) in global_pools:
                after = children[index + 1][1] if index + 1 < len(children) else None
                if (
                    _pair(child.output_size) != (1, 1)
                    or getattr(child, "return_indices", False)
                    or not _is_plain_flatten(after)
                ):
                    raise _unsupported(
                        child,
                        f"{path}{name}",
                        f"only {type(child).__name__}(1) followed by Flatten()",
                    )
                converted.append(global_pools[type(child)]())
                continue
            converted.append(_from_torch(child, f"{path}{name}.", rng))
        return L.Sequential(*converted)
    if cls is TorchConcat:
        return L.Concat(
            *(_from_torch(b, f"{path}branches.{i}.", rng) for i, b in enumerate(module.branches))
        )
    if cls is TorchScale:
        return L.Scale(module.scale)
    if cls is TorchChannelPad:
        return L.ChannelPad(module.in_channels, module.out_channels, module.stride)
    if cls is TorchResidual:
        shortcut = module.shortcut
        return L.Residual(
            _from_torch(module.block, path + "block.", rng),
            None if shortcut is None else _from_torch(shortcut, path + "shortcut.", rng),
        )
    if cls is nn.Conv2d:
        return _conv_from_torch(module, path)
    if cls is nn.Linear:
        dtype = _np_dtype(module, path)
        linear = L.Linear(
            module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype
        )
        state = {"weight": _array(module.weight)}
        if module.bias is not None:
            state["bias"] = _array(module.bias)
        linear.load_state_dict(state)
        return linear
    if cls in (nn.BatchNorm1d, nn.BatchNorm2d):
        if not module.affine or not module.track_running_stats or module.momentum is None:
            raise _unsupported(
                module, path, "needs affine=True, track_running_stats=True and a float momentum"
            )
        target = L.BatchNorm2d if cls is nn.BatchNorm2d else L.BatchNorm1d
        norm = target(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            dtype=_np_dtype(module, path),
        )
        norm.load_state_dict(
            {
                "weight": _array(module.weight),
                "bias": _array(module.bias),
                "running_mean": _array(module.running_mean),
                "running_var": _array(module.running_var),
            }
        )
        return norm
    if cls in (nn.MaxPool2d, nn.AvgPool2d):
        return _pool_from_torch(module, path)
    if cls is nn.LeakyReLU:
        return L.LeakyReLU(module.negative_slope)
    if cls is nn.GELU:
        return L.GELU(module.approximate)
    if cls is nn.Dropout:
        return L.Dropout(module.p, rng=np.random.default_rng(rng.integers(2**63)))
    if cls is nn.Flatten:
        if not _is_plain_flatten(module):
            raise _unsupported(module, path, "only Flatten(start_dim=1, end_dim=-1)")
        return L.Flatten()
    simple = {nn.ReLU: L.ReLU, nn.Tanh: L.Tanh, nn.Sigmoid: L.Sigmoid}
    if cls in simple:
        return simple[cls]()
    raise _unsupported(module, path)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def _is_plain_flatten(module: nn.Module | None) -> bool:
    return (
        type(module) is nn.Flatten and module.start_dim == 1 and module.end_dim == -1  # type: ignore[union-attr]
    )


def _conv_from_torch(module: nn.Conv2d, path: str) -> L.Conv2d:
    if module.groups != 1 or module.padding_mode != "zeros":
        raise _unsupported(module, path, "needs groups=1 and padding_mode='zeros'")
    padding = module.padding
    if not isinstance(padding, str):
        padding = padding[0] if padding[0] == padding[1] else tuple(padding)
    conv = L.Conv2d(
        module.in_channels,
        module.out_channels,
        module.kernel_size,
        stride=module.stride,
        padding=padding,
        dilation=module.dilation,
        bias=module.bias is not None,
        dtype=_np_dtype(module, path),
    )
    state = {"weight": _array(module.weight)}
    if module.bias is not None:
        state["bias"] = _array(module.bias)
    conv.load_state_dict(state)
    return conv


def _pool_from_torch(module: nn.Module, path: str) -> Layer:
    if module.ceil_mode:
        raise _unsupported(module, path, "ceil_mode=True")
    if isinstance(module, nn.MaxPool2d):
        if _pair(module.dilation) != (1, 1) or module.return_indices:
            raise _unsupported(module, path, "needs dilation=1 and return_indices=False")
        cls: type = L.MaxPool2d
    else:
        if not module.count_include_pad or module.divisor_override is not None:
            raise _unsupported(module, path, "needs count_include_pad=True and no divisor_override")
        cls = L.AvgPool2d
    stride = module.stride if module.stride is not None else module.kernel_size
    return cls(_pair(module.kernel_size), _pair(stride), _pair(module.padding))


# --- state dicts and checkpoints -------------------------------------------------------------
def scratchcnn_state_to_torch(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A scratchcnn ``state_dict`` as torch tensors under the same names.

    It loads with ``torch_module.load_state_dict(...)`` into the module :func:`to_torch` builds
    for that architecture (torch fills in ``num_batches_tracked`` itself).

    Args:
        state: ``model.state_dict()`` of a scratchcnn model.
    """
    return {name: _tensor(value) for name, value in state.items()}


def torch_state_to_scratchcnn(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` as NumPy arrays, minus batch norm's ``num_batches_tracked``.

    Args:
        state: ``module.state_dict()`` of a torch module.
    """
    return {
        name: _array(value)
        for name, value in state.items()
        if not name.endswith("num_batches_tracked")
    }


def load_torch_state_dict(
    model: Layer, torch_state: dict[str, torch.Tensor], strict: bool = True
) -> Layer:
    """Load a torch ``state_dict`` of a matching architecture into a scratchcnn ``model``.

    Names and shapes must match (see :meth:`Layer.load_state_dict`); returns ``model``.

    Args:
        model: the scratchcnn model to load into.
        torch_state: ``module.state_dict()`` of the torch twin.
        strict: require every name of both sides to match (else load the common ones).
    """
    model.load_state_dict(torch_state_to_scratchcnn(torch_state), strict=strict)
    return model


def load_torch_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A scratchcnn checkpoint (see :func:`scratchcnn.serialization.load_model`) as torch.

    Args:
        path: the scratchcnn model file or training checkpoint.

    Returns ``(module, metadata)``; the module is in evaluation mode.
    """
    from scratchcnn.serialization import load_model

    model, metadata = load_model(path)
    return to_torch(model).eval(), metadata
