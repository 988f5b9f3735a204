"""``scratchcnn evaluate``: test accuracy, per-class accuracy and loss of a saved model."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="test accuracy, per-class accuracy and loss of a saved model",
        description="Evaluate a saved model (or training checkpoint) on a test set.",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model or checkpoint file (default: models/seed_cnn_cifar10.safetensors)",
    )
    parser.add_argument(
        "--data",
        metavar="SPEC",
        help="dataset name, official archive, image folder or .zip (default: the data the model "
        "was trained on)",
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="dataset cache (default: $SCRATCHCNN_DATA or ~/.cache/scratchcnn)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=500, help="evaluation batch size (default: 500)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from scratchcnn.cli._common import default_checkpoint, fail
    from scratchcnn.data import DataError, Normalizer, load_dataset
    from scratchcnn.serialization import load_model
    from scratchcnn.training import evaluate

    path = args.checkpoint or default_checkpoint()
    try:
        model, meta = load_model(path)
        spec = args.data or meta.get("config", {}).get("data", "cifar10")
        dataset = load_dataset(spec, cache_dir=args.cache_dir)
    except (DataError, FileNotFoundError, ValueError) as err:
        return fail(str(err))
    class_names = meta.get("class_names", dataset.class_names)
    if list(dataset.class_names) != list(class_names):
        return fail(
            f"the data's classes {dataset.class_names} differ from the model's {class_names}"
        )
    normalizer = Normalizer.from_dict(meta["normalization"])
    dtype = np.dtype(meta.get("dtype", "float32")).type
    result = evaluate(
        model, dataset.test_images, dataset.test_labels, normalizer, args.batch_size, dtype
    )
    per_class = result.per_class_accuracy(len(class_names))
    if args.json:
        print(
            json.dumps(
                {
                    "checkpoint": str(path),
                    "data": spec,
                    "images": len(result.labels),
                    "test_accuracy": result.accuracy,
                    "test_loss": result.loss,
                    "per_class_accuracy": dict(zip(class_names, per_class.tolist(), strict=True)),
                },
                indent=2,
            )
        )
        return 0
    print(f"checkpoint: {path}")
    print(f"data: {spec} ({len(result.labels):,} test images)")
    print(f"test accuracy: {result.accuracy:.4f}")
    print(f"test loss:     {result.loss:.4f}")
    print("per-class accuracy:")
    width = max(len(name) for name in class_names)
    for name, acc in zip(class_names, per_class, strict=True):
        print(f"  {name:<{width}}  {acc:.4f}")
    return 0
