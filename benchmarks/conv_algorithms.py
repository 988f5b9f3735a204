"""Which algorithm each part of a 3x3 convolution should run on: Winograd or im2col.

For each layer shape of the seed model and airbench, times the three products of a training
step separately, on the fast backend's own functions:

- ``forward``: the convolution (``winograd`` or ``im2col``);
- ``input grad``: the input gradient as a forward convolution of the output gradient with the
  flipped kernel (stride 1), again on Winograd or im2col; and, for comparison, the route
  strided convolutions take, im2col + col2im;
- ``weight grad``: im2col rows times the output gradient, and Winograd's adjoint transforms
  (``dU = V^T dM``, then ``G^T dU G``), the route the fast backend takes from
  ``winograd_weight_grad_min_channels`` input channels.

Each timing is the minimum over ``--reps`` runs, the variants interleaved so that machine noise
hits them alike. Speed is reported here, never asserted in tests::

    python benchmarks/conv_algorithms.py                      # batch 64, one worker
    python benchmarks/conv_algorithms.py --batch 256 --workers 2 --output results.txt
    python benchmarks/conv_algorithms.py --batch 512 --workers 2 --reps 5 \
        --output benchmarks/results/conv_algorithms_b512.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from scratchcnn import fast
from scratchcnn.backend import ConvGeometry
from scratchcnn.fast import conv
from scratchcnn.fast.layout import to_nchw, to_nhwc
from scratchcnn.fast.winograd import conv2d_weight_grad
from scratchcnn.serialization import atomic_write_text

# (in channels, out channels, output size): the seed model's conv2, airbench's 3x3 layers, then
# resnet9's wide ones (vgg has the 256->256 at 8x8 too).
SHAPES = [
    (32, 64, 16), (24, 64, 31), (64, 64, 15), (64, 128, 15), (128, 128, 7), (128, 128, 3),
    (128, 256, 16), (256, 256, 8),
]  # fmt: skip
SAME = ConvGeometry((3, 3), (1, 1), ((1, 1), (1, 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    fast.keep_freed_memory()
    rng = np.random.default_rng(0)
    winograd = fast.Settings(workers=args.workers)
    im2col = fast.Settings(workers=args.workers, winograd=False)
    lines = [
        f"batch {args.batch}, {args.workers} worker(s), float32, min ms over {args.reps} "
        "interleaved runs",
        f"{'layer':16}{'fwd wino':>10}{'fwd i2c':>10}{'dx wino':>10}{'dx i2c':>10}"
        f"{'dx col2im':>11}{'dw i2c':>10}{'dw wino':>10}",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    for channels, out_channels, size in SHAPES:
        best = time_layer(channels, out_channels, size, args, rng, winograd, im2col)
        line = f"{channels:>4}->{out_channels:<4}@{size:<3}  " + "".join(
            f"{value:>{11 if name == 'dx col2im' else 10}.2f}" for name, value in best.items()
        )
        lines.append(line)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if args.output is not None:
        atomic_write_text(args.output, "\n".join(lines) + "\n")
    return 0


def time_layer(channels, out_channels, size, args, rng, winograd, im2col) -> dict[str, float]:
    """Minimum milliseconds of each product for one layer shape, the variants interleaved."""
    x = to_nchw(rng.standard_normal((args.batch, size, size, channels)).astype(np.float32))
    grad = to_nchw(rng.standard_normal((args.batch, size, size, out_channels)).astype(np.float32))
    weight = rng.standard_normal((out_channels, channels, 3, 3)).astype(np.float32)
    flipped = conv.flipped_weight(weight)
    saved = conv.ConvSaved(to_nhwc(x), None, weight, SAME)
    operations = {
        "fwd wino": lambda: conv.conv2d_forward(x, weight, None, SAME, False, winograd),
        "fwd i2c": lambda: conv.conv2d_forward(x, weight, None, SAME, False, im2col),
        "dx wino": lambda: conv.conv2d_forward(grad, flipped, None, SAME, False, winograd),
        "dx i2c": lambda: conv.conv2d_forward(grad, flipped, None, SAME, False, im2col),
        "dx col2im": lambda: conv.im2col_backward(saved, grad, True, False, im2col),
        "dw i2c": lambda: conv.im2col_backward(saved, grad, False, True, im2col),
        "dw wino": lambda: conv2d_weight_grad(saved.x_nhwc, to_nhwc(grad), SAME.padding, winograd),
    }
    best = dict.fromkeys(operations, float("inf"))
    for run in range(args.reps + 1):  # run 0 warms up (Numba, allocator)
        for name, operation in operations.items():
            start = time.perf_counter()
            operation()
            if run:
                best[name] = min(best[name], 1e3 * (time.perf_counter() - start))
    return best


if __name__ == "__main__":
    sys.exit(main())
