"""Filter ablation and feature-map clustering, each checked against a second, independent way
of computing the same thing; their commands; and overlaid run curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from helpers_data import CLASS_NAMES, make_image_folder  # noqa: E402
from PIL import Image  # noqa: E402

from scratchcnn.analysis import interpret  # noqa: E402
from scratchcnn.analysis.feature_clusters import cluster_features, layer_features  # noqa: E402
from scratchcnn.analysis.filter_ablation import ablate_filters, filter_groups  # noqa: E402
from scratchcnn.cli import main  # noqa: E402
from scratchcnn.data import Normalizer, load_dataset  # noqa: E402
from scratchcnn.models import build_model, model_config, seed_cnn  # noqa: E402
from scratchcnn.serialization import save_model  # noqa: E402
from scratchcnn.training.evaluate import predict_proba  # noqa: E402

NORMALIZER = Normalizer([0.45, 0.45, 0.45], [0.25, 0.25, 0.25])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An untrained seed CNN for 8x8 images, saved as a run folder, and its test images."""
    root = tmp_path_factory.mktemp("ablation")
    data = make_image_folder(root / "images", train_per_class=4, test_per_class=20)
    rng = np.random.default_rng(1)
    model = seed_cnn(num_classes=3, image_size=8, rng=rng)
    for conv in (model[0], model[3]):  # biases too, so that pruning a filter differs from
        conv.bias.data[:] = rng.normal(0, 0.1, conv.bias.data.shape)  # zeroing its weights only
    run = root / "run"
    config = {"data": str(data), "cache_dir": str(root / "cache")}
    meta = {"class_names": list(CLASS_NAMES), "normalization": NORMALIZER.to_dict()}
    save_model(model, run / "best.safetensors", **meta, config=config, image_shape=[8, 8, 3])
    dataset = load_dataset(str(data), cache_dir=root / "cache", progress=False)
    return model, np.asarray(dataset.test_images), np.asarray(dataset.test_labels), run


def correct_per_class(model, images, labels) -> np.ndarray:
    predicted = predict_proba(model, images, NORMALIZER).argmax(axis=1)
    return np.bincount(labels[predicted == labels], minlength=3)


def pruned_copy(model, layer: int, filters) -> object:
    """A copy of the model with the filters' weights and biases set to zero."""
    copy = build_model(model_config(model))
    copy.load_state_dict(model.state_dict())
    conv = list(copy)[layer]
    conv.weight.data[list(filters)] = 0.0
    conv.bias.data[list(filters)] = 0.0
    return copy


# --- filter ablation -------------------------------------------------------------------------
@pytest.mark.parametrize(("layer", "group_size"), [("conv1", 1), ("conv2", 1), ("conv2", 5)])
def test_ablation_equals_evaluating_a_pruned_copy(setup, layer, group_size):
    model, images, labels, _ = setup
    result = ablate_filters(model, images, labels, NORMALIZER, layer, group_size=group_size,
                            batch_size=17)  # fmt: skip
    index = interpret.resolve_layer(model, layer)
    assert result.layer == layer and result.layer_index == index
    filters = list(model)[index].weight.data.shape[0]
    assert result.groups == tuple(filter_groups(filters, group_size))
    assert np.array_equal(result.baseline_correct, correct_per_class(model, images, labels))
    assert np.array_equal(result.class_counts, np.bincount(labels, minlength=3))
    for g, group in enumerate(result.groups):
        pruned = pruned_copy(model, index, group)
        assert np.array_equal(result.correct[g], correct_per_class(pruned, images, labels))
    # the ablation never changes the model
    assert np.array_equal(result.baseline_correct, correct_per_class(model, images, labels))


def test_ablation_scores_and_ranking(setup):
    model, images, labels, _ = setup
    result = ablate_filters(model, images, labels, NORMALIZER, "conv1", groups=[[0], [1, 2]])
    total = len(labels)
    assert result.baseline_accuracy == pytest.approx(result.baseline_correct.sum() / total)
    assert np.allclose(result.drop, result.baseline_accuracy - result.correct.sum(axis=1) / total)
    per_class = (result.baseline_correct - result.correct) / np.bincount(labels)
    assert np.allclose(result.per_class_drop, per_class)
    order = result.ranking()
    assert list(result.drop[order]) == sorted(result.drop, reverse=True)


def test_ablation_rejects_what_it_cannot_do(setup):
    model, images, labels, _ = setup
    with pytest.raises(ValueError, match="relu1 is ReLU. The conv layers: \\['conv1', 'conv2'\\]"):
        ablate_filters(model, images, labels, NORMALIZER, "relu1")
    with pytest.raises(ValueError, match="filter indices in \\[0, 32\\)"):
        ablate_filters(model, images, labels, NORMALIZER, "conv1", groups=[[40]])
    with pytest.raises(ValueError, match="one label per image"):
        ablate_filters(model, images, labels[:-1], NORMALIZER, "conv1")
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        filter_groups(8, 0)


def test_ablate_filters_command(setup, tmp_path, capsys):
    model, images, labels, run = setup
    out = tmp_path / "out"
    assert main(["ablate-filters", "--run", str(run), "--layer", "conv1", "--out", str(out)]) == 0
    document = json.loads((out / "ablation.json").read_text())
    result = ablate_filters(model, images, labels, NORMALIZER, "conv1")
    assert document["layer"] == "conv1" and document["images"] == len(labels)
    assert document["baseline_accuracy"] == result.baseline_accuracy
    ranked = [int(row["filters"]) for row in document["groups"]]
    assert ranked == [result.groups[g][0] for g in result.ranking()]
    assert [row["drop"] for row in document["groups"]] == sorted(result.drop, reverse=True)
    for name in ("ablation.png", "filters.png"):
        with Image.open(out / name) as picture:
            assert picture.size[0] > 300
    assert "conv1: accuracy" in capsys.readouterr().out

    grouped = tmp_path / "grouped"
    args = ["ablate-filters", "--run", str(run), "--group-size", "16", "--out", str(grouped)]
    assert main(args) == 0
    document = json.loads((grouped / "ablation.json").read_text())
    assert document["layer"] == "conv2" and len(document["groups"]) == 4  # 64 filters / 16
    assert not (grouped / "filters.png").exists()  # pictures are of single filters
    assert main(["ablate-filters", "--run", str(run), "--layer", "fc1"]) == 1
    assert "fc1 is Linear" in capsys.readouterr().err


# --- feature-map clustering ------------------------------------------------------------------
def test_layer_features_are_the_pooled_layer_outputs(setup):
    model, images, _, _ = setup
    outputs = interpret.layer_outputs(model, NORMALIZER(images).astype(np.float32))
    relu2 = interpret.layer_names(model).index("relu2")
    maps = outputs[relu2][1]
    assert np.allclose(layer_features(model, images, NORMALIZER, "relu2"), maps.mean(axis=(2, 3)))
    assert np.allclose(layer_features(model, images, NORMALIZER, "relu2", "max", batch_size=7),
                       maps.max(axis=(2, 3)))  # fmt: skip
    flat = layer_features(model, images, NORMALIZER, "relu2", "flatten")
    assert np.allclose(flat, maps.reshape(len(images), -1))
    with pytest.raises(ValueError, match="pooling must be one of"):
        layer_features(model, images, NORMALIZER, "relu2", "median")


def test_clusters_are_k_means_of_the_standardised_features(setup):
    from sklearn.decomposition import PCA

    model, images, labels, _ = setup
    result = cluster_features(model, images, NORMALIZER, num_clusters=4,
                              rng=np.random.default_rng(5))  # fmt: skip
    raw = layer_features(model, images, NORMALIZER)  # default layer: relu2 after conv2
    std = raw.std(axis=0)
    expected = (raw - raw.mean(axis=0)) / np.where(std > 0, std, 1.0)
    assert np.allclose(result.features, expected)
    assert result.layer == "relu2 (after conv2)" and result.num_clusters == 4
    # k-means at convergence: every image sits in the cluster of its nearest centre, and each
    # centre is the mean of its images
    distances = np.linalg.norm(expected[:, None] - result.centers[None], axis=2)
    assert np.array_equal(distances.argmin(axis=1), result.assignments)
    for cluster in range(4):
        members = expected[result.assignments == cluster]
        assert np.allclose(members.mean(axis=0), result.centers[cluster], atol=1e-6)
        closest = result.members(cluster)
        assert set(closest) == set(np.flatnonzero(result.assignments == cluster))
        gaps = np.linalg.norm(expected[closest] - result.centers[cluster], axis=1)
        assert np.all(np.diff(gaps) >= 0)
    # the embedding is the features' PCA (each axis up to its sign)
    plane = PCA(2).fit_transform(expected)
    signs = np.sign((plane * result.embedding).sum(axis=0))
    assert np.allclose(result.embedding, plane * signs, atol=1e-6)
    histogram = result.class_histogram(labels, 3)
    assert histogram.sum() == len(labels)
    assert np.array_equal(histogram.sum(axis=1), np.bincount(result.assignments, minlength=4))
    assert np.allclose(result.purity(labels, 3), histogram.max(axis=1) / histogram.sum(axis=1))


def test_clusters_with_tsne_and_bad_settings(setup):
    model, images, _, _ = setup
    result = cluster_features(model, images, NORMALIZER, "conv1", num_clusters=3,
                              pooling="flatten", embedding="tsne")  # fmt: skip
    assert result.embedding.shape == (len(images), 2) and np.all(np.isfinite(result.embedding))
    assert result.features.shape == (len(images), 32 * 8 * 8)
    with pytest.raises(ValueError, match="num_clusters must be in \\[2, number of images = 60\\]"):
        cluster_features(model, images, NORMALIZER, num_clusters=61)
    with pytest.raises(ValueError, match="embedding must be one of"):
        cluster_features(model, images, NORMALIZER, embedding="umap")


def test_visualize_feature_clusters(setup, tmp_path):
    _, _, _, run = setup
    out = tmp_path / "clusters.png"
    args = ["visualize", "feature-clusters", "--run", str(run), "--layer", "conv2",
            "--clusters", "5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.size[0] > 500


# --- several runs' curves --------------------------------------------------------------------
def write_history(run: Path, scale: float) -> Path:
    run.mkdir(parents=True)
    records = [
        {"epoch": e, "train_loss": scale / e, "val_loss": scale * 1.1 / e,
         "train_accuracy": 0.2 * e / scale, "val_accuracy": 0.18 * e / scale}
        for e in (1, 2, 3)
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_curves_of_several_runs_overlay_with_a_legend(tmp_path, capsys):
    from scratchcnn.viz import plot_runs

    first = write_history(tmp_path / "a" / "lr-0.1", 1.0)
    second = write_history(tmp_path / "b" / "lr-0.01", 2.0)
    fig = plot_runs({"lr-0.1": first, "lr-0.01": second})
    loss, accuracy = fig.axes
    assert [t.get_text() for t in accuracy.get_legend().get_texts()] == ["lr-0.1", "lr-0.01"]
    val_lines = [line for line in accuracy.get_lines() if line.get_linestyle() == "-"]
    assert [list(line.get_ydata()) for line in val_lines] == [
        [0.18, 0.36, 0.54],
        [0.09, 0.18, 0.27],
    ]
    assert len(loss.get_lines()) == 4  # train and validation of each run

    out = tmp_path / "curves.png"
    args = ["visualize", "curves", "--run", str(first), "--run", str(second), "--out", str(out)]
    assert main(args) == 0 and out.is_file()
    same_name = write_history(tmp_path / "c" / "lr-0.1", 3.0)
    args = ["visualize", "curves", "--run", str(first), "--run", str(same_name), "--out", str(out)]
    assert main(args) == 0
    assert main(["visualize", "filters", "--run", str(first), "--run", str(second)]) == 1
    assert "only 'curves' overlays several runs" in capsys.readouterr().err
