"""The architecture table: shapes, parameters, FLOPs, activation memory, receptive field.

Works on any layer through the layer contract alone (``units``, ``output_shape``, ``flops``,
``num_parameters``, ``describe``, ``receptive_field``), so this module imports no layer class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for annotations only; never imported at run time
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


def summarize(model: Layer, input_shape: tuple[int, ...], dtype=np.float32) -> list[LayerRow]:
    """Rows for each top-level unit of ``model`` (see ``Layer.units``) on one example.

    Shape: ``input_shape`` is one example without the batch axis, e.g. ``(3, 32, 32)``.
    """
    shape = (1, *input_shape)
    itemsize = np.dtype(dtype).itemsize
    rf: int | None = 1
    jump = 1
    rows = []
    for index, layer in enumerate(model.units()):
        out_shape = tuple(layer.output_shape(shape))
        rf, jump = layer.receptive_field(rf, jump)
        rows.append(
            LayerRow(
                name=str(index),
                kind=layer.describe(),
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


def _bytes(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"
