"""Classical baselines: each one against scikit-learn (and scikit-image) used directly, on the
trainer's own split of a small image folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skimage")

from helpers_data import make_image_folder  # noqa: E402

from scratchcnn.cli import main  # noqa: E402
from scratchcnn.studies.baselines import BASELINES, extract_features, run_baselines  # noqa: E402
from scratchcnn.training.config import TrainConfig  # noqa: E402
from scratchcnn.training.trainer import prepare_data  # noqa: E402


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    images = make_image_folder(root / "images", train_per_class=40, test_per_class=10, size=8)
    config = TrainConfig(data=str(images), cache_dir=str(root / "cache"), val_size=30, seed=3)
    return config, prepare_data(config)


def sklearn_directly(key: str, data, seed: int) -> np.ndarray:
    """The same model built by hand from scikit-learn and scikit-image: test predictions."""
    from skimage.feature import hog
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    def pixels(images):
        return images.reshape(len(images), -1) / 255.0

    def hogs(images):  # 8x8 images: 2x2-pixel cells, a 4x4 grid
        return np.stack(
            [
                hog(i, orientations=9, pixels_per_cell=(2, 2), cells_per_block=(2, 2),
                    channel_axis=-1)
                for i in images
            ]
        )  # fmt: skip

    describe = hogs if key in ("linear-svm", "rbf-svm", "random-forest") else pixels
    train, test = describe(data.train_images), describe(data.test_images)
    scaler = StandardScaler().fit(train)
    train, test = scaler.transform(train), scaler.transform(test)
    if describe is pixels:
        pca = PCA(n_components=min(100, *train.shape), random_state=seed).fit(train)
        train, test = pca.transform(train), pca.transform(test)
    model = {
        "logistic": LogisticRegression(C=1.0, max_iter=1000, random_state=seed),
        "linear-svm": LinearSVC(C=0.01, max_iter=5000, random_state=seed),
        "rbf-svm": SVC(C=10.0, kernel="rbf", gamma="scale", random_state=seed),
        "random-forest": RandomForestClassifier(n_estimators=200, random_state=seed),
        "knn": KNeighborsClassifier(n_neighbors=5),
    }[key]
    return model.fit(train, data.train_labels).predict(test)


def test_every_baseline_matches_scikit_learn_used_directly(split):
    _, data = split
    results = run_baselines(data, seed=3, log=lambda line: None)
    assert [r.key for r in results] == list(BASELINES)
    for result in results:
        expected = np.mean(sklearn_directly(result.key, data, 3) == data.test_labels)
        assert result.test_accuracy == pytest.approx(expected), result.key
        assert result.train_images == len(data.train_labels) == 90 and not result.subsampled
        assert 0 <= result.val_accuracy <= 1 and result.fit_seconds > 0
    # The classes differ only in colour: pixel-based (PCA) models separate them; HOG, which
    # describes edges and ignores colour, is left near chance.
    accuracy = {r.key: r.test_accuracy for r in results}
    assert accuracy["logistic"] > 0.9 and accuracy["knn"] > 0.9


def test_features_are_fitted_on_training_images_only(split):
    _, data = split
    features = extract_features("pca", data, seed=0)
    assert features.train.shape == (90, 90) and features.test.shape == (30, 90)
    assert np.allclose(features.train.mean(axis=0), 0, atol=1e-9)  # centred on training data
    assert not np.allclose(features.test.mean(axis=0), 0, atol=1e-3)
    hog = extract_features("hog", data)
    assert hog.train.shape == (90, 324) and hog.val.shape == (30, 324)


def test_subsampling_is_reported(split):
    _, data = split
    (result,) = run_baselines(data, ["knn"], features="hog", max_train=30, log=lambda s: None)
    assert result.train_images == 30 and result.subsampled and result.features == "hog"


def test_bad_choices_are_rejected(split):
    _, data = split
    with pytest.raises(ValueError, match="unknown baselines \\['svm'\\]"):
        run_baselines(data, ["svm"])
    with pytest.raises(ValueError, match="features must be one of"):
        run_baselines(data, ["knn"], features="sift")


def test_cli_uses_the_trainers_split_and_writes_the_table(split, tmp_path, capsys):
    config, data = split
    out = tmp_path / "out"
    args = ["baselines", "--data", config.data, "--cache-dir", config.cache_dir, "--val-size",
            "30", "--seed", "3", "--only", "logistic", "knn", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    document = json.loads((out / "baselines.json").read_text())
    assert document["split"]["train_images"] == len(data.train_labels)
    assert document["split"]["test_images"] == len(data.test_labels)
    direct = run_baselines(data, ["logistic", "knn"], seed=3, log=lambda s: None)
    for row, result in zip(document["results"], direct, strict=True):
        assert row["key"] == result.key and row["test_accuracy"] == result.test_accuracy
    assert (out / "baselines.csv").read_text().startswith("key,title,features,train_images")
    assert Path(out / "baselines.png").stat().st_size > 1000
    assert "logistic regression" in capsys.readouterr().out
    assert main(["baselines", "--data", config.data, "--only", "svm"]) == 1
    assert "unknown baselines ['svm']" in capsys.readouterr().err
