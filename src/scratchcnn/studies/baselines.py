"""Classical machine-learning baselines on the trainer's own data split (scikit-learn).

What does a CNN buy over the methods that came before it? Each baseline here trains on the
same training images, is checked on the same validation images and tested on the same test
images as a CNN trained with the same data settings, because the split comes from the
trainer's own :func:`scratchcnn.training.trainer.prepare_data`.

Features, computed once per kind and shared by the models that use them (each fitted on the
training images only):

- ``pixels``: the raw pixels scaled to [0, 1], standardised per pixel;
- ``pca``: those standardised pixels projected on their first 100 principal components;
- ``hog``: histograms of oriented gradients (scikit-image; 9 orientations, a 4x4 grid of
  cells, 2x2-cell blocks: 324 numbers for any image size), standardised.

Models (scikit-learn): logistic regression and k-nearest neighbours on PCA features; a linear
SVM, an RBF-kernel SVM and a random forest on HOG features. The RBF SVM's training time grows
between the square and the cube of the number of images, so it trains on a seeded random
subset of 10,000 images by default, and every result says how many images it trained on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scratchcnn.training.trainer import TrainingData

__all__ = [
    "BASELINES",
    "FEATURES",
    "Baseline",
    "BaselineResult",
    "FeatureSet",
    "extract_features",
    "run_baselines",
]

FEATURES = ("pixels", "pca", "hog")
PCA_COMPONENTS = 100  # enough for ~90% of CIFAR-10's pixel variance, cheap for every model
HOG_CELLS = 4  # cells per image side; with 2x2-cell blocks, 3x3 blocks x 4 cells x 9 bins


@dataclass(frozen=True)
class Baseline:
    """One classical model: how it is built and what it trains on."""

    key: str  # the command-line name
    title: str  # a readable name for tables and figures
    features: str  # the feature set it uses by default
    max_train: int | None  # trains on a random subset of at most this many images; None: all
    make: Callable[[int, int], Any]  # (seed, jobs) -> an unfitted scikit-learn classifier


def _logistic(seed: int, jobs: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=1000, random_state=seed)


def _linear_svm(seed: int, jobs: int):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=0.01, max_iter=5000, random_state=seed)


def _rbf_svm(seed: int, jobs: int):
    from sklearn.svm import SVC

    return SVC(C=10.0, kernel="rbf", gamma="scale", random_state=seed)


def _random_forest(seed: int, jobs: int):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, n_jobs=jobs, random_state=seed)


def _knn(seed: int, jobs: int):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5, n_jobs=jobs)


BASELINES: dict[str, Baseline] = {
    b.key: b
    for b in (
        Baseline("logistic", "logistic regression", "pca", None, _logistic),
        Baseline("linear-svm", "linear SVM", "hog", None, _linear_svm),
        Baseline("rbf-svm", "RBF-kernel SVM", "hog", 10_000, _rbf_svm),
        Baseline("random-forest", "random forest (200 trees)", "hog", None, _random_forest),
        Baseline("knn", "k-nearest neighbours (k=5)", "pca", None, _knn),
    )
}


@dataclass
class FeatureSet:
    """One kind of features for the training, validation and test images."""

    kind: str
    train: np.ndarray  # (N_train, D)
    val: np.ndarray  # (N_val, D)
    test: np.ndarray  # (N_test, D)
    seconds: float  # time to compute (and fit) them for all three splits


@dataclass
class BaselineResult:
    """One baseline's scores and costs.

    ``key`` names the baseline (as ``--only`` takes it), ``title`` describes it, ``features`` names
    its feature set, and ``test_accuracy`` is its accuracy on the test set.
    """

    key: str
    title: str
    features: str
    train_images: int  # images it trained on
    subsampled: bool  # fewer than the whole training split
    val_accuracy: float | None  # None when the split has no validation images
    test_accuracy: float
    fit_seconds: float  # fitting the model on its features
    predict_seconds: float  # predicting the whole test set from its features
    feature_seconds: float  # computing its feature set for every split (shared by models)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)


def _pixels(images: np.ndarray) -> np.ndarray:
    """Shape: ``(N, H, W, C)`` uint8 -> ``(N, H*W*C)`` floats in [0, 1]."""
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0


def _hog(images: np.ndarray) -> np.ndarray:
    """Shape: ``(N, H, W, C)`` uint8 -> ``(N, 324)`` HOG descriptors (C = 1 or 3)."""
    from skimage.feature import hog

    images = np.asarray(images)
    height, width, channels = images.shape[1:]
    cell = (max(1, height // HOG_CELLS), max(1, width // HOG_CELLS))
    axis = -1 if channels > 1 else None
    return np.stack(
        [
            hog(
                image if channels > 1 else image[..., 0],
                orientations=9,
                pixels_per_cell=cell,
                cells_per_block=(2, 2),
                channel_axis=axis,
            )
            for image in images
        ]
    )


def extract_features(kind: str, data: TrainingData, seed: int = 0) -> FeatureSet:
    """Compute one feature set; the scaling (and PCA) is fitted on the training images only.

    Args:
        kind: the feature set's name.
        data: the trainer's split of the data.
        seed: the PCA's random state.

    Shape: returns ``(N, D)`` arrays for the training, validation and test images.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if kind not in FEATURES:
        raise ValueError(f"features must be one of {list(FEATURES)}, got {kind!r}")
    started = time.perf_counter()
    describe = _hog if kind == "hog" else _pixels
    splits = [describe(images) for images in (data.train_images, data.val_images, data.test_images)]
    scaler = StandardScaler().fit(splits[0])
    splits = [scaler.transform(x) if len(x) else x for x in splits]
    if kind == "pca":
        components = min(PCA_COMPONENTS, *splits[0].shape)
        pca = PCA(n_components=components, random_state=seed).fit(splits[0])
        splits = [pca.transform(x) if len(x) else np.zeros((0, components)) for x in splits]
    return FeatureSet(kind, *splits, seconds=time.perf_counter() - started)


def run_baselines(
    data: TrainingData,
    keys: Sequence[str] | None = None,
    features: str | None = None,
    max_train: int | None = None,
    seed: int = 0,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[BaselineResult]:
    """Fit and score the baselines ``keys`` (default: all) on ``data``'s split.

    Args:
        data: the trainer's prepared split (:func:`~scratchcnn.training.trainer.prepare_data`).
        keys: which of :data:`BASELINES`.
        features: use this feature set for every model instead of each one's own.
        max_train: train every model on at most this many images (a seeded random subset);
            a model's own limit (the RBF SVM's) still applies when it is lower.
        seed: seeds the subsets, PCA and the models.
        jobs: parallel jobs for the models that have them (random forest, k-NN).
        log: where progress lines go.
    """
    keys = list(BASELINES) if keys is None else list(keys)
    unknown = [k for k in keys if k not in BASELINES]
    if unknown or not keys:
        raise ValueError(f"unknown baselines {unknown}; known: {list(BASELINES)}")
    if features is not None and features not in FEATURES:
        raise ValueError(f"features must be one of {list(FEATURES)}, got {features!r}")
    if max_train is not None and max_train < len(np.unique(data.train_labels)):
        raise ValueError(f"max_train must be at least the number of classes, got {max_train}")
    if len(data.test_labels) == 0:
        raise ValueError("the data has no test images to score the baselines on")
    cache: dict[str, FeatureSet] = {}
    results = []
    for key in keys:
        baseline = BASELINES[key]
        kind = features or baseline.features
        if kind not in cache:
            log(f"computing {kind} features for {len(data.train_labels):,} + "
                f"{len(data.val_labels):,} + {len(data.test_labels):,} images")  # fmt: skip
            cache[kind] = extract_features(kind, data, seed)
        feature_set = cache[kind]
        limits = [n for n in (baseline.max_train, max_train) if n is not None]
        chosen = _subset(len(data.train_labels), min(limits) if limits else None, seed)
        model = baseline.make(seed, jobs)
        started = time.perf_counter()
        model.fit(feature_set.train[chosen], data.train_labels[chosen])
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        predicted = model.predict(feature_set.test)
        predict_seconds = time.perf_counter() - started
        val = None
        if len(data.val_labels):
            val = float(np.mean(model.predict(feature_set.val) == data.val_labels))
        result = BaselineResult(
            key=key,
            title=baseline.title,
            features=kind,
            train_images=len(chosen),
            subsampled=len(chosen) < len(data.train_labels),
            val_accuracy=val,
            test_accuracy=float(np.mean(predicted == data.test_labels)),
            fit_seconds=fit_seconds,
            predict_seconds=predict_seconds,
            feature_seconds=feature_set.seconds,
        )
        subset = " (a random subset)" if result.subsampled else ""
        log(f"{baseline.title} on {kind}: test accuracy {result.test_accuracy:.4f}, trained on "
            f"{result.train_images:,} images{subset} in {fit_seconds:.1f} s")  # fmt: skip
        results.append(result)
    return results


def _subset(count: int, limit: int | None, seed: int) -> np.ndarray:
    """All indices, or a seeded random ``limit`` of them (sorted)."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng([seed, 5]).choice(count, limit, replace=False))
