"""Pictures of filter ablation and feature-map clustering (:mod:`scratchcnn.analysis`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scratchcnn.viz._common import (
    draw_mosaic,
    finish,
    mosaic,
    new_figure,
    scale_to_unit,
    to_rgb_unit,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from scratchcnn.analysis.feature_clusters import FeatureClusters
    from scratchcnn.analysis.filter_ablation import FilterAblation


def _group_label(group: Sequence[int]) -> str:
    if len(group) == 1:
        return f"filter {group[0]}"
    return f"filters {group[0]}-{group[-1]}"


def plot_filter_ablation(
    result: FilterAblation,
    class_names: Sequence[str],
    rows: int = 8,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """The accuracy lost by zeroing each filter (group), sorted, and per class for the most
    and least important ones.

    Left: every group's accuracy drop in percentage points, most important first. Right: the
    per-class drop of the ``rows`` most and ``rows`` least important groups (red: the class
    lost accuracy, blue: it gained).

    Args:
        result: the :func:`scratchcnn.analysis.filter_ablation.ablate_filters` result.
        class_names: names of the classes, in label order.
        rows: how many most and least important groups the right panel shows.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    order = result.ranking()
    drop = result.drop * 100
    fig = new_figure(13.0, 4.6)
    ax_bar, ax_heat = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1.0]})
    colors = np.where(drop[order] >= 0, "tab:red", "tab:blue")
    ax_bar.bar(np.arange(len(order)), drop[order], color=colors, width=0.85)
    ax_bar.axhline(0, color="black", lw=0.6)
    ax_bar.set_xlabel(f"{result.layer} filter groups, most important first")
    ax_bar.set_ylabel("accuracy drop (points)")
    ax_bar.set_title(
        f"zeroing each of {len(order)} group(s) of {result.layer} "
        f"(accuracy {result.baseline_accuracy:.1%} with all)",
        fontsize=10,
    )
    if len(order) <= 32:
        ticks = [_group_label(result.groups[g]).replace("filter ", "") for g in order]
        ax_bar.set_xticks(np.arange(len(order)), ticks, rotation=90, fontsize=6)
    ax_bar.grid(alpha=0.3, axis="y")

    shown = list(order[:rows]) + [g for g in order[::-1][:rows] if g not in order[:rows]][::-1]
    heat = result.per_class_drop[shown] * 100  # (len(shown), K)
    limit = np.nanmax(np.abs(heat)) if np.any(np.isfinite(heat)) else 1.0
    image = ax_heat.imshow(heat, cmap="RdBu_r", vmin=-limit or -1, vmax=limit or 1, aspect="auto")
    ax_heat.set_xticks(range(len(class_names)), list(class_names), rotation=45, ha="right",
                       fontsize=7)  # fmt: skip
    ax_heat.set_yticks(range(len(shown)), [_group_label(result.groups[g]) for g in shown],
                       fontsize=7)  # fmt: skip
    ax_heat.set_title("per-class accuracy drop (points): most important on top", fontsize=10)
    fig.colorbar(image, ax=ax_heat, shrink=0.8)
    return finish(fig, path, show)


def plot_ablated_filters(
    result: FilterAblation,
    weight: np.ndarray,
    images: np.ndarray,
    top_images: np.ndarray,
    count: int = 4,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """The most and least important single filters: each filter's weights, then the images
    that excite it most.

    A filter over 3 input channels is drawn as an RGB tile; a deeper filter as the L2 norm of
    its weights over the input channels (grey: where in its window it looks). Needs an
    ablation of single filters (groups of one).

    Args:
        result: an ablation of single filters.
        weight: the ablated layer's weight.
        images: the images ``top_images`` indexes.
        top_images: each filter's most exciting images.
        count: how many most and least important filters to draw.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``weight (out_channels, in_channels, KH, KW)``; ``images (N, H, W, C)`` uint8;
    ``top_images (out_channels, k)`` indices into ``images`` from
    :func:`scratchcnn.analysis.interpret.top_activating_images`.
    """
    if any(len(group) != 1 for group in result.groups):
        raise ValueError("pictures of single filters need an ablation of groups of one filter")
    order = [result.groups[g][0] for g in result.ranking()]
    count = min(count, len(order) // 2) or 1
    picked = order[:count] + order[-count:] if len(order) > 1 else order
    drops = {result.groups[g][0]: d for g, d in enumerate(result.drop)}
    weight = np.asarray(weight, dtype=np.float64)
    k = top_images.shape[1]
    height, width = np.asarray(images).shape[1:3]
    tiles = []
    for f in picked:
        w = weight[f]  # (in_channels, KH, KW)
        tile = scale_to_unit(w).transpose(1, 2, 0) if len(w) == 3 else None
        if tile is None:
            tile = np.repeat(scale_to_unit(np.sqrt((w**2).sum(axis=0)))[..., None], 3, axis=-1)
        # nearest-neighbour upscale so the filter tile is as big as the images beside it
        rows = np.arange(height) * tile.shape[0] // height
        cols = np.arange(width) * tile.shape[1] // width
        tiles.append(tile[rows][:, cols])
        tiles.extend(to_rgb_unit(np.asarray(images)[top_images[f]]))
    canvas, centres = mosaic(np.stack(tiles), k + 1, pad=2)
    fig = new_figure((k + 1) * 0.8 + 2.0, len(picked) * 0.8 + 0.8)
    ax = fig.subplots()
    draw_mosaic(ax, canvas)
    labels = [f"filter {f}\ndrop {drops[f] * 100:.1f} pts" for f in picked]
    ax.set_yticks([centres[r * (k + 1)][1] for r in range(len(picked))], labels, fontsize=7)
    ax.tick_params(length=0)
    ax.set_title(
        f"{result.layer}: the {count} most important filters (top) and the {count} least "
        "(bottom):\ntheir weights, then the test images that excite them most",
        fontsize=9,
    )
    return finish(fig, path, show)


def plot_feature_clusters(
    result: FeatureClusters,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    per_cluster: int = 8,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """Feature-map clusters: a 2-D embedding coloured by true class, and a row of each
    cluster's most central images labelled with its size and its most common class.

    Args:
        result: the :func:`scratchcnn.analysis.feature_clusters.cluster_features` result.
        images: the clustered images.
        labels: their true classes.
        class_names: names of the classes, in label order.
        per_cluster: images shown per cluster.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``images (N, H, W, C)`` uint8, ``labels (N,)`` int, as clustered.
    """
    labels = np.asarray(labels)
    k, num_classes = result.num_clusters, len(class_names)
    histogram = result.class_histogram(labels, num_classes)
    fig = new_figure(7.0 + per_cluster * 0.75, max(5.0, k * 0.75 + 1.0))
    ax_map, ax_grid = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, per_cluster * 0.16]})
    cmap = _class_colors(num_classes)
    for c in range(num_classes):
        chosen = labels == c
        if chosen.any():
            ax_map.scatter(*result.embedding[chosen].T, s=6, color=cmap[c], label=class_names[c],
                           alpha=0.7, linewidths=0)  # fmt: skip
    for cluster in range(k):
        centre = result.embedding[result.assignments == cluster].mean(axis=0)
        circle = {"boxstyle": "circle", "fc": "white", "alpha": 0.8}
        ax_map.annotate(str(cluster), centre, fontsize=9, weight="bold", ha="center",
                        va="center", bbox=circle)  # fmt: skip
    ax_map.set_title(
        f"{result.layer}: {result.embedding_method.upper()} of the {result.pooling}-pooled "
        "feature maps\n(colour: true class; numbers: cluster centres)",
        fontsize=9,
    )
    ax_map.legend(fontsize=7, markerscale=2, loc="best")
    ax_map.set_xticks([])
    ax_map.set_yticks([])

    blank = np.ones((per_cluster, *np.asarray(images).shape[1:3], 3))
    rows = []
    row_labels = []
    for cluster in range(k):
        members = result.members(cluster)[:per_cluster]
        row = blank.copy()
        row[: len(members)] = to_rgb_unit(np.asarray(images)[members])
        rows.append(row)
        size = int(histogram[cluster].sum())
        top = int(histogram[cluster].argmax())
        share = histogram[cluster, top] / max(size, 1)
        row_labels.append(f"{cluster}: {size} img, {share:.0%} {class_names[top]}")
    canvas, centres = mosaic(np.concatenate(rows), per_cluster, pad=2)
    draw_mosaic(ax_grid, canvas)
    ax_grid.set_yticks([centres[r * per_cluster][1] for r in range(k)], row_labels, fontsize=7)
    ax_grid.tick_params(length=0)
    ax_grid.set_title("each cluster's most central images", fontsize=9)
    return finish(fig, path, show)


def _class_colors(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]
