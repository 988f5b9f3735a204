"""Classification metrics in NumPy: confusion matrix, per-class scores, top-k, ROC, calibration.

Everything here takes integer ``labels`` and either integer ``predictions`` or a matrix of class
``probabilities`` (rows sum to one), so one evaluation pass over the test set feeds all of it.
Each function matches the scikit-learn function named in its docstring (the tests check that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CalibrationResult",
    "ClassificationScores",
    "RocCurve",
    "auc",
    "calibration",
    "classification_scores",
    "confusion_matrix",
    "most_confident_mistakes",
    "normalize_rows",
    "one_vs_rest_roc",
    "roc_curve",
    "top_k_accuracy",
]


def _check_labels(labels: np.ndarray, num_classes: int, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64, copy=False)


def _check_probabilities(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != np.shape(labels)[0]:
        raise ValueError(
            f"probabilities must be (N, K) with N = {np.shape(labels)[0]} labels, "
            f"got {probabilities.shape}"
        )
    return probabilities


# --- confusion matrix and per-class scores ---------------------------------------------------
def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of images of true class ``i`` predicted as class ``j``.

    Matches ``sklearn.metrics.confusion_matrix(labels, predictions, labels=range(K))``.

    Args:
        labels: the true classes.
        predictions: the predicted classes.
        num_classes: ``K``; labels and predictions must lie in ``[0, K)``.

    Shape: ``labels (N,)``, ``predictions (N,)`` -> ``(K, K)`` int64.
    """
    labels = _check_labels(labels, num_classes)
    predictions = _check_labels(predictions, num_classes, "predictions")
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions differ in shape: {labels.shape} vs {predictions.shape}"
        )
    # Each (true, predicted) pair becomes one flat index into the K*K grid.
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Divide each row by its sum, so row ``i`` is the distribution of predictions for class ``i``.

    A row with no images stays all zero (not NaN), as with scikit-learn's ``normalize='true'``.

    Args:
        matrix: a confusion matrix of counts.

    Shape: ``(K, K) -> (K, K)`` float64.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)  # (K, 1)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


@dataclass(frozen=True)
class ClassificationScores:
    """Per-class precision, recall, F1 and support, with their macro and weighted averages.

    Recall of class ``i`` is also its per-class accuracy (the fraction of its images that were
    classified correctly). A score whose denominator is zero is 0, as scikit-learn reports it
    with ``zero_division=0``.

    Shape: ``precision``, ``recall``, ``f1``, ``support`` are all ``(K,)``.
    """

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    accuracy: float

    def average(self, kind: str = "macro") -> dict[str, float]:
        """``{"precision", "recall", "f1"}`` averaged over classes: ``macro`` or ``weighted``.

        ``macro`` weighs every class equally; ``weighted`` weighs each class by its support.
        """
        if kind == "macro":
            weights = np.ones_like(self.support, dtype=np.float64)
        elif kind == "weighted":
            weights = self.support.astype(np.float64)
        else:
            raise ValueError(f"average kind must be 'macro' or 'weighted', got {kind!r}")
        if weights.sum() == 0:
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        return {
            name: float(np.average(getattr(self, name), weights=weights))
            for name in ("precision", "recall", "f1")
        }


def classification_scores(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> ClassificationScores:
    """Per-class precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, F1 and support.

    Matches ``sklearn.metrics.precision_recall_fscore_support(..., zero_division=0)``.

    Args:
        labels: the true classes.
        predictions: the predicted classes.
        num_classes: ``K``; labels and predictions must lie in ``[0, K)``.

    Shape: ``labels (N,)``, ``predictions (N,)``.
    """
    matrix = confusion_matrix(labels, predictions, num_classes).astype(np.float64)
    true_positive = np.diag(matrix)  # (K,)
    predicted = matrix.sum(axis=0)  # TP + FP
    support = matrix.sum(axis=1)  # TP + FN

    def ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        return np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)

    precision = ratio(true_positive, predicted)
    recall = ratio(true_positive, support)
    f1 = ratio(2 * precision * recall, precision + recall)
    total = matrix.sum()
    accuracy = float(true_positive.sum() / total) if total else float("nan")
    return ClassificationScores(precision, recall, f1, support.astype(np.int64), accuracy)


def top_k_accuracy(labels: np.ndarray, probabilities: np.ndarray, k: int) -> float:
    """Fraction of images whose true class is among the ``k`` highest-scoring classes.

    Ties are broken towards the lower class index, as ``argmax`` does, so top-1 accuracy is the
    accuracy of ``probabilities.argmax(axis=1)``. (scikit-learn's ``top_k_accuracy_score``
    breaks ties towards the higher index; without ties the two agree.)

    Shape: ``labels (N,)``, ``probabilities (N, K)``.
    """
    probabilities = _check_probabilities(labels, probabilities)
    labels = _check_labels(labels, probabilities.shape[1])
    if not 1 <= k:
        raise ValueError(f"k must be >= 1, got {k}")
    if labels.size == 0:
        return float("nan")
    # The stable descending order: sort -p, keep the first k columns.
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((top == labels[:, None]).any(axis=1).mean())


# --- ROC -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RocCurve:
    """One ROC curve: false- and true-positive rates at each threshold, and its area.

    Shape: ``fpr``, ``tpr``, ``thresholds`` are ``(T,)``; ``thresholds[0]`` is ``inf``.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float  # area under the curve, by the trapezoid rule


def roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> RocCurve:
    """The ROC curve of a binary problem, one point per distinct score (plus ``(0, 0)``).

    Sort scores in decreasing order; at each distinct value count the positives (TP) and
    negatives (FP) scored at or above it. Matches ``sklearn.metrics.roc_curve(...,
    drop_intermediate=False)``; the area matches ``roc_auc_score``.

    Shape: ``is_positive (N,)`` bool, ``scores (N,)``.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if is_positive.shape != scores.shape or is_positive.ndim != 1:
        raise ValueError(
            f"is_positive and scores must be 1-D and of one shape, got {is_positive.shape} "
            f"and {scores.shape}"
        )
    num_pos = int(is_positive.sum())
    num_neg = is_positive.size - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"ROC needs positives and negatives, got {num_pos} positive and {num_neg} negative"
        )
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_positive = is_positive[order]
    # The last index of each run of equal scores: where the curve takes a step.
    last_of_run = np.flatnonzero(np.diff(sorted_scores) != 0)
    ends = np.concatenate([last_of_run, [scores.size - 1]])
    true_pos = np.cumsum(sorted_positive)[ends]
    false_pos = (ends + 1) - true_pos
    tpr = np.concatenate([[0.0], true_pos / num_pos])
    fpr = np.concatenate([[0.0], false_pos / num_neg])
    thresholds = np.concatenate([[np.inf], sorted_scores[ends]])
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds, auc=auc(fpr, tpr))


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under the piecewise-linear curve through ``(x, y)`` (trapezoidal rule).

    Shape: ``x (T,)`` non-decreasing, ``y (T,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def one_vs_rest_roc(labels: np.ndarray, probabilities: np.ndarray) -> list[RocCurve]:
    """One ROC curve per class, class ``i`` against all others, scored by ``probabilities[:, i]``.

    The mean of the areas equals ``roc_auc_score(labels, probabilities, multi_class="ovr",
    average="macro")``. A class absent from ``labels`` has no curve: ValueError.

    Shape: ``labels (N,)``, ``probabilities (N, K)`` -> ``K`` curves.
    """
    probabilities = _check_probabilities(labels, probabilities)
    labels = _check_labels(labels, probabilities.shape[1])
    return [roc_curve(labels == k, probabilities[:, k]) for k in range(probabilities.shape[1])]


# --- calibration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationResult:
    """Reliability bins of the top-class confidence, and the expected calibration error.

    Bin ``b`` holds the images whose confidence lies in ``(edges[b], edges[b + 1]]`` (the first
    bin also takes confidence exactly 0). ``accuracy[b]`` and ``confidence[b]`` are NaN for an
    empty bin. ``ece = sum_b count[b] / N * |accuracy[b] - confidence[b]|`` over non-empty bins
    (Guo et al., 2017).

    Shape: ``edges (B + 1,)``; ``accuracy``, ``confidence``, ``counts`` are ``(B,)``.
    """

    edges: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    counts: np.ndarray
    ece: float


def calibration(
    labels: np.ndarray, probabilities: np.ndarray, num_bins: int = 15
) -> CalibrationResult:
    """Bin the predicted class's probability; compare each bin's accuracy with its confidence.

    The binning is scikit-learn's ``calibration_curve(correct, confidence, n_bins=num_bins,
    strategy="uniform")``, which returns the non-empty bins' accuracy and mean confidence.

    Shape: ``labels (N,)``, ``probabilities (N, K)``.
    """
    probabilities = _check_probabilities(labels, probabilities)
    labels = _check_labels(labels, probabilities.shape[1])
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    confidence = probabilities.max(axis=1)  # (N,)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # side="left" on the inner edges puts a value equal to an edge into the bin below it.
    bins = np.searchsorted(edges[1:-1], confidence, side="left")  # (N,)
    counts = np.bincount(bins, minlength=num_bins)
    sum_correct = np.bincount(bins, weights=correct, minlength=num_bins)
    sum_confidence = np.bincount(bins, weights=confidence, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_accuracy = sum_correct / counts
        bin_confidence = sum_confidence / counts
    filled = counts > 0
    total = counts.sum()
    ece = (
        float(np.sum(counts[filled] / total * np.abs(bin_accuracy - bin_confidence)[filled]))
        if total
        else float("nan")
    )
    return CalibrationResult(edges, bin_accuracy, bin_confidence, counts, ece)


# --- mistakes --------------------------------------------------------------------------------
def most_confident_mistakes(
    labels: np.ndarray, probabilities: np.ndarray, count: int = 16
) -> np.ndarray:
    """Indices of misclassified images, the most confident wrong prediction first.

    Shape: ``labels (N,)``, ``probabilities (N, K)`` -> ``(min(count, mistakes),)`` int64.
    """
    probabilities = _check_probabilities(labels, probabilities)
    labels = _check_labels(labels, probabilities.shape[1])
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    order = np.argsort(-confidence, kind="stable")
    return wrong[order[:count]].astype(np.int64)
