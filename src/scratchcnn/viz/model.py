"""Pictures of the network itself: filters, activation maps, what excites each filter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.viz._common import (
    draw_mosaic,
    finish,
    grid_shape,
    hide_axes,
    image_tile,
    mosaic,
    new_figure,
    scale_to_unit,
    to_rgb_unit,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from scratchcnn.analysis.interpret import LayerActivationStats
    from scratchcnn.data import Normalizer


def _convs(model: Layer) -> list[L.Conv2d]:
    return [m for m in model.modules() if isinstance(m, L.Conv2d)]


def _conv(model: Layer, which: int) -> L.Conv2d:
    convs = _convs(model)
    if len(convs) <= which:
        raise ValueError(
            f"the model has {len(convs)} Conv2d layer(s); asked for number {which + 1}"
        )
    return convs[which]


def plot_filters(
    model: Layer, path: str | Path | None = None, show: bool = False, columns: int = 8
) -> Figure:
    """The first conv layer's filters as small tiles, each scaled to [0, 1] on its own.

    RGB filters are drawn in colour (a tile shows which colour pattern the filter matches);
    single-channel filters in grey. Filter 0 is top left, then row by row.

    Args:
        model: a model with a convolution (the first one is drawn).
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
        columns: filters per row.

    Shape: the first conv's ``weight (out_channels, in_channels, KH, KW)``.
    """
    conv = _conv(model, 0)
    weight = conv.weight.data.astype(np.float64)  # (F, C, KH, KW)
    count, channels, kh, kw = weight.shape
    tiles = np.stack([scale_to_unit(w) for w in weight]).transpose(0, 2, 3, 1)  # (F, KH, KW, C)
    if channels != 3:
        tiles = np.repeat(tiles[..., :1], 3, axis=-1)  # grey: the first input channel
    canvas, _ = mosaic(tiles, columns, pad=1)
    rows, cols = grid_shape(count, columns)
    fig = new_figure(cols * 0.75 + 0.4, rows * 0.75 + 0.6)
    ax = fig.subplots()
    draw_mosaic(ax, canvas)
    ax.set_title(
        f"conv1: {count} filters of {channels}x{kh}x{kw}, each scaled to [0, 1]\n"
        f"(filter 0 top left, row by row)",
        fontsize=9,
    )
    return finish(fig, path, show)


def plot_filters2(
    model: Layer,
    num_filters: int = 16,
    num_channels: int = 8,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """A sample of the second conv layer's filters: rows are filters, columns input channels.

    Each filter (row) is shown in grey on one symmetric scale (mid-grey is 0, white the row's
    largest absolute weight), so a row shows how the filter weighs each first-layer map.

    Args:
        model: a model with at least two convolutions.
        num_filters: how many filters (rows).
        num_channels: how many input channels of each (columns).
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: the second conv's ``weight[:num_filters, :num_channels]``.
    """
    conv = _conv(model, 1)
    weight = conv.weight.data.astype(np.float64)[:num_filters, :num_channels]  # (F, C, KH, KW)
    count, channels, kh, kw = weight.shape
    limit = np.abs(weight).max(axis=(1, 2, 3), keepdims=True)  # (F, 1, 1, 1)
    grey = 0.5 + 0.5 * weight / np.where(limit > 0, limit, 1.0)  # symmetric per filter
    tiles = np.repeat(grey.reshape(count * channels, kh, kw, 1), 3, axis=-1)
    canvas, centres = mosaic(tiles, channels, pad=1, pad_value=-1.0)
    canvas[canvas[..., 0] < 0] = (0.55, 0.75, 1.0)  # the gaps in light blue
    fig = new_figure(channels * 0.55 + 1.4, count * 0.55 + 1.0)
    ax = fig.subplots()
    draw_mosaic(ax, canvas)
    ax.set_xticks([x for x, _ in centres[:channels]], [f"in {c}" for c in range(channels)],
                  fontsize=7)  # fmt: skip
    ax.set_yticks([centres[f * channels][1] for f in range(count)],
                  [f"filter {f}" for f in range(count)], fontsize=7)  # fmt: skip
    ax.tick_params(length=0)
    ax.set_title(
        f"conv2: filters 0-{count - 1} (rows) x input channels 0-{channels - 1} (columns),\n"
        f"{kh}x{kw} weights, grey = 0, each row on its own scale",
        fontsize=9,
    )
    return finish(fig, path, show)


def plot_activations(
    model: Layer,
    image: np.ndarray,
    normalizer: Normalizer,
    max_channels: int = 64,
    columns: int = 16,
    title: str | None = None,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """One image's feature maps through every conv and pool layer, one tile per channel.

    Each tile is scaled on its own (dark = the map's minimum; a map that is constant, such as
    a channel that does not fire, is all dark); one panel per layer, input image on top.

    Args:
        model: the model, in evaluation mode.
        image: one image.
        normalizer: the normalisation the model was trained with.
        max_channels: at most this many channels per layer.
        columns: tiles per row.
        title: the input panel's title.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``image (H, W, C)`` uint8.
    """
    import matplotlib

    from scratchcnn.analysis.interpret import feature_maps

    dtype = next((p.dtype for p in model.parameters()), np.float32)
    x = normalizer(np.asarray(image)[None]).astype(dtype)
    maps = feature_maps(model, x)
    colour = matplotlib.colormaps["viridis"]
    panels = []
    for label, activation in maps:
        shown = min(len(activation), max_channels)
        # A constant map (a channel that does not fire) is drawn dark, like zero activation.
        scaled = np.stack([scale_to_unit(a, constant=0.0) for a in activation[:shown]])
        tiles = colour(scaled)[..., :3]
        canvas, _ = mosaic(tiles, columns, pad=1)
        channels, h, w = activation.shape
        more = f", first {shown} shown" if shown < channels else ""
        panels.append((f"{label}: {channels} channels of {h}x{w}{more}", canvas))
    ratios = [1.6] + [canvas.shape[0] / canvas.shape[1] * columns / 2 + 0.3 for _, canvas in panels]
    fig = new_figure(columns * 0.55 + 0.6, sum(ratios) * 0.9 + 0.4)
    axes = fig.subplots(len(panels) + 1, 1, height_ratios=ratios)
    image_tile(axes[0], image, title or "input image", fontsize=9)
    for ax, (label, canvas) in zip(axes[1:], panels, strict=True):
        draw_mosaic(ax, canvas)
        ax.set_title(label, fontsize=9)
    return finish(fig, path, show)


def plot_top_activations(
    images: np.ndarray,
    indices: np.ndarray,
    layer_name: str,
    filters: Sequence[int] | None = None,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """For each of some filters, the dataset images that excite it most (best on the left).

    Args:
        images: the searched images.
        indices: each channel's best images, best first.
        layer_name: the layer's name, for the title.
        filters: which channels to show; ``None``: the first eight.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``images (N, H, W, C)`` uint8; ``indices (channels, k)`` from
    :func:`scratchcnn.analysis.interpret.top_activating_images`.
    """
    filters = list(range(min(8, len(indices)))) if filters is None else list(filters)
    k = indices.shape[1]
    tiles = to_rgb_unit(np.asarray(images)[indices[filters].reshape(-1)])
    canvas, centres = mosaic(tiles, k, pad=2)
    fig = new_figure(k * 0.8 + 1.2, len(filters) * 0.8 + 0.6)
    ax = fig.subplots()
    draw_mosaic(ax, canvas)
    ax.set_yticks([centres[r * k][1] for r in range(len(filters))],
                  [f"channel {f}" for f in filters], fontsize=7)  # fmt: skip
    ax.tick_params(length=0)
    ax.set_title(f"{layer_name}: the images that most activate each channel", fontsize=9)
    return finish(fig, path, show)


def plot_filter_stats(
    stats: Sequence[LayerActivationStats], path: str | Path | None = None, show: bool = False
) -> Figure:
    """Mean activation and the fractions of zero outputs and dead units, per activation layer.

    Args:
        stats: :func:`scratchcnn.analysis.interpret.activation_stats`' result.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    if not stats:
        raise ValueError("no activation layers to describe")
    names = [s.name for s in stats]
    positions = np.arange(len(stats))
    fig = new_figure(max(6.0, 1.6 * len(stats) + 2), 3.4)
    ax_mean, ax_dead = fig.subplots(1, 2)
    ax_mean.bar(positions, [s.mean_activation for s in stats], color="tab:blue")
    ax_mean.set_title("mean activation", fontsize=10)
    width = 0.4
    ax_dead.bar(
        positions - width / 2, [s.zero_fraction for s in stats], width, label="zero outputs"
    )
    ax_dead.bar(positions + width / 2, [s.dead_fraction for s in stats], width, label="dead units")
    for s, p in zip(stats, positions, strict=True):
        ax_dead.annotate(f"{s.dead_fraction:.0%}", (p + width / 2, s.dead_fraction), fontsize=7,
                         ha="center", va="bottom")  # fmt: skip
    ax_dead.set_ylim(0, 1.05)
    ax_dead.set_title("fraction <= 0, and units never positive", fontsize=10)
    ax_dead.legend(fontsize=8)
    for ax in (ax_mean, ax_dead):
        ax.set_xticks(positions, names, fontsize=7, rotation=15)
    return finish(fig, path, show)


def plot_heatmaps(
    images: np.ndarray,
    maps: dict[str, np.ndarray],
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """Images and heat maps over them (Grad-CAM, occlusion, saliency): a row per image.

    Each map is drawn with its own colour scale ("jet", red = most important); occlusion maps
    use a diverging scale centred on 0, since hiding a region can also help.

    Args:
        images: the images.
        maps: a heat map per image for each method name (``"Grad-CAM"``, ``"occlusion"``, ...).
        titles: one title per image row.
        alpha: opacity of the heat maps over the greyscale images.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``images (N, H, W, C)`` uint8; each map ``(N, H, W)``.
    """
    images = np.asarray(images)
    n = len(images)
    cols = 1 + len(maps)
    fig = new_figure(cols * 1.7 + 0.3, n * 1.8 + 0.4)
    axes = fig.subplots(n, cols, squeeze=False)
    for row in range(n):
        image_tile(axes[row, 0], images[row], titles[row] if titles else None)
        grey = images[row].mean(axis=-1) if images.shape[-1] == 3 else images[row, ..., 0]
        for col, (name, heat) in enumerate(maps.items(), start=1):
            ax = axes[row, col]
            ax.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            if "occlusion" in name.lower():
                limit = np.abs(heat[row]).max() or 1.0
                ax.imshow(heat[row], cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha + 0.15)
            else:
                ax.imshow(heat[row], cmap="jet", vmin=0, vmax=max(heat[row].max(), 1e-12),
                          alpha=alpha)  # fmt: skip
            hide_axes(ax)
            if row == 0:
                ax.set_title(name, fontsize=8)
    return finish(fig, path, show)
