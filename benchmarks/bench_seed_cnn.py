"""Benchmark the seed CNN against PyTorch and write the report to a file.

Runs the same code as ``scratchcnn bench --vs-torch`` (``scratchcnn.bench``) and saves the
printed report, so that the README's "Performance" table can be regenerated from one run::

    python benchmarks/bench_seed_cnn.py                      # -> benchmarks/results/seed_cnn.txt
    python benchmarks/bench_seed_cnn.py --batch 128 --output /tmp/report.txt
    python benchmarks/bench_seed_cnn.py --torch-threads 1 --output benchmarks/results/x.txt

Speed is measured and reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scratchcnn.bench import BenchConfig, format_report, run_benchmark

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
    config = BenchConfig(
        batch=args.batch,
        dtype=args.dtype,
        steps=args.steps,
        rounds=args.rounds,
        backend=args.backend,
        vs_torch=not args.no_torch,
        torch_threads=args.torch_threads,
    )
    report = format_report(run_benchmark(config, log=lambda m: print(m, file=sys.stderr)))
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report + "\n", encoding="utf-8")
    print(f"report written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
