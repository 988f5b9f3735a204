"""Training configuration: one typed dataclass, checked when it is made, and the named recipes.

Every setting is checked at construction (type, name, range, and whether it applies to the
chosen optimizer and schedule), so a bad value fails before any data is read or any file is
written. Settings that only make sense for one optimizer or schedule default to ``None``,
which :class:`TrainConfig` turns into that optimizer's or schedule's usual value: the default
recipe's SGD momentum and Nesterov never reach Adam, and its cosine warm-up never reaches the
step schedule.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from scratchcnn.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MONITORS = ("val_accuracy", "val_loss")
DTYPES = ("float32", "float64")
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")  # take ``momentum``
BETAS_OPTIMIZERS = ("adam", "adamw")  # take ``betas``


@dataclass
class TrainConfig:
    """Every setting of a training run; each default says why it was chosen."""

    # --- data ---
    data: str = "cifar10"  # dataset name (cifar10, fashion-mnist, svhn), archive, folder or .zip
    cache_dir: str | None = None  # dataset cache; none: $SCRATCHCNN_DATA or ~/.cache/scratchcnn
    val_size: int = 10_000  # images held out for validation (CIFAR-10: 40k + 10k); 0: none
    train_subset: int | None = None  # train on a random subset of this size (quick runs, tests)
    image_size: int | None = None  # resize image-folder images to this square size; none: keep
    # --- model ---
    model: str = "seed_cnn"  # architecture; seed_cnn is the original write-up's CNN
    dtype: str = "float32"  # float32 is fast; float64 works end to end but is slower
    # --- optimisation ---
    epochs: int = 30  # passes over the training split; cosine decay needs room to anneal
    batch_size: int = 128  # images per step: big for fast matrix products, small to generalise
    optimizer: str = "sgd"  # sgd, adam, adamw or rmsprop; SGD+Nesterov is the tried CIFAR recipe
    lr: float = 0.05  # peak learning rate, reached after the warm-up
    find_lr: bool = False  # run the lr range test first and train with its suggested lr
    momentum: float | None = None  # sgd/rmsprop momentum; none: 0.9 for sgd, 0 for rmsprop
    nesterov: bool | None = None  # Nesterov momentum (sgd only); none: on for sgd with momentum
    betas: tuple[float, float] | None = None  # adam/adamw moment decays; none: 0.9 0.999
    weight_decay: float = 5e-4  # L2 decay on all parameters, as in most CIFAR recipes
    schedule: str = "cosine"  # constant, step, exponential, cosine or onecycle
    warmup_epochs: float | None = None  # linear warm-up (cosine only); none: 1 epoch for cosine
    step_size: int | None = None  # step schedule: epochs between decays; none: a third of the run
    gamma: float | None = None  # lr factor per step_size (step; none 0.1) or epoch (exponential)

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
    monitor: str | None = None  # val_accuracy or val_loss: picks the best model; none: accuracy
    eval_batch_size: int = 500  # evaluation batch size: no backward pass, so bigger fits
    run_dir: str = "runs"  # parent folder of run folders; a run writes to run_dir/name
    name: str | None = None  # run folder name; none means the current date and time
    progress: bool = True  # show a progress bar per epoch (loss, accuracy, images/s)
    tensorboard: bool = False  # also write TensorBoard event files to the run folder

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, check_type(f.name, getattr(self, f.name), hints[f.name]))
        self._check_names()
        self._check_ranges()
        self._fill_optimizer_defaults()
        self._fill_schedule_defaults()
        self._check_validation()

    def _check_names(self) -> None:
        from scratchcnn.models import MODELS
        from scratchcnn.optim import OPTIMIZER_NAMES, SCHEDULE_NAMES

        self.optimizer = self.optimizer.lower()
        self.schedule = self.schedule.lower()
        for name, valid in (
            ("model", tuple(MODELS)),
            ("optimizer", OPTIMIZER_NAMES),
            ("schedule", SCHEDULE_NAMES),
            ("dtype", DTYPES),
        ):
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; valid names are {list(valid)}"
                )
        if self.monitor is not None and self.monitor not in MONITORS:
            raise ConfigError(f"unknown monitor {self.monitor!r}; valid names are {list(MONITORS)}")
        if self.name is not None and (
            not self.name or self.name in (".", "..") or "/" in self.name or "\\" in self.name
        ):
            raise ConfigError(
                f"name must be a plain folder name (no '/', not '.' or '..'), got {self.name!r}"
            )

    def _check_ranges(self) -> None:
        at_least = {
            "epochs": 1,
            "batch_size": 1,
            "eval_batch_size": 1,
            "val_size": 0,
            "crop_padding": 0,
            "cutout": 0,
            "seed": 0,
        }
        optional_at_least = {
            "train_subset": 1,
            "early_stopping": 1,
            "step_size": 1,
            "image_size": 1,
        }
        non_negative = ("weight_decay", "color_jitter", "rotation", "mixup", "cutmix")
        for name, low in at_least.items():
            _check_at_least(name, getattr(self, name), low)
        for name, low in optional_at_least.items():
            if getattr(self, name) is not None:
                _check_at_least(name, getattr(self, name), low)
        for name in non_negative:
            _check_at_least(name, getattr(self, name), 0)
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.warmup_epochs is not None:
            _check_at_least("warmup_epochs", self.warmup_epochs, 0)
        if self.rotation > 180:
            raise ConfigError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        for name in ("scale", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ConfigError(f"clip_norm must be > 0 (or none for off), got {self.clip_norm}")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.betas is not None and not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must each be in [0, 1), got {list(self.betas)}")
        if self.gamma is not None and not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")

    def _fill_optimizer_defaults(self) -> None:
        """The chosen optimizer's usual values for what was left as None; refuse the options
        that another optimizer takes."""
        name = self.optimizer
        if name in MOMENTUM_OPTIMIZERS:
            if self.momentum is None:
                self.momentum = 0.9 if name == "sgd" else 0.0
        elif self.momentum:
            raise ConfigError(
                f"momentum applies to {list(MOMENTUM_OPTIMIZERS)}, not {name!r} (which takes "
                f"betas); got momentum={self.momentum}"
            )
        if name == "sgd":
            if self.nesterov is None:
                self.nesterov = self.momentum > 0
            elif self.nesterov and not self.momentum > 0:
                raise ConfigError("nesterov needs momentum > 0, got momentum=0.0")
        elif self.nesterov:
            raise ConfigError(f"nesterov applies only to 'sgd', got optimizer {name!r}")
        if name in BETAS_OPTIMIZERS:
            if self.betas is None:
                self.betas = (0.9, 0.999)
        elif self.betas is not None:
            raise ConfigError(
                f"betas apply to {list(BETAS_OPTIMIZERS)}, not {name!r}; got betas="
                f"{list(self.betas)}"
            )

    def _fill_schedule_defaults(self) -> None:
        name = self.schedule
        if name == "cosine":
            if self.warmup_epochs is None:
                self.warmup_epochs = 1.0
        elif self.warmup_epochs:
            raise ConfigError(
                f"warmup_epochs applies to the 'cosine' schedule, not {name!r}; got "
                f"warmup_epochs={self.warmup_epochs}"
            )
        else:
            self.warmup_epochs = 0.0
        if self.step_size is not None and name != "step":
            raise ConfigError(f"step_size applies to the 'step' schedule, not {name!r}")
        if self.gamma is not None and name not in ("step", "exponential"):
            raise ConfigError(
                f"gamma applies to the 'step' and 'exponential' schedules, not {name!r}"
            )

    def _check_validation(self) -> None:
        """Without a validation split, nothing can be monitored: the last epoch is the best."""
        if self.val_size == 0:
            if self.early_stopping is not None:
                raise ConfigError(
                    "early_stopping needs a validation split, but val_size is 0; set val_size "
                    "> 0 or drop early_stopping"
                )
            if self.monitor is not None:
                raise ConfigError(
                    f"monitor={self.monitor!r} needs a validation split, but val_size is 0 (the "
                    "last epoch's model is kept); set val_size > 0 or drop monitor"
                )
        elif self.monitor is None:
            self.monitor = "val_accuracy"

    @property
    def has_validation(self) -> bool:
        """Whether a validation split is held out (``val_size > 0``)."""
        return self.val_size > 0

    def to_dict(self) -> dict[str, Any]:
        """Every field as a JSON-able dict (what ``config.json`` of a run holds)."""
        values = dataclasses.asdict(self)
        if values["betas"] is not None:
            values["betas"] = list(values["betas"])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config a :meth:`to_dict` dict describes; unknown keys are an error.

        Args:
            values: field names and values.
        """
        check_keys(values)
        return cls(**values)


def _check_at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check_type(name: str, value: Any, kind: Any) -> Any:
    """``value`` as field ``name`` of type ``kind`` needs it, or ConfigError naming both.

    Integers are accepted for floats (``lr = 1``); nothing else is converted: ``"three"`` is not
    an integer, ``3.0`` is not an integer and ``1`` is not a bool. Floats must be finite.
    """
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and type(None) in args:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(
                f"{name} must be {len(args)} numbers, got {value!r} ({type(value).__name__})"
            )
        return tuple(check_type(name, v, a) for v, a in zip(value, args, strict=True))
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        expected = _TYPE_NAMES.get(kind, kind.__name__)
        raise ConfigError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    return value


def check_keys(values: dict[str, Any], source: str = "config") -> None:
    """Refuse keys that are not TrainConfig fields, listing the known ones."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {source} keys {unknown}; known keys: {sorted(known)}")


# Named starting points; flags and config files override them. Options of one optimizer or
# schedule are left to TrainConfig's per-optimizer defaults, so any optimizer works with any
# recipe.
RECIPES: dict[str, dict[str, Any]] = {
    # The recipe this project recommends (the CLI's default): SGD, Nesterov momentum 0.9,
    # cosine decay after one warm-up epoch.
    "default": {},
    # The original write-up exactly: plain SGD, lr 0.01, batch 64, 5 epochs, no augmentation.
    "seed": {
        "epochs": 5,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
        "flip": False,
        "crop_padding": 0,
    },
}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file (flat keys, or under a ``[train]`` table), checking every key
    and value type; errors name the file.

    Args:
        path: the ``.toml`` file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    values = values.get("train", values)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: [train] must be a table of settings")
    hints = typing.get_type_hints(TrainConfig)
    try:
        check_keys(values, source=f"{path}")
        for name, value in values.items():
            check_type(name, value, hints[name])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return values


def resolve_config(
    recipe: str = "default",
    file_values: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Recipe, then config file, then explicit overrides (command-line flags), later winning.

    Args:
        recipe: a name of :data:`RECIPES`.
        file_values: values from a config file (:func:`load_toml`).
        overrides: values set explicitly.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; valid names are {sorted(RECIPES)}")
    values: dict[str, Any] = dict(RECIPES[recipe])
    values.update(file_values or {})
    values.update(overrides or {})
    return TrainConfig.from_dict(values)
