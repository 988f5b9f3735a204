"""``scratchcnn gradcheck``: finite-difference checks of every built-in layer, loss and model."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "gradcheck",
        help="check every built-in layer's gradients by finite differences",
        description="Compare each built-in layer's backward pass (input and parameter gradients), "
        "the loss and the seed model with centred finite differences in float64. Prints a table "
        "and exits with status 1 if any relative error exceeds the threshold.",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=1e-6,
        help="largest relative error allowed (default: 1e-6)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the random inputs (default: 0)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scratchcnn.fast.runtime import blas_limit
    from scratchcnn.tools.gradcheck import all_passed, builtin_checks, format_results

    # Tiny float64 products: extra BLAS threads only wait for each other on a busy machine.
    with blas_limit(1):
        results = builtin_checks(np.random.default_rng(args.seed))
    print(format_results(results, args.threshold))
    return 0 if all_passed(results, args.threshold) else 1
