"""Saving and loading models and training checkpoints as safetensors: arrays + JSON, no pickle.

A file holds the model's ``state_dict`` under ``model.<name>`` (and, for a training checkpoint,
optimizer buffers under ``optim.<name>``), plus one JSON metadata string under the key
``scratchcnn`` that names the architecture (see :func:`scratchcnn.models.model_config`), the
library version and whatever the caller adds (class names, normalisation, config, epoch, ...).
Files are written to a temporary file in the same folder and renamed into place, so a crash
never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.layers.base import Layer
from scratchcnn.models import build_model, model_config

FORMAT_VERSION = 1
_METADATA_KEY = "scratchcnn"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    """Write named arrays and a JSON-able metadata dict to a safetensors file, atomically."""
    from safetensors.numpy import save

    tensors = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    blob = save(tensors, metadata={_METADATA_KEY: json.dumps(metadata)})
    atomic_write_bytes(path, blob)


def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the arrays and the metadata dict of a file written by :func:`save_arrays`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    try:
        arrays = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a valid safetensors checkpoint: {err}") from err
    raw = header.get("__metadata__", {}).get(_METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but has no scratchcnn metadata")
    return arrays, json.loads(raw)


def save_model(model: Layer, path: str | Path, **metadata: Any) -> None:
    """Save a model's weights, buffers and architecture, plus any JSON-able ``metadata``.

    Example metadata: ``class_names=[...]``, ``normalization={"mean": [...], "std": [...]}``.
    """
    from scratchcnn import __version__

    arrays = {f"model.{name}": value for name, value in model.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "architecture": model_config(model),
        "dtype": str(next(iter(model.state_dict().values())).dtype),
        **metadata,
    }
    save_arrays(path, arrays, meta)


def load_model(path: str | Path) -> tuple[Layer, dict[str, Any]]:
    """Rebuild the model saved at ``path`` (a model file or a training checkpoint).

    Returns ``(model, metadata)``; the model is in evaluation mode.
    """
    arrays, meta = load_arrays(path)
    if "architecture" not in meta:
        raise ValueError(f"{path} has no architecture in its metadata")
    dtype = np.dtype(meta.get("dtype", "float32"))
    model = build_model(meta["architecture"], dtype=dtype)
    state = {k.removeprefix("model."): v for k, v in arrays.items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.eval(), meta
