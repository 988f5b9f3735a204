"""The training loop. Read :func:`train` top to bottom; everything else is a helper it calls."""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from scratchcnn.analysis.interpret import activation_stats, parameter_grad_norms
from scratchcnn.backend import current_backend
from scratchcnn.errors import CheckpointError, ConfigError, ScratchCNNError
from scratchcnn.fast import keep_freed_memory
from scratchcnn.layers import fuse
from scratchcnn.layers.base import Layer
from scratchcnn.models import model_config
from scratchcnn.optim import DynamicLossScaler, LRFinderResult, clip_grad_norm
from scratchcnn.serialization import (
    TrainingCheckpoint,
    atomic_write_text,
    check_writable,
    load_checkpoint,
    load_training_checkpoint,
    save_model,
    save_training_checkpoint,
)
from scratchcnn.tools.environment import run_environment
from scratchcnn.training.config import TrainConfig
from scratchcnn.training.evaluate import evaluate
from scratchcnn.training.setup import (
    ModelPreparation,
    RunSetup,
    TrainingData,
    build_run,
    find_lr,
    init_model,
    make_batch,
    prepare_data,
    prepare_model,
)

__all__ = [
    "LR_FINDER",
    "EpochHook",
    "TrainingDiverged",
    "TrainingResult",
    "train",
    "write_metrics",
]

CHECKPOINT = "last.safetensors"  # everything needed to resume, rewritten every epoch
BEST_MODEL = "best.safetensors"  # the model with the best monitored validation metric
LR_FINDER = "lr_finder.json"  # the range test of --find-lr (also shown by the report)
SUMMARY = "summary.txt"  # the model's layer table, as printed at the start
TRANSFER = "transfer.json"  # init_from / freeze: tensors loaded, skipped, new; frozen parameters
ACTIVATIONS = "activations.jsonl"  # record_activations: layer statistics per epoch
ENVIRONMENT = "environment.json"  # the code (commit), backend settings and machine of each start


class TrainingDiverged(ScratchCNNError, RuntimeError):
    """The loss or a gradient became NaN or infinite; the message says which checkpoint exists."""


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
    activation_history: list[dict[str, Any]] = field(default_factory=list)  # record_activations
    loss_scaler: dict[str, Any] | None = None  # precision "mixed": the loss scaler's state
    skipped_steps: int = 0  # precision "mixed": steps skipped this epoch (non-finite gradients)


@dataclass
class TrainingResult:
    """What :func:`train` returns: the per-epoch records, the run folder and how it ended.

    ``best_epoch`` is the epoch of ``best.safetensors`` (``None`` before any epoch ended) and
    ``test`` the test metrics of that model (``None`` when the run stopped before them).

    ``history`` holds one record per epoch (as ``metrics.jsonl``), ``run_dir`` is the run folder,
    ``status`` one of ``"completed"``, ``"early_stopped"``, ``"interrupted"``.
    """

    history: list[dict[str, Any]]
    run_dir: Path
    status: str  # "completed", "early_stopped", "stopped" (by on_epoch) or "interrupted"
    best_epoch: int | None
    test: dict[str, Any] | None = None


# ``on_epoch(record)``: called after each epoch's records are written; True stops the run.
EpochHook = Callable[[dict[str, Any]], bool | None]


def train(
    config: TrainConfig | None,
    resume: str | Path | None = None,
    data: TrainingData | None = None,
    *,
    model: Layer | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainingResult:
    """Train ``config``'s model on ``config.data``; or resume a run folder or checkpoint exactly.

    When resuming, the run's saved config is used and ``config`` is ignored.

    ``model`` trains a model object instead of the one ``config`` names: its architecture
    (:func:`scratchcnn.models.model_config`) becomes the run's ``architecture``, so the run
    resumes like any other. ``on_epoch(record)`` is called after each epoch's records are
    written and its checkpoint saved, with the epoch's record (``metrics.jsonl``'s line); when
    it returns True the run stops there (status ``"stopped"``) and its best model is tested as
    usual.

    Writes to the run folder: ``config.json``, ``environment.json`` (the code's version and
    commit, the backend's settings and the machine, at the start and at each resume; see
    :func:`scratchcnn.tools.environment.run_environment`), ``summary.txt`` (the model's layer
    table), ``metrics.jsonl``, ``metrics.csv``, ``grad_norms.jsonl``, ``last.safetensors``
    (resumable, every epoch), ``best.safetensors`` (the best validation model; with
    ``val_size=0``, the last epoch's) and ``results.json`` (test metrics of that model, at the
    end, with test-time augmentation ``tta``); with ``find_lr``, ``lr_finder.json``; with
    ``init_from`` or ``freeze``, ``transfer.json`` (tensors loaded, skipped and new; parameters
    frozen); with ``record_activations``, ``activations.jsonl``.

    Everything is checked before anything is written: the config, the model against the data,
    the checkpoint to resume (it must be a training checkpoint that fits the data), the run
    folder. A run that fails before its first checkpoint removes the run folder it created.
    Raises :class:`TrainingDiverged` on a NaN/Inf loss or gradient, saying which checkpoint
    exists.

    The model trains fused (:func:`scratchcnn.layers.fuse`), and the process's allocator keeps
    freed memory for reuse (:func:`scratchcnn.fast.keep_freed_memory`: no page faults per step).

    With ``precision="mixed"`` the backend keeps what the backward pass needs in float16
    (:meth:`~scratchcnn.backend.Backend.mixed_precision_scope`) and a
    :class:`~scratchcnn.optim.DynamicLossScaler` scales the loss gradient: a step whose
    gradients are not finite is skipped, logged and counted (``skipped_steps`` and
    ``loss_scale`` in each epoch's record).
    """
    checkpoint: TrainingCheckpoint | None = None
    if resume is not None:
        if model is not None:
            raise ConfigError(
                "train(resume=...) rebuilds the model from the run's saved architecture; do "
                "not pass model= as well"
            )
        checkpoint = load_training_checkpoint(_checkpoint_path(resume))
        config = _saved_config(checkpoint)
        run_dir = checkpoint.path.parent
    elif config is None:
        raise ConfigError("train needs a config, or a run to resume")
    else:
        if model is not None:
            config = _with_model_architecture(config, model)
        _check_init_from(config)
        run_dir = _new_run_dir(config)

    if config.precision == "mixed":
        current_backend().mixed_precision_scope()  # a backend without it refuses, here
    data = data if data is not None else prepare_data(config)
    folder = _RunFolder(run_dir)
    if checkpoint is not None:  # every check of the checkpoint, before anything is written
        _check_same_data(checkpoint, data)
        model = init_model(config, data)
        prepare_model(model, config, data, restoring=True)
        run = build_run(config, data, model=model)
        state = _restore(checkpoint, run)
        folder.saved = _describe_checkpoint(state)
    else:
        model = model if model is not None else init_model(config, data)
        prepared = prepare_model(model, config, data)
    summary = model.summary(_input_shape(data), print_fn=None)
    try:
        folder.remove_stale_temporaries()
        if checkpoint is None:
            folder.create()
            folder.write_text("config.json", json.dumps(config.to_dict(), indent=2) + "\n")
            folder.record_environment(run_environment())
            folder.write_text(SUMMARY, summary + "\n")
            _log(summary, config)
            if config.init_from is not None or config.freeze:
                folder.write_text(TRANSFER, json.dumps(prepared.to_dict(), indent=2) + "\n")
                _log_preparation(prepared, config)
            if config.find_lr:
                config = _find_lr(config, data, folder, copy.deepcopy(model))
            run, state = build_run(config, data, model=model), LoopState()
            if run.activation_images is not None:
                _record_activations(run, data, state, 0, folder)
        else:
            _log(summary, config)
            _log(f"resumed {run_dir} at epoch {state.epoch + 1}, batch {state.batch}", config)
            folder.record_environment(run_environment(), resumed_at=(state.epoch, state.batch))
        result = _train_loop(config, data, run, state, folder, on_epoch)
    except BaseException:
        folder.clean_up_if_untrained()
        raise
    return result


def _with_model_architecture(config: TrainConfig, model: Layer) -> TrainConfig:
    """``config`` training ``model``: its architecture replaces the zoo model's name."""
    if config.init is not None:
        raise ConfigError(
            f"init={config.init!r} re-initialises a model the trainer builds; train(model=...) "
            "got a model of its own: drop init, or initialise the model yourself"
        )
    try:
        architecture = model_config(model)
    except ValueError as err:
        raise ConfigError(
            f"train(model=...) records the model's architecture so that the run can resume, "
            f"and this model cannot be described: {err}"
        ) from err
    return dataclasses.replace(config, model=None, model_options={}, architecture=architecture)


def _check_init_from(config: TrainConfig) -> None:
    """A missing init_from file fails before any data is read (its tensors load later)."""
    if config.init_from is not None and not Path(config.init_from).expanduser().is_file():
        raise ConfigError(
            f"init_from: no checkpoint at {config.init_from} (give a model file such as a run's "
            "best.safetensors)"
        )


def _input_shape(data: TrainingData) -> tuple[int, int, int]:
    height, width, channels = data.image_shape
    return channels, height, width


def _log_preparation(prepared: ModelPreparation, config: TrainConfig) -> None:
    if prepared.transfer is not None:
        _log(f"init_from {prepared.init_from}: {prepared.transfer.format()}", config)
    if config.freeze:
        _log(f"frozen ({len(prepared.frozen)}): {', '.join(prepared.frozen)}", config)


def _train_loop(
    config: TrainConfig,
    data: TrainingData,
    run: RunSetup,
    state: LoopState,
    folder: _RunFolder,
    on_epoch: EpochHook | None = None,
) -> TrainingResult:
    """Epochs from ``state`` on: train, validate, save, stop early, test at the end."""
    run_dir = folder.path
    model, optimizer, loader = run.model, run.optimizer, run.loader
    num_classes = len(data.class_names)

    def save_checkpoint() -> None:
        if scaler is not None:
            state.loss_scaler = scaler.state_dict()
        rng = {
            "shuffle": run.shuffle_rng.bit_generator.state,
            "augment": run.augment_rng.bit_generator.state,
            "dropout": [layer.rng.bit_generator.state for layer in run.dropouts],
        }
        with folder.saving(run_dir / CHECKPOINT):
            save_training_checkpoint(
                run_dir / CHECKPOINT,
                model,
                optimizer.state_dict(),
                averages={name: average.state_dict() for name, average in run.averages.items()},
                **_model_metadata(config, data),
                epoch=state.epoch,
                train_size=len(data.train_labels),
                loop=dataclasses.asdict(state),
                rng=rng,
            )
        folder.saved = _describe_checkpoint(state)

    tensorboard = None
    if config.tensorboard:
        from scratchcnn.training.tensorboard import TensorBoardLogger

        tensorboard = TensorBoardLogger(run_dir / "tensorboard")

    scaler = None
    if config.precision == "mixed":
        scaler = DynamicLossScaler()
        if state.loss_scaler is not None:
            scaler.load_state_dict(state.loss_scaler)

    interrupt = _InterruptFlag()
    status = "completed"
    keep_freed_memory()
    fused = fuse(model)  # the same layers and parameters, with runs of layers fused
    backend = current_backend()
    with (
        interrupt,
        backend.compute_scope(),
        backend.mixed_precision_scope() if scaler is not None else contextlib.nullcontext(),
    ):
        for epoch in range(state.epoch, config.epochs):
            # The permutation is drawn from the generator state at the epoch's start, so a run
            # resumed mid-epoch sees the same order.
            if state.batch == 0:
                state.epoch_shuffle_state = run.shuffle_rng.bit_generator.state
            else:
                run.shuffle_rng.bit_generator.state = state.epoch_shuffle_state
            run.start_epoch(epoch, config)
            bar = _progress(config, run.steps_per_epoch, state.batch, epoch)
            started = time.perf_counter() - state.seconds
            session_start, session_steps = time.perf_counter(), 0

            for batch, (indices, images, labels) in enumerate(
                loader.indexed_batches(start=state.batch), start=state.batch
            ):
                x, target = make_batch(
                    images, labels, run, data.normalizer, num_classes, indices, epoch
                )
                optimizer.lr = run.schedule(state.step)
                logits = fused.forward(x, training=True)
                loss = run.loss_fn.forward(logits, target)
                if not math.isfinite(loss):
                    _diverged(f"the loss became {loss}", epoch, batch, optimizer.lr, folder)
                grad = run.loss_fn.backward()
                fused.backward(grad if scaler is None else scaler.scale(grad))
                finite = True  # mixed precision: unscale, and skip a step with inf/NaN gradients
                if scaler is not None:
                    finite = scaler.unscale(model.parameters())
                    scaler.update()
                if not finite:
                    _skip_step(scaler, state, epoch, batch, optimizer.lr, folder, config)
                else:
                    grad_norms = _trained_grad_norms(model)  # before clipping: what backward gave
                    bad = next((n for n, v in grad_norms.items() if not math.isfinite(v)), None)
                    if bad is not None:
                        what = f"the gradient of {bad!r} became {grad_norms[bad]}"
                        _diverged(what, epoch, batch, optimizer.lr, folder)
                    if config.clip_norm:
                        clip_grad_norm(model.parameters(), config.clip_norm)
                    optimizer.step()
                    for name, norm in grad_norms.items():
                        state.grad_norm_sums[name] = state.grad_norm_sums.get(name, 0.0) + norm

                state.step += 1
                run.after_step(state.step)
                state.batch = batch + 1
                state.loss_sum += loss * len(labels)
                state.correct += int((logits.argmax(axis=1) == labels).sum())
                state.seen += len(labels)
                state.seconds = time.perf_counter() - started
                session_steps += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{state.loss_sum / state.seen:.3f}",
                        acc=f"{state.correct / state.seen:.3f}",
                        img_s=f"{state.seen / max(state.seconds, 1e-9):.0f}",
                        run_ends=_projected_finish(
                            run.total_steps - state.step,
                            (time.perf_counter() - session_start) / session_steps,
                        ),
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

            record = {
                "epoch": epoch + 1,
                "step": state.step,
                "lr": optimizer.lr,
                "train_loss": state.loss_sum / state.seen,
                "train_accuracy": state.correct / state.seen,
            }
            val = None
            if config.has_validation:
                with _averaged(run):  # with ema_decay, the averaged weights are validated
                    val = evaluate(
                        model,
                        data.val_images,
                        data.val_labels,
                        data.normalizer,
                        config.eval_batch_size,
                        run.dtype.type,
                    )
                record.update(val_loss=val.loss, val_accuracy=val.accuracy)
            record.update(
                epoch_seconds=state.seconds,
                images_per_second=state.seen / max(state.seconds, 1e-9),
            )
            if scaler is not None:
                record.update(loss_scale=scaler.scale_value, skipped_steps=state.skipped_steps)
            taken = state.batch - state.skipped_steps
            grad_norms = {k: v / max(taken, 1) for k, v in state.grad_norm_sums.items()}
            state.history.append(record)
            state.grad_norm_history.append({"epoch": epoch + 1, **grad_norms})
            state.epoch, state.batch = epoch + 1, 0
            state.loss_sum, state.correct, state.seen, state.seconds = 0.0, 0, 0, 0.0
            state.grad_norm_sums, state.skipped_steps = {}, 0
            if run.activation_images is not None:
                _record_activations(run, data, state, epoch + 1, folder)
            with folder.saving(run_dir / "metrics.jsonl"):
                write_metrics(run_dir, state.history, state.grad_norm_history)
            if tensorboard is not None:
                tensorboard.log_epoch(record, model, epoch + 1)
            _log(_epoch_line(record, config.epochs), config)

            if _update_best(state, record, config.monitor):
                scores = {} if val is None else {"val_loss": val.loss, "val_accuracy": val.accuracy}
                with folder.saving(run_dir / BEST_MODEL), _averaged(run):
                    save_model(
                        model,
                        run_dir / BEST_MODEL,
                        **_model_metadata(config, data),
                        epoch=epoch + 1,
                        **scores,
                    )
            save_checkpoint()  # the trained (not averaged) weights, with the averages' state
            if config.early_stopping and state.epochs_without_improvement >= config.early_stopping:
                _log(
                    f"early stopping: no {config.monitor} improvement for "
                    f"{config.early_stopping} epochs (best epoch {state.best_epoch})",
                    config,
                )
                status = "early_stopped"
            if on_epoch is not None and on_epoch(dict(record)) and status == "completed":
                if epoch + 1 < config.epochs:
                    _log(f"stopped by on_epoch after epoch {epoch + 1}", config)
                    status = "stopped"
            if status != "completed":
                break

    if tensorboard is not None:
        tensorboard.close()
    test = None
    if status != "interrupted" and len(data.test_labels):
        test = final_test(run_dir, data, config)
    return TrainingResult(state.history, run_dir, status, state.best_epoch, test)


def _skip_step(
    scaler: DynamicLossScaler,
    state: LoopState,
    epoch: int,
    batch: int,
    lr: float,
    folder: _RunFolder,
    config: TrainConfig,
) -> None:
    """Mixed precision skipped a step (a gradient was not finite): count it and say so. A scale
    driven below 1 means the overflow is not the scale's doing (float16 storage cannot hold an
    activation), so the run has diverged."""
    state.skipped_steps += 1
    _log(
        f"epoch {epoch + 1}, batch {batch + 1}: step skipped, a gradient was not finite; loss "
        f"scale lowered to {scaler.scale_value:g}",
        config,
    )
    if scaler.scale_value < 1:
        what = (
            "the gradients stayed non-finite while the loss scale fell below 1 (mixed "
            "precision: an activation may not fit float16; try precision 'float32')"
        )
        _diverged(what, epoch, batch, lr, folder)


def _averaged(run: RunSetup):
    """The EMA's averaged weights in the model for a block, or nothing without an EMA."""
    return run.ema.averaged_weights() if run.ema is not None else contextlib.nullcontext()


def _trained_grad_norms(model: Layer) -> dict[str, float]:
    """Each trained parameter's gradient norm (a frozen one has no gradient this step)."""
    trained = {name for name, param in model.named_parameters() if param.requires_grad}
    return {name: v for name, v in parameter_grad_norms(model).items() if name in trained}


def _record_activations(
    run: RunSetup, data: TrainingData, state: LoopState, epoch: int, folder: _RunFolder
) -> None:
    """Append the activation statistics of the run's fixed images to ``activations.jsonl``
    (epoch 0: the initial weights), in evaluation mode."""
    assert run.activation_images is not None
    stats = activation_stats(run.model, run.activation_images, data.normalizer)
    layers = [dataclasses.asdict(layer) for layer in stats]
    state.activation_history.append({"epoch": epoch, "layers": layers})
    lines = "".join(json.dumps(r) + "\n" for r in state.activation_history)
    with folder.saving(folder.path / ACTIVATIONS):
        atomic_write_text(folder.path / ACTIVATIONS, lines)


def _projected_finish(steps_left: int, seconds_per_step: float, now: datetime | None = None) -> str:
    """The wall-clock time the whole run should end at this step rate (``14:32``; with the
    date when that is not today). ``now`` defaults to the clock; tests pass a fixed one."""
    now = datetime.now() if now is None else now
    finish = now + timedelta(seconds=steps_left * seconds_per_step)
    return finish.strftime("%H:%M" if finish.date() == now.date() else "%b %d %H:%M")


def _diverged(what: str, epoch: int, batch: int, lr: float, folder: _RunFolder) -> None:
    """Stop the run with a message that says what is kept: the last checkpoint, or nothing."""
    if folder.saved is not None:
        kept = (
            f"kept its last good checkpoint, {folder.path / CHECKPOINT} ({folder.saved}), and "
            f"the best model so far (resuming would diverge the same way: start a new run with "
            "other settings)"
        )
    elif folder.created:
        kept = f"had saved no checkpoint yet, so its run folder {folder.path} was removed"
    else:
        kept = f"had saved no checkpoint yet in {folder.path}"
    raise TrainingDiverged(
        f"{what} at epoch {epoch + 1}, batch {batch + 1} (lr {lr:.3g}); the run stopped and "
        f"{kept}. Try a lower learning rate (--lr), a longer warm-up (--warmup-epochs) or "
        "gradient clipping (--clip-norm), and check the data for NaN or infinite pixels."
    )


def _find_lr(
    config: TrainConfig, data: TrainingData, folder: _RunFolder, model: Layer
) -> TrainConfig:
    """Run the lr range test on ``model`` (a copy of the run's initial model, which the test
    trains and throws away), record it in the run folder, and return the config with its lr."""
    settings = lr_finder_settings(config, data, architecture=model_config(model))
    result = find_lr(config, data, model=model)
    record = lr_finder_record(result, settings)
    folder.write_text(LR_FINDER, json.dumps(record) + "\n")
    _log(
        f"lr range test: suggested lr {result.suggested_lr:.3g} ({result.suggestion_rule}); "
        f"training with it instead of lr {config.lr:.3g}",
        config,
    )
    return dataclasses.replace(config, lr=result.suggested_lr)


def lr_finder_settings(
    config: TrainConfig, data: TrainingData, architecture: dict[str, Any], **test: Any
) -> dict[str, Any]:
    """What an lr range test result depends on: a cached result is reused only for equal ones.

    ``test`` holds :func:`~scratchcnn.training.setup.find_lr`'s ``num_steps``, ``start_lr`` and
    ``end_lr`` where they differ from its defaults.
    """
    return {
        "architecture": architecture,
        "data": data.source,
        "train_images": len(data.train_labels),
        "model": config.model,
        "optimizer": config.optimizer,
        "momentum": config.momentum,
        "betas": None if config.betas is None else list(config.betas),
        "weight_decay": config.weight_decay,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "dtype": config.dtype,
        "num_steps": test.get("num_steps", 100),
        "start_lr": test.get("start_lr", 1e-5),
        "end_lr": test.get("end_lr", 10.0),
    }


def lr_finder_record(result: LRFinderResult, settings: dict[str, Any]) -> dict[str, Any]:
    """An lr range test result with the settings it was made with, JSON-ready."""
    return {
        "settings": settings,
        "lrs": result.lrs.tolist(),
        "losses": result.losses.tolist(),
        "smoothed": result.smoothed.tolist(),
        "suggested_lr": result.suggested_lr,
        "suggestion_rule": result.suggestion_rule,
    }


# --- checkpoints -----------------------------------------------------------------------------
def _checkpoint_path(resume: str | Path) -> Path:
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                f"cannot resume: no {CHECKPOINT} in {path.parent} (a run stopped before its first "
                "epoch ended has nothing to resume; start it again)"
            )
    elif not path.is_file():
        raise CheckpointError(
            f"cannot resume: no checkpoint at {path} (give a run folder or its {CHECKPOINT})"
        )
    return path


def _saved_config(checkpoint: TrainingCheckpoint) -> TrainConfig:
    try:
        return TrainConfig.from_dict(checkpoint.metadata["config"])
    except ConfigError as err:
        raise CheckpointError(f"{checkpoint.path}: metadata field 'config': {err}") from err


def _check_same_data(checkpoint: TrainingCheckpoint, data: TrainingData) -> None:
    """Resuming on other data would not be the same run: refuse it before anything is written."""
    meta, path = checkpoint.metadata, checkpoint.path
    for name, now in (
        ("class_names", list(data.class_names)),
        ("image_shape", list(data.image_shape)),
        ("train_size", len(data.train_labels)),
    ):
        if name in meta and meta[name] != now:
            raise CheckpointError(
                f"cannot resume {path}: it was trained with {name} {meta[name]}, but the data "
                f"now gives {now}"
            )


def _model_metadata(config: TrainConfig, data: TrainingData) -> dict[str, Any]:
    meta = {
        "class_names": data.class_names,
        "normalization": data.normalizer.to_dict(),
        "config": config.to_dict(),
        "image_shape": list(data.image_shape),
        "tta": config.tta,  # the level evaluate and predict use by default
    }
    if data.source and Path(data.source).is_absolute():
        meta["data_path"] = data.source
    return meta


def _restore(checkpoint: TrainingCheckpoint, run: RunSetup) -> LoopState:
    """Load the model, optimizer, loop state and generators; a field that does not fit is a
    CheckpointError naming it (nothing has been written yet)."""
    meta, path = checkpoint.metadata, checkpoint.path
    run.model.load_state_dict(checkpoint.model_state)
    try:
        run.optimizer.load_state_dict(
            {"hyperparameters": meta["optimizer"], "buffers": checkpoint.optimizer_buffers}
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the optimizer state does not fit: {err}") from err
    if set(checkpoint.averages) != set(run.averages):
        raise CheckpointError(
            f"{path}: it holds the weight averages {sorted(checkpoint.averages)}, but its config "
            f"asks for {sorted(run.averages)}"
        )
    for name, average in run.averages.items():
        try:
            average.load_state_dict(checkpoint.averages[name])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: the {name} state does not fit: {err}") from err
    known = {f.name for f in dataclasses.fields(LoopState)}
    if not set(meta["loop"]) <= known:
        raise CheckpointError(
            f"{path}: metadata field 'loop' has unknown keys {sorted(set(meta['loop']) - known)}"
        )
    state = LoopState(**meta["loop"])
    try:
        run.shuffle_rng.bit_generator.state = meta["rng"]["shuffle"]
        run.augment_rng.bit_generator.state = meta["rng"]["augment"]
        for layer, rng_state in zip(run.dropouts, meta["rng"]["dropout"], strict=True):
            layer.rng.bit_generator.state = rng_state
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: metadata field 'rng' does not fit: {err}") from err
    if not 0 <= state.batch <= run.steps_per_epoch or state.epoch > meta["config"]["epochs"]:
        raise CheckpointError(
            f"{path}: metadata field 'loop' is at epoch {state.epoch}, batch {state.batch}, "
            f"outside a run of {meta['config']['epochs']} epochs of {run.steps_per_epoch} batches"
        )
    return state


def _describe_checkpoint(state: LoopState) -> str:
    if state.batch:
        return f"epoch {state.epoch + 1}, after batch {state.batch}"
    return f"end of epoch {state.epoch}"


class _RunFolder:
    """The run folder and what this run wrote to it, so a run that fails before it saved a
    checkpoint can leave the disk as it found it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created = False  # this run made the folder
        self.saved: str | None = None  # which checkpoint exists: "end of epoch 2", ...
        self._existing: set[Path] = set()  # what the folder held before this run
        self._made_parents: list[Path] = []

    def create(self) -> None:
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self.created = self.path in missing
        self._made_parents = [p for p in missing if p != self.path]
        self._existing = set(self.path.iterdir())

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def record_environment(
        self, environment: dict[str, Any], resumed_at: tuple[int, int] | None = None
    ) -> None:
        """Write ``environment.json``: ``{"started": environment, "resumed": []}`` for a new
        run; a resumed one appends ``environment`` with the ``epoch`` and ``batch`` it resumed
        at (1-based epoch), so that a run continued on other code or another machine says so."""
        path = self.path / ENVIRONMENT
        if resumed_at is None:
            record: dict[str, Any] = {"started": environment, "resumed": []}
        else:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = None
            if not (isinstance(record, dict) and isinstance(record.get("resumed"), list)):
                record = {"started": None, "resumed": []}  # a run from before this file
            epoch, batch = resumed_at
            record["resumed"].append({"epoch": epoch + 1, "batch": batch, **environment})
        self.write_text(ENVIRONMENT, json.dumps(record, indent=2) + "\n")

    @contextmanager
    def saving(self, path: Path) -> Iterator[None]:
        """Around a write of ``path``: an OSError (a full disk, say) names the file and says
        which checkpoint is kept."""
        try:
            yield
        except OSError as err:
            kept = (
                f"the last checkpoint ({self.saved}) is intact"
                if self.saved
                else "no checkpoint was saved"
            )
            raise OSError(err.errno, f"{err.strerror or err} while saving {path}; {kept}") from err

    def remove_stale_temporaries(self) -> None:
        """Delete the temporary files of a save that a kill -9 interrupted (they are never
        renamed into place, so nothing reads them; one run writes to a folder at a time)."""
        if not self.path.is_dir():
            return
        outputs = (CHECKPOINT, BEST_MODEL, LR_FINDER, "config.json", "results.json")
        outputs += ("metrics.jsonl", "metrics.csv", "grad_norms.jsonl")
        outputs += (SUMMARY, TRANSFER, ACTIVATIONS, ENVIRONMENT)
        for name in outputs:
            for stale in self.path.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)

    def clean_up_if_untrained(self) -> None:
        """Remove what this run wrote when it saved no checkpoint: there is nothing to resume."""
        if self.saved is not None or (self.path / CHECKPOINT).exists() or not self.path.is_dir():
            return
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            for parent in self._made_parents:  # nearest first
                try:
                    parent.rmdir()
                except OSError:
                    break
            return
        for path in set(self.path.iterdir()) - self._existing:  # this run's files only
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# --- bookkeeping -----------------------------------------------------------------------------
def _update_best(state: LoopState, record: dict[str, Any], monitor: str | None) -> bool:
    """Whether this epoch's model is the best so far. Without a validation split (no monitor)
    every epoch is: the last epoch's model is the one kept."""
    if monitor is None:
        state.best_epoch = record["epoch"]
        return True
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
    """Evaluate the best model on the test set once, and write ``results.json``.

    With ``config.tta`` the headline ``test_accuracy`` and ``test_loss`` are the test-time
    augmented ones, and the plain scores are kept beside them (``*_without_tta``).
    """
    loaded = load_checkpoint(run_dir / BEST_MODEL)

    def test_at(level: int):
        return evaluate(
            loaded.model,
            data.test_images,
            data.test_labels,
            data.normalizer,
            config.eval_batch_size,
            loaded.dtype.type,
            tta=level,
        )

    result = test_at(config.tta)
    per_class = result.per_class_accuracy(len(data.class_names))
    best_epoch, val_accuracy = loaded.metadata["epoch"], loaded.metadata.get("val_accuracy")
    test = {
        "best_epoch": best_epoch,
        "val_accuracy": val_accuracy,
        "tta": config.tta,
        "test_loss": result.loss,
        "test_accuracy": result.accuracy,
        "per_class_accuracy": dict(zip(data.class_names, per_class.tolist(), strict=True)),
    }
    plain = ""
    if config.tta:
        without = test_at(0)
        test.update(test_loss_without_tta=without.loss, test_accuracy_without_tta=without.accuracy)
        plain = f", without TTA {without.accuracy:.4f}"
    atomic_write_text(run_dir / "results.json", json.dumps(test, indent=2) + "\n")
    chosen = (
        f"best epoch {best_epoch}, val accuracy {val_accuracy:.4f}"
        if val_accuracy is not None
        else f"last epoch {best_epoch}, no validation split"
    )
    tta = f" with TTA level {config.tta}{plain}" if config.tta else ""
    _log(f"test: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}{tta} ({chosen})", config)
    return test


def _new_run_dir(config: TrainConfig) -> Path:
    """The run folder a new run will write to, checked (not created: nothing is written
    before the data has loaded)."""
    name = config.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.run_dir) / name
    if (run_dir / CHECKPOINT).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick --name"
        )
    check_writable(run_dir / "config.json")
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
    val = f"val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.4f}  " if "val_loss" in r else ""
    return (
        f"epoch {r['epoch']:>3}/{epochs}  lr {r['lr']:.4g}  "
        f"train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.4f}  {val}"
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
