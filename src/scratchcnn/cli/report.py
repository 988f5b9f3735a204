"""``scratchcnn report``: one self-contained HTML page about a training run."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.cli._common import positive_int

    parser = subparsers.add_parser(
        "report",
        help="write an HTML report of a run: config, curves, test metrics and every picture",
        description="Write one self-contained HTML report (images embedded) for a training run: "
        "configuration, architecture, training curves, test metrics (per-class scores, "
        "confusion matrix, calibration, ROC, top-k), filters, activation maps, Grad-CAM, "
        "occlusion, saliency, top-activating images and filter statistics. The page goes to "
        "RUN_DIR/report.html when the model reported on is the run's own (its best or last "
        "checkpoint); a run folder reported with a model from elsewhere (--checkpoint outside "
        "it, as for the committed models/seed_cnn_cifar10-run) is a record that is never "
        "written into: the page then goes to <run folder name>-report.html in the working "
        "folder.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the training run folder")
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model to report on (default: RUN_DIR/best.safetensors)",
    )
    parser.add_argument(
        "--data", metavar="SPEC", help="test data (default: the data the model was trained on)"
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="dataset cache (default: $SCRATCHCNN_DATA or ~/.cache)"
    )
    parser.add_argument(
        "--max-images",
        type=positive_int,
        metavar="N",
        help="use a random subset of N test images (quicker; default: all)",
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        help="where to write (default: RUN_DIR/report.html for the run's own model, else "
        "<run folder name>-report.html in the working folder)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scratchcnn.cli._common import check_output, load_for_command
    from scratchcnn.errors import DataError

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    from scratchcnn.report import build_report, run_checkpoint

    checkpoint = Path(args.checkpoint) if args.checkpoint else run_checkpoint(run_dir)
    own_model = checkpoint.resolve().parent == run_dir.resolve()
    default = (
        run_dir / "report.html" if own_model else Path(f"{run_dir.resolve().name}-report.html")
    )
    out = check_output(args.out or default)
    loaded = load_for_command(args, checkpoint)  # checked, and the data found, before the work
    path = build_report(
        run_dir,
        checkpoint=checkpoint,
        data=args.data or loaded.data(),
        cache_dir=args.cache_dir,
        max_images=args.max_images,
        out=out,
    )
    print(f"wrote {path}")
    return 0
