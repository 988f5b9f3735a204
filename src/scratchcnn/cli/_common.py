"""Helpers shared by the command modules (argparse only at import time)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_CHECKPOINT = Path("models") / "seed_cnn_cifar10.safetensors"


def default_checkpoint() -> Path:
    """The committed default model: ``models/`` under the working folder or the repository."""
    candidates = [
        Path.cwd() / DEFAULT_CHECKPOINT,
        Path(__file__).resolve().parents[3] / DEFAULT_CHECKPOINT,
    ]
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]


def fail(message: str, code: int = 1) -> int:
    """Print an error for the user (no traceback) and return an exit code."""
    print(f"scratchcnn: error: {message}", file=sys.stderr)
    return code


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size 0`` is a usage error, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def model_option(text: str) -> tuple[str, object]:
    """argparse type for ``--model-option KEY=VALUE``: VALUE is read as JSON (``5``, ``true``,
    ``[32, 64]``, ``"avg"``), or taken as a plain string when it is not JSON (``pool=avg``)."""
    import json

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE such as kernel_size=5 or channels=[32,64], got {text!r}"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    return key, value


def model_options(pairs: list[tuple[str, object]] | None, width: float | None) -> dict:
    """The ``--model-option`` pairs (and ``--width``) as a dict; a key given twice is an
    error rather than a silent last-one-wins."""
    from scratchcnn.errors import ConfigError

    options: dict[str, object] = {}
    for key, value in [*(pairs or []), *([] if width is None else [("width", width)])]:
        if key in options:
            raise ConfigError(
                f"model option {key!r} is given twice ({options[key]!r} and {value!r})"
                + (" (--width sets the option width)" if key == "width" else "")
            )
        options[key] = value
    return options


def add_model_option_arguments(parser: argparse.ArgumentParser) -> None:
    """``--width`` and repeatable ``--model-option KEY=VALUE`` for a zoo model's options."""
    parser.add_argument(
        "--width",
        type=float,
        default=None,
        metavar="W",
        help="width multiplier of every layer's channels (the model option width)",
    )
    parser.add_argument(
        "--model-option",
        dest="model_option",
        type=model_option,
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="an option of the zoo model, e.g. kernel_size=5, pool=avg, channels=[32,64,128] "
        "(VALUE as JSON, else a string); repeatable; 'scratchcnn models NAME' shows a model",
    )


def normalization(text: str) -> str | tuple[list[float], list[float]]:
    """argparse type for ``--normalization``: ``none``, ``fit`` or ``MEAN/STD`` (each one number,
    or one per channel, comma-separated)."""
    if text.lower() in ("none", "fit"):
        return text.lower()
    try:
        mean_text, std_text = text.split("/")
        mean = [float(v) for v in mean_text.split(",")]
        std = [float(v) for v in std_text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected none, fit or MEAN/STD such as 0.49,0.48,0.45/0.25,0.24,0.26, got {text!r}"
        ) from None
    if len(mean) != len(std) or not all(s > 0 for s in std):
        raise argparse.ArgumentTypeError(
            f"MEAN/STD needs as many means as stds and every std > 0, got {text!r}"
        )
    return mean, std


def add_checkpoint_arguments(parser: argparse.ArgumentParser, image_size: bool = False) -> None:
    """``--checkpoint`` and ``--normalization`` (and ``--image-size``) for commands that load
    a model: the last two supply what a file saved without them does not record."""
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model or checkpoint file (default: models/seed_cnn_cifar10.safetensors)",
    )
    parser.add_argument(
        "--normalization",
        type=normalization,
        metavar="MEAN/STD",
        help="per-channel normalisation for a model file that does not record it: MEAN/STD "
        "(e.g. 0.49,0.48,0.45/0.25,0.24,0.26), or none (unnormalised [0, 1] pixels)",
    )
    if image_size:
        parser.add_argument(
            "--image-size",
            type=positive_int,
            nargs=2,
            metavar=("H", "W"),
            help="input size for a model file that does not record it",
        )


def load_for_command(args: argparse.Namespace, path: str | Path | None = None):
    """Load ``path`` (default: ``--checkpoint``, else the committed model) with the one
    checkpoint loader, filling in what the file lacks from ``--normalization`` and
    ``--image-size``. Returns a :class:`scratchcnn.serialization.LoadedModel`."""
    from scratchcnn.serialization import load_checkpoint

    loaded = load_checkpoint(path or getattr(args, "checkpoint", None) or default_checkpoint())
    given = getattr(args, "normalization", None)
    size = getattr(args, "image_size", None)
    channels = loaded.in_channels
    normalizer = None
    if given == "none" and channels is not None:
        normalizer = {"mean": [0.0] * channels, "std": [1.0] * channels}
    elif isinstance(given, tuple):
        mean, std = given
        if len(mean) == 1 and channels is not None:  # one number for every channel
            mean, std = mean * channels, std * channels
        normalizer = {"mean": mean, "std": std}
    shape = None if size is None or channels is None else (size[0], size[1], channels)
    return loaded.supplied(normalization=normalizer, image_shape=shape)


TTA_HELP = (
    "test-time augmentation: 0 none, 1 the image and its mirror, 2 also one-pixel translations "
    "(6 views); default: the level recorded in the checkpoint (a fast-recipe run records 2), "
    "else 0"
)


def add_tta_argument(parser: argparse.ArgumentParser) -> None:
    """``--tta LEVEL`` for commands that run a saved model."""
    parser.add_argument(
        "--tta", type=int, choices=(0, 1, 2), default=None, metavar="LEVEL", help=TTA_HELP
    )


def tta_level(args: argparse.Namespace, loaded) -> int:
    """``--tta``, else the checkpoint's recorded level (``tta`` metadata), else 0."""
    if args.tta is not None:
        return int(args.tta)
    return int(loaded.metadata.get("tta", 0))


def check_output(path: str | Path) -> Path:
    """Fail now, naming ``path``, if a file cannot be written there (before any work)."""
    from scratchcnn.serialization import check_writable

    check_writable(path)
    return Path(path)
