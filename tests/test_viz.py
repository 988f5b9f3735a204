"""scratchcnn.viz: every plot renders to a valid PNG, shows what it says, and pyplot stays out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from scratchcnn import viz
from scratchcnn.analysis import interpret, metrics  # noqa: E402
from scratchcnn.data import Normalizer  # noqa: E402
from scratchcnn.models import seed_cnn  # noqa: E402
from scratchcnn.optim.lr_finder import LRFinderResult  # noqa: E402

CLASSES = ["cat", "dog", "ship"]


@pytest.fixture(scope="module")
def setup() -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(30) % 3
    model = seed_cnn(num_classes=3, image_size=16, rng=rng)
    normalizer = Normalizer.fit(images)
    probs = rng.dirichlet(np.ones(3), 30)
    return {
        "images": images,
        "labels": labels,
        "model": model,
        "normalizer": normalizer,
        "probs": probs,
    }


def check_png(path: Path, min_size: tuple[int, int] = (200, 150)) -> None:
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5  # something was drawn, not a blank canvas


# --- the write-up's pictures -----------------------------------------------------------------
def test_samples_grid(setup: dict, tmp_path: Path) -> None:
    fig = viz.plot_samples(setup["images"], setup["labels"], CLASSES, per_class=4,
                           path=tmp_path / "s.png")  # fmt: skip
    check_png(tmp_path / "s.png")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    canvas = ax.images[0].get_array()
    assert canvas.shape == (3 * 18 - 2, 4 * 18 - 2, 3)  # 3 rows x 4 tiles of 16 px, 2 px gaps
    # Row c holds images of class c.
    first_cat = setup["images"][setup["labels"] == 0]
    tile = np.asarray(canvas[:16, :16]) * 255
    assert any(np.allclose(tile, im) for im in first_cat)


def test_first_layer_filters(setup: dict, tmp_path: Path) -> None:
    fig = viz.plot_filters(setup["model"], path=tmp_path / "f.png")
    check_png(tmp_path / "f.png")
    canvas = np.asarray(fig.axes[0].images[0].get_array())
    assert canvas.shape == (4 * 4 - 1, 8 * 4 - 1, 3)  # 32 tiles of 3x3 in 4 rows of 8
    weight = setup["model"][0].weight.data
    for index in (0, 9, 31):
        r, c = divmod(index, 8)
        tile = canvas[4 * r : 4 * r + 3, 4 * c : 4 * c + 3]
        assert tile.min() == 0.0 and tile.max() == 1.0
        expected = weight[index].transpose(1, 2, 0)
        np.testing.assert_allclose(np.argsort(tile, axis=None), np.argsort(expected, axis=None))


def test_second_layer_filters(setup: dict, tmp_path: Path) -> None:
    fig = viz.plot_filters2(setup["model"], num_filters=16, num_channels=8, path=tmp_path / "g.png")
    check_png(tmp_path / "g.png")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"in {c}" for c in range(8)]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"filter {f}" for f in range(16)]
    assert "rows" in ax.get_title() and "columns" in ax.get_title()
    assert np.asarray(ax.images[0].get_array()).shape == (16 * 4 - 1, 8 * 4 - 1, 3)


def test_activation_maps(setup: dict, tmp_path: Path) -> None:
    fig = viz.plot_activations(setup["model"], setup["images"][0], setup["normalizer"],
                               path=tmp_path / "a.png")  # fmt: skip
    check_png(tmp_path / "a.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "input image"
    assert [t.split(":")[0] for t in titles[1:]] == ["conv1 + relu1", "pool1", "conv2 + relu2",
                                                     "pool2"]  # fmt: skip
    # 16 tiles per row: conv1 32 channels of 16x16 -> 2 rows; conv2 64 of 8x8 -> 4 rows.
    shapes = [np.asarray(ax.images[0].get_array()).shape[:2] for ax in fig.axes[1:]]
    assert shapes == [(2 * 17 - 1, 16 * 17 - 1), (2 * 9 - 1, 16 * 9 - 1),
                      (4 * 9 - 1, 16 * 9 - 1), (4 * 5 - 1, 16 * 5 - 1)]  # fmt: skip


def test_training_curves_from_a_run_folder(tmp_path: Path) -> None:
    records = [
        {"epoch": e, "train_loss": 2 / e, "val_loss": 2.1 / e, "train_accuracy": 0.2 * e,
         "val_accuracy": 0.18 * e, "lr": 0.1 / e}
        for e in range(1, 5)
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = viz.plot_training_curves(tmp_path, path=tmp_path / "c.png")
    check_png(tmp_path / "c.png")
    loss_ax, acc_ax, lr_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["train", "val"]
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [r["val_accuracy"] for r in records])
    np.testing.assert_allclose(lr_ax.lines[0].get_ydata(), [r["lr"] for r in records])


def test_training_curves_missing_history(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no training history"):
        viz.plot_training_curves(tmp_path)


# --- evaluation ------------------------------------------------------------------------------
def test_evaluation_plots(setup: dict, tmp_path: Path) -> None:
    labels, probs = setup["labels"], setup["probs"]
    cm = metrics.confusion_matrix(labels, probs.argmax(1), 3)
    fig = viz.plot_confusion_matrix(cm, CLASSES, path=tmp_path / "cm.png")
    check_png(tmp_path / "cm.png")
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), metrics.normalize_rows(cm))
    viz.plot_confusion_matrix(cm, CLASSES, normalize=False, path=tmp_path / "cm2.png")
    check_png(tmp_path / "cm2.png")

    cal = metrics.calibration(labels, probs, 10)
    fig = viz.plot_reliability(cal, path=tmp_path / "rel.png")
    check_png(tmp_path / "rel.png")
    assert f"ECE = {cal.ece:.3f}" in fig.axes[0].get_title()

    curves = metrics.one_vs_rest_roc(labels, probs)
    fig = viz.plot_roc(curves, CLASSES, path=tmp_path / "roc.png")
    check_png(tmp_path / "roc.png")
    assert fig.axes[0].get_legend().get_texts()[0].get_text().startswith("cat (AUC")

    fig = viz.plot_misclassified(setup["images"], labels, probs, CLASSES, count=6,
                                 path=tmp_path / "mis.png")  # fmt: skip
    check_png(tmp_path / "mis.png")
    worst = metrics.most_confident_mistakes(labels, probs, 1)[0]
    assert fig.axes[0].get_title().startswith(CLASSES[labels[worst]])


# --- interpretation --------------------------------------------------------------------------
def test_heatmaps_top_activations_and_stats(setup: dict, tmp_path: Path) -> None:
    model, images, normalizer = setup["model"], setup["images"][:2], setup["normalizer"]
    x = normalizer(images)
    maps = {
        "Grad-CAM": interpret.grad_cam(model, x),
        "occlusion": np.stack([interpret.occlusion(model, x[i : i + 1], 0, 4, 4) for i in (0, 1)]),
        "saliency": interpret.saliency(model, x),
    }
    fig = viz.plot_heatmaps(images, maps, titles=["a", "b"], path=tmp_path / "h.png")
    check_png(tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes[:4]] == ["a", "Grad-CAM", "occlusion", "saliency"]

    indices, _ = interpret.top_activating_images(model, setup["images"], normalizer, "conv1", 5)
    fig = viz.plot_top_activations(setup["images"], indices, "conv1", filters=[0, 3],
                                   path=tmp_path / "top.png")  # fmt: skip
    check_png(tmp_path / "top.png")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["channel 0", "channel 3"]
    canvas = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(canvas[18:34, :16] * 255, setup["images"][indices[3, 0]])

    stats = interpret.activation_stats(model, setup["images"], normalizer)
    viz.plot_filter_stats(stats, path=tmp_path / "fs.png")
    check_png(tmp_path / "fs.png")


def test_gradient_flow(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no gradient norms recorded"):
        viz.plot_gradient_flow(tmp_path)
    assert viz.read_grad_norms(tmp_path) == []
    records = [{"epoch": e, "0.weight": 1.0 / e, "0.bias": 0.1, "3.weight": 0.01} for e in (1, 2)]
    (tmp_path / "grad_norms.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    fig = viz.plot_gradient_flow(tmp_path, path=tmp_path / "gf.png")
    check_png(tmp_path / "gf.png")
    assert [line.get_label() for line in fig.axes[0].lines] == ["0.weight", "0.bias", "3.weight"]


def test_lr_finder_plot(tmp_path: Path) -> None:
    lrs = np.geomspace(1e-5, 1, 50)
    losses = 2.3 - np.log10(lrs / 1e-5) * 0.2 + np.where(lrs > 0.1, 5 * lrs, 0)
    result = LRFinderResult(lrs, losses, losses, suggested_lr=1e-2)
    fig = viz.plot_lr_finder(result, path=tmp_path / "lr.png")
    check_png(tmp_path / "lr.png")
    assert fig.axes[0].get_xscale() == "log"
    viz.plot_lr_finder({"lrs": lrs.tolist(), "losses": losses.tolist()}, path=tmp_path / "l2.png")
    check_png(tmp_path / "l2.png")


# --- plumbing --------------------------------------------------------------------------------
def test_saving_is_atomic_and_returns_the_figure(setup: dict, tmp_path: Path) -> None:
    target = tmp_path / "sub" / "filters.png"
    fig = viz.plot_filters(setup["model"], path=target)
    assert fig.axes and target.is_file()
    assert [p.name for p in target.parent.iterdir()] == ["filters.png"]  # no temporary left
    assert viz.figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_displays_inline(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []
    monkeypatch.setattr("scratchcnn.viz._common._display_png", shown.append)
    viz.plot_filters(setup["model"], show=True)
    assert len(shown) == 1 and shown[0][:4] == b"\x89PNG"


def test_importing_scratchcnn_does_not_import_matplotlib() -> None:
    code = (
        "import sys, scratchcnn, scratchcnn.viz, scratchcnn.analysis.metrics, "
        "scratchcnn.analysis.interpret; "
        "print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plots_never_use_pyplot(setup: dict, tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np; from scratchcnn import viz; from scratchcnn.models import "
        "seed_cnn; viz.plot_filters(seed_cnn(), path=sys.argv[1]); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.png")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "False"
