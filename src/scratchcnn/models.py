"""Model builders, and the architecture <-> JSON config mapping that checkpoints use."""

from __future__ import annotations

import numpy as np

from scratchcnn import layers as L
from scratchcnn.layers.base import Layer

# Layers that a config may name; configs never name arbitrary Python objects.
_LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        L.Conv2d,
        L.Linear,
        L.MaxPool2d,
        L.AvgPool2d,
        L.GlobalAvgPool2d,
        L.ReLU,
        L.LeakyReLU,
        L.GELU,
        L.Tanh,
        L.Sigmoid,
        L.Flatten,
        L.Dropout,
        L.BatchNorm2d,
        L.BatchNorm1d,
    )
}


def seed_cnn(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rng: np.random.Generator | None = None,
    dtype: type = np.float32,
) -> L.Sequential:
    """The seed write-up's CNN: 545,098 parameters for 32x32 RGB inputs and 10 classes.

    conv 3->32 (3x3, same) -> ReLU -> maxpool 2 -> conv 32->64 (3x3, same) -> ReLU -> maxpool 2
    -> flatten (64 * 8 * 8 = 4096) -> linear 4096->128 -> ReLU -> linear 128->num_classes.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.
    """
    if image_size % 4:
        raise ValueError(f"image_size must be divisible by 4 (two 2x2 pools), got {image_size}")
    rng = rng if rng is not None else np.random.default_rng(0)
    flat = 64 * (image_size // 4) ** 2
    return L.Sequential(
        L.Conv2d(in_channels, 32, 3, padding="same", rng=rng, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(32, 64, 3, padding="same", rng=rng, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(flat, 128, rng=rng, dtype=dtype),
        L.ReLU(),
        L.Linear(128, num_classes, rng=rng, dtype=dtype),
    )


MODELS = {"seed_cnn": seed_cnn}


def model_config(model: Layer) -> dict:
    """A JSON-able description of the architecture (not the weights); a fused model is
    described as the plain model it computes."""
    model = L.unfuse(model)
    if isinstance(model, L.Sequential):
        return {"type": "Sequential", "layers": [model_config(layer) for layer in model]}
    if isinstance(model, L.Residual):
        shortcut = None if model.shortcut is None else model_config(model.shortcut)
        return {"type": "Residual", "block": model_config(model.block), "shortcut": shortcut}
    name = type(model).__name__
    if name not in _LAYER_TYPES:
        raise ValueError(f"cannot describe layer type {name}; known: {sorted(_LAYER_TYPES)}")
    return {"type": name, **model.config()}


def build_model(config: dict, rng: np.random.Generator | None = None, dtype=np.float32) -> Layer:
    """Rebuild an architecture from :func:`model_config`'s output (fresh weights)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    config = dict(config)
    kind = config.pop("type", None)
    if kind == "Sequential":
        return L.Sequential(*(build_model(c, rng, dtype) for c in config["layers"]))
    if kind == "Residual":
        shortcut = config.get("shortcut")
        return L.Residual(
            build_model(config["block"], rng, dtype),
            None if shortcut is None else build_model(shortcut, rng, dtype),
        )
    if kind not in _LAYER_TYPES:
        raise ValueError(
            f"unknown layer type {kind!r} in model config; known: {sorted(_LAYER_TYPES)}"
        )
    cls = _LAYER_TYPES[kind]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    if cls in (L.Conv2d, L.Linear):
        kwargs.update(rng=rng, dtype=dtype)
    elif cls in (L.BatchNorm1d, L.BatchNorm2d):
        kwargs.update(dtype=dtype)
    elif cls is L.Dropout:
        kwargs.update(rng=rng)
    return cls(**kwargs)
