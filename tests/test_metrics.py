"""scratchcnn.analysis.metrics against scikit-learn, on random and structured predictions."""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.analysis import metrics

sk = pytest.importorskip("sklearn.metrics")
sk_calibration = pytest.importorskip("sklearn.calibration")


def random_predictions(seed: int, n: int = 400, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities with no relation between them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.standard_normal((n, k)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probs


def structured_predictions(seed: int, n: int = 600, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A decent classifier: the true class gets a logit boost; class 0 is confused with 1;
    probabilities are rounded so that many scores tie (exercises tie handling)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.standard_normal((n, k))
    logits[np.arange(n), labels] += 2.0
    logits[labels == 0, 1] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = np.round(probs, 2)
    probs /= probs.sum(axis=1, keepdims=True)
    return labels, probs


CASES = [random_predictions(0), random_predictions(1, n=57, k=3), structured_predictions(2)]
CASE_IDS = ["random-10", "random-3-small", "structured-ties"]


# --- basic -----------------------------------------------------------------------------------
def test_confusion_matrix_by_hand() -> None:
    labels = np.array([0, 0, 1, 2, 2, 2])
    preds = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, preds, 3), expected)
    normed = metrics.normalize_rows(expected)
    np.testing.assert_allclose(normed.sum(axis=1), 1.0)
    np.testing.assert_allclose(normed[2], [1 / 3, 0, 2 / 3])


def test_normalize_rows_keeps_empty_rows_zero() -> None:
    normed = metrics.normalize_rows(np.array([[0, 0], [1, 3]]))
    np.testing.assert_array_equal(normed, [[0, 0], [0.25, 0.75]])


def test_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="probabilities must be"):
        metrics.top_k_accuracy(np.array([0, 1]), np.ones((3, 2)) / 2, 1)


def test_perfect_classifier() -> None:
    labels = np.array([0, 1, 2, 1])
    probs = np.eye(3)[labels]
    scores = metrics.classification_scores(labels, probs.argmax(1), 3)
    assert scores.accuracy == 1.0
    assert scores.average("macro") == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert metrics.calibration(labels, probs).ece == 0.0
    assert all(c.auc == 1.0 for c in metrics.one_vs_rest_roc(labels, probs))
    assert metrics.most_confident_mistakes(labels, probs).size == 0


def test_most_confident_mistakes_order() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.4, 0.6], [0.9, 0.1], [0.95, 0.05], [0.3, 0.7]])
    np.testing.assert_array_equal(metrics.most_confident_mistakes(labels, probs), [2, 0])
    np.testing.assert_array_equal(metrics.most_confident_mistakes(labels, probs, 1), [2])


# --- against scikit-learn --------------------------------------------------------------------
@pytest.mark.parametrize(("labels", "probs"), CASES, ids=CASE_IDS)
def test_confusion_and_scores_match_sklearn(labels: np.ndarray, probs: np.ndarray) -> None:
    k = probs.shape[1]
    preds = probs.argmax(axis=1)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, preds, k),
        sk.confusion_matrix(labels, preds, labels=range(k)),
    )
    np.testing.assert_allclose(
        metrics.normalize_rows(metrics.confusion_matrix(labels, preds, k)),
        sk.confusion_matrix(labels, preds, labels=range(k), normalize="true"),
    )
    ours = metrics.classification_scores(labels, preds, k)
    p, r, f, s = sk.precision_recall_fscore_support(labels, preds, labels=range(k), zero_division=0)
    np.testing.assert_allclose(ours.precision, p)
    np.testing.assert_allclose(ours.recall, r)
    np.testing.assert_allclose(ours.f1, f)
    np.testing.assert_array_equal(ours.support, s)
    assert ours.accuracy == pytest.approx(sk.accuracy_score(labels, preds))
    for kind in ("macro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(
            labels, preds, labels=range(k), average=kind, zero_division=0
        )
        assert ours.average(kind) == pytest.approx({"precision": p, "recall": r, "f1": f})


def test_scores_with_a_never_predicted_class_match_sklearn() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0])
    preds = np.array([0, 0, 2, 2, 0, 0])  # class 1 never predicted: precision 0 by convention
    ours = metrics.classification_scores(labels, preds, 3)
    p, r, f, _ = sk.precision_recall_fscore_support(labels, preds, zero_division=0)
    np.testing.assert_allclose([ours.precision, ours.recall, ours.f1], [p, r, f])


@pytest.mark.parametrize(("labels", "probs"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_matches_sklearn(labels: np.ndarray, probs: np.ndarray, k: int) -> None:
    num_classes = probs.shape[1]
    if k >= num_classes:
        assert metrics.top_k_accuracy(labels, probs, k) == 1.0
        return
    # scikit-learn breaks ties towards the higher class index, we towards the lower (as argmax
    # does); a nudge far below the rounding step makes sklearn see our order.
    nudged = probs - 1e-9 * np.arange(num_classes)
    expected = sk.top_k_accuracy_score(labels, nudged, k=k, labels=range(num_classes))
    assert metrics.top_k_accuracy(labels, probs, k) == pytest.approx(expected)


def test_top_1_is_accuracy() -> None:
    labels, probs = random_predictions(5)
    assert metrics.top_k_accuracy(labels, probs, 1) == pytest.approx(
        (probs.argmax(1) == labels).mean()
    )


@pytest.mark.parametrize(("labels", "probs"), CASES, ids=CASE_IDS)
def test_roc_matches_sklearn(labels: np.ndarray, probs: np.ndarray) -> None:
    curves = metrics.one_vs_rest_roc(labels, probs)
    assert len(curves) == probs.shape[1]
    for k, curve in enumerate(curves):
        fpr, tpr, thresholds = sk.roc_curve(labels == k, probs[:, k], drop_intermediate=False)
        np.testing.assert_allclose(curve.fpr, fpr)
        np.testing.assert_allclose(curve.tpr, tpr)
        np.testing.assert_allclose(curve.thresholds[1:], thresholds[1:])
        assert curve.auc == pytest.approx(sk.roc_auc_score(labels == k, probs[:, k]))
    macro = np.mean([c.auc for c in curves])
    assert macro == pytest.approx(
        sk.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    )


def test_roc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="positives and negatives"):
        metrics.roc_curve(np.array([True, True]), np.array([0.1, 0.2]))


@pytest.mark.parametrize(("labels", "probs"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("num_bins", [5, 10, 15])
def test_calibration_matches_sklearn(labels: np.ndarray, probs: np.ndarray, num_bins: int) -> None:
    result = metrics.calibration(labels, probs, num_bins)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    prob_true, prob_pred = sk_calibration.calibration_curve(
        correct, confidence, n_bins=num_bins, strategy="uniform"
    )
    filled = result.counts > 0
    np.testing.assert_allclose(result.accuracy[filled], prob_true)
    np.testing.assert_allclose(result.confidence[filled], prob_pred)
    assert result.counts.sum() == len(labels)
    # ECE straight from its definition, image by image.
    edges = np.linspace(0, 1, num_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi) | ((lo == 0) & (confidence == 0))
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    assert result.ece == pytest.approx(ece)


def test_overconfident_model_has_the_expected_ece() -> None:
    # Always 90% confident, right half the time: every image in the (0.8667, 0.9333] bin.
    labels = np.array([0, 1] * 50)
    probs = np.tile([0.9, 0.1], (100, 1))
    result = metrics.calibration(labels, probs, num_bins=15)
    assert result.ece == pytest.approx(0.4)
    assert result.counts.max() == 100
