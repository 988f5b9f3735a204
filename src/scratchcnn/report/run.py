"""The report of one training run: one small function per section, called in page order.

Every section function takes the :class:`RunContext` (the model, the test images classified
once, the run folder's records) and returns a :class:`Section`, or ``None`` when the run has
nothing for it (an optional file that is not there). Adding a section is writing one function
and listing it in :data:`SECTIONS`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.analysis import interpret, metrics
from scratchcnn.report.html import Section, figure, page, paragraph, table
from scratchcnn.report.loading import LoadedModel, load_checkpoint, load_test_images, run_checkpoint

__all__ = ["LR_FINDER", "SECTIONS", "RunContext", "build_report"]

LR_FINDER = "lr_finder.json"
TOP_ACTIVATION_SCAN = 2000  # test images scanned for the images that most excite each filter
STATS_IMAGES = 500  # test images behind the activation statistics
ABLATION_IMAGES = 2000  # test images classified with each filter of the last conv zeroed
CLUSTER_IMAGES = 2000  # test images clustered by their feature maps


@dataclass
class RunContext:
    """Everything the sections share: loaded once, the test set classified once."""

    run_dir: Path
    loaded: LoadedModel
    config: dict[str, Any]
    images: np.ndarray  # (N, H, W, C) uint8 test images
    labels: np.ndarray  # (N,)
    spec: str  # the data spec the images came from
    probs: np.ndarray  # (N, K) predicted probabilities
    subset: bool  # the images are a random subset of the test set
    num_explained: int
    rng: np.random.Generator  # shared by the sections in page order (samples, then explained)

    @property
    def model(self):
        return self.loaded.model

    @property
    def names(self) -> list[str]:
        return self.loaded.class_names

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def conv_indices(self) -> list[int]:
        names = interpret.layer_names(self.model)
        return [i for i, name in enumerate(names) if name.startswith("conv")]


# --- the sections, in page order -------------------------------------------------------------
def config_section(ctx: RunContext) -> Section:
    rows = [[key, json.dumps(value)] for key, value in ctx.config.items()]
    if rows:
        body = table(["setting", "value"], rows)
    else:
        body = paragraph("The run folder has no config.json and the checkpoint records no config.")
    return Section("config", "Configuration", body)


def architecture_section(ctx: RunContext) -> Section:
    height, width, channels = ctx.loaded.image_shape
    c_h_w = (channels, height, width)
    summary = ctx.model.summary(c_h_w, print_fn=None)
    fields = interpret.receptive_fields(ctx.model, c_h_w)
    rf_rows = [[name, "-" if rf is None else f"{rf}x{rf}"] for name, rf in fields]
    body = (
        f"<pre>{html.escape(summary)}</pre>"
        + paragraph("Receptive field of each layer: the input pixels one output value can see.")
        + table(["layer", "receptive field"], rf_rows)
    )
    return Section("architecture", "Architecture", body)


def training_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    metrics_file = ctx.run_dir / "metrics.jsonl"
    history = viz.read_history(metrics_file) if metrics_file.is_file() else []
    if not history:
        body = paragraph(f"No metrics.jsonl in {ctx.run_dir}: no training history to plot.")
        return Section("training", "Training curves", body)
    last = history[-1]
    body = figure(
        viz.plot_training_curves(history),
        "training curves",
        f"{len(history)} epochs; final train accuracy {last.get('train_accuracy', 0):.4f}, "
        f"validation accuracy {last.get('val_accuracy', 0):.4f}.",
    )
    return Section("training", "Training curves", body)


def gradient_flow_section(ctx: RunContext) -> Section | None:
    from scratchcnn import viz

    grad_norms = viz.read_grad_norms(ctx.run_dir)
    if not grad_norms:
        return None
    body = figure(
        viz.plot_gradient_flow(grad_norms),
        "gradient flow",
        "Mean gradient L2 norm of each parameter per epoch.",
    )
    return Section("gradient-flow", "Gradient flow", body)


def lr_finder_section(ctx: RunContext) -> Section | None:
    from scratchcnn import viz

    result = read_json(ctx.run_dir / LR_FINDER)
    if not result:
        return None
    body = figure(
        viz.plot_lr_finder(result),
        "lr finder",
        f"Suggested learning rate {result.get('suggested_lr', 0):.3g}.",
    )
    return Section("lr-finder", "Learning-rate range test", body)


def metrics_section(ctx: RunContext) -> Section:
    labels, probs, k = ctx.labels, ctx.probs, len(ctx.names)
    scores = metrics.classification_scores(labels, ctx.predictions, k)
    loss = float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300)).mean())
    top_rows = [[f"top-{t}", metrics.top_k_accuracy(labels, probs, t)] for t in (1, 3, 5) if t <= k]
    # precision, recall, f1
    averages = [[kind, *scores.average(kind).values()] for kind in ("macro", "weighted")]
    per_class = [
        [n, p, r, f, int(s)]
        for n, p, r, f, s in zip(
            ctx.names, scores.precision, scores.recall, scores.f1, scores.support, strict=True
        )
    ]
    subset = f" (a random subset of {len(labels):,} test images)" if ctx.subset else ""
    body = (
        f'<p class="kpi">Test accuracy <b>{scores.accuracy:.4f}</b>, loss {loss:.4f} on '
        f"{len(labels):,} images of {html.escape(ctx.spec)}{html.escape(subset)}.</p>"
        + table(["metric", "accuracy"], top_rows)
        + table(["average", "precision", "recall", "F1"], averages)
        + paragraph("Per class (recall is the per-class accuracy):")
        + table(["class", "precision", "recall", "F1", "support"], per_class)
    )
    return Section("metrics", "Test metrics", body)


def confusion_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    cm = metrics.confusion_matrix(ctx.labels, ctx.predictions, len(ctx.names))
    body = figure(
        viz.plot_confusion_matrix(cm, ctx.names),
        "confusion matrix",
        "Rows: true class; columns: predicted class; fractions of each row.",
    ) + figure(
        viz.plot_confusion_matrix(cm, ctx.names, normalize=False),
        "confusion matrix counts",
        "The same as counts.",
    )
    return Section("confusion", "Confusion matrix", body)


def calibration_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    calibration = metrics.calibration(ctx.labels, ctx.probs)
    body = paragraph(f"Expected calibration error (15 bins): {calibration.ece:.4f}.") + figure(
        viz.plot_reliability(calibration),
        "reliability diagram",
        "Bars below the diagonal: the model is more confident than it is right.",
    )
    return Section("calibration", "Calibration", body)


def roc_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    labels, names = ctx.labels, ctx.names
    present = [c for c in range(len(names)) if 0 < np.sum(labels == c) < len(labels)]
    if not present:
        body = paragraph("ROC curves need test images of at least two classes.")
        return Section("roc", "ROC curves", body)
    curves = [metrics.roc_curve(labels == c, ctx.probs[:, c]) for c in present]
    auc_rows = [[names[c], curve.auc] for c, curve in zip(present, curves, strict=True)]
    macro_auc = float(np.mean([curve.auc for curve in curves]))
    body = (
        paragraph(f"Macro one-vs-rest AUC: {macro_auc:.4f}.")
        + figure(viz.plot_roc(curves, [names[c] for c in present]), "ROC curves")
        + table(["class", "AUC"], auc_rows)
    )
    return Section("roc", "ROC curves", body)


def mistakes_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    if np.any(ctx.predictions != ctx.labels):
        body = figure(
            viz.plot_misclassified(ctx.images, ctx.labels, ctx.probs, ctx.names, count=24),
            "misclassified images",
        )
    else:
        body = paragraph("Every test image was classified correctly.")
    return Section("mistakes", "Most confident mistakes", body)


def samples_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    fig = viz.plot_samples(ctx.images, ctx.labels, ctx.names, per_class=8, rng=ctx.rng)
    return Section("samples", "Sample test images", figure(fig, "samples"))


def filters_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    body = figure(viz.plot_filters(ctx.model), "first-layer filters")
    if len(ctx.conv_indices) > 1:
        body += figure(viz.plot_filters2(ctx.model), "second-layer filters")
    return Section("filters", "Learned filters", body)


def activations_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    right = np.flatnonzero(ctx.predictions == ctx.labels)
    first = int(right[0]) if len(right) else 0
    names = ctx.names
    title = f"a test image: {names[ctx.labels[first]]} (predicted {names[ctx.predictions[first]]})"
    body = figure(
        viz.plot_activations(ctx.model, ctx.images[first], ctx.loaded.normalizer, title=title),
        "activation maps",
        "One tile per channel, each scaled to its own range.",
    )
    return Section("activations", "Activation maps", body)


def interpretation_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    model, labels, names = ctx.model, ctx.labels, ctx.names
    chosen = ctx.rng.choice(len(labels), min(ctx.num_explained, len(labels)), replace=False)
    x = ctx.loaded.prepare(ctx.images[chosen])
    size = x.shape[2]
    occlusion = [
        interpret.occlusion(model, x[i : i + 1], patch_size=max(2, size // 4),
                            stride=max(1, size // 8))
        for i in range(len(x))
    ]  # fmt: skip
    heat = {
        "Grad-CAM": interpret.grad_cam(model, x),
        "occlusion": np.stack(occlusion),
        "saliency": interpret.saliency(model, x),
    }
    predictions = ctx.predictions
    titles = [
        f"{names[labels[i]]} -> {names[predictions[i]]} {ctx.probs[i, predictions[i]]:.0%}"
        for i in chosen
    ]
    layer = interpret.layer_names(model)[interpret.resolve_layer(model)]
    body = figure(
        viz.plot_heatmaps(ctx.images[chosen], heat, titles),
        "Grad-CAM, occlusion and saliency",
        f"For the predicted class: Grad-CAM at {layer}; occlusion (red: hiding the "
        "region lowers the class probability); input-gradient saliency.",
    )
    return Section("interpretation", "Where the model looks", body)


def top_activations_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    scan = ctx.images[: min(len(ctx.images), TOP_ACTIVATION_SCAN)]
    convs = ctx.conv_indices
    body = ""
    for conv in (convs[0], convs[-1]) if len(convs) > 1 else convs[:1]:
        name = interpret.layer_names(ctx.model)[conv]
        indices, _ = interpret.top_activating_images(
            ctx.model, scan, ctx.loaded.normalizer, conv, 8
        )
        body += figure(viz.plot_top_activations(scan, indices, name), f"top images {name}")
    return Section("top-activations", "Images that most activate filters", body)


def filter_stats_section(ctx: RunContext) -> Section:
    from scratchcnn import viz

    images = ctx.images[: min(len(ctx.images), STATS_IMAGES)]
    stats = interpret.activation_stats(ctx.model, images, ctx.loaded.normalizer)
    if not stats:
        body = paragraph("The model has no activation layers.")
        return Section("filter-stats", "Filter statistics", body)
    rows = [[s.name, s.units, s.mean_activation, s.zero_fraction, s.dead_fraction] for s in stats]
    body = figure(viz.plot_filter_stats(stats), "filter statistics") + table(
        ["layer", "units", "mean activation", "fraction <= 0", "dead units"], rows
    )
    return Section("filter-stats", "Filter statistics", body)


def filter_ablation_section(ctx: RunContext) -> Section:
    from scratchcnn import viz
    from scratchcnn.analysis.filter_ablation import ablate_filters

    count = min(len(ctx.images), ABLATION_IMAGES)
    images, labels = ctx.images[:count], ctx.labels[:count]
    result = ablate_filters(ctx.model, images, labels, ctx.loaded.normalizer)
    conv = list(ctx.model)[result.layer_index]
    top, _ = interpret.top_activating_images(
        ctx.model, images, ctx.loaded.normalizer, result.layer_index, num_images=6
    )
    order = result.ranking()
    rows = [
        [f"filter {result.groups[g][0]}", result.drop[g] * 100, result.accuracy[g]]
        for g in (*order[:5], *order[-5:])
    ]
    body = (
        paragraph(
            f"Each filter of {result.layer} zeroed in turn (weights and bias, as if pruned), "
            f"{count:,} test images classified each time; accuracy with every filter "
            f"{result.baseline_accuracy:.4f}."
        )
        + figure(viz.plot_filter_ablation(result, ctx.names), "filter ablation",
                 "Accuracy lost per filter, and per class for the most and least important.")
        + figure(viz.plot_ablated_filters(result, conv.weight.data, images, top),
                 "most and least important filters")
        + table(["filter", "accuracy drop (points)", "accuracy without it"], rows)
    )  # fmt: skip
    return Section("filter-ablation", "Filter ablation", body)


def feature_clusters_section(ctx: RunContext) -> Section:
    from scratchcnn import viz
    from scratchcnn.analysis.feature_clusters import cluster_features

    count = min(len(ctx.images), CLUSTER_IMAGES)
    images, labels = ctx.images[:count], ctx.labels[:count]
    k = min(len(ctx.names), count)
    result = cluster_features(
        ctx.model, images, ctx.loaded.normalizer, num_clusters=k, rng=np.random.default_rng(0)
    )
    purity = result.purity(labels, len(ctx.names))
    body = paragraph(
        f"{count:,} test images clustered by k-means ({k} clusters) on the channel means of "
        f"{result.layer}; mean cluster purity (share of the most common class) "
        f"{np.nanmean(purity):.2f}."
    ) + figure(
        viz.plot_feature_clusters(result, images, labels, ctx.names),
        "feature-map clusters",
    )
    return Section("feature-clusters", "Feature-map clusters", body)


SECTIONS: tuple[Callable[[RunContext], Section | None], ...] = (
    config_section,
    architecture_section,
    training_section,
    gradient_flow_section,
    lr_finder_section,
    metrics_section,
    confusion_section,
    calibration_section,
    roc_section,
    mistakes_section,
    samples_section,
    filters_section,
    activations_section,
    interpretation_section,
    top_activations_section,
    filter_stats_section,
    filter_ablation_section,
    feature_clusters_section,
)


# --- the page --------------------------------------------------------------------------------
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
    from scratchcnn._version import __version__
    from scratchcnn.serialization import atomic_write_text
    from scratchcnn.training.evaluate import predict_proba

    run_dir = Path(run_dir)
    loaded = load_checkpoint(checkpoint or run_checkpoint(run_dir))
    config = read_json(run_dir / "config.json") or loaded.metadata.get("config", {})
    images, labels, spec = load_test_images(loaded, data, cache_dir, max_images, seed)
    probs = predict_proba(loaded.model, images, loaded.normalizer, dtype=loaded.dtype.type)
    ctx = RunContext(
        run_dir=run_dir,
        loaded=loaded,
        config=config,
        images=images,
        labels=labels,
        spec=spec,
        probs=probs,
        subset=max_images is not None,
        num_explained=num_explained,
        rng=np.random.default_rng(seed),
    )
    sections = [s for s in (make(ctx) for make in SECTIONS) if s is not None]
    intro = (
        f"<p>Run folder <code>{html.escape(str(run_dir))}</code>, model "
        f"<code>{html.escape(str(loaded.path))}</code>, scratchcnn {__version__}.</p>"
    )
    target = Path(out) if out is not None else run_dir / "report.html"
    atomic_write_text(target, page(f"scratchcnn report: {run_dir.name}", intro, sections))
    return target


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
