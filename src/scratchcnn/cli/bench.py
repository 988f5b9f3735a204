"""``scratchcnn bench``: training and inference speed, per layer, optionally against PyTorch."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="time training steps and inference (optionally against PyTorch)",
        description="Time training steps (forward + loss + backward + SGD update) and inference "
        "after warm-up; print images/s, GFLOP/s as a share of this machine's matmul peak, and a "
        "per-layer profile. With --vs-torch, time the identical PyTorch model in the same "
        "process, alternating in rounds, in NCHW and channels-last formats.",
    )
    from scratchcnn.models import MODELS  # already imported with the package: costs nothing

    parser.add_argument(
        "--model",
        default="seed_cnn",
        choices=list(MODELS),
        metavar="MODEL",
        help=f"model to time, one of: {', '.join(MODELS)} (default: seed_cnn; see "
        "'scratchcnn models')",
    )
    parser.add_argument("--batch", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="(default: float32)"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed"),
        default="float32",
        help="mixed: scratchcnn keeps what backward needs in float16, PyTorch runs under "
        "bfloat16 autocast (default: float32)",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round (default: 10)")
    parser.add_argument("--rounds", type=int, default=5, help="alternation rounds (default: 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument(
        "--backend",
        choices=("fast", "reference"),
        default="fast",
        help="scratchcnn backend to time (default: fast)",
    )
    parser.add_argument(
        "--vs-torch", action="store_true", help="also time PyTorch (needs torch installed)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch intra-op threads for --vs-torch (default: PyTorch's own, all cores)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weights and batch seed (default: 0)")
    parser.add_argument("--output", default=None, help="also write the report to this file")
    return parser


def run(args: argparse.Namespace) -> int:
    import sys

    from scratchcnn.tools.bench import BenchConfig, format_report, run_benchmark

    config = BenchConfig(
        model=args.model,
        batch=args.batch,
        dtype=args.dtype,
        precision=args.precision,
        steps=args.steps,
        rounds=args.rounds,
        warmup=args.warmup,
        backend=args.backend,
        vs_torch=args.vs_torch,
        torch_threads=args.torch_threads,
        seed=args.seed,
    )
    if args.vs_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("--vs-torch needs PyTorch: pip install 'scratchcnn[torch]'", file=sys.stderr)
            return 2
    report = format_report(run_benchmark(config, log=lambda m: print(m, file=sys.stderr)))
    print(report)
    if args.output:
        from scratchcnn.serialization import atomic_write_text

        atomic_write_text(args.output, report + "\n")
    return 0
