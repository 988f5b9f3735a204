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
import inspect
import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from scratchcnn.errors import ConfigError
from scratchcnn.optim.schedules import AIRBENCH_KNOTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MONITORS = ("val_accuracy", "val_loss")
DTYPES = ("float32", "float64")
PRECISIONS = ("float32", "mixed")  # mixed: float16 kept for backward, float32 arithmetic
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")  # take ``momentum``
BETAS_OPTIMIZERS = ("adam", "adamw")  # take ``betas``
CROP_PADDING_MODES = ("constant", "reflect")
# --- the fast recipe's hyperparameters, derived from airbench93's -------------------------------
# airbench93 states its optimiser in "decoupled" units for batch_size B = 1024 images:
#     lr_decoupled = 11.5 (per 1024 examples), wd_decoupled = 0.0153, momentum m = 0.85,
# and feeds torch SGD (Nesterov) the *sum* of the per-image losses with
#     kilostep_scale = 1024 * (1 + 1 / (1 - m))                    = 7850.67
#     lr_torch       = lr_decoupled / kilostep_scale                = 1.4648e-3
#     wd_torch       = (wd_decoupled * B / kilostep_scale) / lr_torch = wd_decoupled * B / 11.5
# (torch's per-group weight_decay is airbench's wd / lr). One torch step is therefore
#     w -= lr_torch * (sum_i grad_i + wd_torch * w)   (inside the momentum buffer).
# Our loss is the *mean* over the batch, grad_mean = sum_i grad_i / B, and our weight decay
# is coupled the same way (added to the gradient), so the identical step is
#     w -= lr * (grad_mean + weight_decay * w)   with   lr = B * lr_torch,
#                                                       weight_decay = wd_torch / B.
# Hence lr = B * 11.5 / (1024 * (1 + 1 / 0.15)) = 1.5 * B / 1024: airbench's per-example step,
# scaled linearly with the batch (1.5 at B = 1024, 0.75 at B = 512), and
# weight_decay = 0.0153 / 11.5 = 1.3304e-3 whatever B is (the decay per epoch stays airbench's).
# The batch-norm biases get lr x 64 (bias_scaler) and weight_decay / 64 (airbench's group
# decay wd / lr_biases): the same shrink per step, lr * weight_decay, as every other weight.
#
# The batch: airbench uses 1024. A few steps of this recipe on CIFAR-10 and the TTA test peak at
# 0.85 GB resident with batch 512 and 1.49 GB with 1024 on this 2-core machine (/usr/bin/time -v
# python benchmarks/fast_recipe_memory.py --batch-size B), so 512 keeps a run well under the
# 2 GB budget: lr 0.75, and Lookahead every 10 steps, which is airbench's every 5 steps of 1024
# images (the same images between synchronisations).
FAST_MOMENTUM = 0.85
FAST_BATCH_SIZE = 512
FAST_LR = 1.5 * FAST_BATCH_SIZE / 1024  # = B * 11.5 / kilostep_scale, exactly
FAST_WEIGHT_DECAY = 0.0153 / 11.5  # 1.3304e-3
FAST_LOOKAHEAD_STEPS = 5 * 1024 // FAST_BATCH_SIZE  # 10

# Arguments of every zoo builder that the trainer supplies from the data and the seed, so a
# model option may not set them.
SUPPLIED_MODEL_ARGUMENTS = ("num_classes", "in_channels", "image_size", "rng", "dtype")


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
    model: str | None = None  # zoo model (scratchcnn models lists them); none: seed_cnn
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. width; see models NAME
    architecture: dict[str, Any] | None = None  # JSON layers (checkpoint format): nets not in zoo
    dtype: str = "float32"  # float32 is fast; float64 works end to end but is slower
    precision: str = "float32"  # mixed: what backward keeps is float16, loss scaling; float32 math
    init: str | None = None  # re-draw conv/linear weights (he, xavier, small_normal...); none: keep
    init_from: str | None = None  # start from this checkpoint's matching tensors: fine-tuning
    freeze: tuple[str, ...] = ()  # parameters kept fixed (names, prefixes, globs): pretrained ones
    whiten_init: bool = False  # first conv whitens training patches (frozen): airbench's start
    whiten_bias_epochs: int | None = None  # its bias trains this many epochs (airbench: 3); none
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
    schedule: str = "cosine"  # constant, step, exponential, cosine, onecycle or piecewise
    warmup_epochs: float | None = None  # linear warm-up (cosine only); none: 1 epoch for cosine
    step_size: int | None = None  # step schedule: epochs between decays; none: a third of the run
    gamma: float | None = None  # lr factor per step_size (step; none 0.1) or epoch (exponential)
    lr_knots: tuple[tuple[float, float], ...] | None = None  # piecewise: (progress, lr factor)
    bn_bias_lr_scale: float | None = None  # BN biases learn lr x this, decay / this (airbench 64)
    lookahead: int = 0  # sync slow weights every k steps: a smoother end (airbench: 5); 0 off
    ema_decay: float | None = None  # validate/keep an EMA of the weights: less step noise; none off
    label_smoothing: float = 0.0  # target smoothing eps; off, as the small model underfits
    clip_norm: float | None = None  # clip gradients to this global L2 norm; none is off
    # --- augmentation (applied to training batches only) ---
    flip: bool = True  # random horizontal flips: CIFAR-10 classes are left-right symmetric
    alternating_flip: bool = False  # mirror each image every other epoch: both views per 2 epochs
    crop_padding: int = 4  # random translation by up to this many pixels (pad, crop back); 0 off
    crop_padding_mode: str = "constant"  # border fill: constant (black) or reflect (no black edge)
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
    tta: int = 0  # final test's TTA: 0 none, 1 mirror (2x cost), 2 mirror + 1-pixel shifts (6x)
    record_activations: bool = False  # activations.jsonl per epoch: how an initialisation starts
    run_dir: str = "runs"  # parent folder of run folders; a run writes to run_dir/name
    name: str | None = None  # run folder name; none means the current date and time
    progress: bool = True  # progress bar: loss, accuracy, images/s, when the whole run ends
    tensorboard: bool = False  # also write TensorBoard event files to the run folder

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, check_type(f.name, getattr(self, f.name), hints[f.name]))
        self._check_model()
        self._check_names()
        self._check_ranges()
        self._fill_optimizer_defaults()
        self._fill_schedule_defaults()
        self._check_recipe_features()
        self._check_validation()

    def _check_model(self) -> None:
        """One model: a zoo name with its options, or an architecture; nothing built yet."""
        if self.architecture is not None:
            if self.model is not None or self.model_options:
                given = "model" if self.model is not None else "model_options"
                raise ConfigError(
                    f"architecture describes the whole network, so {given} cannot be set too "
                    f"(got {given}={getattr(self, given)!r}); give one or the other"
                )
            from scratchcnn.models import ModelConfigError, build_model

            try:  # every layer's type and arguments, with the place of a bad one
                build_model(self.architecture, dtype=self.dtype_type)
            except ModelConfigError as err:
                raise ConfigError(f"architecture: {err}") from err
            return
        if self.model is None:
            self.model = "seed_cnn"
        from scratchcnn.models import MODELS

        if self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; valid models: {', '.join(MODELS)}")
        check_model_options(self.model, self.model_options)

    @property
    def dtype_type(self) -> type:
        """The NumPy scalar type of ``dtype`` (``np.float32``), once ``dtype`` is valid."""
        import numpy as np

        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; valid names are {list(DTYPES)}")
        return np.dtype(self.dtype).type

    def _check_names(self) -> None:
        from scratchcnn.init import INITIALIZERS
        from scratchcnn.optim import OPTIMIZER_NAMES, SCHEDULE_NAMES
        from scratchcnn.training.tta import TTA_LEVELS

        self.optimizer = self.optimizer.lower()
        self.schedule = self.schedule.lower()
        for name, valid in (
            ("optimizer", OPTIMIZER_NAMES),
            ("schedule", SCHEDULE_NAMES),
            ("dtype", DTYPES),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"unknown {name} {getattr(self, name)!r}; valid names are {list(valid)}"
                )
        if self.init is not None and self.init not in INITIALIZERS:
            raise ConfigError(f"unknown init {self.init!r}; valid names are {list(INITIALIZERS)}")
        if self.precision == "mixed" and self.dtype != "float32":
            raise ConfigError(
                f"precision 'mixed' keeps float32 arithmetic with float16 storage, so it needs "
                f"dtype 'float32', got dtype {self.dtype!r}"
            )
        if self.crop_padding_mode not in CROP_PADDING_MODES:
            raise ConfigError(
                f"unknown crop_padding_mode {self.crop_padding_mode!r}; valid names are "
                f"{list(CROP_PADDING_MODES)}"
            )
        if self.tta not in TTA_LEVELS:
            raise ConfigError(
                f"tta must be one of {list(TTA_LEVELS)} (0 none, 1 mirror, 2 mirror and one-pixel "
                f"translations), got {self.tta}"
            )
        for pattern in self.freeze:
            if not pattern.strip():
                raise ConfigError(f"freeze patterns must be non-empty, got {list(self.freeze)}")
        if self.init_from is not None and not self.init_from.strip():
            raise ConfigError("init_from must name a checkpoint file, got an empty string")
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
            "lookahead": 0,
        }
        optional_at_least = {
            "train_subset": 1,
            "early_stopping": 1,
            "step_size": 1,
            "image_size": 1,
            "whiten_bias_epochs": 0,
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
        if self.bn_bias_lr_scale is not None and not self.bn_bias_lr_scale > 0:
            raise ConfigError(
                f"bn_bias_lr_scale must be > 0 (or none for the others' lr), got "
                f"{self.bn_bias_lr_scale}"
            )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(
                f"ema_decay must be in (0, 1) (or none for off), got {self.ema_decay}"
            )

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
        if self.lr_knots is not None:
            if name != "piecewise":
                raise ConfigError(f"lr_knots applies to the 'piecewise' schedule, not {name!r}")
            from scratchcnn.optim import PiecewiseLinearLR

            try:
                PiecewiseLinearLR(1.0, 1, self.lr_knots)
            except ValueError as err:
                raise ConfigError(f"lr_knots: {err}") from err

    def _check_recipe_features(self) -> None:
        """Settings that only make sense together with another one."""
        if self.whiten_bias_epochs is not None and not self.whiten_init:
            raise ConfigError(
                f"whiten_bias_epochs={self.whiten_bias_epochs} limits the training of the "
                "whitening conv's bias, but whiten_init is off; set whiten_init = true or drop "
                "whiten_bias_epochs"
            )
        if self.alternating_flip and not self.flip:
            raise ConfigError(
                "alternating_flip chooses how images are flipped, but flip is off; set flip = "
                "true or drop alternating_flip"
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
        """Every field, JSON-ready (tuples become lists); :meth:`from_dict` reads it back."""
        return _json_ready(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config a :meth:`to_dict` dict describes; unknown keys are an error.

        Args:
            values: field names and values.
        """
        check_keys(values)
        return cls(**values)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def model_option_names(model: str) -> list[str]:
    """The options a zoo model takes beyond what the trainer supplies (``width``, ...).

    A registry entry that fixes some arguments (``resnet20`` is ``cifar_resnet`` with
    ``depth=20``) does not offer those.
    """
    from scratchcnn.models import MODELS

    builder = MODELS[model]
    fixed = set(builder.keywords) if isinstance(builder, partial) else set()
    names = inspect.signature(builder).parameters
    return [n for n in names if n not in SUPPLIED_MODEL_ARGUMENTS and n not in fixed]


def check_model_options(model: str, options: dict[str, Any]) -> None:
    """Refuse option names ``model`` does not take, listing the valid ones (values are checked
    by the builder once the data's shape is known)."""
    valid = model_option_names(model)
    for key in options:
        if key in SUPPLIED_MODEL_ARGUMENTS:
            raise ConfigError(
                f"model_options: {key!r} is set by the trainer from the data and the seed, not "
                "by an option"
            )
        if key not in valid:
            raise ConfigError(
                f"model_options: model {model!r} has no option {key!r}; its options are "
                f"{', '.join(valid)}"
            )


def _check_at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check_type(name: str, value: Any, kind: Any) -> Any:
    """``value`` as field ``name`` of type ``kind`` needs it, or ConfigError naming both.

    Integers are accepted for floats (``lr = 1``); nothing else is converted: ``"three"`` is not
    an integer, ``3.0`` is not an integer and ``1`` is not a bool. Floats must be finite. Lists
    are accepted for tuples (TOML and JSON have no tuples); a table (``dict[str, Any]``) takes
    string keys and JSON values.
    """
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and type(None) in args:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name} must be a list, got {value!r} ({type(value).__name__})")
            return tuple(check_type(name, v, args[0]) for v in value)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(
                f"{name} must be {len(args)} numbers, got {value!r} ({type(value).__name__})"
            )
        return tuple(check_type(name, v, a) for v, a in zip(value, args, strict=True))
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(
                f"{name} must be a table of settings (string keys), got {value!r} "
                f"({type(value).__name__})"
            )
        for key, item in value.items():
            _check_json_value(f"{name}.{key}", item)
        return dict(value)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        expected = _TYPE_NAMES.get(kind, kind.__name__)
        raise ConfigError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    return value


def _check_json_value(name: str, value: Any) -> None:
    """A value a TOML or JSON file can hold (finite numbers), so that config.json records it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{name} must have string keys, got {key!r}")
            _check_json_value(f"{name}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_json_value(name, item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ConfigError(
            f"{name} must be a string, number, true/false, list or table, got {value!r} "
            f"({type(value).__name__})"
        )


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
    # airbench93 (KellerJordan/cifar10-airbench, airbench/lib_airbench93.py, whose `hyp` and
    # `train` in airbench/utils.py this follows) on this library's loss and optimizer. See
    # FAST_BATCH_SIZE and the derivation of lr and weight_decay above.
    "fast": {
        "model": "airbench",  # widths 64/128/128 (airbench93's), BN scales frozen, GELU
        "epochs": 11,  # hyp['opt']['train_epochs'] = 11.0
        "val_size": 0,  # all 50,000 training images; the test set is used once, at the end
        "batch_size": FAST_BATCH_SIZE,
        "optimizer": "sgd",
        "momentum": FAST_MOMENTUM,
        "nesterov": True,
        "lr": FAST_LR,
        "weight_decay": FAST_WEIGHT_DECAY,
        "bn_bias_lr_scale": 64.0,  # hyp['opt']['bias_scaler']
        "schedule": "piecewise",
        "lr_knots": AIRBENCH_KNOTS,  # 0.2 x lr -> lr at 23% of the steps -> 0.07 x lr
        "label_smoothing": 0.2,
        "whiten_init": True,  # 2x2 patch whitening from 5,000 training images, eps 5e-4
        "whiten_bias_epochs": 3,  # hyp['opt']['whiten_bias_epochs']
        "lookahead": FAST_LOOKAHEAD_STEPS,  # alpha 1 - 0.95**5 * progress**3, as airbench
        "flip": True,
        "alternating_flip": True,  # CifarLoader(altflip=True)
        "crop_padding": 2,  # hyp['aug']['translate'] = 2, reflect-padded
        "crop_padding_mode": "reflect",
        "tta": 2,  # hyp['net']['tta_level']: mirror and one-pixel translations
    },
}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file, checking every key and value type; errors name the file.

    Settings are flat keys, or keys under a ``[train]`` table. A ``[model]`` table describes
    the network layer by layer in the checkpoint's architecture format (the ``architecture``
    setting), for a model that is not in the zoo; a zoo model's options go in
    ``model_options`` (e.g. ``[train.model_options]`` or ``model_options = { width = 0.5 }``).

    Args:
        path: the ``.toml`` file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from err
    if "train" in document:
        values = document["train"]
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [train] must be a table of settings")
        values = dict(values)
        extra = sorted(set(document) - {"train", "model"})
        if extra:
            raise ConfigError(
                f"{path}: unknown top-level keys or tables {extra} beside [train]; a config file "
                "has a [train] table of settings and optionally a [model] table"
            )
        if "model" in document:
            if not isinstance(document["model"], dict):
                raise ConfigError(
                    f"{path}: a top-level 'model' must be a [model] table (an architecture); "
                    "put a zoo model's name under [train]"
                )
            if "model" in values:
                raise ConfigError(f"{path}: [train] model and a [model] table are both given")
            values["model"] = document["model"]
    else:
        values = dict(document)
    if isinstance(values.get("model"), dict):  # the [model] table: an architecture
        if "architecture" in values:
            raise ConfigError(f"{path}: a [model] table and 'architecture' are both given")
        values["architecture"] = values.pop("model")
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

    ``model_options`` tables are merged key by key. A later source that names a model (or an
    architecture) replaces an earlier source's model, architecture and model options: the
    ``fast`` recipe's airbench gives way to ``--model vgg`` or a ``[model]`` table.

    Args:
        recipe: a name of :data:`RECIPES`.
        file_values: values from a config file (:func:`load_toml`).
        overrides: values set explicitly.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; valid names are {sorted(RECIPES)}")
    values: dict[str, Any] = {}
    for source in (RECIPES[recipe], file_values or {}, overrides or {}):
        source = dict(source)
        if source.get("model") is not None or source.get("architecture") is not None:
            for key in ("model", "architecture", "model_options"):
                values.pop(key, None)
        if "model_options" in source and isinstance(values.get("model_options"), dict):
            source["model_options"] = {**values["model_options"], **source["model_options"]}
        values.update(source)
    return TrainConfig.from_dict(values)
