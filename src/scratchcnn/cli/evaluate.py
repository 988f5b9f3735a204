"""``scratchcnn evaluate``: accuracy, top-k, precision/recall/F1 and loss of a saved model."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.cli._common import add_checkpoint_arguments, add_tta_argument, positive_int

    parser = subparsers.add_parser(
        "evaluate",
        help="test accuracy, top-k, per-class precision/recall/F1 and loss of a saved model",
        description="Evaluate a saved model (or training checkpoint) on a test set: accuracy, "
        "top-k accuracy, loss, macro precision/recall/F1, and per class accuracy (= recall), "
        "precision, F1 and support, with test-time augmentation at the level the checkpoint "
        "records (--tta to choose); with TTA, the plain accuracy and loss are shown too.",
    )
    add_checkpoint_arguments(parser)
    add_tta_argument(parser)
    parser.add_argument(
        "--data",
        metavar="SPEC",
        help="dataset name, official archive, image folder or .zip (default: the data the model "
        "was trained on, found from any working folder)",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="dataset cache (default: $SCRATCHCNN_DATA or ~/.cache/scratchcnn)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=500, help="evaluation batch size (default: 500)"
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=5, metavar="K", help="top-k accuracy (default: 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    import json

    from scratchcnn.analysis import metrics
    from scratchcnn.cli._common import load_for_command, tta_level
    from scratchcnn.data import Normalizer, load_dataset
    from scratchcnn.errors import DataError
    from scratchcnn.training import evaluate

    loaded = load_for_command(args)
    spec = args.data or loaded.data()
    config = loaded.metadata.get("config") or {}
    size = config.get("image_size")
    dataset = load_dataset(
        spec, cache_dir=args.cache_dir, image_size=None if size is None else (size, size)
    )
    class_names = list(dataset.class_names)
    recorded = loaded.metadata.get("class_names")
    if recorded is not None and recorded != class_names:
        raise DataError(f"the data's classes {class_names} differ from the model's {recorded}")
    _check_image_shape(loaded, dataset.image_shape, spec)
    if args.normalization == "fit":
        loaded = loaded.supplied(normalization=Normalizer.fit(dataset.train_images))
    tta = tta_level(args, loaded)

    def evaluate_at(level: int):
        return evaluate(
            loaded.model,
            dataset.test_images,
            dataset.test_labels,
            loaded.normalizer,
            args.batch_size,
            loaded.dtype.type,
            tta=level,
        )

    result = evaluate_at(tta)
    without = evaluate_at(0) if tta else result
    num_classes = len(class_names)
    scores = metrics.classification_scores(result.labels, result.predictions, num_classes)
    macro = scores.average("macro")
    k = min(args.top_k, num_classes)
    top_k = metrics.top_k_accuracy(result.labels, result.probabilities, k)
    if args.json:
        per_class = {
            name: {
                "accuracy": float(scores.recall[i]),
                "precision": float(scores.precision[i]),
                "recall": float(scores.recall[i]),
                "f1": float(scores.f1[i]),
                "support": int(scores.support[i]),
            }
            for i, name in enumerate(class_names)
        }
        report = {
            "checkpoint": str(loaded.path),
            "data": str(spec),
            "images": len(result.labels),
            "tta": tta,
            "test_accuracy": result.accuracy,
            "test_loss": result.loss,
            "test_accuracy_without_tta": without.accuracy,
            "test_loss_without_tta": without.loss,
            "top_k": k,
            "top_k_accuracy": top_k,
            "macro_precision": macro["precision"],
            "macro_recall": macro["recall"],
            "macro_f1": macro["f1"],
            "per_class_accuracy": {name: v["accuracy"] for name, v in per_class.items()},
            "per_class": per_class,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(f"checkpoint: {loaded.path}")
    print(f"data: {spec} ({len(result.labels):,} test images)")
    tta_names = {0: "none", 1: "mirror", 2: "mirror and one-pixel translations"}
    print(f"test-time augmentation: level {tta} ({tta_names[tta]})")
    rows = [("test accuracy", result.accuracy), (f"top-{k} accuracy", top_k)]
    rows += [("test loss", result.loss)]
    if tta:
        rows += [("without TTA", without.accuracy), ("loss without TTA", without.loss)]
    for label, value in rows:
        print(f"{label + ':':<17} {value:.4f}")
    print(
        f"macro precision {macro['precision']:.4f}, recall {macro['recall']:.4f}, "
        f"F1 {macro['f1']:.4f}"
    )
    width = max(len("class"), *(len(name) for name in class_names))
    print("per class:")
    print(f"  {'class':<{width}}  accuracy  precision      F1  support")
    for i, name in enumerate(class_names):
        print(
            f"  {name:<{width}}  {scores.recall[i]:8.4f}  {scores.precision[i]:9.4f}  "
            f"{scores.f1[i]:6.4f}  {int(scores.support[i]):7d}"
        )
    return 0


def _check_image_shape(loaded, shape: tuple[int, int, int], spec: str) -> None:
    """The data's images must be what the model takes: say so before evaluating anything."""
    from scratchcnn.errors import DataError

    height, width, channels = shape
    recorded = loaded.metadata.get("image_shape")
    if recorded is not None and list(shape) != list(recorded):
        raise DataError(
            f"{spec} has {height}x{width}x{channels} images (height x width x channels) but "
            f"{loaded.path} takes {recorded[0]}x{recorded[1]}x{recorded[2]}"
        )
    try:
        loaded.model.output_shape((1, channels, height, width))
    except Exception as err:  # noqa: BLE001 - any shape failure means the data does not fit
        raise DataError(
            f"{spec} has {height}x{width}x{channels} images, which {loaded.path} cannot take: {err}"
        ) from err
