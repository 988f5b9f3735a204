"""``scratchcnn baselines``: classical machine learning on the trainer's own data split."""

from __future__ import annotations

import argparse

HELP = """Train classical models (scikit-learn) on the same training images, and score them on the
same validation and test images, as `scratchcnn train` with the same data settings: logistic
regression and k-nearest neighbours on PCA features, a linear SVM, an RBF-kernel SVM and a random
forest on HOG features (scikit-image). The RBF SVM trains on a random 10,000 images by default
(its cost grows with the square of the images); every result says how many it trained on.

Writes OUT/baselines.json, OUT/baselines.csv and OUT/baselines.png (accuracy and fit time)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.training.config import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "baselines",
        help="classical ML baselines (SVM, random forest, ...) on the trainer's data split",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    split = parser.add_argument_group("the data split (the same settings as scratchcnn train)")
    split.add_argument("--data", default=defaults.data, help="dataset name, archive or folder")
    split.add_argument("--cache-dir", metavar="DIR", help="dataset cache")
    split.add_argument("--val-size", type=int, default=defaults.val_size, metavar="N",
                       help=f"validation images (default: {defaults.val_size})")  # fmt: skip
    split.add_argument("--train-subset", type=int, metavar="N",
                       help="train on a random subset of N training images")  # fmt: skip
    split.add_argument("--seed", type=int, default=defaults.seed,
                       help="seeds the split (as in training), subsets and models")  # fmt: skip
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these: logistic, linear-svm, rbf-svm, random-forest, knn (default: all)",
    )
    parser.add_argument(
        "--features",
        choices=["pixels", "pca", "hog"],
        help="use these features for every model (default: each model's own)",
    )
    parser.add_argument(
        "--max-train", type=int, metavar="N", help="train every model on at most N images"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="parallel jobs (random forest, k-NN)"
    )
    parser.add_argument(
        "--out", metavar="DIR", default="runs/baselines", help="where to write the results"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from scratchcnn.cli._common import fail
    from scratchcnn.data import DataError

    try:
        return _run(args)
    except ImportError as err:
        return fail(f"{err} (baselines need scikit-learn and scikit-image: "
                    "pip install 'scratchcnn[baselines,viz]')")  # fmt: skip
    except (DataError, FileNotFoundError, ValueError) as err:
        return fail(str(err))


def _run(args: argparse.Namespace) -> int:
    import csv
    import io
    import json
    from pathlib import Path

    from scratchcnn import viz
    from scratchcnn.serialization import atomic_write_text
    from scratchcnn.studies.baselines import BASELINES, run_baselines
    from scratchcnn.training.config import TrainConfig
    from scratchcnn.training.trainer import prepare_data

    if args.only:
        unknown = [name for name in args.only if name not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baselines {unknown}; known: {list(BASELINES)}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    config = TrainConfig(
        data=args.data,
        cache_dir=args.cache_dir,
        val_size=args.val_size,
        train_subset=args.train_subset,
        seed=args.seed,
    )
    data = prepare_data(config)
    results = run_baselines(data, args.only, args.features, args.max_train, args.seed, args.jobs)

    out = Path(args.out)
    rows = [result.to_dict() for result in results]
    split = {
        "data": config.data,
        "val_size": config.val_size,
        "train_subset": config.train_subset,
        "seed": config.seed,
        "train_images": len(data.train_labels),
        "val_images": len(data.val_labels),
        "test_images": len(data.test_labels),
    }
    atomic_write_text(out / "baselines.json", json.dumps({"split": split, "results": rows},
                                                         indent=2) + "\n")  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "baselines.csv", buffer.getvalue())
    viz.plot_baselines(results, path=out / "baselines.png")

    print(f"\n{'baseline':<28} {'features':<8} {'train':>7} {'val acc':>8} {'test acc':>8} "
          f"{'fit s':>8} {'test s':>7}")  # fmt: skip
    for r in results:
        val = "-" if r.val_accuracy is None else f"{r.val_accuracy:.4f}"
        mark = "*" if r.subsampled else " "
        costs = f"{r.fit_seconds:>8.1f} {r.predict_seconds:>7.2f}"
        print(f"{r.title:<28} {r.features:<8} {r.train_images:>6,}{mark} {val:>8} "
              f"{r.test_accuracy:>8.4f} {costs}")  # fmt: skip
    if any(r.subsampled for r in results):
        print("* trained on a random subset of the training images")
    print(f"wrote {out / 'baselines.json'}, {out / 'baselines.csv'}, {out / 'baselines.png'}")
    return 0
