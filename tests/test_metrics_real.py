"""The metrics against scikit-learn on real predictions: the committed model on CIFAR-10 images."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

# The module, not its functions: imported test_* names would be collected here a second time.
import test_metrics as against_sklearn
from PIL import Image

from scratchcnn.data import Normalizer
from scratchcnn.serialization import load_model
from scratchcnn.training import predict_proba

ROOT = Path(__file__).resolve().parents[1]
CIFAR_ZIP = ROOT.parent / "shared/datasets/cifar10-jpeg.zip"
MODEL = ROOT / "models/seed_cnn_cifar10.safetensors"
PER_CLASS = 100


@pytest.fixture(scope="module")
def real_predictions() -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities of the committed model on 1,000 real test images."""
    if not CIFAR_ZIP.is_file() or not MODEL.is_file():
        pytest.skip(f"needs {CIFAR_ZIP} and {MODEL}")
    model, meta = load_model(MODEL)
    images, labels = [], []
    with zipfile.ZipFile(CIFAR_ZIP) as archive:
        for label, name in enumerate(meta["class_names"]):
            members = sorted(
                m
                for m in archive.namelist()
                if m.startswith(f"test/{name}/") and m.endswith(".jpg")
            )[:PER_CLASS]
            for member in members:
                with Image.open(io.BytesIO(archive.read(member))) as image:
                    images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
                labels.append(label)
    probs = predict_proba(model, np.stack(images), Normalizer.from_dict(meta["normalization"]))
    return np.array(labels), probs


def test_real_predictions_are_a_meaningful_case(real_predictions):
    labels, probs = real_predictions
    accuracy = (probs.argmax(axis=1) == labels).mean()
    assert 0.6 < accuracy < 1.0  # mistakes of every kind, so every metric has work to do


def test_confusion_and_scores(real_predictions):
    against_sklearn.test_confusion_and_scores_match_sklearn(*real_predictions)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k(real_predictions, k):
    against_sklearn.test_top_k_matches_sklearn(*real_predictions, k)


def test_roc(real_predictions):
    against_sklearn.test_roc_matches_sklearn(*real_predictions)


@pytest.mark.parametrize("num_bins", [10, 15])
def test_calibration(real_predictions, num_bins):
    against_sklearn.test_calibration_matches_sklearn(*real_predictions, num_bins)
