"""What a running study shows and records as its trials start and end (a Ray Tune callback).

Imported only when a study runs, since it needs Ray.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from ray import tune

from scratchcnn.studies.results import (
    TrialRow,
    read_trials_file,
    write_results,
    write_trials_file,
)
from scratchcnn.studies.spec import Study
from scratchcnn.studies.trial import TRIAL_RECORD

__all__ = ["StudyProgress", "summarize_ray_error"]

STATUS_EVERY_S = 30.0  # how often a line of trial counts is printed while trials run


class StudyProgress(tune.Callback):
    """Keeps ``trials.json`` and the results table current, and prints a line per trial.

    The study folder is found from each trial (the parent of Ray Tune's experiment folder), so
    the copy of this callback that Ray restores with an interrupted study needs no saved path.
    """

    def __init__(self, study: Study) -> None:
        self.total = study.trial_count()
        self.names = study.parameter_names
        self.ended = 0
        self.last_status = time.monotonic()

    def _update(self, trial: Any, **changes: Any) -> Path:
        out = Path(trial.remote_experiment_path).parent
        trials = read_trials_file(out)
        entry = trials.setdefault(trial.trial_id, {})
        entry["params"] = {k: trial.config[k] for k in self.names if k in trial.config}
        entry.update(changes)
        write_trials_file(out, trials)
        return out

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.monotonic() - self.last_status < STATUS_EVERY_S:
            return
        self.last_status = time.monotonic()
        counts = Counter(trial.status.lower() for trial in trials)
        latest = [t.last_result["val_accuracy"] for t in trials if "val_accuracy" in t.last_result]
        print(
            f"status: {counts.get('running', 0)} running, {counts.get('pending', 0)} pending, "
            f"{counts.get('terminated', 0)} ended, {counts.get('error', 0)} failed"
            + (f"; highest latest validation accuracy {max(latest):.4f}" if latest else ""),
            flush=True,
        )

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._update(trial, status="running")
        print(f"trial {trial.trial_id} started: {_values(trial.config, self.names)}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self._update(
            trial,
            status="running",
            epochs=result.get("training_iteration"),
            seconds=result.get("time_total_s"),
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(self._update(trial, status="terminated"), trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = summarize_ray_error(trial.get_error() or "")
        self._ended(self._update(trial, status="error", error=error), trial)

    def _ended(self, out: Path, trial: Any) -> None:
        self.ended += 1
        rows = write_results(out)
        row = next((r for r in rows if r.trial == trial.trial_id), None)
        if row is not None:
            print(f"[{self.ended}/{self.total}] {_row_line(row, self.names)}", flush=True)


def summarize_ray_error(text: str) -> str:
    """One line saying why Ray reports a trial failed (the trial's own record may say more).

    A worker Ray's memory monitor killed (``OutOfMemoryError``) gets advice on what to lower.
    """
    if "OutOfMemoryError" in text or "MemoryError" in text:
        return (
            "out of memory: the trial used more memory than the machine had; run fewer trials "
            "at once (--max-concurrent) or lower batch_size"
        )
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return f"the trial failed without an error message (see its {TRIAL_RECORD})"
    return lines[-1]


def _values(config: dict[str, Any], names: list[str]) -> str:
    return ", ".join(f"{name}={_short(config.get(name))}" for name in names)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _row_line(row: TrialRow, names: list[str]) -> str:
    where = f"trial {row.trial} {row.status}: {_values(row.params, names)}"
    if row.status == "error":
        return f"{where}: {row.error}"
    val = "-" if row.best_val_accuracy is None else f"{row.best_val_accuracy:.4f}"
    test = "-" if row.test_accuracy is None else f"{row.test_accuracy:.4f}"
    seconds = "-" if row.seconds is None else f"{row.seconds:.1f} s"
    return f"{where} -> best val accuracy {val} (epoch {row.best_epoch}), test {test}, {seconds}"
