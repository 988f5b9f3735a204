"""Benchmark the seed CNN against PyTorch and write the report to a file.

Runs ``scratchcnn bench --vs-torch`` (7 rounds by default) and saves the printed report, so
that the README's "Performance" table can be regenerated from one run::

    python benchmarks/bench_seed_cnn.py                      # -> benchmarks/results/seed_cnn.txt
    python benchmarks/bench_seed_cnn.py --batch 128 --output /tmp/report.txt
    python benchmarks/bench_seed_cnn.py --torch-threads 1 --output benchmarks/results/x.txt

Speed is measured and reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scratchcnn.cli import main as scratchcnn_main

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "seed_cnn.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backend", choices=("fast", "reference"), default="fast")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch intra-op threads (default: PyTorch's own, all cores)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    bench_argv = ["bench", "--batch", str(args.batch), "--dtype", args.dtype]
    bench_argv += ["--steps", str(args.steps), "--rounds", str(args.rounds)]
    bench_argv += ["--backend", args.backend, "--output", str(args.output)]
    if not args.no_torch:
        bench_argv.append("--vs-torch")
    if args.torch_threads is not None:
        bench_argv += ["--torch-threads", str(args.torch_threads)]
    status = scratchcnn_main(bench_argv)  # `scratchcnn bench ...`: one code path for both
    if status == 0:
        print(f"report written to {args.output}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
