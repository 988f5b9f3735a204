"""Test-time augmentation (TTA): average a model's logits over mirrored and shifted views.

The levels are airbench's (``infer`` in KellerJordan/cifar10-airbench), with ``m(v)`` the
logits of view ``v`` averaged with those of its left-right mirror, ``(f(v) + f(flip v)) / 2``:

* level 0: ``f(x)``, the image alone;
* level 1: ``m(x)``, the image and its mirror, 1/2 each;
* level 2: ``m(x) / 2 + (m(down_right(x)) + m(up_left(x))) / 4``: six views, the image and its
  mirror with weight 1/4 each, and the image translated by one pixel down-and-right and
  up-and-left (reflect padding, then a crop), each with its mirror, 1/8 each.

Logits are averaged, not probabilities, as airbench does. The views are built from the
normalised batch: reflection and mirroring commute with per-channel normalisation.

:class:`TTAModel` wraps a model so that the evaluation code (``evaluate``, ``predict_proba``)
runs with TTA unchanged; :func:`predict_logits_tta` does the same for already-normalised float
images.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from scratchcnn.layers.base import Layer

__all__ = ["TTA_LEVELS", "TTAModel", "predict_logits_tta", "tta_logits", "tta_views"]

TTA_LEVELS = (0, 1, 2)


def _check_level(level: int) -> int:
    if isinstance(level, bool) or level not in TTA_LEVELS:
        raise ValueError(
            f"tta level must be one of {TTA_LEVELS} (0 none, 1 mirror, 2 mirror and one-pixel "
            f"translations), got {level!r}"
        )
    return int(level)


def tta_views(images: np.ndarray, level: int) -> list[tuple[float, np.ndarray]]:
    """The ``(weight, view)`` pairs that TTA ``level`` averages; the weights sum to 1.

    Level 2's translations: with ``p`` the batch reflect-padded by one pixel on every side,
    ``down_right = p[..., 0:H, 0:W]`` (pixel ``(i, j)`` shows ``x[i - 1, j - 1]``) and
    ``up_left = p[..., 2:H + 2, 2:W + 2]`` (it shows ``x[i + 1, j + 1]``).

    Shape: ``images (N, C, H, W)`` -> views ``(N, C, H, W)`` each.
    """
    level = _check_level(level)
    if images.ndim != 4:
        raise ValueError(f"tta expects an (N, C, H, W) batch, got shape {images.shape}")
    if level == 0:
        return [(1.0, images)]
    mirrored = [(0.5, images), (0.5, images[..., ::-1])]
    if level == 1:
        return mirrored
    height, width = images.shape[2:]
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    down_right = padded[:, :, 0:height, 0:width]
    up_left = padded[:, :, 2 : height + 2, 2 : width + 2]
    views = [(0.5 * weight, view) for weight, view in mirrored]
    for shifted in (down_right, up_left):
        views += [(0.25 * 0.5, shifted), (0.25 * 0.5, shifted[..., ::-1])]
    return views


def tta_logits(model: Layer, images: np.ndarray, level: int) -> np.ndarray:
    """The weighted average of ``model``'s evaluation-mode logits over the views of ``level``.

    Shape: ``images (N, C, H, W)`` normalised floats -> ``(N, K)``.
    """
    weighted = [
        weight * model.forward(np.ascontiguousarray(view), training=False)
        for weight, view in tta_views(images, level)
    ]
    return sum(weighted[1:], weighted[0])


def predict_logits_tta(
    model: Layer, images: np.ndarray, level: int, batch_size: int = 500
) -> np.ndarray:
    """TTA logits for a whole set of normalised images, ``batch_size`` images at a time.

    Each image's result depends only on that image (the model runs in evaluation mode), so the
    batch size changes nothing but memory and speed.

    Args:
        model: the model, in evaluation mode.
        images: the images.
        level: the test-time augmentation level, one of :data:`TTA_LEVELS`.
        batch_size: images per forward pass.

    Shape: ``images (N, C, H, W)`` normalised floats -> ``(N, K)``.
    """
    _check_level(level)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    chunks = [
        tta_logits(model, images[start : start + batch_size], level)
        for start in range(0, len(images), batch_size)
    ]
    if not chunks:
        raise ValueError("predict_logits_tta got no images")
    return np.concatenate(chunks)


class TTAModel(Layer):
    """A model whose ``forward`` returns its TTA logits: hand it to ``evaluate``/``predict_proba``.

    ``evaluate(TTAModel(model, level=2), images, labels, normalizer)`` evaluates with TTA using
    the ordinary evaluation code. Inference only: training mode and ``backward`` raise.

    Shape: ``(N, C, H, W) -> (N, K)``, as the wrapped model.
    """

    def __init__(self, model: Layer, level: int) -> None:
        super().__init__()
        self.model = model
        self.level = _check_level(level)

    def named_children(self) -> Iterator[tuple[str, Layer]]:
        yield "model", self.model

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            raise ValueError("TTAModel is for evaluation; train the wrapped model instead")
        return tta_logits(self.model, x, self.level)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        raise RuntimeError("TTAModel is for evaluation and has no backward pass")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.model.output_shape(input_shape)

    def extra_repr(self) -> str:
        return f"level={self.level}"

    def __repr__(self) -> str:
        return f"TTAModel(level={self.level}, model={self.model!r})"
