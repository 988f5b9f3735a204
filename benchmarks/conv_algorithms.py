"""Which algorithm each part of a 3x3 convolution should run on: Winograd or im2col.

For each layer shape of the seed model, airbench, resnet9 and the CIFAR ResNets, and two
8-channel inputs, times the three products of a training step separately, on the fast
backend's own functions:

- ``fwd``: the convolution on Winograd (``w4``: the default, 4x4 tiles wherever
  ``fast.winograd.tile_side`` takes them; ``w2``: 2x2 tiles only, ``winograd_tile=2``) or on
  im2col (``i2c``);
- ``dx``: the input gradient as a forward convolution of the output gradient with the flipped
  kernel (stride 1), on the same three; and, for comparison, the route strided convolutions
  take, im2col + col2im;
- ``dw``: the weight gradient, im2col rows times the output gradient, or Winograd's adjoint
  transforms (``dU = V^T dM``, then ``G^T dU G``) on either tile size, the route the fast
  backend takes from ``winograd_weight_grad_min_channels`` input channels.

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
from functools import partial
from pathlib import Path

import numpy as np

from scratchcnn import fast
from scratchcnn.backend import ConvGeometry
from scratchcnn.fast import conv
from scratchcnn.fast.layout import to_nchw, to_nhwc
from scratchcnn.fast.winograd import conv2d_weight_grad
from scratchcnn.serialization import atomic_write_text

# (in channels, out channels, output size): the seed model's conv2, airbench's 3x3 layers,
# resnet9's wide ones (vgg has the 256->256 at 8x8 too), the CIFAR ResNets' three stages, then
# two 8-channel inputs, the fewest from which the 4x4 tiles' weight gradient runs on Winograd
# (winograd4_weight_grad_min_channels).
SHAPES = [
    (32, 64, 16), (24, 64, 31), (64, 64, 15), (64, 128, 15), (128, 128, 7), (128, 128, 3),
    (128, 256, 16), (256, 256, 8), (16, 16, 32), (32, 32, 16), (64, 64, 8),
    (8, 16, 32), (8, 32, 16),
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
    settings = {
        "w4": fast.Settings(workers=args.workers),
        "w2": fast.Settings(workers=args.workers, winograd_tile=2),
        "i2c": fast.Settings(workers=args.workers, winograd=False),
    }
    columns = ["fwd w4", "fwd w2", "fwd i2c", "dx w4", "dx w2", "dx i2c", "dx col2im"]
    columns += ["dw i2c", "dw w4", "dw w2"]
    lines = [
        f"batch {args.batch}, {args.workers} worker(s), float32, min ms over {args.reps} "
        "interleaved runs (w4: Winograd, 4x4 tiles where they apply; w2: 2x2 tiles only)",
        f"{'layer':16}" + "".join(f"{name:>10}" for name in columns),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    for channels, out_channels, size in SHAPES:
        best = time_layer(channels, out_channels, size, args, rng, settings)
        line = f"{channels:>4}->{out_channels:<4}@{size:<3}  " + "".join(
            f"{best[name]:>10.2f}" for name in columns
        )
        lines.append(line)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    if args.output is not None:
        atomic_write_text(args.output, "\n".join(lines) + "\n")
    return 0


def time_layer(channels, out_channels, size, args, rng, settings) -> dict[str, float]:
    """Minimum milliseconds of each product for one layer shape, the variants interleaved."""
    x = to_nchw(rng.standard_normal((args.batch, size, size, channels)).astype(np.float32))
    grad = to_nchw(rng.standard_normal((args.batch, size, size, out_channels)).astype(np.float32))
    weight = rng.standard_normal((out_channels, channels, 3, 3)).astype(np.float32)
    flipped = conv.flipped_weight(weight)
    saved = conv.ConvSaved(to_nhwc(x), None, weight, SAME)
    grad_nhwc = to_nhwc(grad)
    operations = {}
    for name, setting in settings.items():
        operations[f"fwd {name}"] = partial(
            conv.conv2d_forward, x, weight, None, SAME, False, setting
        )
        operations[f"dx {name}"] = partial(
            conv.conv2d_forward, grad, flipped, None, SAME, False, setting
        )
    operations["dx col2im"] = partial(
        conv.im2col_backward, saved, grad, True, False, settings["i2c"]
    )
    operations["dw i2c"] = partial(conv.im2col_backward, saved, grad, False, True, settings["i2c"])
    for name in ("w4", "w2"):
        operations[f"dw {name}"] = partial(
            conv2d_weight_grad, saved.x_nhwc, grad_nhwc, SAME.padding, settings[name]
        )
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
