"""``scratchcnn train``: train a model; every TrainConfig field is a flag."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing

HELP = """Train a model (by default the seed CNN on CIFAR-10 with the recommended recipe).

Settings come from, in increasing priority: the recipe (--recipe), a TOML file (--config),
then individual flags. Options of one optimizer or schedule (--momentum, --nesterov, --betas,
--warmup-epochs, --step-size, --gamma, --lr-knots) default to that optimizer's or schedule's
usual value and are refused for the others.

The model: --model NAME (any model of 'scratchcnn models') with --width and --model-option
KEY=VALUE, or --model-config FILE.json (an architecture in the checkpoint format; a TOML config
takes it as a [model] table). --init-from CHECKPOINT starts from its matching tensors (a new
class count gets a new head); --freeze PATTERN keeps parameters fixed. Its layer table is
printed first and saved as summary.txt.

Recipes: 'default' (recommended for the seed CNN), 'seed' (the original write-up) and 'fast'
(airbench93 on the airbench model: all 50,000 training images, 11 epochs, patch-whitening,
Lookahead, alternating flips, test-time augmentation at the end).

The run folder (--run-dir/--name) receives config.json, summary.txt, metrics.jsonl,
metrics.csv, grad_norms.jsonl, last.safetensors (resumable), best.safetensors and results.json
(and transfer.json, activations.jsonl, lr_finder.json when asked for). --val-size 0 trains on
every training image (the last epoch's model is kept). --find-lr runs the learning-rate range
test first and trains with its suggestion. Ctrl-C saves a resumable checkpoint; resume with
--resume RUN_FOLDER. A run that fails before its first checkpoint removes its run folder."""

# TrainConfig fields with flags of their own form (see add_parser) instead of --field VALUE.
SPECIAL_FIELDS = ("model_options", "architecture", "freeze", "lr_knots")


def _field_help() -> dict[str, str]:
    """The one-line comment beside each TrainConfig field, used as its --help text."""
    from scratchcnn.training import config as config_module

    source = inspect.getsource(config_module.TrainConfig)
    return dict(re.findall(r"^\s+(\w+): [^=]+=.*?#\s*(.+)$", source, flags=re.MULTILINE))


def _parse_optional(kind: type):
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = f"{kind.__name__} or none"
    return parse


def _knot(text: str) -> tuple[float, float]:
    """argparse type of one ``--lr-knots`` item: ``FRACTION:FACTOR``."""
    try:
        fraction, factor = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected FRACTION:FACTOR such as 0.23:1 (a fraction of training and an lr "
            f"factor), got {text!r}"
        ) from None
    return fraction, factor


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.cli._common import add_model_option_arguments
    from scratchcnn.training.config import RECIPES, TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="train a model",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--recipe",
        default="default",
        choices=sorted(RECIPES),
        help="starting settings: 'default' (recommended), 'seed' (the original write-up: "
        "SGD lr 0.01, batch 64, 5 epochs, no augmentation) or 'fast' (airbench93 on the "
        "airbench model; see the README)",
    )
    parser.add_argument("--config", metavar="TOML", help="a TOML file of settings (flat keys)")
    parser.add_argument(
        "--resume", metavar="RUN", help="resume a run folder (or its last.safetensors) exactly"
    )
    helps = _field_help()
    hints = typing.get_type_hints(TrainConfig)
    group = parser.add_argument_group("settings (defaults shown are the 'default' recipe's)")
    model = parser.add_argument_group("model options, architecture and transfer learning")
    add_model_option_arguments(model)
    model.add_argument(
        "--model-config",
        metavar="FILE.json",
        help="train the network this JSON file describes (the checkpoint's architecture "
        "format) instead of a zoo model",
    )
    model.add_argument(
        "--freeze",
        action="append",
        default=argparse.SUPPRESS,
        metavar="PATTERN",
        help="parameters that do not train: a name (0.weight), a layer prefix (3, 3.block) or "
        "a glob (*.bias); repeatable; a pattern that matches nothing is an error",
    )
    group.add_argument(
        "--lr-knots",
        type=_knot,
        nargs="+",
        default=argparse.SUPPRESS,
        metavar="FRACTION:FACTOR",
        help=helps["lr_knots"] + " (default with --schedule piecewise: airbench's 0:0.2 "
        "0.23:1 1:0.07)",
    )
    for field in dataclasses.fields(TrainConfig):
        if field.name in SPECIAL_FIELDS:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        help_text = helps.get(field.name, "")
        if field.default is not None:  # a None default's comment says what none means
            help_text += f" (default: {field.default})"
        help_text = help_text.replace("%", "%%")
        optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
        base = next(a for a in typing.get_args(kind) if a is not type(None)) if optional else kind
        if base is bool:
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif typing.get_origin(base) is tuple:  # betas: two numbers
            items = typing.get_args(base)
            group.add_argument(
                flag,
                type=items[0],
                nargs=len(items),
                default=argparse.SUPPRESS,
                metavar=items[0].__name__.upper(),
                help=help_text,
            )
        else:
            group.add_argument(
                flag,
                type=_parse_optional(base) if optional else base,
                default=argparse.SUPPRESS,
                metavar=base.__name__.upper(),
                help=help_text,
            )
    return parser


def run(args: argparse.Namespace) -> int:
    from scratchcnn.cli._common import fail, model_options
    from scratchcnn.training import load_toml, resolve_config, train
    from scratchcnn.training.config import TrainConfig

    field_names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in field_names}
    options = model_options(args.model_option, args.width)
    if options:
        overrides["model_options"] = options
    if args.model_config:
        from scratchcnn.models import load_model_config

        overrides["architecture"] = load_model_config(args.model_config)
    if args.resume:
        if overrides or args.config:
            return fail("--resume continues a run with its saved settings; drop the other flags")
        result = train(None, resume=args.resume)
    else:
        file_values = load_toml(args.config) if args.config else None
        config = resolve_config(args.recipe, file_values, overrides)
        result = train(config)
    if result.status == "interrupted":
        print(f"interrupted; resume with: scratchcnn train --resume {result.run_dir}")
        return 130
    print(f"run folder: {result.run_dir}")
    return 0
