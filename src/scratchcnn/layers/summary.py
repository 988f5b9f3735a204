"""The architecture table: shapes, parameters, FLOPs, activation memory, receptive field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer


@dataclass
class LayerRow:
    """One line of the summary table."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    parameters: int
    flops: int
    activation_bytes: int
    receptive_field: int | None  # None once spatial structure is gone (after flatten)


def _receptive_step(layer: Layer, rf: int | None, jump: int) -> tuple[int | None, int]:
    """Grow the receptive field through one layer: ``rf += (effective_kernel - 1) * jump``."""
    if rf is None:
        return None, jump
    if isinstance(layer, (L.Conv2d, L.MaxPool2d, L.AvgPool2d)):
        dilation = layer.dilation[0] if isinstance(layer, L.Conv2d) else 1
        effective = dilation * (layer.kernel_size[0] - 1) + 1
        return rf + (effective - 1) * jump, jump * layer.stride[0]
    if isinstance(layer, L.Sequential):
        for child in layer:
            rf, jump = _receptive_step(child, rf, jump)
        return rf, jump
    if isinstance(layer, L.Residual):
        return _receptive_step(layer.block, rf, jump)
    if isinstance(layer, (L.Flatten, L.GlobalAvgPool2d, L.Linear)):
        return None, jump
    return rf, jump


def summarize(model: Layer, input_shape: tuple[int, ...], dtype=np.float32) -> list[LayerRow]:
    """Rows for each top-level layer of ``model`` on a batch of one ``input_shape`` input.

    Shape: ``input_shape`` is one example without the batch axis, e.g. ``(3, 32, 32)``.
    """
    children = list(model) if isinstance(model, L.Sequential) else [model]
    shape = (1, *input_shape)
    itemsize = np.dtype(dtype).itemsize
    rf: int | None = 1
    jump = 1
    rows = []
    for index, layer in enumerate(children):
        out_shape = tuple(layer.output_shape(shape))
        rf, jump = _receptive_step(layer, rf, jump)
        rows.append(
            LayerRow(
                name=str(index),
                kind=_describe(layer),
                input_shape=shape[1:],
                output_shape=out_shape[1:],
                parameters=layer.num_parameters(),
                flops=layer.flops(shape),
                activation_bytes=int(np.prod(out_shape)) * itemsize,
                receptive_field=rf,
            )
        )
        shape = out_shape
    return rows


def format_summary(model: Layer, input_shape: tuple[int, ...], dtype=np.float32) -> str:
    """The summary table as text, with totals (FLOPs and memory are per example, forward)."""
    rows = summarize(model, input_shape, dtype)
    header = ("#", "layer", "input", "output", "params", "FLOPs", "act. mem", "RF")
    table = [header]
    for r in rows:
        table.append(
            (
                r.name,
                r.kind,
                "x".join(map(str, r.input_shape)),
                "x".join(map(str, r.output_shape)),
                f"{r.parameters:,}",
                f"{r.flops:,}",
                _bytes(r.activation_bytes),
                "-" if r.receptive_field is None else str(r.receptive_field),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {0, 4, 5, 6, 7}
    lines = []
    for row in table:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    rule = "-" * len(lines[0])
    total_params = sum(r.parameters for r in rows)
    total_flops = sum(r.flops for r in rows)
    total_mem = sum(r.activation_bytes for r in rows)
    footer = [
        f"Total parameters: {total_params:,}",
        f"Forward FLOPs per example: {total_flops:,} ({total_flops / 1e6:.1f} MFLOP)",
        f"Activation memory per example: {_bytes(total_mem)} ({np.dtype(dtype).name})",
    ]
    return "\n".join([lines[0], rule, *lines[1:], rule, *footer])


def _describe(layer: Layer) -> str:
    """A short label such as ``Conv2d 3->32 3x3 s1 p=same``."""
    name = type(layer).__name__
    if isinstance(layer, L.Conv2d):
        k, s = layer.kernel_size, layer.stride
        channels = f"{layer.in_channels}->{layer.out_channels}"
        text = f"{name} {channels} {k[0]}x{k[1]} s{s[0]} p={layer.padding}"
        return text + (f" d{layer.dilation[0]}" if layer.dilation != (1, 1) else "")
    if isinstance(layer, (L.MaxPool2d, L.AvgPool2d)):
        return f"{name} {layer.kernel_size[0]}x{layer.kernel_size[1]} s{layer.stride[0]}"
    if isinstance(layer, L.Linear):
        return f"{name} {layer.in_features}->{layer.out_features}"
    return name


def _bytes(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"
