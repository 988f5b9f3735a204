"""Memory of one training step, float32 against mixed precision, measured with ``tracemalloc``.

NumPy reports its array allocations to ``tracemalloc``, so the traced sizes are the arrays
themselves: what the forward pass keeps for backward (held between forward and backward) and
the step's peak (kept arrays plus the largest temporaries). The process's resident memory
(``benchmarks/fast_recipe_memory.py`` under ``/usr/bin/time -v``) adds the dataset, the
libraries and the allocator's slack on top::

    python benchmarks/step_memory.py --model airbench --batch 512

The step is the trainer's: the fused model on the current backend, in its compute scope, and
with ``mixed`` in the backend's mixed-precision scope (float16 storage of what backward keeps).
Speed under this script means nothing (``tracemalloc`` slows allocation).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tracemalloc

from scratchcnn.backend import current_backend
from scratchcnn.layers import fuse
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.tools.bench import BenchConfig, build_model

MB = 2**20


def step_memory(model_name: str, batch: int, precision: str) -> dict[str, float]:
    """Bytes (MiB) kept between forward and backward, and the step's traced peak."""
    model, x, y = build_model(BenchConfig(model=model_name, batch=batch))
    fused, loss_fn, backend = fuse(model), CrossEntropyLoss(), current_backend()
    mixed = backend.mixed_precision_scope() if precision == "mixed" else contextlib.nullcontext()
    with backend.compute_scope(), mixed:
        loss_fn(fused.forward(x, training=True), y)  # compiles kernels, allocates buffers
        fused.backward(loss_fn.backward())
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            loss_fn(fused.forward(x, training=True), y)
            kept = tracemalloc.get_traced_memory()[0] - before
            fused.backward(loss_fn.backward())
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    return {"kept_mib": kept / MB, "peak_mib": peak / MB}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="airbench")
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args(argv)
    print(f"model {args.model}, batch {args.batch}: MiB traced by tracemalloc")
    print(f"{'precision':<10} {'kept for backward':>18} {'step peak':>10}")
    for precision in ("float32", "mixed"):
        result = step_memory(args.model, args.batch, precision)
        print(f"{precision:<10} {result['kept_mib']:>18.1f} {result['peak_mib']:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
