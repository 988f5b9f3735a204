"""``scratchcnn ablate-filters``: how much each filter of a conv layer matters, class by class."""

from __future__ import annotations

import argparse

HELP = """Zero each filter of a conv layer in turn (its weights and bias, as if pruned; or groups
of --group-size filters), classify the test images each time, and rank the filters by the
accuracy lost, overall and per class.

Writes OUT/ablation.json and OUT/ablation.csv (every filter group: accuracy, drop, per-class
drop), OUT/ablation.png (the drops sorted, and per class for the most and least important) and,
for single filters, OUT/filters.png (the most and least important filters with the test images
that excite them most)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ablate-filters",
        help="zero each filter of a conv layer in turn and rank the filters by accuracy lost",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model file (default: RUN/best.safetensors with --run, else "
        "models/seed_cnn_cifar10.safetensors)",
    )
    parser.add_argument("--run", metavar="RUN_DIR", help="a training run folder")
    parser.add_argument(
        "--layer", metavar="N", help="conv layer index or name such as conv1 (default: last conv)"
    )
    parser.add_argument(
        "--group-size", type=int, default=1, metavar="N", help="filters zeroed together (default 1)"
    )
    parser.add_argument("--data", metavar="SPEC", help="data (default: the model's training data)")
    parser.add_argument("--cache-dir", metavar="DIR", help="dataset cache")
    parser.add_argument(
        "--max-images", type=int, metavar="N", help="use a random subset of N test images"
    )
    parser.add_argument("--out", metavar="DIR", default="ablation", help="where to write")
    return parser


def run(args: argparse.Namespace) -> int:
    from scratchcnn.cli._common import fail
    from scratchcnn.data import DataError

    try:
        return _run(args)
    except ImportError as err:
        return fail(f"{err} (pictures need matplotlib: pip install 'scratchcnn[viz]')")
    except (DataError, FileNotFoundError, ValueError) as err:
        return fail(str(err))


def _run(args: argparse.Namespace) -> int:
    import csv
    import io
    import json
    from pathlib import Path

    from scratchcnn import viz
    from scratchcnn.analysis import interpret
    from scratchcnn.analysis.filter_ablation import ablate_filters, filter_groups, resolve_conv
    from scratchcnn.cli._common import load_for_command
    from scratchcnn.errors import ConfigError
    from scratchcnn.report import load_test_images, run_checkpoint
    from scratchcnn.serialization import atomic_write_text, check_writable

    if args.group_size < 1:
        raise ConfigError(f"--group-size must be >= 1, got {args.group_size}")
    checkpoint = args.checkpoint or (run_checkpoint(args.run) if args.run else None)
    loaded = load_for_command(args, checkpoint)
    check_writable(Path(args.out) / "ablation.json")  # before the work, not after
    model, names = loaded.model, loaded.class_names
    index = resolve_conv(model, args.layer)  # checked before the images are loaded
    conv = list(model)[index]
    groups = filter_groups(conv.weight.data.shape[0], args.group_size)
    data = args.data or loaded.data()
    images, labels, spec = load_test_images(loaded, data, args.cache_dir, args.max_images)
    result = ablate_filters(model, images, labels, loaded.normalizer, index, groups)

    out = Path(args.out)
    order = result.ranking()
    rows = []
    for rank, g in enumerate(order, start=1):
        row = {
            "rank": rank,
            "filters": " ".join(str(f) for f in result.groups[g]),
            "accuracy": float(result.accuracy[g]),
            "drop": float(result.drop[g]),
        }
        row.update({f"drop_{n}": float(d) for n, d in zip(names, result.per_class_drop[g],
                                                          strict=True)})  # fmt: skip
        rows.append(row)
    document = {
        "checkpoint": str(loaded.path),
        "data": spec,
        "images": len(labels),
        "layer": result.layer,
        "baseline_accuracy": result.baseline_accuracy,
        "baseline_per_class": dict(zip(names, result.baseline_per_class.tolist(), strict=True)),
        "groups": rows,
    }
    atomic_write_text(out / "ablation.json", json.dumps(document, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "ablation.csv", buffer.getvalue())
    viz.plot_filter_ablation(result, names, path=out / "ablation.png")
    written = [out / "ablation.json", out / "ablation.csv", out / "ablation.png"]
    if args.group_size == 1:
        top, _ = interpret.top_activating_images(model, images, loaded.normalizer, index, 6)
        viz.plot_ablated_filters(result, conv.weight.data, images, top, path=out / "filters.png")
        written.append(out / "filters.png")

    print(f"{result.layer}: accuracy {result.baseline_accuracy:.4f} with every filter, on "
          f"{len(labels):,} test images of {spec}")  # fmt: skip
    # the five most and the five least important
    positions = sorted({*range(min(5, len(order))), *range(max(0, len(order) - 5), len(order))})
    for position in positions:
        g, row = order[position], rows[position]
        worst = names[int(result.per_class_drop[g].argmax())]
        print(f"  {row['rank']:>3}. filters {row['filters']:<10} drop "
              f"{result.drop[g] * 100:+6.2f} points (most on {worst})")  # fmt: skip
    print("wrote " + ", ".join(str(path) for path in written))
    return 0
