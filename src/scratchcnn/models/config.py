"""The architecture <-> JSON config mapping that checkpoints use and that users may write.

A config is a JSON object per layer: ``{"type": "Conv2d", "in_channels": 3, ...}`` with the
type's constructor arguments (see each layer's ``config()``), and containers nest their
children::

    {"type": "Sequential", "layers": [...]}
    {"type": "Residual", "block": {...}, "shortcut": {...} or null}
    {"type": "Concat", "branches": [...]}

A layer may add ``"frozen": ["weight"]``: those of its own parameters do not train
(``requires_grad = False``), e.g. airbench's batch-norm scales. Valid types are
:data:`scratchcnn.layers.registry.LAYER_TYPES`.

:func:`build_model` checks a hand-written config before building it, and every error names the
layer's place (``layers[3]``, ``layers[5].block.layers[0]``), what was wrong, and what is valid.
"""

from __future__ import annotations

import inspect
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.layers.registry import CONTAINER_TYPES, LAYER_TYPES, is_registered

# Constructor arguments that a config never holds: the builder supplies them.
_SUPPLIED = ("self", "rng", "dtype")


class ModelConfigError(ValueError):
    """A model config that cannot be built; the message names the place and the problem."""


def model_config(model: Layer) -> dict:
    """A JSON-able description of the architecture (not the weights); a fused model is
    described as the plain model it computes (:func:`scratchcnn.layers.unfuse`).

    Shape: not applicable (describes layers, not arrays).
    """
    model = L.unfuse(model)
    if not is_registered(model):
        raise ValueError(
            f"cannot describe layer type {type(model).__name__}; known: {sorted(LAYER_TYPES)}"
        )
    if isinstance(model, L.Sequential):
        return {"type": "Sequential", "layers": [model_config(layer) for layer in model]}
    if isinstance(model, L.Residual):
        shortcut = None if model.shortcut is None else model_config(model.shortcut)
        return {"type": "Residual", "block": model_config(model.block), "shortcut": shortcut}
    if isinstance(model, L.Concat):
        return {"type": "Concat", "branches": [model_config(b) for b in model.branches]}
    config = {"type": type(model).__name__, **model.config()}
    # A leaf layer's named parameters are its own (weight, bias).
    frozen = [name for name, param in model.named_parameters() if not param.requires_grad]
    if frozen:
        config["frozen"] = frozen
    return config


def build_model(config: dict, rng: np.random.Generator | None = None, dtype=np.float32) -> Layer:
    """Build the architecture a config describes (fresh weights drawn from ``rng``).

    Accepts :func:`model_config`'s output and hand-written configs alike. Raises
    :class:`ModelConfigError` (a ``ValueError``) naming the layer's place for an unknown type, an
    unknown, missing or ill-typed argument, or a value the layer's constructor rejects.

    Args:
        config: the architecture, as :func:`model_config` returns it.
        rng: the generator of the fresh weights; ``None`` draws a fresh one.
        dtype (type): dtype of the parameters.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    return _build(config, "", rng, dtype)


def load_model_config(path: str | Path) -> dict:
    """Read an architecture config from a JSON file and check that it builds.

    The file holds one layer config (usually a ``Sequential``), the same format as a checkpoint's
    ``architecture`` entry. Errors name the file.

    Args:
        path: the JSON file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model config at {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ModelConfigError(f"{path} is not valid JSON: {err}") from err
    try:
        build_model(config)
    except ModelConfigError as err:
        raise ModelConfigError(f"{path}: {err}") from err
    return config


def check_model_fits(model: Layer, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Check that ``model`` takes one example of ``input_shape`` and returns ``num_classes`` logits.

    Runs one zero example through the model in evaluation mode (no state changes), layer by
    layer for a ``Sequential``, so an error names the layer where the shapes stop fitting.

    Shape: ``input_shape`` excludes the batch axis, e.g. ``(3, 32, 32)``.
    """
    dtype = next((p.dtype for p in model.parameters()), np.float32)
    x = np.zeros((1, *input_shape), dtype=dtype)
    children = list(model) if isinstance(model, L.Sequential) else [model]
    for index, layer in enumerate(children):
        where = f"layers[{index}]" if isinstance(model, L.Sequential) else "the model"
        try:
            x = layer.forward(x, training=False)
        except ValueError as err:
            raise ValueError(
                f"the model does not fit inputs of shape {tuple(input_shape)}: {where} "
                f"({type(layer).__name__}) got shape {x.shape[1:]} per example: {err}"
            ) from err
    if x.shape != (1, num_classes):
        raise ValueError(
            f"the model returns shape {x.shape[1:]} per example for inputs of shape "
            f"{tuple(input_shape)}, but the data has {num_classes} classes; its last layer must "
            f"output {num_classes} values"
        )


# --- building and checking -----------------------------------------------------------------
def _build(config: Any, where: str, rng: np.random.Generator, dtype: type) -> Layer:
    place = where or "top level"
    if not isinstance(config, dict):
        raise ModelConfigError(
            f"{place}: a layer config must be a JSON object with a 'type', "
            f"got {_describe_value(config)}"
        )
    kind = config.get("type")
    if kind is None:
        raise ModelConfigError(f"{place}: missing 'type'; valid types: {_valid_types()}")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise ModelConfigError(
            f"{place}: unknown layer type {kind!r}; valid types: {_valid_types()}"
        )
    cls = LAYER_TYPES[kind]
    label = f"{place} ({kind})"
    if cls in CONTAINER_TYPES:
        return _build_container(cls, config, where, label, rng, dtype)
    return _build_layer(cls, config, label, rng, dtype)


def _build_container(
    cls: type[Layer], config: dict, where: str, label: str, rng: np.random.Generator, dtype: type
) -> Layer:
    prefix = f"{where}." if where else ""
    if cls is L.Residual:
        _check_keys(config, label, required=("block",), optional=("shortcut",))
        shortcut = config.get("shortcut")
        return L.Residual(
            _build(config["block"], f"{prefix}block", rng, dtype),
            None if shortcut is None else _build(shortcut, f"{prefix}shortcut", rng, dtype),
        )
    key = "layers" if cls is L.Sequential else "branches"
    _check_keys(config, label, required=(key,), optional=())
    children = config[key]
    if not isinstance(children, list):
        raise ModelConfigError(
            f"{label}: {key!r} must be a list of layer configs, got {_describe_value(children)}"
        )
    if cls is L.Concat and not children:
        raise ModelConfigError(f"{label}: 'branches' must hold at least one layer config")
    built = [_build(child, f"{prefix}{key}[{i}]", rng, dtype) for i, child in enumerate(children)]
    return cls(*built)


def _build_layer(
    cls: type[Layer], config: dict, label: str, rng: np.random.Generator, dtype: type
) -> Layer:
    signature = inspect.signature(cls.__init__)
    arguments = {n: p for n, p in signature.parameters.items() if n not in _SUPPLIED}
    required = tuple(n for n, p in arguments.items() if p.default is inspect.Parameter.empty)
    optional = tuple(n for n in arguments if n not in required)
    _check_keys(config, label, required=required, optional=(*optional, "frozen"))
    hints = typing.get_type_hints(cls.__init__)
    kwargs = {}
    for name in arguments:
        if name not in config:
            continue
        value = config[name]
        if name in hints and not _matches(value, hints[name]):
            raise ModelConfigError(
                f"{label}: argument {name!r} must be {_describe_hint(hints[name])}, "
                f"got {_describe_value(value)}"
            )
        kwargs[name] = tuple(value) if isinstance(value, list) else value
    if "rng" in signature.parameters:
        kwargs["rng"] = rng
    if "dtype" in signature.parameters:
        kwargs["dtype"] = dtype
    try:
        layer = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ModelConfigError(f"{label}: {err}") from err
    _apply_frozen(layer, config.get("frozen", []), label)
    return layer


def _apply_frozen(layer: Layer, frozen: Any, label: str) -> None:
    own = dict(layer.named_parameters())  # a leaf layer's own: weight, bias
    if not isinstance(frozen, list) or not all(isinstance(name, str) for name in frozen):
        raise ModelConfigError(
            f"{label}: 'frozen' must be a list of parameter names, got {_describe_value(frozen)}"
        )
    for name in frozen:
        if name not in own:
            raise ModelConfigError(
                f"{label}: 'frozen' names {name!r}, which is not one of its parameters "
                f"{sorted(own)}"
            )
        own[name].requires_grad = False


def _check_keys(
    config: dict, label: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    valid = ("type", *required, *optional)
    for key in config:
        if key not in valid:
            arguments = ", ".join(repr(k) for k in valid[1:]) or "none"
            raise ModelConfigError(
                f"{label}: unknown argument {key!r}; valid arguments: {arguments}"
            )
    for key in required:
        if key not in config:
            raise ModelConfigError(f"{label}: missing required argument {key!r}")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a constructor's type hint (lists stand for tuples).

    Hints this does not know (none of the registered layers use one) accept any value and leave
    the checking to the constructor.
    """
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if len(items) == 2 and items[1] is Ellipsis:
            return all(_matches(v, items[0]) for v in value)
        return len(value) == len(items) and all(
            _matches(v, item) for v, item in zip(value, items, strict=True)
        )
    return True


def _describe_hint(hint: Any) -> str:
    """``int | tuple[int, int] | str``, with lists accepted for tuples."""
    text = getattr(hint, "__name__", None) if isinstance(hint, type) else None
    text = text or str(hint).replace("typing.", "")
    return text.replace("NoneType", "null")


def _describe_value(value: Any) -> str:
    """The value as JSON with its JSON kind, e.g. ``"three" (string)``."""
    kinds = {dict: "object", list: "list", str: "string", bool: "bool", type(None): "null"}
    kind = kinds.get(type(value), type(value).__name__)
    return f"{json.dumps(value) if _is_json(value) else repr(value)} ({kind})"


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _valid_types() -> str:
    return ", ".join(sorted(LAYER_TYPES))
