"""``scratchcnn visualize WHAT``: draw one picture (filters, Grad-CAM, confusion, ...) as PNG."""

from __future__ import annotations

import argparse

# What can be drawn, and what each needs: a model, test data, a run folder.
PICTURES = {
    "filters": "first-layer filters as RGB tiles",
    "filters2": "a sample of second-layer filters (16 filters x 8 input channels)",
    "activations": "activation maps of one image through every conv and pool layer",
    "gradcam": "Grad-CAM heat map of one image (--layer, --class)",
    "occlusion": "occlusion sensitivity map of one image (--class)",
    "saliency": "input-gradient saliency map of one image (--class)",
    "confusion": "confusion matrix on the test set",
    "calibration": "reliability diagram and expected calibration error",
    "roc": "one-vs-rest ROC curves with AUC",
    "curves": "training curves of a run (--run), or of several overlaid (--run A --run B ...)",
    "samples": "a grid of sample images per class",
    "misclassified": "the most confidently misclassified test images",
    "top-activations": "the test images that most activate each filter of a layer (--layer)",
    "filter-stats": "mean activation and dead-ReLU fraction per layer",
    "gradient-flow": "per-layer gradient norms over training (--run; needs grad_norms.jsonl)",
    "lr-finder": "learning-rate range test: loss against learning rate",
    "feature-clusters": "test images clustered (k-means) by their feature maps at a layer, "
    "a grid per cluster and a 2-D embedding coloured by class (--layer, --clusters)",
}
_NEEDS_IMAGE = {"activations", "gradcam", "occlusion", "saliency"}
_NEEDS_PROBS = {"confusion", "calibration", "roc", "misclassified"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.cli._common import positive_int

    listing = "\n".join(f"  {name:<16} {text}" for name, text in PICTURES.items())
    parser = subparsers.add_parser(
        "visualize",
        help="draw one picture (filters, activations, gradcam, confusion, ...) to a PNG",
        description=f"Draw one picture to a PNG.\n\npictures:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", metavar="WHAT", choices=sorted(PICTURES), help="the picture")
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model file (default: RUN/best.safetensors with --run, else "
        "models/seed_cnn_cifar10.safetensors)",
    )
    parser.add_argument(
        "--run",
        dest="runs",
        action="append",
        metavar="RUN_DIR",
        help="a training run folder; repeat it to overlay several runs' curves",
    )
    parser.add_argument(
        "--image", metavar="PATH", help="an image file (default: a test image, see --index)"
    )
    parser.add_argument(
        "--index", type=int, default=0, help="which test image when no --image (default: 0)"
    )
    parser.add_argument("--data", metavar="SPEC", help="data (default: the model's training data)")
    parser.add_argument("--cache-dir", metavar="DIR", help="dataset cache")
    parser.add_argument("--out", metavar="PATH", help="the PNG to write (default: WHAT.png)")
    parser.add_argument(
        "--layer", metavar="N", help="layer index or name such as conv2 (default: the last conv)"
    )
    parser.add_argument(
        "--class", dest="class_name", metavar="NAME", help="class to explain (default: predicted)"
    )
    parser.add_argument(
        "--max-images", type=positive_int, metavar="N", help="use a random subset of N test images"
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=100,
        help="lr-finder: training steps (default: 100); a result cached in RUN/lr_finder.json "
        "is reused only if it was made with the same settings",
    )
    clusters = parser.add_argument_group("feature-clusters")
    clusters.add_argument(
        "--clusters", type=int, metavar="K", help="number of clusters (default: the classes)"
    )
    clusters.add_argument(
        "--embedding", choices=["pca", "tsne"], default="pca", help="the 2-D map (default: pca)"
    )
    clusters.add_argument(
        "--pooling",
        choices=["avg", "max", "flatten"],
        default="avg",
        help="one vector per image: each channel's mean or max, or every value (default: avg)",
    )
    return parser


CLUSTER_IMAGES = 2000  # feature-clusters' default number of test images (t-SNE is quadratic)


def run(args: argparse.Namespace) -> int:
    from scratchcnn.errors import ConfigError

    runs = args.runs or []
    if len(runs) > 1 and args.what != "curves":
        raise ConfigError(f"only 'curves' overlays several runs; '{args.what}' takes one --run")
    args.run = runs[0] if runs else None
    path = _draw(args)
    print(f"wrote {path}")
    return 0


def _draw(args: argparse.Namespace):

    import numpy as np

    from scratchcnn import viz
    from scratchcnn.analysis import interpret, metrics
    from scratchcnn.cli._common import check_output, load_for_command
    from scratchcnn.losses import softmax
    from scratchcnn.report import load_test_images, run_checkpoint

    what = args.what
    out = check_output(args.out or f"{what}.png")
    if what == "curves" and len(args.runs or []) > 1:
        return _done(viz.plot_runs(_run_labels(args.runs), path=out), out)
    if what == "curves":
        return _done(viz.plot_training_curves(_run_dir(args), path=out), out)
    if what == "gradient-flow":
        return _done(viz.plot_gradient_flow(_run_dir(args), path=out), out)

    checkpoint = args.checkpoint or (run_checkpoint(args.run) if args.run else None)
    loaded = load_for_command(args, checkpoint)
    model, names = loaded.model, loaded.class_names
    if what == "filters":
        return _done(viz.plot_filters(model, path=out), out)
    if what == "filters2":
        return _done(viz.plot_filters2(model, path=out), out)
    if what == "lr-finder":
        return _lr_finder(args, loaded, out)

    if what in _NEEDS_IMAGE:
        image, caption = _one_image(args, loaded)
        if what == "activations":
            return _done(viz.plot_activations(model, image, loaded.normalizer, title=caption,
                                               path=out), out)  # fmt: skip
        x = loaded.prepare(image[None])
        target = _class_index(args.class_name, names)
        probs = softmax(model.forward(x).astype(np.float64))
        shown = int(probs.argmax()) if target is None else target
        title = f"{caption}\n{names[shown]} ({probs[0, shown]:.0%})"
        if what == "gradcam":
            layer = interpret.resolve_layer(model, args.layer)
            heat = interpret.grad_cam(model, x, layer, target)
            label = f"Grad-CAM at {interpret.layer_names(model)[layer]}"
        elif what == "occlusion":
            size = x.shape[2]
            heat = interpret.occlusion(model, x, target, max(2, size // 4), max(1, size // 8))[None]
            label = "occlusion"
        else:
            heat = interpret.saliency(model, x, target)
            label = "saliency"
        return _done(viz.plot_heatmaps(image[None], {label: heat}, [title], path=out), out)

    data = args.data or loaded.data()
    if what == "feature-clusters":
        return _feature_clusters(args, loaded, data, out)
    images, labels, _ = load_test_images(loaded, data, args.cache_dir, args.max_images)
    if what == "samples":
        return _done(viz.plot_samples(images, labels, names, path=out), out)
    if what == "top-activations":
        layer = interpret.resolve_layer(model, args.layer)
        indices, _ = interpret.top_activating_images(
            model, images, loaded.normalizer, layer, num_images=8
        )
        name = interpret.layer_names(model)[layer]
        return _done(viz.plot_top_activations(images, indices, name, path=out), out)
    if what == "filter-stats":
        stats = interpret.activation_stats(model, images, loaded.normalizer)
        return _done(viz.plot_filter_stats(stats, path=out), out)

    from scratchcnn.training.evaluate import predict_proba

    probs = predict_proba(model, images, loaded.normalizer, dtype=loaded.dtype.type)
    if what == "confusion":
        cm = metrics.confusion_matrix(labels, probs.argmax(axis=1), len(names))
        return _done(viz.plot_confusion_matrix(cm, names, path=out), out)
    if what == "calibration":
        return _done(viz.plot_reliability(metrics.calibration(labels, probs), path=out), out)
    if what == "roc":
        return _done(viz.plot_roc(metrics.one_vs_rest_roc(labels, probs), names, path=out), out)
    return _done(viz.plot_misclassified(images, labels, probs, names, path=out), out)


def _done(figure, out):
    """The figure is already written to ``out``; the command reports the path."""
    return out


def _run_dir(args: argparse.Namespace):
    if not args.run:
        raise ValueError(f"'{args.what}' needs --run RUN_DIR (a training run folder)")
    return args.run


def _run_labels(runs: list[str]) -> dict[str, str]:
    """Each run folder under its own name, or its whole path where two names are the same."""
    from pathlib import Path

    names = [Path(run).name or str(run) for run in runs]
    return {
        name if names.count(name) == 1 else str(run): run
        for name, run in zip(names, runs, strict=True)
    }


def _feature_clusters(args: argparse.Namespace, loaded, data, out):
    """k-means on the test images' feature maps at ``--layer``; a grid and a 2-D map."""
    import numpy as np

    from scratchcnn import viz
    from scratchcnn.analysis.feature_clusters import cluster_features
    from scratchcnn.report import load_test_images

    max_images = CLUSTER_IMAGES if args.max_images is None else args.max_images
    images, labels, _ = load_test_images(loaded, data, args.cache_dir, max_images)
    result = cluster_features(
        loaded.model,
        images,
        loaded.normalizer,
        layer=args.layer,
        num_clusters=args.clusters or len(loaded.class_names),
        pooling=args.pooling,
        embedding=args.embedding,
        rng=np.random.default_rng(0),
    )
    viz.plot_feature_clusters(result, images, labels, loaded.class_names, path=out)
    return out


def _class_index(name: str | None, names: list[str]) -> int | None:
    if name is None:
        return None
    if name in names:
        return names.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    raise ValueError(f"unknown class {name!r}; the classes are {names}")


def _one_image(args: argparse.Namespace, loaded):
    """The ``--image`` file resized to the model's input, or test image ``--index``."""
    from scratchcnn.data import read_image_file
    from scratchcnn.report import load_test_images

    height, width, channels = loaded.image_shape
    if args.image:
        image, _ = read_image_file(args.image, (height, width), channels)
        return image, args.image
    data = args.data or loaded.data()
    images, labels, _ = load_test_images(loaded, data, args.cache_dir)
    if not 0 <= args.index < len(labels):
        raise ValueError(f"--index must be in [0, {len(labels)}), got {args.index}")
    name = loaded.class_names[labels[args.index]]
    return images[args.index], f"test image {args.index} ({name})"


def _lr_finder(args: argparse.Namespace, loaded, out):
    """The range test on fresh weights of the checkpoint's architecture, set up as its run was
    (optimizer, batch size, augmentation, data split). With ``--run``, the result is cached in
    ``RUN/lr_finder.json`` together with its settings, and reused only for equal settings."""
    import dataclasses
    import json
    from pathlib import Path

    import numpy as np

    from scratchcnn import viz
    from scratchcnn.data import load_dataset
    from scratchcnn.models import build_model
    from scratchcnn.serialization import atomic_write_text
    from scratchcnn.training import TrainConfig, find_lr, prepare_data
    from scratchcnn.training.trainer import LR_FINDER, lr_finder_record, lr_finder_settings

    saved = loaded.metadata.get("config")
    config = TrainConfig.from_dict(saved) if saved else TrainConfig()
    config = dataclasses.replace(
        config,
        data=args.data or loaded.data(),
        cache_dir=args.cache_dir or config.cache_dir,
        progress=False,
    )
    available = len(
        load_dataset(config.data, cache_dir=config.cache_dir, progress=False).train_labels
    )
    if config.val_size >= available:  # a partial config.json: test on every training image
        config = dataclasses.replace(config, val_size=0, early_stopping=None, monitor=None)
    data = prepare_data(config)
    settings = lr_finder_settings(
        config, data, loaded.metadata["architecture"], num_steps=args.steps
    )
    cache = Path(args.run) / LR_FINDER if args.run else None
    if cache is not None and cache.is_file():
        record = json.loads(cache.read_text())
        if record.get("settings") == settings:
            return _done(viz.plot_lr_finder(record, path=out), out)
    model = build_model(
        loaded.metadata["architecture"], rng=np.random.default_rng([config.seed, 0]),
        dtype=loaded.dtype.type,
    )  # fmt: skip
    result = find_lr(config, data, model=model, num_steps=args.steps)
    if cache is not None:  # the report picks it up from there
        atomic_write_text(cache, json.dumps(lr_finder_record(result, settings)) + "\n")
    viz.plot_lr_finder(result, path=out)
    return out
