"""Saving and loading models and training checkpoints: safetensors arrays + JSON, no pickle.

A file holds the model's ``state_dict`` under ``model.<name>`` (and, for a training checkpoint,
optimizer buffers under ``optim.<name>`` and weight averages under ``average.<kind>.<name>``),
plus one JSON metadata string under the key
``scratchcnn``. ``docs/checkpoint-format.md`` is the contract: which metadata fields exist,
their types, which are required, and how older format versions are read.

Everything that reads a file goes through :func:`load_checkpoint` (or
:func:`load_training_checkpoint` to resume training), which checks the format version, every
metadata field, the dtype and the architecture, and every tensor's name, shape and dtype before
any tensor reaches a layer. Whatever is wrong is reported as a
:class:`~scratchcnn.errors.CheckpointError` that names the file and the field.

Files are written to a temporary file in the same folder and renamed into place, so a crash
never leaves a half-written file behind.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scratchcnn.errors import CheckpointError, DataError
from scratchcnn.layers.base import Layer
from scratchcnn.models import ModelConfigError, build_model, model_config
from scratchcnn.models.transfer import TransferReport, load_matching

if TYPE_CHECKING:
    # The data package imports Pillow and tqdm; ``import scratchcnn`` should not pay for them.
    from scratchcnn.data.preprocess import Normalizer

__all__ = [
    "FORMAT_VERSION",
    "LoadedModel",
    "TrainingCheckpoint",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "load_arrays",
    "load_checkpoint",
    "load_model",
    "load_training_checkpoint",
    "save_arrays",
    "save_model",
    "save_training_checkpoint",
]

# Version 2 added ``kind`` and ``data_path``; version 1 files are migrated when read.
FORMAT_VERSION = 2
METADATA_KEY = "scratchcnn"
KINDS = ("model", "checkpoint")
DTYPES = ("float32", "float64")
# Fields that save_model writes itself; a caller's metadata may not replace them.
_RESERVED = ("format_version", "library_version", "kind", "architecture", "dtype")
# What resuming needs beyond a model file.
_CHECKPOINT_FIELDS = ("config", "optimizer", "loop", "rng", "epoch")


# --- writing ---------------------------------------------------------------------------------
def check_writable(path: str | Path) -> None:
    """Raise OSError naming ``path`` unless a file can be written there (creating folders).

    Called before a command does its work, so that an output under a regular file or in a
    read-only folder fails at once instead of after minutes of computing.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"cannot write there: {folder} is a file, not a folder", str(path)
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write there: {folder} is read-only", str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never half-written).

    An OSError (a full disk, a read-only folder) names ``path``; the old file is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _naming(err, path) from err
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
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            raise _naming(err, path) from err
        raise


def _naming(err: OSError, path: Path) -> OSError:
    """The same error, naming the file it was about (a bare ``File too large`` does not)."""
    if err.errno is None:
        return type(err)(f"{err} (writing {path})")
    return type(err)(err.errno, err.strerror, str(path))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    """Write named arrays and a JSON-able metadata dict to a safetensors file, atomically.

    Args:
        path: the file to write.
        arrays: tensors by name.
        metadata: JSON-able fields.
    """
    from safetensors.numpy import save

    tensors = {name: np.ascontiguousarray(value) for name, value in arrays.items()}
    blob = save(tensors, metadata={METADATA_KEY: json.dumps(metadata, allow_nan=False)})
    atomic_write_bytes(path, blob)


def _base_metadata(model: Layer, kind: str) -> dict[str, Any]:
    from scratchcnn._version import __version__

    state = model.state_dict()
    dtype = str(next(iter(state.values())).dtype) if state else "float32"
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": kind,
        "architecture": model_config(model),
        "dtype": dtype,
    }


def _caller_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The caller's fields, JSON-ready: a Normalizer becomes its dict, tuples become lists."""
    from scratchcnn.data.preprocess import Normalizer

    reserved = sorted(set(metadata) & set(_RESERVED))
    if reserved:
        raise ValueError(f"save_model writes {reserved} itself; do not pass them as metadata")
    out = dict(metadata)
    if isinstance(out.get("normalization"), Normalizer):
        out["normalization"] = out["normalization"].to_dict()
    if isinstance(out.get("image_shape"), tuple):
        out["image_shape"] = list(out["image_shape"])
    if isinstance(out.get("class_names"), tuple):
        out["class_names"] = list(out["class_names"])
    return out


def save_model(model: Layer, path: str | Path, **metadata: Any) -> None:
    """Save a model's weights, buffers and architecture, plus JSON-able ``metadata``.

    What ``scratchcnn predict`` and ``evaluate`` need to use the file on their own:
    ``class_names=[...]``, ``normalization=Normalizer`` (or ``{"mean": [...], "std": [...]}``)
    and ``image_shape=(H, W, C)``. Without them the commands ask for the missing piece
    (``--normalization``, ``--image-size``). Any other JSON-able field is kept as it is. The
    fields are checked (see ``docs/checkpoint-format.md``) before anything is written.

    Args:
        model: the model to save.
        path: the ``.safetensors`` file to write (atomically).
        **metadata: the fields above, and any other JSON-able ones.
    """
    meta = {**_base_metadata(model, "model"), **_caller_metadata(metadata)}
    check_metadata(meta, Path(path))
    save_arrays(path, {f"model.{name}": value for name, value in model.state_dict().items()}, meta)


def save_training_checkpoint(
    path: str | Path,
    model: Layer,
    optimizer_state: dict[str, Any],
    averages: dict[str, dict[str, Any]] | None = None,
    **metadata: Any,
) -> None:
    """Save everything needed to resume training: the model, the optimizer and ``metadata``.

    ``optimizer_state`` is :meth:`Optimizer.state_dict` (``hyperparameters`` go to the metadata
    under ``optimizer``, ``buffers`` to ``optim.<name>`` tensors); ``averages`` maps a name
    (``"lookahead"``, ``"ema"``) to the ``state_dict()`` of a weight average, in the same form
    (metadata ``averages.<kind>``, tensors ``average.<kind>.<name>``); ``metadata`` must hold
    the run's ``config``, ``loop`` state, ``rng`` states and ``epoch``.

    Args:
        path: the file to write (atomically).
        model: the model being trained.
        optimizer_state: the optimizer's state dict.
        averages: the weight averages' states by kind (``"lookahead"``, ``"ema"``).
        **metadata: the run's ``config``, ``loop`` state, ``rng`` states and ``epoch``.
    """
    meta = {
        **_base_metadata(model, "checkpoint"),
        **_caller_metadata(metadata),
        "optimizer": optimizer_state["hyperparameters"],
    }
    averages = averages or {}
    if averages:
        meta["averages"] = {kind: state["hyperparameters"] for kind, state in averages.items()}
    check_metadata(meta, Path(path))
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer_state["buffers"].items()})
    for kind, state in averages.items():
        arrays.update({f"average.{kind}.{k}": v for k, v in state["buffers"].items()})
    save_arrays(path, arrays, meta)


# --- reading ---------------------------------------------------------------------------------
def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the arrays and the metadata dict of a file written by :func:`save_arrays`.

    Only the file's structure is checked here (safetensors layout, metadata JSON); the
    metadata's fields are checked by :func:`check_metadata`.

    Args:
        path: the safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a .safetensors file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    if len(data) < 8:
        raise CheckpointError(
            f"{path} is not a safetensors file: {len(data)} bytes, too short for a header"
        )
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise CheckpointError(
            f"{path} is truncated or not a safetensors file: its header claims {header_len} "
            f"bytes but the file holds {len(data) - 8} after the length field"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is not a valid safetensors file: {err}") from err
    _check_complete(header, len(data) - 8 - header_len, path)
    try:
        arrays = load(data)
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"{path} is not a valid safetensors file: {err}") from err
    raw = header.get("__metadata__", {}).get(METADATA_KEY) if isinstance(header, dict) else None
    if raw is None:
        raise CheckpointError(
            f"{path} is a safetensors file but has no '{METADATA_KEY}' metadata entry (not "
            "written by scratchcnn)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{path}: the '{METADATA_KEY}' metadata entry is not valid JSON ({err})"
        ) from err
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path}: the '{METADATA_KEY}' metadata must be a JSON object, got "
            f"{type(meta).__name__}"
        )
    return arrays, meta


def _check_complete(header: Any, data_bytes: int, path: Path) -> None:
    """A file cut short (a copy interrupted, a full disk outside scratchcnn) says so."""
    if not isinstance(header, dict):
        return
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    needed = max(ends, default=0)
    if isinstance(needed, int) and needed > data_bytes:
        raise CheckpointError(
            f"{path} is truncated: its header describes {needed} bytes of tensors but the file "
            f"holds {data_bytes}"
        )


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _field_error(path: Path, name: str, expected: str, value: Any) -> CheckpointError:
    shown = json.dumps(value) if _is_json(value) else repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CheckpointError(
        f"{path}: metadata field '{name}' must be {expected}, got {shown} ({_type_name(value)})"
    )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def migrate_metadata(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring metadata of an older format version up to :data:`FORMAT_VERSION`.

    Version 1 had no ``kind``: a file with optimizer and loop state is a training checkpoint,
    anything else a model file. Its ``config.data`` may be relative; :meth:`LoadedModel.data`
    resolves it. A version newer than this library's is refused, naming both versions.
    """
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise _field_error(
            path, "format_version", f"an integer from 1 to {FORMAT_VERSION}", version
        )
    if version > FORMAT_VERSION:
        from scratchcnn._version import __version__

        raise CheckpointError(
            f"{path} has checkpoint format version {version}, written by scratchcnn "
            f"{meta.get('library_version', '(unknown)')}; this scratchcnn ({__version__}) reads "
            f"versions 1 to {FORMAT_VERSION}. Upgrade scratchcnn to read it."
        )
    meta = dict(meta)
    if version == 1:
        meta["kind"] = "checkpoint" if "loop" in meta and "optimizer" in meta else "model"
        meta["format_version"] = FORMAT_VERSION
    return meta


def check_metadata(meta: dict[str, Any], path: Path) -> None:
    """Check every contract field of (migrated) metadata; raise CheckpointError naming the
    first that is missing or of the wrong type or value. Unknown fields are allowed."""

    def require(name: str) -> Any:
        if name not in meta:
            raise CheckpointError(f"{path}: metadata field '{name}' is missing")
        return meta[name]

    if require("format_version") != FORMAT_VERSION:
        raise _field_error(path, "format_version", str(FORMAT_VERSION), meta["format_version"])
    if require("kind") not in KINDS:
        raise _field_error(path, "kind", f"one of {list(KINDS)}", meta["kind"])
    if not isinstance(require("architecture"), dict):
        raise _field_error(path, "architecture", "a JSON object", meta["architecture"])
    if require("dtype") not in DTYPES:
        raise _field_error(path, "dtype", f"one of {list(DTYPES)}", meta["dtype"])
    if "library_version" in meta and not isinstance(meta["library_version"], str):
        raise _field_error(path, "library_version", "a string", meta["library_version"])
    if "class_names" in meta:
        names = meta["class_names"]
        if (
            not isinstance(names, list)
            or len(names) < 1
            or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)
        ):
            raise _field_error(path, "class_names", "a list of distinct strings", names)
    if "normalization" in meta:
        norm = meta["normalization"]
        ok = (
            isinstance(norm, dict)
            and isinstance(norm.get("mean"), list)
            and isinstance(norm.get("std"), list)
            and 0 < len(norm["mean"]) == len(norm["std"])
            and all(_is_number(v) for v in norm["mean"])
            and all(_is_number(v) and v > 0 for v in norm["std"])
        )
        if not ok:
            raise _field_error(
                path,
                "normalization",
                '{"mean": [...], "std": [...]} with one finite number per channel, std > 0',
                norm,
            )
    if "image_shape" in meta:
        shape = meta["image_shape"]
        if not (
            isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v > 0 for v in shape)
        ):
            raise _field_error(path, "image_shape", "[height, width, channels], positive", shape)
        if "normalization" in meta and len(meta["normalization"]["mean"]) != shape[2]:
            raise CheckpointError(
                f"{path}: metadata field 'normalization' has {len(meta['normalization']['mean'])}"
                f" channels but 'image_shape' {shape} has {shape[2]}"
            )
    for name in ("config", "optimizer", "loop", "rng"):
        if name in meta and not isinstance(meta[name], dict):
            raise _field_error(path, name, "a JSON object", meta[name])
    if "averages" in meta:
        averages = meta["averages"]
        if not isinstance(averages, dict) or not all(
            isinstance(kind, str) and "." not in kind and isinstance(hyper, dict)
            for kind, hyper in averages.items()
        ):
            raise _field_error(
                path, "averages", "a JSON object of {name: hyperparameters object}", averages
            )
    if "tta" in meta and meta["tta"] not in (0, 1, 2):
        raise _field_error(path, "tta", "a test-time augmentation level: 0, 1 or 2", meta["tta"])
    if "epoch" in meta and not (_is_int(meta["epoch"]) and meta["epoch"] >= 0):
        raise _field_error(path, "epoch", "an integer >= 0", meta["epoch"])
    if "data_path" in meta and not isinstance(meta["data_path"], str):
        raise _field_error(path, "data_path", "a string", meta["data_path"])
    if meta["kind"] == "checkpoint":
        for name in _CHECKPOINT_FIELDS:
            require(name)


def _build(meta: dict[str, Any], path: Path) -> Layer:
    """The model the metadata's architecture describes; ``build_model`` checks every entry and
    names the place of a bad one (``layers[3] (Conv2d): unknown argument 'foo'``)."""
    dtype = np.dtype(meta["dtype"])
    try:
        return build_model(meta["architecture"], dtype=dtype.type)
    except ModelConfigError as err:
        raise CheckpointError(
            f"{path}: the model cannot be built from its metadata: architecture: {err}"
        ) from err


def _model_state(model: Layer, arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """The ``model.*`` tensors, checked against the model's own state_dict names, shapes and
    dtypes before anything is loaded."""
    expected = model.state_dict()
    state = {k.removeprefix("model."): v for k, v in arrays.items() if k.startswith("model.")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: its tensors do not match its architecture: missing {missing}, "
            f"unexpected {unexpected}"
        )
    for name, want in expected.items():
        got = state[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise CheckpointError(
                f"{path}: tensor 'model.{name}' is {got.dtype} {tuple(got.shape)}, the "
                f"architecture needs {want.dtype} {tuple(want.shape)}"
            )
        if not np.all(np.isfinite(got)):
            raise CheckpointError(f"{path}: tensor 'model.{name}' holds NaN or infinite values")
    return state


# What a missing field is called, and how to supply it on the command line.
_MISSING = {
    "class_names": "class names",
    "image_shape": "its input image size (pass --image-size H W)",
    "normalization": "normalisation statistics (pass --normalization MEAN/STD, e.g. "
    "0.49,0.48,0.45/0.25,0.24,0.26, or --normalization none for unnormalised [0, 1] pixels)",
}


@dataclass
class LoadedModel:
    """A saved model with what feeding it needs: class names, normaliser, input shape, data.

    ``class_names``, ``normalizer`` and ``image_shape`` raise a :class:`CheckpointError` that
    says which flag supplies them when the file does not record them.

    ``model`` is the rebuilt model (in evaluation mode), ``metadata`` the file's checked metadata
    and ``path`` the file it was read from.
    """

    model: Layer
    metadata: dict[str, Any]
    path: Path
    _class_names: list[str] | None = field(default=None, repr=False)
    _normalizer: Normalizer | None = field(default=None, repr=False)
    _image_shape: tuple[int, int, int] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """``"model"`` or ``"checkpoint"`` (a resumable training checkpoint)."""
        return str(self.metadata["kind"])

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the model's parameters, as the file records it."""
        return np.dtype(self.metadata["dtype"])

    @property
    def class_names(self) -> list[str]:
        """The class names, in label order (an error when the file has none)."""
        self.require("class_names")
        return self._class_names  # type: ignore[return-value]

    @property
    def normalizer(self) -> Normalizer:
        """The normalisation the model was trained with (an error when the file has none)."""
        self.require("normalization")
        return self._normalizer  # type: ignore[return-value]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the images the model takes."""
        self.require("image_shape")
        return self._image_shape  # type: ignore[return-value]

    def require(self, *names: str) -> None:
        """Raise one CheckpointError naming every field of ``names`` (``class_names``,
        ``normalization``, ``image_shape``) that the file does not record and nobody supplied,
        with the flag that supplies it."""
        known = {
            "class_names": self._class_names,
            "normalization": self._normalizer,
            "image_shape": self._image_shape,
        }
        missing = [_MISSING[name] for name in names if known[name] is None]
        if missing:
            raise CheckpointError(
                f"{self.path} does not record {' or '.join(missing)}; save_model(..., "
                "class_names=[...], normalization=..., image_shape=(H, W, C)) records them"
            )

    @property
    def in_channels(self) -> int | None:
        """Input channels: from ``image_shape``, else from the first layer that names them."""
        if self._image_shape is not None:
            return self._image_shape[2]
        first = next((m for m in self.model.modules() if hasattr(m, "in_channels")), None)
        return None if first is None else int(first.in_channels)

    def supplied(
        self,
        *,
        class_names: list[str] | None = None,
        normalization: Normalizer | dict[str, Any] | None = None,
        image_shape: tuple[int, int, int] | list[int] | None = None,
    ) -> LoadedModel:
        """This model with the given fields set (the others kept), checked against the model:
        channels of the normalisation, outputs per class name, input shape."""
        from scratchcnn.data.preprocess import Normalizer

        if isinstance(normalization, dict):
            normalization = Normalizer.from_dict(normalization)
        names = self._class_names if class_names is None else list(class_names)
        shape = self._image_shape if image_shape is None else tuple(int(v) for v in image_shape)
        loaded = LoadedModel(
            self.model,
            self.metadata,
            self.path,
            _class_names=names,
            _normalizer=self._normalizer if normalization is None else normalization,
            _image_shape=shape,  # type: ignore[arg-type]
        )
        _check_consistent(loaded)
        return loaded

    def known_fields(self) -> dict[str, Any]:
        """The class names, normalisation and image shape known for this model (recorded in
        the file or supplied), JSON-ready; unknown ones are left out."""
        known: dict[str, Any] = {}
        if self._class_names is not None:
            known["class_names"] = list(self._class_names)
        if self._normalizer is not None:
            known["normalization"] = self._normalizer.to_dict()
        if self._image_shape is not None:
            known["image_shape"] = list(self._image_shape)
        return known

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, C)`` -> normalised ``(N, C, H, W)`` in the model's dtype."""
        return self.normalizer(np.asarray(images)).astype(self.dtype, copy=False)

    def data(self) -> str:
        """The data the model was trained on, as a spec that works from any working folder.

        A dataset name is returned as it is. A path is looked up as the absolute
        ``data_path`` recorded at training time, then as the configured path relative to the
        working folder, to the checkpoint's folder and to each folder above it (a repository
        moved as a whole keeps working). Raises DataError listing the places tried.
        """
        from scratchcnn.data import is_dataset_name

        config = self.metadata.get("config") or {}
        spec = config.get("data")
        recorded = self.metadata.get("data_path")
        if not isinstance(spec, str) and recorded is None:
            raise DataError(f"{self.path} does not record the data it was trained on; pass --data")
        if isinstance(spec, str) and is_dataset_name(spec):
            return spec
        tried: list[Path] = []
        if recorded is not None:
            tried.append(Path(recorded))
        if isinstance(spec, str):
            relative = Path(spec).expanduser()
            if relative.is_absolute():
                tried.append(relative)
            else:
                folder = self.path.resolve().parent
                tried += [Path.cwd() / relative, *(p / relative for p in (folder, *folder.parents))]
        for candidate in tried:
            if candidate.exists():
                return str(candidate.resolve())
        shown = ", ".join(str(p) for p in dict.fromkeys(tried))
        raise DataError(
            f"the data {self.path} was trained on ({spec or recorded}) is not at any of: "
            f"{shown}; pass --data"
        )


def load_checkpoint(
    path: str | Path,
    *,
    class_names: list[str] | None = None,
    normalization: Normalizer | dict[str, Any] | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> LoadedModel:
    """Load a model file or training checkpoint, checking it against the format contract.

    Checks, in order, before any tensor reaches a layer: the safetensors structure, the
    metadata JSON, ``format_version`` (older versions migrated, newer refused), every contract
    field's type, the dtype, that the architecture builds, and every tensor's name, shape, dtype
    and finiteness. ``class_names``, ``normalization`` and ``image_shape``, when given, replace
    what the file records (for a file saved without them); they are checked against the model.

    Returns a :class:`LoadedModel` whose model is in evaluation mode.
    Raises CheckpointError naming the file and the field.

    Args:
        path: the model file or training checkpoint.
        class_names: class names for a file saved without them.
        normalization: the normalisation for a file saved without it.
        image_shape: ``(H, W, C)`` for a file saved without it.
    """
    path = Path(path)
    arrays, raw_meta = load_arrays(path)
    meta = migrate_metadata(raw_meta, path)
    check_metadata(meta, path)
    model = _build(meta, path)
    model.load_state_dict(_model_state(model, arrays, path))
    loaded = LoadedModel(model.eval(), meta, path)
    return loaded.supplied(
        class_names=class_names if class_names is not None else meta.get("class_names"),
        normalization=normalization if normalization is not None else meta.get("normalization"),
        image_shape=image_shape if image_shape is not None else meta.get("image_shape"),
    )


def _check_consistent(loaded: LoadedModel) -> None:
    """Class names, normalisation and image shape must fit the model they describe."""
    model, path = loaded.model, loaded.path
    channels = loaded.in_channels
    if loaded._normalizer is not None and channels is not None:
        if loaded._normalizer.channels != channels:
            raise CheckpointError(
                f"{path}: normalisation has {loaded._normalizer.channels} channels but the "
                f"model takes {channels}"
            )
    if loaded._image_shape is not None:
        height, width, channels = loaded._image_shape
        # One forward pass of a blank image: every layer checks its own input, which a
        # shape-only walk does not do for all of them.
        blank = np.zeros((1, channels, height, width), dtype=loaded.dtype)
        try:
            out = model.forward(blank, training=False)
        except Exception as err:  # noqa: BLE001 - any failure means the shape does not fit
            raise CheckpointError(
                f"{path}: the model cannot take images of image_shape {list(loaded._image_shape)}"
                f": {err}"
            ) from err
        if loaded._class_names is not None and out.shape[-1] != len(loaded._class_names):
            raise CheckpointError(
                f"{path}: {len(loaded._class_names)} class names but the model has "
                f"{out.shape[-1]} outputs"
            )


def load_model(path: str | Path) -> tuple[Layer, dict[str, Any]]:
    """Rebuild the model saved at ``path`` (a model file or a training checkpoint).

    Returns ``(model, metadata)``; the model is in evaluation mode. See
    :func:`load_checkpoint` for the checks made.
    """
    loaded = load_checkpoint(path)
    return loaded.model, loaded.metadata


def load_pretrained(model: Layer, path: str | Path) -> TransferReport:
    """Load into ``model`` every tensor of a saved model or training checkpoint whose name and
    shape match (:func:`scratchcnn.models.load_matching`); the file passes every check of
    :func:`load_checkpoint` first. Returns what was loaded, skipped and left as initialised.
    """
    source = load_checkpoint(path).model
    return load_matching(model, source.state_dict(), source=f"checkpoint {path}")


@dataclass
class TrainingCheckpoint:
    """A resumable checkpoint: the checked metadata and the model and optimizer tensors.

    ``path`` is the file it was read from, ``model_state`` the model's state dict and
    ``optimizer_buffers`` the optimizer's (momentum, Adam moments), by name, and
    ``averages[kind]`` the ``state_dict()`` of each weight average (``"lookahead"``, ``"ema"``).
    """

    path: Path
    metadata: dict[str, Any]
    model_state: dict[str, np.ndarray]
    optimizer_buffers: dict[str, np.ndarray]
    averages: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_training_checkpoint(path: str | Path) -> TrainingCheckpoint:
    """Read a checkpoint that training can resume from, checking all of it first.

    A model file (``best.safetensors``, a file from :func:`save_model`) is refused with a
    message saying it holds no optimizer or loop state. Nothing is written.

    Args:
        path: the checkpoint (``last.safetensors`` of a run).
    """
    path = Path(path)
    arrays, raw_meta = load_arrays(path)
    meta = migrate_metadata(raw_meta, path)
    if meta.get("kind") != "checkpoint":
        raise CheckpointError(
            f"{path} is a model file, not a resumable training checkpoint (it has no optimizer "
            "or loop state); resume from a run folder or its last.safetensors"
        )
    check_metadata(meta, path)
    model = _build(meta, path)
    state = _model_state(model, arrays, path)
    buffers = {k.removeprefix("optim."): v for k, v in arrays.items() if k.startswith("optim.")}
    averages: dict[str, dict[str, Any]] = {
        kind: {"hyperparameters": hyper, "buffers": {}}
        for kind, hyper in meta.get("averages", {}).items()
    }
    for key, value in arrays.items():
        if key.startswith("average."):
            kind, _, name = key.removeprefix("average.").partition(".")
            if kind not in averages:
                raise CheckpointError(
                    f"{path}: tensor {key!r} belongs to a weight average {kind!r} that metadata "
                    f"field 'averages' does not list ({sorted(averages)})"
                )
            averages[kind]["buffers"][name] = value
    return TrainingCheckpoint(path, meta, state, buffers, averages)
