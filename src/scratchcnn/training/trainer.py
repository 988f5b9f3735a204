"""The training loop. Read :func:`train` top to bottom; everything else is a helper it calls."""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.backend import current_backend
from scratchcnn.data import Normalizer, load_dataset, split_train_val, to_float_nchw
from scratchcnn.data import transforms as T
from scratchcnn.fast import keep_freed_memory
from scratchcnn.layers import Conv2d, Dropout, Sequential, fuse
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import MODELS
from scratchcnn.optim import Optimizer, build_optimizer, build_schedule, clip_grad_norm
from scratchcnn.serialization import (
    atomic_write_text,
    load_arrays,
    save_arrays,
    save_model,
)
from scratchcnn.training.config import TrainConfig
from scratchcnn.training.evaluate import evaluate

CHECKPOINT = "last.safetensors"  # everything needed to resume, rewritten every epoch
BEST_MODEL = "best.safetensors"  # the model with the best monitored validation metric


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainingData:
    """The training and validation images (uint8, NHWC) and the normaliser fitted on training."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    normalizer: Normalizer


@dataclass
class LoopState:
    """Where the loop is: enough, with the model and optimizer, to resume exactly."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in the current epoch
    step: int = 0  # optimizer steps taken in total
    history: list[dict[str, Any]] = field(default_factory=list)
    grad_norm_history: list[dict[str, float]] = field(default_factory=list)  # mean per epoch
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    epoch_shuffle_state: dict | None = None  # shuffle generator state at the epoch's start
    # running sums over the current epoch's batches
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # training time spent in this epoch before an interruption
    grad_norm_sums: dict[str, float] = field(default_factory=dict)  # per parameter, this epoch


@dataclass
class TrainingResult:
    history: list[dict[str, Any]]
    run_dir: Path
    status: str  # "completed", "early_stopped" or "interrupted"
    best_epoch: int | None
    test: dict[str, Any] | None = None


def train(
    config: TrainConfig | None,
    resume: str | Path | None = None,
    data: TrainingData | None = None,
) -> TrainingResult:
    """Train ``config.model`` on ``config.data``; or resume a run folder or checkpoint exactly.

    When resuming, the run's saved config is used and ``config`` is ignored.

    Writes to the run folder: ``config.json``, ``metrics.jsonl``, ``metrics.csv``,
    ``grad_norms.jsonl``, ``last.safetensors`` (resumable, every epoch), ``best.safetensors``
    (best validation model) and ``results.json`` (test metrics of the best model, at the end).
    Raises :class:`TrainingDiverged` on a NaN/Inf loss, keeping the last good checkpoint.

    The model trains fused (:func:`scratchcnn.layers.fuse`), and the process's allocator keeps
    freed memory for reuse (:func:`scratchcnn.fast.keep_freed_memory`: no page faults per step).
    """
    checkpoint_arrays, checkpoint_meta = (None, None)
    if resume is None and config is None:
        raise ValueError("train needs a config, or a run to resume")
    if resume is not None:
        checkpoint_path = _checkpoint_path(resume)
        checkpoint_arrays, checkpoint_meta = load_arrays(checkpoint_path)
        config = TrainConfig.from_dict(checkpoint_meta["config"])
        run_dir = checkpoint_path.parent
    else:
        run_dir = _new_run_dir(config)
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")

    data = data if data is not None else prepare_data(config)
    dtype = np.dtype(config.dtype)
    num_classes = len(data.class_names)
    height, width, channels = data.train_images.shape[1:]
    model = MODELS[config.model](
        num_classes=num_classes,
        in_channels=channels,
        image_size=height,
        rng=np.random.default_rng([config.seed, 0]),
        dtype=dtype.type,
    )
    first_layer = next(iter(model)) if isinstance(model, Sequential) else model
    if isinstance(first_layer, Conv2d):
        first_layer.needs_input_grad = False  # nothing upstream of the images needs a gradient
    optimizer = build_optimizer(
        config.optimizer,
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    steps_per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    schedule = build_schedule(
        config.schedule,
        config.lr,
        total_steps=total_steps,
        # a warm-up as long as the whole run would never reach the peak: cap it
        warmup_steps=min(round(config.warmup_epochs * steps_per_epoch), total_steps - 1),
    )
    augment, mix = build_augmentation(config)
    loss_fn = CrossEntropyLoss(config.label_smoothing)
    shuffle_rng = np.random.default_rng([config.seed, 1])
    augment_rng = np.random.default_rng([config.seed, 2])
    for index, layer in enumerate(_dropouts(model)):
        layer.rng = np.random.default_rng([config.seed, 3, index])

    state = LoopState()
    if checkpoint_arrays is not None:
        state = _restore(checkpoint_arrays, checkpoint_meta, model, optimizer)
        shuffle_rng.bit_generator.state = checkpoint_meta["rng"]["shuffle"]
        augment_rng.bit_generator.state = checkpoint_meta["rng"]["augment"]
        for layer, rng_state in zip(
            _dropouts(model), checkpoint_meta["rng"]["dropout"], strict=True
        ):
            layer.rng.bit_generator.state = rng_state
        _log(f"resumed {run_dir} at epoch {state.epoch + 1}, batch {state.batch}", config)

    def save_checkpoint() -> None:
        rng = {
            "shuffle": shuffle_rng.bit_generator.state,
            "augment": augment_rng.bit_generator.state,
            "dropout": [layer.rng.bit_generator.state for layer in _dropouts(model)],
        }
        _save_checkpoint(run_dir / CHECKPOINT, model, optimizer, state, config, data, rng)

    tensorboard = None
    if config.tensorboard:
        from scratchcnn.training.tensorboard import TensorBoardLogger

        tensorboard = TensorBoardLogger(run_dir / "tensorboard")

    keep_freed_memory()
    fused = fuse(model)  # the same layers and parameters, with runs of layers fused
    interrupt = _InterruptFlag()
    status = "completed"
    with interrupt, current_backend().compute_scope():
        for epoch in range(state.epoch, config.epochs):
            # The permutation is drawn from the generator state at the epoch's start, so a run
            # resumed mid-epoch sees the same order.
            if state.batch == 0:
                state.epoch_shuffle_state = shuffle_rng.bit_generator.state
            else:
                shuffle_rng.bit_generator.state = state.epoch_shuffle_state
            order = shuffle_rng.permutation(len(data.train_labels))
            bar = _progress(config, steps_per_epoch, state.batch, epoch)
            started = time.perf_counter() - state.seconds

            for batch in range(state.batch, steps_per_epoch):
                indices = order[batch * config.batch_size : (batch + 1) * config.batch_size]
                x, target = make_batch(data, indices, augment, mix, augment_rng, num_classes, dtype)

                optimizer.lr = schedule(state.step)
                logits = fused.forward(x, training=True)
                loss = loss_fn.forward(logits, target)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss} at epoch {epoch + 1}, batch {batch + 1} "
                        f"(lr {optimizer.lr:.3g}); the run stopped and kept its last good "
                        f"checkpoint in {run_dir}. Try a lower learning rate (--lr), a longer "
                        f"warm-up (--warmup-epochs) or gradient clipping (--clip-norm)."
                    )
                fused.backward(loss_fn.backward())
                if config.clip_norm:
                    clip_grad_norm(model.parameters(), config.clip_norm)
                optimizer.step()
                for name, param in model.named_parameters():
                    norm = float(np.sqrt(np.vdot(param.grad, param.grad)))
                    state.grad_norm_sums[name] = state.grad_norm_sums.get(name, 0.0) + norm

                hard_labels = data.train_labels[indices]
                state.step += 1
                state.batch = batch + 1
                state.loss_sum += loss * len(indices)
                state.correct += int((logits.argmax(axis=1) == hard_labels).sum())
                state.seen += len(indices)
                state.seconds = time.perf_counter() - started
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{state.loss_sum / state.seen:.3f}",
                        acc=f"{state.correct / state.seen:.3f}",
                        img_s=f"{state.seen / max(state.seconds, 1e-9):.0f}",
                    )
                if interrupt.requested:
                    break
            if bar is not None:
                bar.close()
            if interrupt.requested:
                save_checkpoint()
                _log(f"interrupted: resumable checkpoint saved to {run_dir / CHECKPOINT}", config)
                status = "interrupted"
                break

            val = evaluate(
                model,
                data.val_images,
                data.val_labels,
                data.normalizer,
                config.eval_batch_size,
                dtype.type,
            )
            record = {
                "epoch": epoch + 1,
                "step": state.step,
                "lr": optimizer.lr,
                "train_loss": state.loss_sum / state.seen,
                "train_accuracy": state.correct / state.seen,
                "val_loss": val.loss,
                "val_accuracy": val.accuracy,
                "epoch_seconds": state.seconds,
                "images_per_second": state.seen / max(state.seconds, 1e-9),
            }
            grad_norms = {k: v / state.batch for k, v in state.grad_norm_sums.items()}
            state.history.append(record)
            state.grad_norm_history.append({"epoch": epoch + 1, **grad_norms})
            state.epoch, state.batch = epoch + 1, 0
            state.loss_sum, state.correct, state.seen, state.seconds = 0.0, 0, 0, 0.0
            state.grad_norm_sums = {}
            write_metrics(run_dir, state.history, state.grad_norm_history)
            if tensorboard is not None:
                tensorboard.log_epoch(record, model, epoch + 1)
            _log(_epoch_line(record, config.epochs), config)

            improved = _update_best(state, record, config.monitor)
            if improved:
                save_model(
                    model,
                    run_dir / BEST_MODEL,
                    **_model_metadata(config, data),
                    epoch=epoch + 1,
                    val_loss=val.loss,
                    val_accuracy=val.accuracy,
                )
            save_checkpoint()
            if config.early_stopping and state.epochs_without_improvement >= config.early_stopping:
                _log(
                    f"early stopping: no {config.monitor} improvement for "
                    f"{config.early_stopping} epochs (best epoch {state.best_epoch})",
                    config,
                )
                status = "early_stopped"
                break

    if tensorboard is not None:
        tensorboard.close()
    test = None
    if status != "interrupted" and len(data.test_labels):
        test = final_test(run_dir, data, config)
    return TrainingResult(state.history, run_dir, status, state.best_epoch, test)


# --- data ------------------------------------------------------------------------------------
def prepare_data(config: TrainConfig) -> TrainingData:
    """Load the dataset, split off validation (seeded, stratified), fit the normaliser."""
    dataset = load_dataset(config.data, cache_dir=config.cache_dir, progress=config.progress)
    split_rng = np.random.default_rng([config.seed, 4])
    train_idx, val_idx = split_train_val(dataset.train_labels, config.val_size, split_rng)
    if config.train_subset is not None:
        if not 0 < config.train_subset <= len(train_idx):
            raise ValueError(
                f"train_subset must be in [1, {len(train_idx)}], got {config.train_subset}"
            )
        train_idx = np.sort(split_rng.choice(train_idx, config.train_subset, replace=False))
    train_images = np.asarray(dataset.train_images[train_idx])
    return TrainingData(
        train_images=train_images,
        train_labels=np.asarray(dataset.train_labels[train_idx], dtype=np.int64),
        val_images=np.asarray(dataset.train_images[val_idx]),
        val_labels=np.asarray(dataset.train_labels[val_idx], dtype=np.int64),
        test_images=dataset.test_images,
        test_labels=np.asarray(dataset.test_labels, dtype=np.int64),
        class_names=list(dataset.class_names),
        normalizer=Normalizer.fit(train_images),
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


def make_batch(
    data: TrainingData,
    indices: np.ndarray,
    augment: T.Compose,
    mix: T.Mixer | None,
    rng: np.random.Generator,
    num_classes: int,
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images -> [0, 1] floats -> augmentation -> normalisation; labels or soft targets.

    Shape: ``indices (B,)`` -> ``x (B, C, H, W)``, ``target (B,)`` ints or ``(B, K)``.
    """
    x = to_float_nchw(data.train_images[indices], dtype=dtype.type)
    target: np.ndarray = data.train_labels[indices]
    x = augment(x, rng)
    if mix is not None:
        x, target = mix(x, T.one_hot(target, num_classes, dtype=dtype.type), rng)
    return data.normalizer(x).astype(dtype, copy=False), target


# --- checkpoints -----------------------------------------------------------------------------
def _checkpoint_path(resume: str | Path) -> Path:
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot resume: no checkpoint at {path} (give a run folder or a {CHECKPOINT} file)"
        )
    return path


def _model_metadata(config: TrainConfig, data: TrainingData) -> dict[str, Any]:
    return {
        "class_names": data.class_names,
        "normalization": data.normalizer.to_dict(),
        "config": config.to_dict(),
        "image_shape": list(data.train_images.shape[1:]),
    }


def _save_checkpoint(
    path: Path,
    model: Layer,
    optimizer: Optimizer,
    state: LoopState,
    config: TrainConfig,
    data: TrainingData,
    rng: dict[str, Any],
) -> None:
    from scratchcnn import __version__
    from scratchcnn.models import model_config

    optim_state = optimizer.state_dict()
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in optim_state["buffers"].items()})
    loop = {k: v for k, v in vars(state).items()}
    meta = {
        "format_version": 1,
        "kind": "checkpoint",
        "library_version": __version__,
        "architecture": model_config(model),
        "dtype": config.dtype,
        "epoch": state.epoch,
        **_model_metadata(config, data),
        "optimizer": optim_state["hyperparameters"],
        "loop": loop,
        "rng": rng,
    }
    save_arrays(path, arrays, meta)


def _restore(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], model: Layer, optimizer: Optimizer
) -> LoopState:
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    optimizer.load_state_dict(
        {
            "hyperparameters": meta["optimizer"],
            "buffers": {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")},
        }
    )
    return LoopState(**meta["loop"])


def _dropouts(model: Layer) -> list[Dropout]:
    return [m for m in model.modules() if isinstance(m, Dropout)]


# --- bookkeeping -----------------------------------------------------------------------------
def _update_best(state: LoopState, record: dict[str, Any], monitor: str) -> bool:
    value = record[monitor]
    better = (
        state.best_value is None
        or (monitor == "val_loss" and value < state.best_value)
        or (monitor == "val_accuracy" and value > state.best_value)
    )
    if better:
        state.best_value, state.best_epoch = value, record["epoch"]
        state.epochs_without_improvement = 0
    else:
        state.epochs_without_improvement += 1
    return better


def write_metrics(
    run_dir: Path, history: list[dict[str, Any]], grad_norms: list[dict[str, float]]
) -> None:
    """Rewrite ``metrics.jsonl``, ``metrics.csv`` and ``grad_norms.jsonl`` (atomically).

    ``grad_norms.jsonl`` holds, per epoch, each parameter's gradient L2 norm averaged over the
    epoch's steps: the data behind the gradient-flow plot.
    """
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    atomic_write_text(
        run_dir / "grad_norms.jsonl", "".join(json.dumps(r) + "\n" for r in grad_norms)
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())


def final_test(run_dir: Path, data: TrainingData, config: TrainConfig) -> dict[str, Any]:
    """Evaluate the best model on the test set once, and write ``results.json``."""
    from scratchcnn.serialization import load_model

    model, meta = load_model(run_dir / BEST_MODEL)
    result = evaluate(
        model,
        data.test_images,
        data.test_labels,
        data.normalizer,
        config.eval_batch_size,
        np.dtype(config.dtype).type,
    )
    per_class = result.per_class_accuracy(len(data.class_names))
    test = {
        "best_epoch": meta["epoch"],
        "val_accuracy": meta["val_accuracy"],
        "test_loss": result.loss,
        "test_accuracy": result.accuracy,
        "per_class_accuracy": dict(zip(data.class_names, per_class.tolist(), strict=True)),
    }
    atomic_write_text(run_dir / "results.json", json.dumps(test, indent=2) + "\n")
    _log(
        f"test: accuracy {result.accuracy:.4f}, loss {result.loss:.4f} "
        f"(best epoch {meta['epoch']}, val accuracy {meta['val_accuracy']:.4f})",
        config,
    )
    return test


def _new_run_dir(config: TrainConfig) -> Path:
    name = config.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.run_dir) / name
    if (run_dir / CHECKPOINT).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick --name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _progress(config: TrainConfig, total: int, done: int, epoch: int):
    if not config.progress:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=done,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="batch",
        leave=False,
        dynamic_ncols=True,
    )


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {r['epoch']:>3}/{epochs}  lr {r['lr']:.4g}  "
        f"train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.4f}  "
        f"val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.4f}  "
        f"{r['epoch_seconds']:.1f}s ({r['images_per_second']:.0f} img/s)"
    )


def _log(message: str, config: TrainConfig) -> None:
    if config.progress:
        from tqdm import tqdm

        tqdm.write(message)
    else:
        print(message, flush=True)


class _InterruptFlag:
    """Turn the first Ctrl-C into a flag the loop checks between steps (a second one aborts).

    Stopping between steps means the checkpoint never holds a half-applied update.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _InterruptFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
