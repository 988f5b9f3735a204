"""Where a 3x3 convolution's weight gradient is faster: im2col rows or Winograd's adjoint.

For each layer shape (input channels, output channels, image side; stride 1, "same" padding)
the fast backend computes the weight and bias gradients of a random batch both ways, the two
alternating over rounds, and the medians are printed in milliseconds with the ratio::

    python benchmarks/weight_grad_layers.py                  # airbench's, resnet9's and vgg's
    python benchmarks/weight_grad_layers.py --batch 128 --layers 16,16,32 32,32,16

The fast backend takes the Winograd path from ``winograd_weight_grad_min_channels`` input
channels (for layers whose forward pass is on Winograd); this is the measurement behind that
default. Speed is measured and reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from scratchcnn import fast
from scratchcnn.backend import ConvGeometry
from scratchcnn.fast import conv, winograd
from scratchcnn.serialization import atomic_write_text

# airbench's layers (at batch 512 in the fast recipe), then resnet9's and vgg's wide ones.
LAYERS = ["24,64,31", "64,64,15", "64,128,15", "128,128,7", "128,256,16", "256,256,8"]
PATHS = {"im2col": 1 << 30, "Winograd": 1}  # winograd_weight_grad_min_channels


def layer(text: str) -> tuple[int, int, int]:
    """``"C,OC,SIDE"`` -> ``(C, OC, SIDE)``, for argparse."""
    try:
        channels, out_channels, side = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a layer is C,OC,SIDE (three integers), got {text!r}"
        ) from None
    if min(channels, out_channels, side) < 1:
        raise argparse.ArgumentTypeError(f"C, OC and SIDE must be >= 1, got {text!r}")
    return channels, out_channels, side


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--layers", type=layer, nargs="+", default=[layer(t) for t in LAYERS])
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    geometry = ConvGeometry((3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1))
    lines = [
        f"3x3 weight + bias gradient, batch {args.batch}, float32, fast backend, "
        f"{args.rounds} rounds (medians, ms)",
        f"{'layer':>18}{'im2col':>10}{'Winograd':>10}{'ratio':>8}",
    ]
    fast.keep_freed_memory()  # as the trainer does
    for channels, out_channels, side in args.layers:
        x = rng.standard_normal((args.batch, channels, side, side), dtype=np.float32)
        weight = rng.standard_normal((out_channels, channels, 3, 3), dtype=np.float32)
        _, saved = conv.conv2d_forward(x, weight, None, geometry, True, fast.current_settings())
        grad_out = rng.standard_normal((args.batch, side, side, out_channels), dtype=np.float32)
        grad_out = grad_out.transpose(0, 3, 1, 2)  # channels-last memory, as the layers pass it
        times: dict[str, list[float]] = {name: [] for name in PATHS}
        for round_index in range(args.rounds + 1):  # round 0 warms up
            for name, minimum in PATHS.items():
                with fast.settings(winograd_weight_grad_min_channels=minimum) as settings:
                    start = time.perf_counter()
                    conv.conv2d_backward(saved, grad_out, False, True, settings)
                    if round_index > 0:
                        times[name].append(1e3 * (time.perf_counter() - start))
        on_winograd = winograd.applies(
            (args.batch, side, side, channels), weight.shape, geometry, fast.current_settings()
        )
        im2col, wino = (statistics.median(times[name]) for name in PATHS)
        name = f"{channels}->{out_channels} @{side}x{side}"
        note = "" if on_winograd else "  (forward not on Winograd: both im2col)"
        lines.append(f"{name:>18}{im2col:10.1f}{wino:10.1f}{im2col / wino:7.2f}x{note}")
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.output is not None:
        atomic_write_text(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
