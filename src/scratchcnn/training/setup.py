"""One run setup for every command that trains: data, model, optimizer, schedule, augmentation.

``scratchcnn train`` and ``scratchcnn compare`` (and the lr range test) build their run from a
:class:`~scratchcnn.training.config.TrainConfig` here, so a setting means the same thing in each
and a config that trains also compares. Every random generator is seeded from ``config.seed``
with its own stream, so drawing from one (shuffling, say) never changes another (dropout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.data import BatchIterator, Normalizer, is_dataset_name, load_dataset
from scratchcnn.data import transforms as T
from scratchcnn.errors import ConfigError, DataError
from scratchcnn.init import init_patch_whitening, initialize
from scratchcnn.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Linear,
    Sequential,
    skip_untrained_input_gradient,
)
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import TransferReport
from scratchcnn.optim import (
    ExponentialMovingAverage,
    Lookahead,
    LRFinderResult,
    Optimizer,
    ParamGroup,
    Schedule,
    build_optimizer,
    build_schedule,
    lookahead_alpha,
    lr_range_test,
)
from scratchcnn.training.config import TrainConfig

__all__ = [
    "ModelPreparation",
    "RunSetup",
    "TrainingData",
    "build_augmentation",
    "build_run",
    "find_lr",
    "first_conv",
    "init_model",
    "make_batch",
    "prepare_data",
    "prepare_model",
]

# Streams of np.random.default_rng([config.seed, stream]): one per use, fixed forever so that
# a seed means the same run in every version.
INIT_STREAM, SHUFFLE_STREAM, AUGMENT_STREAM, DROPOUT_STREAM, SPLIT_STREAM = 0, 1, 2, 3, 4
LR_FINDER_STREAM, REINIT_STREAM, FLIP_STREAM, WHITENING_STREAM, ACTIVATIONS_STREAM = 5, 6, 7, 8, 9

# Patch whitening as airbench does it: the patch covariance of 5,000 training images (it takes
# the first 5,000 of CIFAR-10's shuffled training set; a seeded sample here, since an image
# folder lists its images class by class), eps added to each eigenvalue.
WHITENING_IMAGES = 5000
WHITENING_EPS = 5e-4
# Training images whose activation statistics record_activations follows: enough for stable
# means and dead-unit fractions, one forward pass per epoch.
ACTIVATION_IMAGES = 256


@dataclass
class TrainingData:
    """The training and validation images (uint8, NHWC) and the normaliser fitted on training.

    ``source`` is where the data came from: a dataset name, or the absolute path of the
    archive or folder (recorded in checkpoints so evaluation finds it from any folder).

    Shape: ``*_images (N, H, W, C)`` uint8, ``*_labels (N,)`` int64.

    Attributes: ``train_images``/``train_labels`` (the training split, or its subset),
    ``val_images``/``val_labels`` (held out of the training set), ``test_images``/``test_labels``
    (the official test split), ``class_names`` (in label order) and ``normalizer`` (fitted on the
    training images).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    normalizer: Normalizer
    source: str = ""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        height, width, channels = self.train_images.shape[1:]
        return int(height), int(width), int(channels)


def prepare_data(config: TrainConfig) -> TrainingData:
    """Load the dataset, split off validation (seeded, stratified), fit the normaliser.

    Args:
        config: the run's data settings (``data``, ``val_size``, ``train_subset``, ``seed`` ...).

    Raises DataError for a dataset a classifier cannot learn from (fewer than two classes) and
    ConfigError when ``val_size`` or ``train_subset`` do not fit the data.
    """
    size = None if config.image_size is None else (config.image_size, config.image_size)
    dataset = load_dataset(
        config.data, cache_dir=config.cache_dir, image_size=size, progress=config.progress
    )
    train_classes = np.unique(np.asarray(dataset.train_labels))
    if len(dataset.class_names) < 2 or len(train_classes) < 2:
        present = [dataset.class_names[k] for k in train_classes]
        raise DataError(
            f"{config.data}: a classifier needs at least two classes, but the training images "
            f"hold {len(present)}: {present}"
        )
    count = len(dataset.train_labels)
    if config.val_size >= count:
        raise ConfigError(
            f"val_size {config.val_size} leaves no training images: {config.data} has {count} "
            f"training images; choose val_size below {count} (0 for no validation split)"
        )
    split_rng = np.random.default_rng([config.seed, SPLIT_STREAM])
    if config.val_size:
        from scratchcnn.data import split_train_val

        train_idx, val_idx = split_train_val(dataset.train_labels, config.val_size, split_rng)
    else:
        train_idx, val_idx = np.arange(count), np.arange(0)
    if config.train_subset is not None:
        if config.train_subset > len(train_idx):
            raise ConfigError(
                f"train_subset must be in [1, {len(train_idx)}] ({count} training images, "
                f"{config.val_size} for validation), got {config.train_subset}"
            )
        train_idx = np.sort(split_rng.choice(train_idx, config.train_subset, replace=False))
    train_images = np.asarray(dataset.train_images[train_idx])
    source = str(config.data)
    if not is_dataset_name(source):
        source = str(Path(source).expanduser().resolve())
    return TrainingData(
        train_images=train_images,
        train_labels=np.asarray(dataset.train_labels[train_idx], dtype=np.int64),
        val_images=np.asarray(dataset.train_images[val_idx]),
        val_labels=np.asarray(dataset.train_labels[val_idx], dtype=np.int64),
        test_images=dataset.test_images,
        test_labels=np.asarray(dataset.test_labels, dtype=np.int64),
        class_names=list(dataset.class_names),
        normalizer=Normalizer.fit(train_images),
        source=source,
    )


def build_augmentation(config: TrainConfig) -> tuple[T.Compose, T.Mixer | None]:
    """The per-image transforms and the optional batch mixer that ``config`` asks for.

    With ``alternating_flip`` the flip is not among them: :func:`make_batch` applies the
    :class:`~scratchcnn.data.transforms.AlternatingFlip` of the run, which needs each image's
    index and the epoch.
    """
    augment = T.build_transforms(
        flip=config.flip and not config.alternating_flip,
        crop_padding=config.crop_padding,
        crop_padding_mode=config.crop_padding_mode,
        brightness=config.color_jitter,
        contrast=config.color_jitter,
        saturation=config.color_jitter,
        rotation_degrees=config.rotation,
        scale=(1.0 - config.scale, 1.0 + config.scale),
        cutout_size=config.cutout,
    )
    return augment, T.build_mixer(config.mixup, config.cutmix)


@dataclass
class RunSetup:
    """Everything a training loop needs besides the data, built from one config.

    Attributes: the ``model``, its ``optimizer`` and learning-rate ``schedule``; ``augment``
    (per-image transforms) and ``mix`` (Mixup/CutMix, or ``None``); the ``loss_fn``;
    ``shuffle_rng`` and ``augment_rng``, the generators of the shuffling and the augmentation;
    ``steps_per_epoch`` and ``total_steps``, the optimizer steps per epoch and in the whole run.
    """

    model: Layer
    optimizer: Optimizer
    schedule: Schedule
    augment: T.Compose
    mix: T.Mixer | None
    loss_fn: CrossEntropyLoss
    loader: BatchIterator  # shuffled training batches, drawn from shuffle_rng
    shuffle_rng: np.random.Generator
    augment_rng: np.random.Generator
    steps_per_epoch: int
    total_steps: int
    dtype: np.dtype  # of the model's parameters and of every batch
    alternating_flip: T.AlternatingFlip | None = None  # config.alternating_flip
    lookahead: Lookahead | None = None  # config.lookahead: slow weights, synced every k steps
    ema: ExponentialMovingAverage | None = None  # config.ema_decay: averaged weights
    whitening: Conv2d | None = None  # the patch-whitening conv (config.whiten_init)
    activation_images: np.ndarray | None = None  # config.record_activations: (N, H, W, C) uint8

    @property
    def dropouts(self) -> list[Dropout]:
        """The model's dropout layers, whose generators a checkpoint saves."""
        return _dropouts(self.model)

    @property
    def averages(self) -> dict[str, Lookahead | ExponentialMovingAverage]:
        """The weight averages a checkpoint saves, by name."""
        named = {"lookahead": self.lookahead, "ema": self.ema}
        return {name: average for name, average in named.items() if average is not None}

    def start_epoch(self, epoch: int, config: TrainConfig) -> None:
        """What changes at an epoch's start: the whitening bias trains for its first epochs;
        once it is frozen, the backward pass stops at the first trained convolution."""
        if self.whitening is not None and config.whiten_bias_epochs is not None:
            assert self.whitening.bias is not None  # checked by prepare_model
            self.whitening.bias.requires_grad = epoch < config.whiten_bias_epochs
            skip_untrained_input_gradient(self.model)

    def after_step(self, step: int) -> None:
        """After optimizer step number ``step`` (1-based): Lookahead (airbench's alpha
        schedule, ending on the slow weights at the last step of the run), then the EMA."""
        if self.lookahead is not None:
            self.lookahead.step(lookahead_alpha(step, self.total_steps))
            if step == self.total_steps:
                self.lookahead.sync(0.0)  # the trained model is the slow weights
        if self.ema is not None:
            self.ema.update()


def first_conv(model: Layer) -> Conv2d | None:
    """The layer the images meet first, if it is a Conv2d (looking into nested Sequentials)."""
    layer = model
    while isinstance(layer, Sequential) and len(layer) > 0:
        layer = layer[0]
    return layer if isinstance(layer, Conv2d) else None


def init_model(config: TrainConfig, data: TrainingData) -> Layer:
    """The network ``config`` describes, for the data's image shape and classes, initialised
    from the seed: a zoo model (``model`` with ``model_options``) or an ``architecture``; with
    ``init``, every conv and linear weight re-drawn by that initialiser.

    Raises ConfigError when the model does not take the data's images or classes (naming the
    layer where the shapes stop fitting) or an option's value is invalid. Data-dependent and
    pretrained weights come after, from :func:`prepare_model`.
    """
    from scratchcnn.models import build_model, create_model

    height, width, channels = data.image_shape
    rng = np.random.default_rng([config.seed, INIT_STREAM])
    if config.architecture is not None:
        model = build_model(config.architecture, rng=rng, dtype=config.dtype_type)
        what = "the architecture"
    else:
        assert config.model is not None  # TrainConfig fills it in
        what = f"model {config.model!r}"
        if height != width:
            raise ConfigError(
                f"{what} takes square images; the data's are {height}x{width} (height x width): "
                "resize them with image_size (--image-size)"
            )
        options = {
            k: tuple(v) if isinstance(v, list) else v for k, v in config.model_options.items()
        }
        try:
            model = create_model(
                config.model,
                num_classes=len(data.class_names),
                in_channels=channels,
                image_size=height,
                rng=rng,
                dtype=config.dtype_type,
                **options,
            )
        except ValueError as err:
            raise ConfigError(
                f"{what} cannot take the data's {height}x{width}x{channels} images "
                f"({len(data.class_names)} classes) with these options: {err}; check "
                "model_options, or resize the images with image_size (--image-size)"
            ) from err
    _check_fits(model, data, what)
    if config.init is not None:
        _reinitialise(model, config.init, np.random.default_rng([config.seed, REINIT_STREAM]))
    skip_untrained_input_gradient(model)  # nothing upstream of the images needs a gradient
    return model


def _check_fits(model: Layer, data: TrainingData, what: str) -> None:
    from scratchcnn.models import check_model_fits

    height, width, channels = data.image_shape
    try:
        check_model_fits(model, (channels, height, width), len(data.class_names))
    except ValueError as err:
        raise ConfigError(f"{what} does not fit the data: {err}") from err


def _reinitialise(model: Layer, name: str, rng: np.random.Generator) -> None:
    """Draw every Conv2d and Linear weight anew with initialiser ``name``, in model order.

    ``dirac`` and ``partial_dirac`` are identity convolutions: they re-draw the convolutions
    and leave linear layers as the model built them. Biases are left as built (zeros).
    """
    conv_only = name in ("dirac", "partial_dirac")
    for layer in model.modules():
        if isinstance(layer, Conv2d) or (isinstance(layer, Linear) and not conv_only):
            weight = layer.weight.data
            layer.weight.data = initialize(name, weight.shape, rng, weight.dtype)


@dataclass
class ModelPreparation:
    """What :func:`prepare_model` did: the transfer report and the parameters left frozen."""

    init_from: str | None = None  # the checkpoint's absolute path
    transfer: TransferReport | None = None
    frozen: list[str] = field(default_factory=list)  # parameter names, requires_grad False
    whitened: str | None = None  # the whitening conv's parameter prefix ("0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the run folder's ``transfer.json``."""
        report = self.transfer
        return {
            "init_from": self.init_from,
            "loaded": [] if report is None else report.loaded,
            "skipped": {} if report is None else report.skipped,
            "newly_initialised": [] if report is None else report.initialised,
            "frozen": self.frozen,
            "whitened": self.whitened,
        }


def prepare_model(
    model: Layer, config: TrainConfig, data: TrainingData, *, restoring: bool = False
) -> ModelPreparation:
    """Load ``init_from``'s matching tensors, whiten the first conv (``whiten_init``), freeze
    ``freeze`` and the whitening weight; check that the model fits the data.

    ``restoring=True`` (resuming a checkpoint, whose tensors replace every weight) only freezes.
    Every failure is a ConfigError naming the setting; nothing is written.
    """
    from scratchcnn.serialization import load_pretrained

    _check_fits(model, data, "the model")
    dtype = next((p.dtype for p in model.parameters()), None)
    if dtype is not None and dtype != np.dtype(config.dtype):
        raise ConfigError(
            f"the model's parameters are {dtype}, but dtype is {config.dtype!r}; cast the model "
            f"(model.astype(np.{config.dtype})) or set dtype"
        )
    prepared = ModelPreparation()
    if config.init_from is not None and not restoring:
        path = Path(config.init_from).expanduser().resolve()
        try:
            prepared.transfer = load_pretrained(model, path)
        except ValueError as err:  # CheckpointError, or no tensor matched
            raise ConfigError(f"init_from: {err}") from err
        prepared.init_from = str(path)
    whitening = _whitening_conv(model, config) if config.whiten_init else None
    if whitening is not None and not restoring:
        _whiten(whitening, config, data)
    try:
        if config.freeze:
            model.freeze(*config.freeze)
    except ValueError as err:
        raise ConfigError(f"freeze: {err}") from err
    if whitening is not None:
        whitening.weight.requires_grad = False  # airbench: the whitening filters stay fixed
        prepared.whitened = next(
            name.removesuffix(".weight")
            for name, param in model.named_parameters()
            if param is whitening.weight
        )
    prepared.frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    skip_untrained_input_gradient(model)  # a frozen prefix needs no gradient either
    return prepared


def _whitening_conv(model: Layer, config: TrainConfig) -> Conv2d:
    conv = first_conv(model)
    if conv is None:
        raise ConfigError(
            "whiten_init needs a model whose first layer is a Conv2d (the whitening conv, e.g. "
            f"airbench's), got {type(model).__name__} starting with another layer"
        )
    if config.whiten_bias_epochs is not None and conv.bias is None:
        raise ConfigError(
            f"whiten_bias_epochs trains the whitening conv's bias, but {conv!r} has no bias"
        )
    return conv


def _whiten(conv: Conv2d, config: TrainConfig, data: TrainingData) -> None:
    """Patch-whitening filters from a seeded sample of normalised training images."""
    rng = np.random.default_rng([config.seed, WHITENING_STREAM])
    count = min(WHITENING_IMAGES, len(data.train_labels))
    chosen = np.sort(rng.choice(len(data.train_labels), count, replace=False))
    images = data.normalizer(np.asarray(data.train_images[chosen]))  # (N, C, H, W) float32
    try:
        init_patch_whitening(conv, images.astype(config.dtype_type, copy=False), WHITENING_EPS)
    except ValueError as err:
        raise ConfigError(f"whiten_init: {err}") from err


def build_run(
    config: TrainConfig,
    data: TrainingData,
    *,
    augment: bool = True,
    model: Layer | None = None,
) -> RunSetup:
    """Model (``config.model``, or ``model``), optimizer, schedule, augmentation, loss and the
    seeded generators for one run of ``config.epochs`` epochs over ``data``.

    A model built here is initialised (:func:`init_model`) and prepared (:func:`prepare_model`);
    a ``model`` passed in is used as it is. The weight averages (Lookahead, EMA) start from
    its weights now. ``augment=False`` turns augmentation and mixing off (``compare`` feeds
    identical batches to two frameworks).
    """
    if model is None:
        model = init_model(config, data)
        prepare_model(model, config, data)
    for index, layer in enumerate(_dropouts(model)):
        layer.rng = np.random.default_rng([config.seed, DROPOUT_STREAM, index])
    optimizer = build_optimizer(
        config.optimizer,
        _param_groups(model, config),
        lr=config.lr,
        momentum=config.momentum or 0.0,
        weight_decay=config.weight_decay,
        nesterov=bool(config.nesterov),
        betas=config.betas or (0.9, 0.999),
    )
    steps_per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    gamma = config.gamma
    if config.schedule == "exponential" and gamma is not None:
        gamma = gamma ** (1.0 / steps_per_epoch)  # the config's factor is per epoch
    knots = {} if config.lr_knots is None else {"knots": config.lr_knots}
    schedule = build_schedule(
        config.schedule,
        config.lr,
        total_steps=total_steps,
        # a warm-up as long as the whole run would never reach the peak: cap it
        warmup_steps=min(round((config.warmup_epochs or 0.0) * steps_per_epoch), total_steps - 1),
        step_size=None if config.step_size is None else config.step_size * steps_per_epoch,
        gamma=gamma,
        **knots,
    )
    transforms, mix = build_augmentation(config) if augment else (T.Compose([]), None)
    flip = None
    if augment and config.alternating_flip:
        flip_rng = np.random.default_rng([config.seed, FLIP_STREAM])
        flip = T.AlternatingFlip(len(data.train_labels), flip_rng)
    shuffle_rng = np.random.default_rng([config.seed, SHUFFLE_STREAM])
    return RunSetup(
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        augment=transforms,
        mix=mix,
        loss_fn=CrossEntropyLoss(config.label_smoothing),
        loader=BatchIterator(
            data.train_images, data.train_labels, config.batch_size, rng=shuffle_rng
        ),
        shuffle_rng=shuffle_rng,
        augment_rng=np.random.default_rng([config.seed, AUGMENT_STREAM]),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        dtype=np.dtype(config.dtype),
        alternating_flip=flip,
        lookahead=Lookahead(model, k=config.lookahead) if config.lookahead else None,
        ema=None if config.ema_decay is None else ExponentialMovingAverage(model, config.ema_decay),
        whitening=first_conv(model) if config.whiten_init else None,
        activation_images=_activation_images(config, data) if config.record_activations else None,
    )


def _param_groups(model: Layer, config: TrainConfig) -> list[ParamGroup]:
    """One group, or with ``bn_bias_lr_scale`` the batch-norm biases first in a group of their
    own: lr times the scale, weight decay divided by it (the same shrink per step)."""
    params = list(model.parameters())
    if config.bn_bias_lr_scale is None:
        return [ParamGroup(params)]
    scale = config.bn_bias_lr_scale
    biases = [m.bias for m in model.modules() if isinstance(m, (BatchNorm1d, BatchNorm2d))]
    if not biases:
        raise ConfigError(
            f"bn_bias_lr_scale={scale} sets the lr of batch-norm biases, but the model has no "
            "batch norm; drop bn_bias_lr_scale"
        )
    chosen = {id(p) for p in biases}
    rest = [p for p in params if id(p) not in chosen]
    return [
        ParamGroup(biases, lr_scale=scale, weight_decay=config.weight_decay / scale),
        ParamGroup(rest),
    ]


def _activation_images(config: TrainConfig, data: TrainingData) -> np.ndarray:
    """A fixed, seeded sample of training images for activation statistics."""
    rng = np.random.default_rng([config.seed, ACTIVATIONS_STREAM])
    count = min(ACTIVATION_IMAGES, len(data.train_labels))
    return np.asarray(data.train_images[np.sort(rng.choice(len(data.train_labels), count, False))])


def make_batch(
    images: np.ndarray,
    labels: np.ndarray,
    run: RunSetup,
    normalizer: Normalizer,
    num_classes: int,
    indices: np.ndarray | None = None,
    epoch: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images -> [0, 1] floats -> augmentation -> normalisation; labels or soft targets.

    With an alternating flip the images' ``indices`` in the training set and the ``epoch``
    decide which are mirrored; it comes first (mirroring commutes in distribution with the
    symmetric crops, jitter and cutout that follow, and airbench flips before cropping too).

    Shape: ``images (B, H, W, C)`` uint8, ``labels (B,)``, ``indices (B,)`` -> ``x (B, C, H,
    W)`` in the model's dtype, ``target (B,)`` ints or ``(B, K)`` soft targets when mixing.
    """
    from scratchcnn.data import to_float_nchw

    dtype = run.dtype
    x = to_float_nchw(images, dtype=dtype.type)
    if run.alternating_flip is not None:
        if indices is None:
            raise ValueError("make_batch: the alternating flip needs the images' indices")
        x = run.alternating_flip(x, indices, epoch)
    x = run.augment(x, run.augment_rng)
    target: np.ndarray = labels
    if run.mix is not None:
        x, target = run.mix(x, T.one_hot(labels, num_classes, dtype=dtype.type), run.augment_rng)
    return normalizer(x).astype(dtype, copy=False), target


def find_lr(
    config: TrainConfig,
    data: TrainingData,
    *,
    model: Layer | None = None,
    num_steps: int = 100,
    start_lr: float = 1e-5,
    end_lr: float = 10.0,
) -> LRFinderResult:
    """The learning-rate range test on the run ``config`` describes: its model (freshly
    initialised, or ``model``), optimizer, augmentation, loss and batch size, on training
    batches drawn from a generator of its own (the run's generators are untouched).

    The model built here is thrown away; train a fresh one with the suggested lr.

    Args:
        config: the run.
        data: the prepared data.
        model: a model to test instead of a fresh one.
        num_steps: training steps of the test.
        start_lr: the first learning rate.
        end_lr: the last learning rate (the rate grows geometrically in between).
    """
    run = build_run(config, data, model=model)
    run.model.train()
    batches_rng = np.random.default_rng([config.seed, LR_FINDER_STREAM])
    loader = BatchIterator(data.train_images, data.train_labels, config.batch_size, rng=batches_rng)
    num_classes = len(data.class_names)

    def batches():
        while True:
            yield from loader

    stream = batches()

    def step() -> float:
        images, labels = next(stream)
        x, target = make_batch(images, labels, run, data.normalizer, num_classes)
        loss = run.loss_fn.forward(run.model.forward(x, training=True), target)
        run.model.backward(run.loss_fn.backward())
        return loss

    return lr_range_test(step, run.optimizer, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps)


def _dropouts(model: Layer) -> list[Dropout]:
    return [m for m in model.modules() if isinstance(m, Dropout)]
