"""The one list of layer types that architecture configs, the PyTorch bridge and ONNX export know.

A checkpoint names its layers by these type names (``{"type": "Conv2d", ...}``), so a config
never names an arbitrary Python object. :func:`scratchcnn.models.build_model` builds only these
types; ``interop.bridge`` and ``interop.onnx_export`` convert exactly these (their tests check
that each handles every entry). Types are matched exactly: a subclass may compute something else
and must not be saved, converted or exported as its parent.

To add a layer type: add its class here, give it a ``config()`` that returns its constructor's
JSON-able arguments, and teach the bridge and the ONNX export about it.
"""

from __future__ import annotations

from scratchcnn.layers.activation import GELU, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from scratchcnn.layers.base import Layer
from scratchcnn.layers.channel_pad import ChannelPad
from scratchcnn.layers.concat import Concat
from scratchcnn.layers.container import Residual, Sequential
from scratchcnn.layers.conv import Conv2d
from scratchcnn.layers.dropout import Dropout
from scratchcnn.layers.global_max_pool import GlobalMaxPool2d
from scratchcnn.layers.linear import Linear
from scratchcnn.layers.norm import BatchNorm1d, BatchNorm2d
from scratchcnn.layers.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from scratchcnn.layers.scale import Scale

# Layers that hold other layers; a config nests their children (see models.config).
CONTAINER_TYPES: tuple[type[Layer], ...] = (Sequential, Residual, Concat)

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        *CONTAINER_TYPES,
        Conv2d,
        Linear,
        MaxPool2d,
        AvgPool2d,
        GlobalAvgPool2d,
        GlobalMaxPool2d,
        BatchNorm2d,
        BatchNorm1d,
        ReLU,
        LeakyReLU,
        GELU,
        Tanh,
        Sigmoid,
        Flatten,
        Dropout,
        Scale,
        ChannelPad,
    )
}


def is_registered(layer: Layer) -> bool:
    """Whether ``layer``'s exact type is in :data:`LAYER_TYPES`."""
    return LAYER_TYPES.get(type(layer).__name__) is type(layer)


def unsupported_layer_error(who: str, layer: Layer, where: str) -> ValueError:
    """The error the bridge and the exporter raise for a layer type they cannot convert.

    ``where`` is the layer's dotted place in the model, e.g. ``'3.block.1'`` or ``'<root>'``.
    """
    return ValueError(
        f"{who}: unsupported layer {type(layer).__name__} at {where!r}; supported layer types: "
        f"{', '.join(sorted(LAYER_TYPES))}"
    )
