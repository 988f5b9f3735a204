"""One trial of a study, as it runs inside a Ray worker: train its config, report each epoch.

The trial is an ordinary training run (:func:`scratchcnn.training.train`) in its own run folder,
with the usual records (``config.json``, ``metrics.jsonl``, checkpoints, ``results.json``), plus
``trial.json``: how the trial ended (``completed``, ``early_stopped``, ``error``), its wall time
and, for an error, the message. Each epoch's record is passed to Ray Tune as soon as the trainer
has written it (its ``on_epoch`` hook), so schedulers (ASHA) and searchers (Optuna) see the
validation metrics while the trial runs.

A trial that finds its run folder already finished reports the stored records without training
again; one that finds a resumable checkpoint (an interrupted study) continues from it.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from scratchcnn.serialization import atomic_write_text
from scratchcnn.training.config import TrainConfig

__all__ = [
    "TRIAL_RECORD",
    "TrialOutOfMemory",
    "follow_training",
    "read_history",
    "read_trial_record",
    "ray_trainable",
    "trial_threads",
]

TRIAL_RECORD = "trial.json"
FINISHED = ("completed", "early_stopped")  # trainer statuses of a trial that needs no rerun


class TrialOutOfMemory(MemoryError):
    """A trial's training ran out of memory; the message says what to lower."""


@contextlib.contextmanager
def trial_threads(cpus: int) -> Iterator[None]:
    """A scope whose compute threads match the trial's ``cpus``: NumPy's BLAS and the fast
    backend's workers, so that concurrent trials do not oversubscribe the cores.

    Enter it in the thread that trains: scoped settings are per thread.
    """
    if cpus < 1:
        raise ValueError(f"cpus must be >= 1, got {cpus}")
    from threadpoolctl import threadpool_limits

    from scratchcnn.fast import settings

    with threadpool_limits(limits=cpus), settings(workers=cpus):
        yield


def read_trial_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The trial's ``trial.json``, or ``None`` when it has none yet."""
    path = Path(run_dir) / TRIAL_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_trial_record(run_dir: Path, **record: Any) -> None:
    atomic_write_text(run_dir / TRIAL_RECORD, json.dumps(record, indent=2) + "\n")


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run folder's per-epoch records (``metrics.jsonl``); empty before the first epoch."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def follow_training(
    config: TrainConfig, cpus: int, report: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Train ``config`` (or resume or replay its run folder) and ``report`` every epoch record.

    Training runs in this thread inside :func:`trial_threads`; the trainer's ``on_epoch`` hook
    passes each epoch's record to ``report`` once it is written, except the last epoch's, which
    is reported after ``trial.json`` is written; a resumed trial first reports the epochs its
    run folder already holds. Returns ``trial.json``'s contents. An exception in training is
    re-raised (a ``MemoryError`` as :class:`TrialOutOfMemory`, with advice) after
    ``trial.json`` records it.
    """
    from scratchcnn.training.trainer import CHECKPOINT, train

    run_dir = Path(config.run_dir) / str(config.name)
    previous = read_trial_record(run_dir)
    if previous is not None and previous["status"] in FINISHED:
        for record in read_history(run_dir):
            report(record)
        return previous
    earlier_seconds = float(previous["seconds"]) if previous else 0.0
    resume = run_dir if (run_dir / CHECKPOINT).is_file() else None
    reported: set[int] = set()  # epochs already reported

    def send(record: dict[str, Any]) -> None:
        if record["epoch"] not in reported:
            reported.add(record["epoch"])
            report(record)

    def on_epoch(record: dict[str, Any]) -> bool:
        # The last epoch is held back until the run has been tested and recorded: a scheduler
        # that stops the trial on that report must not cut the test evaluation short.
        if record["epoch"] < config.epochs:
            send(record)
        return False

    if resume is not None:
        for record in read_history(run_dir):
            on_epoch(record)
    started = time.perf_counter()
    try:
        with trial_threads(cpus):
            result = train(None if resume else config, resume=resume, on_epoch=on_epoch)
    except Exception as error:  # recorded, then raised; a stop from Ray (BaseException) is not
        seconds = earlier_seconds + time.perf_counter() - started
        message = _error_message(error, config, cpus)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_trial_record(
            run_dir,
            status="error",
            error=message,
            traceback="".join(traceback.format_exception(error)),
            seconds=seconds,
            epochs=len(read_history(run_dir)),
        )
        if isinstance(error, MemoryError):
            raise TrialOutOfMemory(message) from error
        raise
    seconds = earlier_seconds + time.perf_counter() - started
    record = {
        "status": result.status,
        "seconds": seconds,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "test_accuracy": None if result.test is None else result.test["test_accuracy"],
    }
    _write_trial_record(run_dir, **record)
    for epoch_record in read_history(run_dir):
        send(epoch_record)
    return record


def _error_message(error: BaseException, config: TrainConfig, cpus: int) -> str:
    if isinstance(error, MemoryError):
        return (
            f"out of memory while training (batch_size {config.batch_size}, model "
            f"{config.model}, {cpus} CPU(s) per trial): run fewer trials at once "
            "(--max-concurrent), or lower batch_size / eval_batch_size"
        )
    return f"{type(error).__name__}: {error}"


def ray_trainable(params: dict[str, Any], *, study: dict[str, Any], trials_dir: str) -> None:
    """The Ray Tune trainable: one trial of ``study`` (its ``to_dict()``) with ``params``.

    Runs in a Ray worker process. The run folder is ``trials_dir/<trial id>``; the trial id is
    kept when Ray restores an interrupted study, so a restored trial finds its folder again.
    """
    from ray import tune

    from scratchcnn.studies.spec import Study

    spec = Study.from_dict(study)
    trial_id = tune.get_context().get_trial_id()
    config = spec.trial_config(params, trials_dir, trial_id)
    follow_training(config, spec.cpus_per_trial, tune.report)
