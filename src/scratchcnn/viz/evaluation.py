"""Pictures of the data and of test-set results: samples, confusion, calibration, ROC, mistakes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scratchcnn.analysis import metrics
from scratchcnn.viz._common import (
    draw_mosaic,
    finish,
    grid_shape,
    image_tile,
    mosaic,
    new_figure,
    to_rgb_unit,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_samples(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    per_class: int = 8,
    rng: np.random.Generator | None = None,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """A grid of sample images: one row per class, named on the left.

    Args:
        images: the images to sample from.
        labels: their classes.
        class_names: names of the classes, in label order.
        per_class: images per row.
        rng: draws the samples; ``None``: a generator seeded with 0 (the same samples each time).
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``images (N, H, W, C)`` uint8, ``labels (N,)``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    k = len(class_names)
    labels = np.asarray(labels)
    blank = np.ones((per_class, *np.asarray(images).shape[1:3], 3))
    rows = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        chosen = np.sort(rng.choice(members, min(per_class, len(members)), replace=False))
        row = blank.copy()
        row[: len(chosen)] = to_rgb_unit(np.asarray(images)[chosen])
        rows.append(row)
    canvas, centres = mosaic(np.concatenate(rows), per_class, pad=2)
    fig = new_figure(per_class * 0.8 + 1.3, k * 0.8 + 0.3)
    ax = fig.subplots()
    draw_mosaic(ax, canvas)
    ax.set_yticks([centres[c * per_class][1] for c in range(k)], list(class_names), fontsize=8)
    ax.tick_params(length=0)
    return finish(fig, path, show)


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    normalize: bool = True,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """The confusion matrix: rows are true classes, columns predictions.

    With ``normalize`` the colours and numbers are row fractions (the diagonal is per-class
    recall); otherwise counts.

    Args:
        matrix: counts, rows true classes and columns predictions
            (:func:`scratchcnn.analysis.metrics.confusion_matrix`).
        class_names: names of the classes, in label order.
        normalize: colour each row by its fractions (the counts are written in the cells either
            way).
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``matrix (K, K)`` counts.
    """
    counts = np.asarray(matrix)
    shown = metrics.normalize_rows(counts) if normalize else counts
    k = len(class_names)
    size = max(4.0, 0.55 * k + 2.0)
    fig = new_figure(size + 0.8, size)
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else " (counts)"))
    peak = shown.max() if shown.size else 1
    for i in range(k):
        for j in range(k):
            value = shown[i, j]
            text = f"{value:.2f}" if normalize else str(int(value))
            colour = "white" if value > 0.6 * peak else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=colour)
    return finish(fig, path, show)


def plot_reliability(
    result: metrics.CalibrationResult, path: str | Path | None = None, show: bool = False
) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, and how many images each holds.

    A calibrated model's bars sit on the diagonal; bars below it mean over-confidence.

    Args:
        result: :func:`scratchcnn.analysis.metrics.calibration`'s result.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    edges = result.edges
    centres = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    filled = result.counts > 0
    fig = new_figure(5.0, 5.6)
    ax, ax_hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.bar(centres[filled], result.accuracy[filled], width[filled], edgecolor="black",
           color="tab:blue", label="accuracy")  # fmt: skip
    gap = result.confidence[filled] - result.accuracy[filled]
    ax.bar(centres[filled], gap, width[filled], bottom=result.accuracy[filled], color="tab:red",
           alpha=0.3, edgecolor="tab:red", label="gap to confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram (ECE = {result.ece:.3f})")
    ax.legend(fontsize=8, loc="upper left")
    ax_hist.bar(centres, result.counts, width, color="gray", edgecolor="black")
    ax_hist.set_xlabel("confidence (top-class probability)")
    ax_hist.set_ylabel("images")
    return finish(fig, path, show)


def plot_roc(
    curves: Sequence[metrics.RocCurve],
    class_names: Sequence[str],
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """One-vs-rest ROC curve of every class, with its AUC in the legend.

    Args:
        curves: one :class:`~scratchcnn.analysis.metrics.RocCurve` per class
            (:func:`~scratchcnn.analysis.metrics.one_vs_rest_roc`).
        class_names: names of the classes, in label order.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    import matplotlib

    colours = matplotlib.colormaps["tab10" if len(curves) <= 10 else "tab20"]
    fig = new_figure(6.0, 5.0)
    ax = fig.subplots()
    for i, (curve, name) in enumerate(zip(curves, class_names, strict=True)):
        ax.plot(curve.fpr, curve.tpr, color=colours(i % colours.N), lw=1.3,
                label=f"{name} (AUC {curve.auc:.3f})")  # fmt: skip
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=1)
    macro = float(np.mean([c.auc for c in curves]))
    ax.set_title(f"one-vs-rest ROC (macro AUC {macro:.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right")
    return finish(fig, path, show)


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    count: int = 24,
    columns: int = 8,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """The most confidently misclassified images, with true class, prediction and confidence.

    Args:
        images: the evaluated images.
        labels: their true classes.
        probabilities: the model's class probabilities for them.
        class_names: names of the classes, in label order.
        count: how many mistakes to show.
        columns: images per row.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).

    Shape: ``images (N, H, W, C)`` uint8, ``labels (N,)``, ``probabilities (N, K)``.
    """
    chosen = metrics.most_confident_mistakes(labels, probabilities, count)
    if chosen.size == 0:
        raise ValueError("no misclassified images: every prediction is right")
    rows, cols = grid_shape(len(chosen), columns)
    fig = new_figure(cols * 1.25 + 0.2, rows * 1.45 + 0.5)
    fig.suptitle("most confident mistakes (true / predicted, confidence)", fontsize=10)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(chosen):
            ax.set_visible(False)
            continue
        index = chosen[i]
        predicted = int(probabilities[index].argmax())
        title = (
            f"{class_names[labels[index]]}\n-> {class_names[predicted]} "
            f"{probabilities[index, predicted]:.0%}"
        )
        image_tile(ax, images[index], title, fontsize=6.5)
    return finish(fig, path, show)
