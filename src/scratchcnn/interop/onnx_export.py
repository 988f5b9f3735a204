"""Export a scratchcnn model as an ONNX graph, built with the ``onnx`` helper API (no torch).

Every built-in layer maps to standard ONNX operators:

=====================  =============================================================
scratchcnn             ONNX
=====================  =============================================================
Conv2d                 Conv (``pads`` = ``[top, left, bottom, right]`` from ``.pad``)
MaxPool2d              MaxPool
AvgPool2d              AveragePool (``count_include_pad=1``, as in scratchcnn)
GlobalAvgPool2d        GlobalAveragePool, then Flatten (scratchcnn returns ``(N, C)``)
GlobalMaxPool2d        GlobalMaxPool, then Flatten
Linear                 Gemm (``transB=1``: the weight stays ``(out, in)``)
BatchNorm1d/2d         BatchNormalization (inference: running statistics)
ReLU, LeakyReLU,       Relu, LeakyRelu, Tanh, Sigmoid
Tanh, Sigmoid
GELU                   Gelu from opset 20; below, its formula from Erf (or Tanh) and arithmetic
Flatten                Flatten (``axis=1``)
Dropout                Identity (inference)
Residual               the block's output Add the shortcut's (or the input itself)
Concat                 every branch on the same input, then Concat (``axis=1``)
Scale                  Mul by a constant
ChannelPad             Slice (every ``stride``-th row and column), then Pad on channels
=====================  =============================================================

The layer types are those of :data:`scratchcnn.layers.registry.LAYER_TYPES`, matched exactly.

The graph takes ``input`` of shape ``(N, *input_shape)`` with a symbolic batch size ``N`` and
returns ``logits`` (or ``probabilities`` with ``softmax=True``). With a ``normalizer`` the graph
starts from ``[0, 1]`` NCHW pixels and standardises them itself. Class names and normalisation
statistics travel in the model's ``metadata_props``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.layers.registry import is_registered, unsupported_layer_error

DEFAULT_OPSET = 17  # widely supported by runtimes; GELU is then spelled out with Erf


class _GraphBuilder:
    """Collects nodes and initializers, handing out unique tensor names."""

    def __init__(self, dtype: np.dtype, opset: int) -> None:
        from onnx import helper

        self.helper = helper
        self.dtype = dtype
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._used: set[str] = set()

    def unique(self, hint: str) -> str:
        name, index = hint, 1
        while name in self._used:
            name, index = f"{hint}_{index}", index + 1
        self._used.add(name)
        return name

    def constant(self, name: str, value: np.ndarray | float) -> str:
        from onnx import numpy_helper

        array = np.asarray(value, dtype=self.dtype)
        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def int_constant(self, name: str, values: list[int]) -> str:
        """A 1-D int64 initializer (the shape-like inputs of Slice and Pad)."""
        from onnx import numpy_helper

        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attributes: Any) -> str:
        output = self.unique(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _prefix(path: str) -> str:
    return path.rstrip(".") or "model"


def _emit(layer: Layer, x: str, path: str, g: _GraphBuilder) -> str:
    """Append the nodes computing ``layer(x)``; return the output tensor's name."""
    where = _prefix(path)
    if not is_registered(layer):  # exact types only: a subclass may compute something else
        raise unsupported_layer_error("export_onnx", layer, where)
    if isinstance(layer, L.Sequential):
        for name, child in layer.named_children():
            x = _emit(child, x, f"{path}{name}.", g)
        return x
    if isinstance(layer, L.Residual):
        out = _emit(layer.block, x, path + "block.", g)
        skip = x if layer.shortcut is None else _emit(layer.shortcut, x, path + "shortcut.", g)
        return g.node("Add", [out, skip], f"{where}.add")
    if isinstance(layer, L.Concat):
        outs = [_emit(child, x, f"{path}{name}.", g) for name, child in layer.named_children()]
        return g.node("Concat", outs, f"{where}.concat", axis=1)
    if isinstance(layer, L.Conv2d):
        inputs = [x, g.constant(path + "weight", layer.weight.data)]
        if layer.bias is not None:
            inputs.append(g.constant(path + "bias", layer.bias.data))
        (top, bottom), (left, right) = layer.pad
        return g.node(
            "Conv",
            inputs,
            f"{where}.conv",
            kernel_shape=list(layer.kernel_size),
            strides=list(layer.stride),
            dilations=list(layer.dilation),
            pads=[top, left, bottom, right],
        )
    if isinstance(layer, L.Linear):
        inputs = [x, g.constant(path + "weight", layer.weight.data)]
        if layer.bias is not None:
            inputs.append(g.constant(path + "bias", layer.bias.data))
        return g.node("Gemm", inputs, f"{where}.gemm", transB=1)
    if isinstance(layer, (L.BatchNorm1d, L.BatchNorm2d)):
        inputs = [x] + [
            g.constant(path + name, value)
            for name, value in (
                ("weight", layer.weight.data),
                ("bias", layer.bias.data),
                ("running_mean", layer.running_mean),
                ("running_var", layer.running_var),
            )
        ]
        return g.node("BatchNormalization", inputs, f"{where}.batchnorm", epsilon=layer.eps)
    if isinstance(layer, (L.MaxPool2d, L.AvgPool2d)):
        (top, bottom), (left, right) = layer.pad
        attributes: dict[str, Any] = {
            "kernel_shape": list(layer.kernel_size),
            "strides": list(layer.stride),
            "pads": [top, left, bottom, right],
        }
        if isinstance(layer, L.MaxPool2d):
            return g.node("MaxPool", [x], f"{where}.maxpool", **attributes)
        return g.node("AveragePool", [x], f"{where}.avgpool", count_include_pad=1, **attributes)
    if isinstance(layer, L.GlobalAvgPool2d):
        pooled = g.node("GlobalAveragePool", [x], f"{where}.globalavgpool")  # (N, C, 1, 1)
        return g.node("Flatten", [pooled], f"{where}.flatten", axis=1)  # (N, C)
    if isinstance(layer, L.GlobalMaxPool2d):
        pooled = g.node("GlobalMaxPool", [x], f"{where}.globalmaxpool")  # (N, C, 1, 1)
        return g.node("Flatten", [pooled], f"{where}.flatten", axis=1)  # (N, C)
    if isinstance(layer, L.Scale):
        return g.node("Mul", [x, g.constant(f"{where}.scale", layer.scale)], f"{where}.mul")
    if isinstance(layer, L.ChannelPad):
        return _emit_channel_pad(layer, x, where, g)
    if isinstance(layer, L.Flatten):
        return g.node("Flatten", [x], f"{where}.flatten", axis=1)
    if isinstance(layer, L.ReLU):
        return g.node("Relu", [x], f"{where}.relu")
    if isinstance(layer, L.LeakyReLU):
        return g.node("LeakyRelu", [x], f"{where}.leakyrelu", alpha=layer.negative_slope)
    if isinstance(layer, L.Tanh):
        return g.node("Tanh", [x], f"{where}.tanh")
    if isinstance(layer, L.Sigmoid):
        return g.node("Sigmoid", [x], f"{where}.sigmoid")
    if isinstance(layer, L.GELU):
        return _emit_gelu(layer, x, where, g)
    if isinstance(layer, L.Dropout):
        return g.node("Identity", [x], f"{where}.dropout")
    raise AssertionError(f"export_onnx: {type(layer).__name__} is listed but not handled")


def _emit_channel_pad(layer: L.ChannelPad, x: str, where: str, g: _GraphBuilder) -> str:
    """``x[:, :, ::s, ::s]`` (Slice with steps), then zero channels on both sides (Pad)."""
    if layer.stride > 1:
        ends = [np.iinfo(np.int64).max] * 2  # "to the end" in ONNX's Slice
        x = g.node(
            "Slice",
            [
                x,
                g.int_constant(f"{where}.starts", [0, 0]),
                g.int_constant(f"{where}.ends", ends),
                g.int_constant(f"{where}.axes", [2, 3]),
                g.int_constant(f"{where}.steps", [layer.stride, layer.stride]),
            ],
            f"{where}.subsample",
        )
    after = layer.out_channels - layer.in_channels - layer.pad_before
    # pads: [begin of N, C, H, W, then end of N, C, H, W]
    pads = g.int_constant(f"{where}.pads", [0, layer.pad_before, 0, 0, 0, after, 0, 0])
    return g.node("Pad", [x, pads], f"{where}.pad", mode="constant")


def _emit_gelu(layer: L.GELU, x: str, where: str, g: _GraphBuilder) -> str:
    """``0.5 * x * (1 + erf(x / sqrt 2))``, or its tanh approximation; one Gelu from opset 20."""
    if g.opset >= 20:
        return g.node("Gelu", [x], f"{where}.gelu", approximate=layer.approximate)
    if layer.approximate == "tanh":
        cube = g.node("Mul", [x, g.node("Mul", [x, x], f"{where}.sq")], f"{where}.cube")
        scaled_cube = g.node("Mul", [cube, g.constant(f"{where}.c", 0.044715)], f"{where}.ccube")
        inner = g.node("Add", [x, scaled_cube], f"{where}.inner")
        inner = g.node(
            "Mul", [inner, g.constant(f"{where}.k", math.sqrt(2.0 / math.pi))], f"{where}.kinner"
        )
        shape = g.node("Tanh", [inner], f"{where}.tanh")
    else:
        scaled = g.node("Div", [x, g.constant(f"{where}.sqrt2", math.sqrt(2.0))], f"{where}.div")
        shape = g.node("Erf", [scaled], f"{where}.erf")
    one_plus = g.node("Add", [shape, g.constant(f"{where}.one", 1.0)], f"{where}.add")
    half_x = g.node("Mul", [x, g.constant(f"{where}.half", 0.5)], f"{where}.halfx")
    return g.node("Mul", [half_x, one_plus], f"{where}.gelu")


def build_onnx_model(
    model: Layer,
    input_shape: tuple[int, ...],
    softmax: bool = False,
    normalizer: Any | None = None,
    metadata: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
):
    """The ONNX ``ModelProto`` of ``model`` (in evaluation mode), checked by ``onnx.checker``.

    ``input_shape`` excludes the batch axis, e.g. ``(3, 32, 32)``. ``normalizer`` (a
    :class:`scratchcnn.data.Normalizer`) puts ``(x - mean) / std`` at the graph's start.
    ``metadata`` entries (JSON-able) are stored as ``metadata_props``.

    Args:
        model: the model.
        input_shape: one example's shape, without the batch axis.
        softmax: end the graph with a softmax (probabilities instead of logits).
        normalizer: a :class:`scratchcnn.data.Normalizer` applied first, inside the graph.
        metadata: JSON-able entries stored as ``metadata_props``.
        opset: the ONNX opset version, ``>= 13``.

    Shape: ``input (N, *input_shape) -> logits or probabilities (N, K)``.
    """
    import onnx
    from onnx import helper

    if opset < 13:
        raise ValueError(f"opset must be >= 13, got {opset}")
    dtype = np.dtype(next((p.dtype for p in model.parameters()), np.float32))
    elem_type = helper.np_dtype_to_tensor_dtype(dtype)
    g = _GraphBuilder(dtype, opset)
    g.unique("input")
    x = "input"
    if normalizer is not None:
        mean = np.asarray(normalizer.mean).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        inv_std = 1.0 / np.asarray(normalizer.std).reshape(1, -1, 1, 1)
        x = g.node("Sub", [x, g.constant("normalize.mean", mean)], "normalize.sub")
        x = g.node("Mul", [x, g.constant("normalize.inv_std", inv_std)], "normalize.mul")
    out = _emit(model, x, "", g)
    output_name = "probabilities" if softmax else "logits"
    if softmax:
        g.nodes.append(helper.make_node("Softmax", [out], [output_name], axis=1))
    else:
        g.nodes.append(helper.make_node("Identity", [out], [output_name]))
    output_shape = model.output_shape((1, *input_shape))
    graph = helper.make_graph(
        g.nodes,
        "scratchcnn",
        [helper.make_tensor_value_info("input", elem_type, ["N", *input_shape])],
        [helper.make_tensor_value_info(output_name, elem_type, ["N", *output_shape[1:]])],
        initializer=g.initializers,
    )
    onnx_model = helper.make_model(
        graph,
        producer_name="scratchcnn",
        opset_imports=[helper.make_opsetid("", opset)],
    )
    onnx_model.ir_version = min(onnx_model.ir_version, 10)  # readable by older runtimes
    props = dict(metadata or {})
    if normalizer is not None:
        props["normalization_in_graph"] = True
    helper.set_model_props(onnx_model, {k: json.dumps(v) for k, v in props.items()})
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def export_onnx(
    model: Layer,
    path: str | Path,
    input_shape: tuple[int, ...],
    softmax: bool = False,
    normalizer: Any | None = None,
    metadata: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` to ``path`` as ONNX (see :func:`build_onnx_model`); returns the path.

    Args:
        model: the model.
        path: the ``.onnx`` file to write.
        input_shape: one example's shape, without the batch axis, e.g. ``(3, 32, 32)``.
        softmax: end the graph with a softmax (probabilities instead of logits).
        normalizer: a :class:`scratchcnn.data.Normalizer` to apply first, inside the graph.
        metadata: JSON-able entries stored as the model's ``metadata_props``.
        opset: the ONNX opset version, ``>= 13``.
    """
    from scratchcnn.serialization import atomic_write_bytes

    onnx_model = build_onnx_model(model, input_shape, softmax, normalizer, metadata, opset)
    path = Path(path)
    atomic_write_bytes(path, onnx_model.SerializeToString())
    return path


def export_checkpoint(
    checkpoint: str | Path,
    path: str | Path,
    input_shape: tuple[int, ...] | None = None,
    softmax: bool = False,
    include_normalization: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export a saved scratchcnn model or checkpoint (see ``load_model``) to ONNX.

    The input shape comes from the checkpoint's ``image_shape`` (H, W, C) when not given;
    class names and normalisation statistics are copied into the ONNX metadata.

    Args:
        checkpoint: the saved model or training checkpoint.
        path: the ``.onnx`` file to write.
        input_shape: one example's shape without the batch axis; ``None``: from the checkpoint.
        softmax: end the graph with a softmax.
        include_normalization: put the checkpoint's normalisation at the graph's start.
        opset: the ONNX opset version, ``>= 13``.
    """
    from scratchcnn.data import Normalizer
    from scratchcnn.serialization import load_model

    model, meta = load_model(checkpoint)
    if input_shape is None:
        if "image_shape" not in meta:
            raise ValueError(
                f"{checkpoint} does not record its input shape; give it "
                "(e.g. --input-shape 3 32 32)"
            )
        height, width, channels = meta["image_shape"]
        input_shape = (channels, height, width)
    normalizer = None
    if include_normalization:
        if "normalization" not in meta:
            raise ValueError(f"{checkpoint} has no normalisation statistics to include")
        normalizer = Normalizer.from_dict(meta["normalization"])
    metadata = {key: meta[key] for key in ("class_names", "normalization") if key in meta}
    return export_onnx(model, path, tuple(input_shape), softmax, normalizer, metadata, opset)
