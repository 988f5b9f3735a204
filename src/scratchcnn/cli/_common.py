"""Helpers shared by the command modules (argparse only at import time)."""

from __future__ import annotations

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
