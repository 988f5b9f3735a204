"""The results table of a study folder, read from the trials' own records (no Ray needed).

A study folder holds ``study.json`` (the study as run), ``trials.json`` (each trial's searched
values and status as Ray Tune saw it, kept up to date while the study runs) and
``trials/<trial id>/`` (each trial's run folder). :func:`collect_results` joins them into one
row per trial; :func:`write_results` writes ``results.csv`` and ``results.json``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scratchcnn.serialization import atomic_write_text
from scratchcnn.studies.spec import RESERVED_FIELDS, Study
from scratchcnn.studies.trial import read_history, read_trial_record

__all__ = [
    "ENDED",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "STUDY_FILE",
    "TRIALS_DIR",
    "TRIALS_FILE",
    "TrialRow",
    "collect_results",
    "read_study",
    "read_trials_file",
    "write_results",
    "write_trials_file",
]

STUDY_FILE = "study.json"
TRIALS_FILE = "trials.json"
TRIALS_DIR = "trials"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"

# Statuses in the table: the trainer's own (completed, early_stopped), "stopped" (by the
# scheduler, e.g. ASHA), "error", and "pending"/"running" for a study that has not finished.
STOPPED = "stopped"
ENDED = ("completed", "early_stopped", STOPPED, "error")  # statuses of a trial that is over


@dataclass
class TrialRow:
    """One trial in the results table."""

    trial: str  # Ray Tune's trial id, also the run folder's name
    status: str  # completed, early_stopped, stopped, error; pending or running while it runs
    params: dict[str, Any]  # the searched fields' values
    best_val_accuracy: float | None  # highest validation accuracy over the epochs run
    best_epoch: int | None  # the epoch that reached it
    test_accuracy: float | None  # the best-validation model on the test set (results.json)
    epochs_run: int  # epochs the trial finished
    parameters: int | None  # the trained model's parameter count (from best.safetensors)
    seconds: float | None  # wall time of the trial
    error: str | None  # the failure, for status error
    folder: str  # the trial's run folder, relative to the study folder
    config: dict[str, Any]  # the trial's whole TrainConfig (its config.json)


def read_study(out: str | Path) -> Study:
    """The study a study folder ran (its ``study.json``).

    Args:
        out: the study folder.
    """
    path = Path(out) / STUDY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a study folder: it has no {STUDY_FILE}")
    return Study.from_dict(json.loads(path.read_text(encoding="utf-8")))


def read_trials_file(out: str | Path) -> dict[str, dict[str, Any]]:
    """``trials.json``: ``{trial id: {"params", "status", "error", "seconds", ...}}``.

    Args:
        out: the study folder.
    """
    path = Path(out) / TRIALS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_trials_file(out: str | Path, trials: dict[str, dict[str, Any]]) -> None:
    """Write ``trials.json`` (as :func:`read_trials_file` reads it), atomically.

    Args:
        out: the study folder.
        trials: ``{trial id: {"params", "status", "error", "seconds", ...}}``.
    """
    atomic_write_text(Path(out) / TRIALS_FILE, json.dumps(trials, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def trial_status(tune_status: str | None, trial_record: dict[str, Any] | None) -> str:
    """The table's status from what Ray Tune saw and what the trial itself recorded.

    Ray's ``error`` wins (the worker may have been killed before writing anything); then the
    trial's own ending; a trial Ray ended without one was stopped by the scheduler.
    """
    if tune_status == "error" or (trial_record or {}).get("status") == "error":
        return "error"
    if trial_record is not None and trial_record.get("status") in ("completed", "early_stopped"):
        return str(trial_record["status"])
    if tune_status == "terminated":
        return STOPPED
    return tune_status or "pending"


def _parameter_count(path: Path) -> int | None:
    if not path.is_file():
        return None
    from scratchcnn.serialization import load_model

    model, _ = load_model(path)
    return int(sum(p.data.size for p in model.parameters()))


def collect_results(out: str | Path) -> list[TrialRow]:
    """One row per trial of the study folder ``out``, sorted best first (errors last)."""
    out = Path(out)
    study = read_study(out)
    trials = read_trials_file(out)
    trials_dir = out / TRIALS_DIR
    # Trials Ray has not told us about (a driver that died early) still have run folders.
    found = {p.name for p in trials_dir.iterdir() if p.is_dir()} if trials_dir.is_dir() else set()
    rows = []
    for trial_id in sorted(set(trials) | found):
        seen = trials.get(trial_id, {})
        run_dir = trials_dir / trial_id
        record = read_trial_record(run_dir)
        history = read_history(run_dir)
        tested = _read_json(run_dir / "results.json")
        config = _read_json(run_dir / "config.json") or {}
        params = seen.get("params") or {k: config[k] for k in study.parameter_names if k in config}
        accuracies = [r["val_accuracy"] for r in history if "val_accuracy" in r]
        best = max(range(len(accuracies)), key=accuracies.__getitem__) if accuracies else None
        seconds = (record or {}).get("seconds", seen.get("seconds"))
        if trial_status(seen.get("status"), record) == STOPPED:
            seconds = seen.get("seconds", seconds)  # the trial could not record its own end
        rows.append(
            TrialRow(
                trial=trial_id,
                status=trial_status(seen.get("status"), record),
                params=params,
                best_val_accuracy=None if best is None else float(accuracies[best]),
                best_epoch=None if best is None else int(history[best]["epoch"]),
                test_accuracy=None if tested is None else float(tested["test_accuracy"]),
                epochs_run=len(history),
                parameters=_parameter_count(run_dir / "best.safetensors"),
                seconds=None if seconds is None else float(seconds),
                error=(record or {}).get("error") or seen.get("error"),
                folder=f"{TRIALS_DIR}/{trial_id}",
                config=config,
            )
        )
    rows.sort(key=lambda r: (r.status == "error", -(r.best_val_accuracy or -math.inf), r.trial))
    return rows


def write_results(out: str | Path, rows: list[TrialRow] | None = None) -> list[TrialRow]:
    """Write ``results.json`` (every field of every row) and ``results.csv`` (one column per
    searched field, the metrics, then every other config field); return the rows.

    Args:
        out: the study folder.
        rows: the trials; ``None`` reads them from the folder.
    """
    out = Path(out)
    study = read_study(out)
    rows = collect_results(out) if rows is None else rows
    document = {
        "study": study.name,
        "metric": study.metric,
        "parameters": study.parameter_names,
        "trials": [asdict(row) for row in rows],
    }
    atomic_write_text(out / RESULTS_JSON, json.dumps(document, indent=2) + "\n")

    searched = study.parameter_names
    metrics = ["best_val_accuracy", "best_epoch", "test_accuracy", "epochs_run", "parameters",
               "seconds"]  # fmt: skip
    # The rest of each trial's config, less what the sweep sets itself (the folder column
    # already names the run folder).
    other = [k for k in study.train if k not in searched and k not in RESERVED_FIELDS]
    header = ["trial", "status", *searched, *metrics, "error", "folder", *other]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        values = {**row.config, **row.params, **{k: getattr(row, k) for k in metrics}}
        values.update(trial=row.trial, status=row.status, error=row.error, folder=row.folder)
        writer.writerow(["" if values.get(k) is None else values.get(k) for k in header])
    atomic_write_text(out / RESULTS_CSV, buffer.getvalue())
    return rows
