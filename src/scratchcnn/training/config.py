"""Training configuration: one typed dataclass, and the named recipes."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class TrainConfig:
    """Every setting of a training run; each default says why it was chosen."""

    # --- data ---
    data: str = "cifar10"  # dataset name (cifar10, fashion-mnist, svhn), archive, folder or .zip
    cache_dir: str | None = None  # dataset cache; none: $SCRATCHCNN_DATA or ~/.cache/scratchcnn
    val_size: int = 10_000  # training images held out for validation (CIFAR-10: 40k + 10k)
    train_subset: int | None = None  # train on a random subset of this size (quick runs, tests)
    # --- model ---
    model: str = "seed_cnn"  # architecture; seed_cnn is the original write-up's CNN
    dtype: str = "float32"  # float32 is fast; float64 works end to end but is slower
    # --- optimisation ---
    epochs: int = 30  # passes over the training split; cosine decay needs room to anneal
    batch_size: int = 128  # images per step: big for fast matrix products, small to generalise
    optimizer: str = "sgd"  # sgd, adam, adamw or rmsprop; SGD+Nesterov is the tried CIFAR recipe
    lr: float = 0.05  # peak learning rate, reached after the warm-up
    momentum: float = 0.9  # SGD/RMSprop momentum; 0.9 is the standard heavy-ball value
    nesterov: bool = True  # Nesterov momentum (SGD only): a free, small improvement
    weight_decay: float = 5e-4  # L2 decay on all parameters, as in most CIFAR recipes
    schedule: str = "cosine"  # constant, step, exponential, cosine or onecycle
    warmup_epochs: float = 1.0  # linear warm-up (cosine): keeps a no-BN net's first steps stable
    label_smoothing: float = 0.0  # target smoothing eps; off, as the small model underfits
    clip_norm: float | None = None  # clip gradients to this global L2 norm; none is off
    # --- augmentation (applied to training batches only) ---
    flip: bool = True  # random horizontal flips: CIFAR-10 classes are left-right symmetric
    crop_padding: int = 4  # random translation by up to this many pixels (pad, crop back); 0 off
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter strength; 0 is off
    rotation: float = 0.0  # random rotation by up to this many degrees; 0 is off
    scale: float = 0.0  # random scaling by a factor in [1 - scale, 1 + scale]; 0 is off
    cutout: int = 0  # side of the square cut out of each image; 0 is off
    mixup: float = 0.0  # Beta(alpha, alpha) mixing strength; 0 is off
    cutmix: float = 0.0  # Beta(alpha, alpha) for cutmix; 0 is off (both on: one per batch)
    # --- run control ---
    seed: int = 0  # seeds the split, initial weights, shuffling, augmentation and dropout
    early_stopping: int | None = None  # stop after this many epochs without improvement
    monitor: str = "val_accuracy"  # val_accuracy or val_loss: watched by early stopping/best
    eval_batch_size: int = 500  # evaluation batch size: no backward pass, so bigger fits
    run_dir: str = "runs"  # parent folder of run folders; a run writes to run_dir/name
    name: str | None = None  # run folder name; none means the current date and time
    progress: bool = True  # show a progress bar per epoch (loss, accuracy, images/s)
    tensorboard: bool = False  # also write TensorBoard event files to the run folder

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {self.val_size}")
        if self.monitor not in ("val_loss", "val_accuracy"):
            raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy', got {self.monitor!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not 0 <= self.scale < 1:
            raise ValueError(f"scale must be in [0, 1), got {self.scale}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)


# Named starting points; flags and config files override them.
RECIPES: dict[str, dict[str, Any]] = {
    # The recipe this project recommends (the CLI's default).
    "default": {},
    # The original write-up exactly: plain SGD, lr 0.01, batch 64, 5 epochs, no augmentation.
    "seed": {
        "epochs": 5,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.0,
        "nesterov": False,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "flip": False,
        "crop_padding": 0,
    },
}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file (flat keys, or under a ``[train]`` table)."""
    with open(path, "rb") as f:
        values = tomllib.load(f)
    return values.get("train", values)


def resolve_config(
    recipe: str = "default",
    file_values: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Recipe, then config file, then explicit overrides (command-line flags), later winning."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; known recipes: {sorted(RECIPES)}")
    values: dict[str, Any] = dict(RECIPES[recipe])
    values.update(file_values or {})
    values.update(overrides or {})
    return TrainConfig.from_dict(values)
