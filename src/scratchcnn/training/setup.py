"""One run setup for every command that trains: data, model, optimizer, schedule, augmentation.

``scratchcnn train`` and ``scratchcnn compare`` (and the lr range test) build their run from a
:class:`~scratchcnn.training.config.TrainConfig` here, so a setting means the same thing in each
and a config that trains also compares. Every random generator is seeded from ``config.seed``
with its own stream, so drawing from one (shuffling, say) never changes another (dropout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchcnn.data import BatchIterator, Normalizer, is_dataset_name, load_dataset
from scratchcnn.data import transforms as T
from scratchcnn.errors import ConfigError, DataError
from scratchcnn.layers import Conv2d, Dropout, Sequential
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.optim import (
    LRFinderResult,
    Optimizer,
    Schedule,
    build_optimizer,
    build_schedule,
    lr_range_test,
)
from scratchcnn.training.config import TrainConfig

__all__ = [
    "RunSetup",
    "TrainingData",
    "build_augmentation",
    "build_run",
    "find_lr",
    "init_model",
    "make_batch",
    "prepare_data",
]

# Streams of np.random.default_rng([config.seed, stream]): one per use, fixed forever so that
# a seed means the same run in every version.
INIT_STREAM, SHUFFLE_STREAM, AUGMENT_STREAM, DROPOUT_STREAM, SPLIT_STREAM = 0, 1, 2, 3, 4
LR_FINDER_STREAM = 5


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
    """The per-image transforms and the optional batch mixer that ``config`` asks for."""
    augment = T.build_transforms(
        flip=config.flip,
        crop_padding=config.crop_padding,
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

    @property
    def dropouts(self) -> list[Dropout]:
        """The model's dropout layers, whose generators a checkpoint saves."""
        return _dropouts(self.model)


def init_model(config: TrainConfig, data: TrainingData) -> Layer:
    """``config.model`` for the data's image shape and classes, initialised from the seed."""
    from scratchcnn.models import MODELS

    height, width, channels = data.image_shape
    if height != width:
        raise ConfigError(
            f"model {config.model!r} takes square images; the data's are {height}x{width} "
            "(height x width): resize them with image_size (--image-size)"
        )
    try:
        model = MODELS[config.model](
            num_classes=len(data.class_names),
            in_channels=channels,
            image_size=height,
            rng=np.random.default_rng([config.seed, INIT_STREAM]),
            dtype=np.dtype(config.dtype).type,
        )
    except ValueError as err:
        raise ConfigError(
            f"model {config.model!r} cannot take the data's {height}x{width}x{channels} images: "
            f"{err}; resize them with image_size (--image-size)"
        ) from err
    first_layer = next(iter(model)) if isinstance(model, Sequential) else model
    if isinstance(first_layer, Conv2d):
        first_layer.needs_input_grad = False  # nothing upstream of the images needs a gradient
    return model


def build_run(
    config: TrainConfig,
    data: TrainingData,
    *,
    augment: bool = True,
    model: Layer | None = None,
) -> RunSetup:
    """Model (``config.model``, or ``model``), optimizer, schedule, augmentation, loss and the
    seeded generators for one run of ``config.epochs`` epochs over ``data``.

    ``augment=False`` turns augmentation and mixing off (``compare`` feeds identical batches to
    two frameworks).
    """
    model = model if model is not None else init_model(config, data)
    for index, layer in enumerate(_dropouts(model)):
        layer.rng = np.random.default_rng([config.seed, DROPOUT_STREAM, index])
    optimizer = build_optimizer(
        config.optimizer,
        model.parameters(),
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
    schedule = build_schedule(
        config.schedule,
        config.lr,
        total_steps=total_steps,
        # a warm-up as long as the whole run would never reach the peak: cap it
        warmup_steps=min(round((config.warmup_epochs or 0.0) * steps_per_epoch), total_steps - 1),
        step_size=None if config.step_size is None else config.step_size * steps_per_epoch,
        gamma=gamma,
    )
    transforms, mix = build_augmentation(config) if augment else (T.Compose([]), None)
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
    )


def make_batch(
    images: np.ndarray,
    labels: np.ndarray,
    run: RunSetup,
    normalizer: Normalizer,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images -> [0, 1] floats -> augmentation -> normalisation; labels or soft targets.

    Shape: ``images (B, H, W, C)`` uint8, ``labels (B,)`` -> ``x (B, C, H, W)`` in the model's
    dtype, ``target (B,)`` ints or ``(B, K)`` soft targets when mixing.
    """
    from scratchcnn.data import to_float_nchw

    dtype = run.dtype
    x = run.augment(to_float_nchw(images, dtype=dtype.type), run.augment_rng)
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
