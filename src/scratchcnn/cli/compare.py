"""``scratchcnn compare``: train the same model in scratchcnn and PyTorch side by side."""

from __future__ import annotations

import argparse

HELP = """Train one architecture in scratchcnn and in PyTorch from the same initial weights, on the
same batches in the same order, with the same SGD settings, and write a side-by-side figure of
the learning curves (<out>/<prefix>.png), a markdown table of time per epoch, final accuracy and
lines of code (<out>/<prefix>.md) and the curves as JSON (<out>/<prefix>.json).

Settings start from a recipe (default 'seed': plain SGD, lr 0.01, batch 64, no augmentation);
augmentation is always off here so both frameworks see identical batches. Needs PyTorch and
matplotlib: pip install 'scratchcnn[torch,viz]'."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="train the same model in scratchcnn and PyTorch and compare the curves",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from scratchcnn.cli._common import positive_int
    from scratchcnn.training.config import RECIPES

    parser.add_argument(
        "--recipe",
        default="seed",
        choices=sorted(RECIPES),
        help="starting settings, as for train (default: seed)",
    )
    parser.add_argument("--data", metavar="SPEC", help="dataset name, archive, folder or .zip")
    parser.add_argument("--cache-dir", metavar="DIR", help="dataset cache folder")
    parser.add_argument(
        "--epochs", type=positive_int, help="epochs to train (default: the recipe's)"
    )
    parser.add_argument("--steps", type=positive_int, help="stop after this many optimizer steps")
    parser.add_argument(
        "--train-subset", type=positive_int, help="use only this many training images"
    )
    parser.add_argument("--val-size", type=int, help="validation images split off training")
    parser.add_argument("--batch-size", type=positive_int, help="batch size")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--momentum", type=float, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, help="L2 weight decay")
    parser.add_argument("--seed", type=int, help="seed of the split, initial weights and order")
    parser.add_argument("--dtype", choices=("float32", "float64"), help="both frameworks' dtype")
    parser.add_argument(
        "--torch-threads",
        type=positive_int,
        help="torch intra-op threads (default: torch's own choice)",
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "mixed"),
        default="float32",
        help="mixed: scratchcnn keeps saved activations in float16, PyTorch runs under "
        "torch.autocast(bfloat16) (default: float32)",
    )
    parser.add_argument("--out", default="compare", metavar="DIR", help="output folder")
    parser.add_argument("--prefix", default="compare", help="output file name stem")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from scratchcnn.cli._common import check_output, fail
    from scratchcnn.training import resolve_config

    try:
        import torch

        from scratchcnn.interop.compare import compare_frameworks, markdown_table, write_report
    except ImportError as err:
        return fail(f"{err}; scratchcnn compare needs PyTorch: pip install 'scratchcnn[torch]'")

    names = ("data", "cache_dir", "train_subset", "val_size", "batch_size", "lr", "epochs")
    names += ("momentum", "weight_decay", "seed", "dtype")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    overrides.update(flip=False, crop_padding=0, progress=False)
    config = resolve_config(args.recipe, None, overrides)  # checked before any work
    for suffix in ("png", "md", "json"):
        check_output(Path(args.out) / f"{args.prefix}.{suffix}")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    result = compare_frameworks(config, steps=args.steps, precision=args.precision)
    paths = write_report(result, args.out, args.prefix)
    print(markdown_table(result))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
