"""The ``scratchcnn`` command line: one module per command, each imported only when run.

Every command module defines ``add_parser(subparsers)`` (argparse only, so ``--help`` is fast)
and ``run(args) -> int``; heavy imports happen inside ``run``.

:func:`main` is the error boundary: bad input (a :class:`~scratchcnn.errors.ScratchCNNError`,
or a well-known library error such as a missing file, an unreadable image or a malformed JSON
or TOML file) ends as one line ``scratchcnn: error: ...`` and exit status 1; argparse usage
errors exit with 2; ``--debug`` shows the traceback instead.
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
    "models",
    "compare",
    "export",
    "report",
    "visualize",
    "sweep",
    "baselines",
    "ablate-filters",
)
DEBUG_HELP = "on an error, show the full Python traceback instead of one line"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scratchcnn",
        description="A CNN library and CIFAR-10 trainer written from scratch in NumPy.",
    )
    from scratchcnn._version import __version__

    parser.add_argument("--version", action="version", version=f"scratchcnn {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"scratchcnn.cli.{name.replace('-', '_')}")
        sub = module.add_parser(subparsers)
        # Also accepted after the command; SUPPRESS keeps an earlier --debug from being reset.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
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
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("scratchcnn: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        message = error_message(err)
        if message is None or args.debug:
            raise
        print(f"scratchcnn: error: {message}", file=sys.stderr)
        return 1


def error_message(err: BaseException) -> str | None:
    """The one-line message for an error caused by the user's input; None for anything else
    (a bug, which keeps its traceback)."""
    import json
    import pickle

    from scratchcnn.errors import ScratchCNNError

    if isinstance(err, ScratchCNNError):
        return str(err)
    if isinstance(err, OSError):
        # "[Errno 2] No such file or directory: 'x'" -> "x: No such file or directory"
        if err.strerror and err.filename:
            return f"{err.filename}: {err.strerror}"
        return err.strerror or str(err)
    if isinstance(err, json.JSONDecodeError):
        return f"invalid JSON: {err}"
    if isinstance(err, pickle.UnpicklingError):
        return str(err)  # the restricted unpickler names the file and the refused global
    if isinstance(err, ImportError):
        return f"{err} (an optional dependency is missing; see the README's install extras)"
    library_errors: list[type[BaseException]] = []
    try:
        from PIL import Image

        library_errors.append(Image.DecompressionBombError)
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    try:
        from safetensors import SafetensorError

        library_errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - safetensors is a dependency
        pass
    if isinstance(err, tuple(library_errors)):
        return f"{type(err).__name__}: {err}"
    # The library's own argument checks raise ValueError with the value they got (as PyTorch
    # does); such a message is meant for the user.
    if isinstance(err, ValueError):
        return str(err)
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
