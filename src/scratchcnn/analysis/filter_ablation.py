"""Filter ablation: how much each filter of a conv layer matters, class by class.

Zeroing filter ``k`` of a ``Conv2d`` (its weights and its bias) makes output channel ``k`` zero
at every position, as if the filter were pruned. Doing that for each filter (or group of
filters) in turn and classifying a set of images each time gives, per filter, the drop in
accuracy overall and on each class: a filter whose removal costs a lot is important, one whose
removal costs nothing is redundant (Morcos et al., 2018, "On the importance of single
directions for generalization").

The images pass through the layers up to the conv once per batch; only the layers after it run
again for each ablation, on a copy of the conv's output with the chosen channels zeroed. The
model itself is never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scratchcnn import layers as L
from scratchcnn.analysis import interpret
from scratchcnn.data import Normalizer
from scratchcnn.layers.base import Layer

__all__ = ["FilterAblation", "ablate_filters", "filter_groups", "resolve_conv"]


@dataclass(frozen=True)
class FilterAblation:
    """Accuracy with each group of filters of one conv layer zeroed, overall and per class."""

    layer: str  # e.g. "conv2"
    layer_index: int  # its index among the model's top-level layers
    groups: tuple[tuple[int, ...], ...]  # the filters zeroed together, one group per ablation
    class_counts: np.ndarray  # (K,) images of each class
    baseline_correct: np.ndarray  # (K,) correctly classified images per class, nothing zeroed
    correct: np.ndarray  # (G, K) the same with each group zeroed

    @property
    def baseline_accuracy(self) -> float:
        """The accuracy with every filter in place."""
        return float(self.baseline_correct.sum() / self.class_counts.sum())

    @property
    def accuracy(self) -> np.ndarray:
        """(G,) accuracy with each group zeroed."""
        return self.correct.sum(axis=1) / self.class_counts.sum()

    @property
    def drop(self) -> np.ndarray:
        """(G,) accuracy lost by zeroing each group (negative: zeroing it helped)."""
        return self.baseline_accuracy - self.accuracy

    @property
    def baseline_per_class(self) -> np.ndarray:
        """(K,) per-class accuracy with nothing zeroed (NaN for a class with no images)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.baseline_correct / self.class_counts

    @property
    def per_class_drop(self) -> np.ndarray:
        """(G, K) per-class accuracy lost by zeroing each group."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.baseline_correct - self.correct) / self.class_counts

    def ranking(self) -> np.ndarray:
        """Group indices from most to least important (largest accuracy drop first)."""
        return np.argsort(-self.drop, kind="stable")


def resolve_conv(model: Layer, layer: int | str | None = None) -> int:
    """The index of a ``Conv2d`` among the model's top-level layers (default: the last one).

    Args:
        model: the model.
        layer: index or name (``"conv2"``) of a top-level ``Conv2d``; ``None``: the last one.
    """
    names = interpret.layer_names(model)
    children = list(model)
    convs = [i for i, child in enumerate(children) if isinstance(child, L.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer to ablate")
    if layer is None:
        return convs[-1]
    index = interpret.resolve_layer(model, layer)
    if index not in convs:
        raise ValueError(
            f"filter ablation zeroes the filters of a Conv2d layer; {names[index]} is "
            f"{type(children[index]).__name__}. The conv layers: {[names[i] for i in convs]}"
        )
    return index


def filter_groups(num_filters: int, group_size: int = 1) -> list[tuple[int, ...]]:
    """Consecutive groups of ``group_size`` filters (the last one may be smaller).

    Args:
        num_filters: the layer's output channels.
        group_size: filters per group.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    return [
        tuple(range(start, min(start + group_size, num_filters)))
        for start in range(0, num_filters, group_size)
    ]


def ablate_filters(
    model: Layer,
    images: np.ndarray,
    labels: np.ndarray,
    normalizer: Normalizer,
    layer: int | str | None = None,
    groups: Sequence[Sequence[int]] | None = None,
    group_size: int = 1,
    batch_size: int = 250,
) -> FilterAblation:
    """Zero each group of filters of a conv layer in turn and count correct images per class.

    Args:
        model: a ``Sequential`` classifier ending in logits.
        images: uint8 images, normalised with ``normalizer`` as the model expects.
        labels: their classes.
        layer: the conv layer, by index or name (``"conv2"``); default the last conv.
        groups: the filter groups to zero, e.g. ``[[0], [1, 2]]``; default consecutive groups of
            ``group_size`` covering every filter.
        group_size: filters per group when ``groups`` is not given.
        batch_size: images per forward pass.

    Shape: ``images (N, H, W, C)`` uint8, ``labels (N,)``.
    """
    index = resolve_conv(model, layer)
    children = list(model)
    conv = children[index]
    num_filters = conv.weight.data.shape[0]
    if groups is None:
        chosen = filter_groups(num_filters, group_size)
    else:
        chosen = [tuple(int(f) for f in group) for group in groups]
        bad = [g for g in chosen if not g or min(g) < 0 or max(g) >= num_filters]
        if not chosen or bad:
            raise ValueError(
                f"groups must be non-empty lists of filter indices in [0, {num_filters}), "
                f"got {bad or chosen}"
            )
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images) or len(labels) == 0:
        raise ValueError(
            f"need one label per image and at least one image, got {len(images)} images and "
            f"{len(labels)} labels"
        )
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    prefix, suffix = children[: index + 1], children[index + 1 :]

    def logits_from(x: np.ndarray) -> np.ndarray:
        for child in suffix:
            x = child.forward(x, training=False)
        return x

    baseline: np.ndarray | None = None  # (K,) correct per class
    correct: np.ndarray | None = None  # (G, K)
    for start in range(0, len(images), batch_size):
        x = normalizer(np.asarray(images[start : start + batch_size])).astype(dtype, copy=False)
        target = labels[start : start + batch_size]
        for child in prefix:
            x = child.forward(x, training=False)  # (B, filters, h, w): the conv's output
        logits = logits_from(x)
        if baseline is None:
            num_classes = logits.shape[1]
            if labels.min() < 0 or labels.max() >= num_classes:
                raise ValueError(
                    f"labels must lie in [0, {num_classes}) for a model with {num_classes} "
                    f"outputs, got [{labels.min()}, {labels.max()}]"
                )
            baseline = np.zeros(num_classes, np.int64)
            correct = np.zeros((len(chosen), num_classes), np.int64)
        baseline += _correct_per_class(logits, target, len(baseline))
        for g, group in enumerate(chosen):
            ablated = x.copy()
            ablated[:, list(group)] = 0.0  # as if the group's weights and biases were zero
            correct[g] += _correct_per_class(logits_from(ablated), target, len(baseline))
    return FilterAblation(
        layer=interpret.layer_names(model)[index],
        layer_index=index,
        groups=tuple(chosen),
        class_counts=np.bincount(labels, minlength=len(baseline)),
        baseline_correct=baseline,
        correct=correct,
    )


def _correct_per_class(logits: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """Shape: ``logits (B, K)``, ``target (B,)`` -> ``(K,)`` correctly classified per class."""
    hits = target[logits.argmax(axis=1) == target]
    return np.bincount(hits, minlength=num_classes)
