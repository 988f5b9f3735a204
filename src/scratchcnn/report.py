"""One self-contained HTML page about a training run: config, architecture, curves, test metrics,
and every picture of :mod:`scratchcnn.viz`, PNGs embedded as base64.

The test set is classified once; every metric and plot reuses those probabilities. Optional run
files are shown when present: ``grad_norms.jsonl`` (gradient flow) and ``lr_finder.json`` (the
learning-rate range test, as written by ``scratchcnn visualize lr-finder --run``).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.analysis import interpret, metrics
from scratchcnn.data import Normalizer
from scratchcnn.layers.base import Layer

__all__ = ["LoadedModel", "build_report", "load_checkpoint", "load_test_images", "run_checkpoint"]

LR_FINDER = "lr_finder.json"


# --- loading ---------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A saved model with what is needed to feed it: class names, normaliser, input shape."""

    model: Layer
    metadata: dict[str, Any]
    class_names: list[str]
    normalizer: Normalizer
    image_shape: tuple[int, int, int]  # (H, W, C)
    path: Path

    @property
    def dtype(self) -> np.dtype:
        return next((p.dtype for p in self.model.parameters()), np.dtype(np.float32))

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, C)`` -> normalised ``(N, C, H, W)`` in the model's dtype."""
        return self.normalizer(np.asarray(images)).astype(self.dtype, copy=False)


def run_checkpoint(run_dir: str | Path) -> Path:
    """The model file of a run folder: ``best.safetensors``, else ``last.safetensors``."""
    run_dir = Path(run_dir)
    for name in ("best.safetensors", "last.safetensors"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise FileNotFoundError(f"no best.safetensors or last.safetensors in {run_dir}")


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load a model file or training checkpoint written by the trainer."""
    from scratchcnn.serialization import load_model

    path = Path(path)
    model, meta = load_model(path)
    if "normalization" not in meta or "class_names" not in meta:
        raise ValueError(f"{path} lacks class names or normalisation statistics in its metadata")
    normalizer = Normalizer.from_dict(meta["normalization"])
    if "image_shape" in meta:
        shape = tuple(int(v) for v in meta["image_shape"])
    else:  # older files: guess square images of the first conv's channels
        first = next(m for m in model.modules() if hasattr(m, "in_channels"))
        shape = (32, 32, int(first.in_channels))
    return LoadedModel(model, meta, list(meta["class_names"]), normalizer, shape, path)  # type: ignore[arg-type]


def load_test_images(
    loaded: LoadedModel,
    data: str | None = None,
    cache_dir: str | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """The test images and labels of the model's dataset (or ``data``), optionally a seeded
    random subset of ``max_images`` (kept in dataset order).

    Shape: returns ``images (N, H, W, C)`` uint8, ``labels (N,)`` int64 and the data spec.
    """
    from scratchcnn.data import load_dataset

    config = loaded.metadata.get("config", {})
    spec = data or config.get("data", "cifar10")
    dataset = load_dataset(spec, cache_dir=cache_dir or config.get("cache_dir"), progress=False)
    if list(dataset.class_names) != loaded.class_names:
        raise ValueError(
            f"the data's classes {list(dataset.class_names)} differ from the model's "
            f"{loaded.class_names}"
        )
    images, labels = dataset.test_images, dataset.test_labels
    if max_images is not None and max_images < len(labels):
        chosen = np.sort(np.random.default_rng(seed).choice(len(labels), max_images, False))
        images, labels = images[chosen], labels[chosen]
    return np.asarray(images), np.asarray(labels, dtype=np.int64), str(spec)


# --- the page --------------------------------------------------------------------------------
@dataclass
class _Section:
    anchor: str
    title: str
    body: str


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _figure(fig, alt: str, caption: str = "") -> str:
    from scratchcnn.viz import figure_png

    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{_img(figure_png(fig), alt)}{text}</figure>"


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
nav ul { columns: 3; } section { margin-bottom: 2.5em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.kpi { font-size: 1.3em; }
"""


def build_report(
    run_dir: str | Path,
    checkpoint: str | Path | None = None,
    data: str | None = None,
    cache_dir: str | None = None,
    max_images: int | None = None,
    out: str | Path | None = None,
    num_explained: int = 6,
    seed: int = 0,
) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) and return its path.

    Args:
        run_dir: a training run folder (``config.json``, ``metrics.jsonl``, checkpoints).
        checkpoint: the model to report on; default the run's ``best.safetensors``.
        data: the dataset spec; default the one the model was trained on.
        cache_dir: the dataset cache.
        max_images: classify only a seeded random subset of this many test images (quick runs).
        out: where to write the page.
        num_explained: how many test images get Grad-CAM, occlusion and saliency maps.
        seed: seeds the subset and the sample images.
    """
    from scratchcnn import viz
    from scratchcnn.training.evaluate import predict_proba

    run_dir = Path(run_dir)
    loaded = load_checkpoint(checkpoint or run_checkpoint(run_dir))
    model, names = loaded.model, loaded.class_names
    k = len(names)
    config = _read_json(run_dir / "config.json") or loaded.metadata.get("config", {})
    images, labels, spec = load_test_images(loaded, data, cache_dir, max_images, seed)
    probs = predict_proba(model, images, loaded.normalizer, dtype=loaded.dtype.type)
    predictions = probs.argmax(axis=1)
    sections: list[_Section] = []

    # Configuration and architecture.
    rows = [[key, json.dumps(value)] for key, value in config.items()]
    sections.append(
        _Section("config", "Configuration", _table(["setting", "value"], rows) if rows else
                 _p("The run folder has no config.json and the checkpoint records no config."))
    )  # fmt: skip
    c_h_w = (loaded.image_shape[2], loaded.image_shape[0], loaded.image_shape[1])
    summary = model.summary(c_h_w, print_fn=None)
    fields = interpret.receptive_fields(model, c_h_w)
    rf_rows = [[name, "-" if rf is None else f"{rf}x{rf}"] for name, rf in fields]
    sections.append(
        _Section(
            "architecture",
            "Architecture",
            f"<pre>{html.escape(summary)}</pre>"
            + _p("Receptive field of each layer: the input pixels one output value can see.")
            + _table(["layer", "receptive field"], rf_rows),
        )
    )

    # Training.
    history = _read_jsonl(run_dir / "metrics.jsonl")
    if history:
        last = history[-1]
        body = _figure(
            viz.plot_training_curves(history),
            "training curves",
            f"{len(history)} epochs; final train accuracy {last.get('train_accuracy', 0):.4f}, "
            f"validation accuracy {last.get('val_accuracy', 0):.4f}.",
        )
    else:
        body = _p(f"No metrics.jsonl in {run_dir}: no training history to plot.")
    sections.append(_Section("training", "Training curves", body))
    grad_norms = viz.read_grad_norms(run_dir)
    if grad_norms:
        sections.append(
            _Section(
                "gradient-flow",
                "Gradient flow",
                _figure(
                    viz.plot_gradient_flow(grad_norms),
                    "gradient flow",
                    "Mean gradient L2 norm of each parameter per epoch.",
                ),
            )
        )
    lr_finder = _read_json(run_dir / LR_FINDER)
    if lr_finder:
        sections.append(
            _Section(
                "lr-finder",
                "Learning-rate range test",
                _figure(viz.plot_lr_finder(lr_finder), "lr finder",
                        f"Suggested learning rate {lr_finder.get('suggested_lr', 0):.3g}."),
            )
        )  # fmt: skip

    # Test metrics.
    scores = metrics.classification_scores(labels, predictions, k)
    loss = float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300)).mean())
    top_ks = [t for t in (1, 3, 5) if t <= k]
    top_rows = [[f"top-{t}", metrics.top_k_accuracy(labels, probs, t)] for t in top_ks]
    averages = [
        [kind, *scores.average(kind).values()] for kind in ("macro", "weighted")
    ]  # precision, recall, f1
    per_class = [
        [n, p, r, f, int(s)]
        for n, p, r, f, s in zip(
            names, scores.precision, scores.recall, scores.f1, scores.support, strict=True
        )
    ]
    subset = f" (a random subset of {len(labels):,} test images)" if max_images is not None else ""
    body = (
        f'<p class="kpi">Test accuracy <b>{scores.accuracy:.4f}</b>, loss {loss:.4f} on '
        f"{len(labels):,} images of {html.escape(spec)}{html.escape(subset)}.</p>"
        + _table(["metric", "accuracy"], top_rows)
        + _table(["average", "precision", "recall", "F1"], averages)
        + _p("Per class (recall is the per-class accuracy):")
        + _table(["class", "precision", "recall", "F1", "support"], per_class)
    )
    sections.append(_Section("metrics", "Test metrics", body))
    cm = metrics.confusion_matrix(labels, predictions, k)
    sections.append(
        _Section(
            "confusion",
            "Confusion matrix",
            _figure(viz.plot_confusion_matrix(cm, names), "confusion matrix",
                    "Rows: true class; columns: predicted class; fractions of each row.")
            + _figure(viz.plot_confusion_matrix(cm, names, normalize=False),
                      "confusion matrix counts", "The same as counts."),
        )
    )  # fmt: skip
    calibration = metrics.calibration(labels, probs)
    sections.append(
        _Section(
            "calibration",
            "Calibration",
            _p(f"Expected calibration error (15 bins): {calibration.ece:.4f}.")
            + _figure(viz.plot_reliability(calibration), "reliability diagram",
                      "Bars below the diagonal: the model is more confident than it is right."),
        )
    )  # fmt: skip
    present = [c for c in range(k) if 0 < np.sum(labels == c) < len(labels)]
    if present:
        curves = [metrics.roc_curve(labels == c, probs[:, c]) for c in present]
        auc_rows = [[names[c], curve.auc] for c, curve in zip(present, curves, strict=True)]
        macro_auc = float(np.mean([curve.auc for curve in curves]))
        body = (
            _p(f"Macro one-vs-rest AUC: {macro_auc:.4f}.")
            + _figure(viz.plot_roc(curves, [names[c] for c in present]), "ROC curves")
            + _table(["class", "AUC"], auc_rows)
        )
    else:
        body = _p("ROC curves need test images of at least two classes.")
    sections.append(_Section("roc", "ROC curves", body))
    if np.any(predictions != labels):
        body = _figure(
            viz.plot_misclassified(images, labels, probs, names, count=24),
            "misclassified images",
        )
    else:
        body = _p("Every test image was classified correctly.")
    sections.append(_Section("mistakes", "Most confident mistakes", body))

    # Data and the network.
    rng = np.random.default_rng(seed)
    sections.append(
        _Section(
            "samples",
            "Sample test images",
            _figure(viz.plot_samples(images, labels, names, per_class=8, rng=rng), "samples"),
        )
    )
    convs = [i for i, name in enumerate(interpret.layer_names(model)) if name.startswith("conv")]
    body = _figure(viz.plot_filters(model), "first-layer filters")
    if len(convs) > 1:
        body += _figure(viz.plot_filters2(model), "second-layer filters")
    sections.append(_Section("filters", "Learned filters", body))
    first = int(np.flatnonzero(predictions == labels)[0]) if np.any(predictions == labels) else 0
    title = f"a test image: {names[labels[first]]} (predicted {names[predictions[first]]})"
    sections.append(
        _Section(
            "activations",
            "Activation maps",
            _figure(
                viz.plot_activations(model, images[first], loaded.normalizer, title=title),
                "activation maps",
                "One tile per channel, each scaled to its own range.",
            ),
        )
    )

    # Interpretation.
    chosen = rng.choice(len(labels), min(num_explained, len(labels)), replace=False)
    x = loaded.prepare(images[chosen])
    heat = {
        "Grad-CAM": interpret.grad_cam(model, x),
        "occlusion": np.stack(
            [
                interpret.occlusion(model, x[i : i + 1], patch_size=max(2, x.shape[2] // 4),
                                    stride=max(1, x.shape[2] // 8))
                for i in range(len(x))
            ]
        ),
        "saliency": interpret.saliency(model, x),
    }  # fmt: skip
    titles = [
        f"{names[labels[i]]} -> {names[predictions[i]]} {probs[i, predictions[i]]:.0%}"
        for i in chosen
    ]
    layer = interpret.layer_names(model)[interpret.resolve_layer(model)]
    sections.append(
        _Section(
            "interpretation",
            "Where the model looks",
            _figure(
                viz.plot_heatmaps(images[chosen], heat, titles),
                "Grad-CAM, occlusion and saliency",
                f"For the predicted class: Grad-CAM at {layer}; occlusion (red: hiding the "
                "region lowers the class probability); input-gradient saliency.",
            ),
        )
    )
    scan = images[: min(len(images), 2000)]
    body = ""
    for conv in (convs[0], convs[-1]) if len(convs) > 1 else convs[:1]:
        name = interpret.layer_names(model)[conv]
        indices, _ = interpret.top_activating_images(model, scan, loaded.normalizer, conv, 8)
        body += _figure(viz.plot_top_activations(scan, indices, name), f"top images {name}")
    sections.append(_Section("top-activations", "Images that most activate filters", body))
    stats = interpret.activation_stats(model, images[: min(len(images), 500)], loaded.normalizer)
    if stats:
        stat_rows = [
            [s.name, s.units, s.mean_activation, s.zero_fraction, s.dead_fraction] for s in stats
        ]
        body = _figure(viz.plot_filter_stats(stats), "filter statistics") + _table(
            ["layer", "units", "mean activation", "fraction <= 0", "dead units"], stat_rows
        )
    else:
        body = _p("The model has no activation layers.")
    sections.append(_Section("filter-stats", "Filter statistics", body))

    page = _page(run_dir, loaded.path, sections)
    target = Path(out) if out is not None else run_dir / "report.html"
    from scratchcnn.serialization import atomic_write_text

    atomic_write_text(target, page)
    return target


def _page(run_dir: Path, checkpoint: Path, sections: list[_Section]) -> str:
    from scratchcnn._version import __version__

    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.body}</section>'
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>scratchcnn report: {html.escape(run_dir.name)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>scratchcnn report: {html.escape(run_dir.name)}</h1>"
        f"<p>Run folder <code>{html.escape(str(run_dir))}</code>, model "
        f"<code>{html.escape(str(checkpoint))}</code>, scratchcnn {__version__}.</p>"
        f"<nav><ul>{toc}</ul></nav>{body}</body></html>\n"
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
