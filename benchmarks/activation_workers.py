"""ReLU and GELU on one worker and on two: what splitting an activation over the workers buys.

Times the fast backend's own element-wise functions (``scratchcnn.fast.elementwise``) on one
channels-last float32 batch, by default airbench's first activation (512 x 24 x 31 x 31, 47 MB),
forward (ReLU with its mask, GELU) and backward, under ``fast.settings(workers=1)`` and
``workers=2`` alternately; run as a script, it keeps freed memory as training does
(``keep_freed_memory``). Each timing is the minimum over ``--reps`` runs. Speed is reported
here, never asserted in tests::

    python benchmarks/activation_workers.py
    python benchmarks/activation_workers.py --reps 9 \
        --output benchmarks/results/activation_workers.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from scratchcnn import fast
from scratchcnn.fast import elementwise, keep_freed_memory
from scratchcnn.fast.layout import to_nchw


def _operations(x: np.ndarray, grad: np.ndarray):
    """Name -> a function of the settings running one pass."""
    _, mask = elementwise.relu_forward(x, True, fast.current_settings())
    return {
        "ReLU forward (with mask)": lambda s: elementwise.relu_forward(x, True, s),
        "ReLU backward": lambda s: elementwise.relu_backward(mask, grad, s),
        "GELU forward": lambda s: elementwise.gelu_forward(x, True, s),
        "GELU backward": lambda s: elementwise.gelu_backward(x, grad, s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[512, 24, 31, 31], metavar="N")
    parser.add_argument("--reps", type=int, default=5, help="runs per timing; the minimum counts")
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    n, c, h, w = args.shape
    rng = np.random.default_rng(0)
    x = to_nchw(rng.standard_normal((n, h, w, c), dtype=np.float32))  # channels-last memory
    grad = to_nchw(rng.standard_normal((n, h, w, c), dtype=np.float32))
    operations = _operations(x, grad)
    best = {(name, workers): float("inf") for name in operations for workers in (1, 2)}
    for _ in range(args.reps):
        for name, run in operations.items():
            for workers in (1, 2):
                with fast.settings(workers=workers) as settings:
                    start = time.perf_counter()
                    run(settings)
                    best[name, workers] = min(best[name, workers], time.perf_counter() - start)
    lines = [
        f"{n}x{c}x{h}x{w} float32, channels-last, ms, minimum of {args.reps} alternated runs",
        f"{'operation':26s} {'1 worker':>9s} {'2 workers':>9s} {'speed-up':>9s}",
    ]
    for name in operations:
        one, two = best[name, 1], best[name, 2]
        lines.append(f"{name:26s} {one * 1e3:9.2f} {two * 1e3:9.2f} {one / two:8.2f}x")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.output is not None:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    keep_freed_memory()  # as the trainer and `scratchcnn bench` run (it changes the process)
    sys.exit(main())
