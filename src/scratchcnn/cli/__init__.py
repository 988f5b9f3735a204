"""The ``scratchcnn`` command line: one module per command, each imported only when run.

Every command module defines ``add_parser(subparsers)`` (argparse only, so ``--help`` is fast)
and ``run(args) -> int``; heavy imports happen inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Order is the order ``scratchcnn --help`` lists them in.
COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "gradcheck",
    "bench",
    "compare",
    "export",
    "report",
    "visualize",
    "sweep",
    "baselines",
    "ablate-filters",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scratchcnn",
        description="A CNN library and CIFAR-10 trainer written from scratch in NumPy.",
    )
    from scratchcnn import __version__

    parser.add_argument("--version", action="version", version=f"scratchcnn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"scratchcnn.cli.{name.replace('-', '_')}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code = int(args._module.run(args) or 0)
        sys.stdout.flush()  # meet a closed pipe here rather than at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`scratchcnn evaluate | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
