"""``scratchcnn report``: one self-contained HTML page about a training run."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="write RUN_DIR/report.html: config, curves, test metrics and every picture",
        description="Write one self-contained HTML report (images embedded) for a training run: "
        "configuration, architecture, training curves, test metrics (per-class scores, "
        "confusion matrix, calibration, ROC, top-k), filters, activation maps, Grad-CAM, "
        "occlusion, saliency, top-activating images and filter statistics.",
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
        type=int,
        metavar="N",
        help="use a random subset of N test images (quicker; default: all)",
    )
    parser.add_argument(
        "--out", metavar="PATH", help="where to write (default: RUN_DIR/report.html)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from scratchcnn.cli._common import fail
    from scratchcnn.data import DataError

    try:
        from scratchcnn.report import build_report

        path = build_report(
            args.run_dir,
            checkpoint=args.checkpoint,
            data=args.data,
            cache_dir=args.cache_dir,
            max_images=args.max_images,
            out=args.out,
        )
    except ImportError as err:
        return fail(f"{err} (the report needs matplotlib: pip install 'scratchcnn[viz]')")
    except (DataError, FileNotFoundError, ValueError) as err:
        return fail(str(err))
    print(f"wrote {path}")
    return 0
