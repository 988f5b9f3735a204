"""What Winograd buys: a zoo model on the fast backend with and without it, in one process.

Four settings alternate over rounds (so machine noise hits all alike): Winograd wherever it
applies (the default: F(4x4, 3x3) for forward passes and input gradients), the same with
F(2x2, 3x3) tiles, Winograd for the forward passes and input gradients but every weight gradient
on im2col, and im2col only. The medians are printed as milliseconds per batch, for a
training step and for inference, with the speed-ups over im2col only::

    python benchmarks/ablate_winograd.py                 # seed CNN, batch 64, 10 steps x 9 rounds
    python benchmarks/ablate_winograd.py --model airbench --batch 512 --steps 3 --rounds 5
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
    parser.add_argument("--model", default="seed_cnn", help="a zoo model (scratchcnn models)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    model, x, y = build_model(BenchConfig(model=args.model, batch=args.batch))
    train_step, infer_step, _, _ = _scratch_steps(model, x, y, lr=0.01)
    settings = {
        "Winograd": {},
        "2x2 tiles": {"winograd_tile": 2},
        "im2col weight grads": {
            "winograd_weight_grad_min_channels": 1 << 30,
            "winograd4_weight_grad_min_channels": 1 << 30,
        },
        "im2col only": {"winograd": False},
    }
    times: dict[tuple[str, str], list[float]] = {}
    fast.keep_freed_memory()  # as the trainer does
    with use_backend("fast"):
        for round_index in range(args.rounds + 1):  # round 0 warms up (Numba, allocator)
            for name, changes in settings.items():
                with fast.settings(**changes):
                    for kind, step in (("train", train_step), ("infer", infer_step)):
                        start = time.perf_counter()
                        for _ in range(args.steps):
                            step()
                        if round_index > 0:
                            elapsed = (time.perf_counter() - start) / args.steps
                            times.setdefault((name, kind), []).append(1e3 * elapsed)
    lines = [
        f"{args.model}, batch {args.batch}, float32, fast backend, "
        f"{args.steps} steps x {args.rounds} rounds (medians, ms per batch; speed-up over "
        "im2col only)",
        f"{'':20}{'train':>10}{'infer':>10}{'train':>10}{'infer':>10}",
    ]
    medians = {key: statistics.median(values) for key, values in times.items()}
    for name in settings:
        train, infer = medians[name, "train"], medians[name, "infer"]
        lines.append(
            f"{name:20}{train:10.2f}{infer:10.2f}"
            f"{medians['im2col only', 'train'] / train:9.2f}x"
            f"{medians['im2col only', 'infer'] / infer:9.2f}x"
        )
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.output is not None:
        atomic_write_text(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
