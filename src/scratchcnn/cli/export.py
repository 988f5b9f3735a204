"""``scratchcnn export``: write a saved model as an ONNX graph."""

from __future__ import annotations

import argparse

HELP = """Write a saved scratchcnn model (or training checkpoint) as an ONNX graph, built with the
onnx package (no PyTorch needed) and checked with onnx.checker. The graph takes normalised
NCHW float input named 'input' (or [0, 1] pixels with --include-normalization) and returns
'logits' (or 'probabilities' with --softmax). Needs: pip install 'scratchcnn[onnx]'."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.cli._common import add_checkpoint_arguments, positive_int

    parser = subparsers.add_parser(
        "export",
        help="write a saved model as an ONNX graph",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--onnx", metavar="PATH", required=True, help="the .onnx file to write")
    parser.add_argument(
        "--input-shape",
        type=positive_int,
        nargs=3,
        metavar=("C", "H", "W"),
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
    from scratchcnn.cli._common import check_output, fail, load_for_command
    from scratchcnn.errors import CheckpointError

    try:
        import onnx  # noqa: F401

        from scratchcnn.interop.onnx_export import export_onnx
    except ImportError:
        return fail("export needs the onnx package: pip install 'scratchcnn[onnx]'")

    out = check_output(args.onnx)
    loaded = load_for_command(args)
    if args.input_shape:
        channels, height, width = args.input_shape
        loaded = loaded.supplied(image_shape=(height, width, channels))  # checked against it
    elif "image_shape" not in loaded.known_fields():
        raise CheckpointError(
            f"{loaded.path} does not record its input shape; give it with --input-shape C H W "
            "(e.g. --input-shape 3 32 32)"
        )
    height, width, channels = loaded.image_shape
    known = loaded.known_fields()
    metadata = {key: known[key] for key in ("class_names", "normalization") if key in known}
    normalizer = loaded.normalizer if args.include_normalization else None
    path = export_onnx(
        loaded.model, out, (channels, height, width), args.softmax, normalizer, metadata, args.opset
    )
    print(f"wrote {path} (opset {args.opset}, checked with onnx.checker)")
    return 0
