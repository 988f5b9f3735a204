"""``scratchcnn models``: the model zoo, with each model's size and cost."""

from __future__ import annotations

import argparse

INPUT_SHAPE = (3, 32, 32)  # CIFAR-10: what the counts are quoted at


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.cli._common import model_option

    parser = subparsers.add_parser(
        "models",
        help="list the model zoo (parameters, FLOPs, description)",
        description="List every model 'train --model' and 'bench --model' accept, with its "
        "parameter count and forward FLOPs per 32x32 RGB image for 10 classes. With a model "
        "name, print that model's options and its layer-by-layer summary instead.",
    )
    parser.add_argument("name", nargs="?", help="print this model's summary table")
    parser.add_argument(
        "--width", type=float, default=1.0, help="width multiplier for every model (default: 1)"
    )
    parser.add_argument(
        "--model-option",
        dest="model_option",
        type=model_option,
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="with NAME: an option of that model, as 'train --model-option' takes it (e.g. "
        "kernel_size=5, pool=avg); repeatable",
    )
    return parser


def format_zoo(width: float = 1.0) -> str:
    """One row per model: name, parameters, forward MFLOPs at 32x32, description."""
    import numpy as np

    from scratchcnn.models import MODEL_DESCRIPTIONS, MODELS

    rows = [("model", "parameters", "MFLOPs", "description")]
    for name, builder in MODELS.items():
        model = builder(rng=np.random.default_rng(0), width=width)
        flops = model.flops((1, *INPUT_SHAPE))
        rows.append(
            (name, f"{model.num_parameters():,}", f"{flops / 1e6:.1f}", MODEL_DESCRIPTIONS[name])
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}"
        for row in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    lines.append(f"(forward FLOPs per 3x32x32 image, 10 classes, width {width:g})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scratchcnn.cli._common import fail, model_options
    from scratchcnn.models import MODELS, create_model
    from scratchcnn.training.config import check_model_options, model_option_names

    try:
        if args.name is None:
            if args.model_option:
                return fail("--model-option needs a model NAME")
            print(format_zoo(args.width))
            return 0
        options = model_options(args.model_option, None)
        if args.name in MODELS:
            check_model_options(args.name, options)
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        model = create_model(
            args.name, rng=np.random.default_rng(0), **{"width": args.width, **options}
        )
    except ValueError as err:
        return fail(str(err))
    given = "".join(f", {k}={v!r}" for k, v in options.items() if k != "width")
    print(f"{args.name} (width {options.get('width', args.width):g}{given}), one 3x32x32 image:")
    print(f"options: {', '.join(model_option_names(args.name))}")
    model.summary(INPUT_SHAPE)
    return 0
