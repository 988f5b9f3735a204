"""``scratchcnn export``: write a saved model as an ONNX graph."""

from __future__ import annotations

import argparse

HELP = """Write a saved scratchcnn model (or training checkpoint) as an ONNX graph, built with the
onnx package (no PyTorch needed) and checked with onnx.checker. The graph takes normalised
NCHW float input named 'input' (or [0, 1] pixels with --include-normalization) and returns
'logits' (or 'probabilities' with --softmax). Needs: pip install 'scratchcnn[onnx]'."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="write a saved model as an ONNX graph",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model or checkpoint file (default: models/seed_cnn_cifar10.safetensors)",
    )
    parser.add_argument("--onnx", metavar="PATH", required=True, help="the .onnx file to write")
    parser.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        metavar="DIM",
        help="input shape without the batch axis, e.g. 3 32 32 (default: from the checkpoint)",
    )
    parser.add_argument("--softmax", action="store_true", help="output probabilities")
    parser.add_argument(
        "--include-normalization",
        action="store_true",
        help="standardise [0, 1] pixels inside the graph with the checkpoint's statistics",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    return parser


def run(args: argparse.Namespace) -> int:
    from scratchcnn.cli._common import default_checkpoint, fail

    try:
        from scratchcnn.interop.onnx_export import export_checkpoint
    except ImportError as err:  # pragma: no cover - onnx is an optional extra
        return fail(f"{err}; export needs the onnx package: pip install 'scratchcnn[onnx]'")
    try:
        import onnx  # noqa: F401
    except ImportError:
        return fail("export needs the onnx package: pip install 'scratchcnn[onnx]'")

    checkpoint = args.checkpoint or default_checkpoint()
    shape = tuple(args.input_shape) if args.input_shape else None
    try:
        path = export_checkpoint(
            checkpoint,
            args.onnx,
            input_shape=shape,
            softmax=args.softmax,
            include_normalization=args.include_normalization,
            opset=args.opset,
        )
    except (FileNotFoundError, ValueError) as err:
        return fail(str(err))
    print(f"wrote {path} (opset {args.opset}, checked with onnx.checker)")
    return 0
