"""What Winograd buys: the seed CNN on the fast backend with and without it, in one process.

The two settings alternate over rounds (so machine noise hits both alike) and the medians are
printed as milliseconds per batch, for a training step and for inference, with the ratio::

    python benchmarks/ablate_winograd.py                 # batch 64, 10 steps x 9 rounds
    python benchmarks/ablate_winograd.py --output benchmarks/results/winograd_ablation.txt

Without Winograd every convolution runs on im2col + BLAS, as before it existed. Speed is
measured and reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from scratchcnn import fast
from scratchcnn.backend import use_backend
from scratchcnn.serialization import atomic_write_text
from scratchcnn.tools.bench import BenchConfig, _scratch_steps, build_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    model, x, y = build_model(BenchConfig(batch=args.batch))
    train_step, infer_step, _, _ = _scratch_steps(model, x, y, lr=0.01)
    settings = {"Winograd": True, "im2col only": False}
    times: dict[tuple[str, str], list[float]] = {}
    fast.keep_freed_memory()  # as the trainer does
    with use_backend("fast"):
        for round_index in range(args.rounds + 1):  # round 0 warms up (Numba, allocator)
            for name, enabled in settings.items():
                with fast.settings(winograd=enabled):
                    for kind, step in (("train", train_step), ("infer", infer_step)):
                        start = time.perf_counter()
                        for _ in range(args.steps):
                            step()
                        if round_index > 0:
                            elapsed = (time.perf_counter() - start) / args.steps
                            times.setdefault((name, kind), []).append(1e3 * elapsed)
    lines = [
        f"seed CNN, batch {args.batch}, float32, fast backend, "
        f"{args.steps} steps x {args.rounds} rounds (medians, ms per batch)",
        f"{'':14}{'train':>10}{'infer':>10}",
    ]
    medians = {key: statistics.median(values) for key, values in times.items()}
    for name in settings:
        lines.append(f"{name:14}{medians[name, 'train']:10.2f}{medians[name, 'infer']:10.2f}")
    speedups = [medians["im2col only", k] / medians["Winograd", k] for k in ("train", "infer")]
    lines.append(f"{'speed-up':14}{speedups[0]:9.2f}x{speedups[1]:9.2f}x")
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.output is not None:
        atomic_write_text(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
