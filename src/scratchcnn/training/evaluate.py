"""Evaluation: predictions, loss and accuracy of a model over a whole image set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchcnn.backend import current_backend
from scratchcnn.data import Normalizer
from scratchcnn.functional.loss import log_softmax
from scratchcnn.layers import fuse
from scratchcnn.layers.base import Layer
from scratchcnn.training.tta import TTAModel


@dataclass
class Evaluation:
    """Loss, accuracy and per-image class probabilities of one evaluation pass.

    ``loss`` is the mean cross-entropy, ``accuracy`` the fraction classified right;
    ``probabilities`` is ``(N, K)`` and ``labels`` ``(N,)``.
    """

    loss: float
    accuracy: float
    probabilities: np.ndarray  # (N, K)
    labels: np.ndarray  # (N,)

    @property
    def predictions(self) -> np.ndarray:
        """The most probable class of each image, ``(N,)``."""
        return self.probabilities.argmax(axis=1)

    def per_class_accuracy(self, num_classes: int | None = None) -> np.ndarray:
        """Accuracy on the images of each true class (NaN for a class with no images)."""
        k = num_classes or self.probabilities.shape[1]
        correct = np.bincount(self.labels, self.predictions == self.labels, minlength=k)
        total = np.bincount(self.labels, minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return correct / total


def predict_proba(
    model: Layer,
    images: np.ndarray,
    normalizer: Normalizer,
    batch_size: int = 500,
    dtype: type = np.float32,
    tta: int = 0,
) -> np.ndarray:
    """Class probabilities for uint8 images, in evaluation mode, batch by batch (the model
    runs fused, see :func:`scratchcnn.layers.fuse`).

    Args:
        model: the model (it runs fused).
        images: the images.
        normalizer: the normalisation the model was trained with.
        batch_size: images per forward pass.
        dtype: the dtype the batches are cast to (the model's).
        tta: the test-time augmentation level (:mod:`scratchcnn.training.tta`): 0 none, 1 the
            image and its mirror, 2 also one-pixel translations; the softmax is taken of the
            averaged logits.

    Shape: ``images (N, H, W, C)`` uint8 -> ``(N, K)``.
    """
    chunks = []
    fused = fuse(model)
    if tta:
        fused = TTAModel(fused, tta)
    with current_backend().compute_scope():
        for start in range(0, len(images), batch_size):
            batch = np.asarray(images[start : start + batch_size])
            x = normalizer(batch).astype(dtype, copy=False)
            logits = fused.forward(x, training=False).astype(np.float64)
            chunks.append(np.exp(log_softmax(logits)))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0))


def evaluate(
    model: Layer,
    images: np.ndarray,
    labels: np.ndarray,
    normalizer: Normalizer,
    batch_size: int = 500,
    dtype: type = np.float32,
    tta: int = 0,
) -> Evaluation:
    """Mean cross-entropy and accuracy over ``images`` (uint8 NHWC) and integer ``labels``.

    Args:
        model: the model (it runs fused).
        images: the images.
        labels: their true classes.
        normalizer: the normalisation the model was trained with.
        batch_size: images per forward pass.
        dtype: the dtype the batches are cast to (the model's).
        tta: the test-time augmentation level (see :func:`predict_proba`).
    """
    probs = predict_proba(model, images, normalizer, batch_size, dtype, tta)
    labels = np.asarray(labels, dtype=np.int64)
    picked = probs[np.arange(len(labels)), labels]
    loss = float(-np.log(np.maximum(picked, 1e-300)).mean()) if len(labels) else float("nan")
    accuracy = float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")
    return Evaluation(loss=loss, accuracy=accuracy, probabilities=probs, labels=labels)
