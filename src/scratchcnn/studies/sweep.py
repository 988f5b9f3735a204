"""Run a study on Ray Tune: locally (Ray starts by itself) or on an existing Ray cluster.

:func:`run_study` writes a study folder::

    OUT/study.json        the study as run (resume reads it)
    OUT/trials.json       each trial's values and status as Ray Tune reports them, kept current
    OUT/trials/<id>/      each trial's run folder (config.json, metrics.jsonl, checkpoints, ...)
    OUT/ray/              Ray Tune's own experiment state (what --resume restores)
    OUT/results.csv/.json the results table, rewritten as each trial ends
    OUT/summary.png       the summary figure, and OUT/report.html linking every trial

On a cluster of several machines, ``OUT`` must be on a file system every node can reach (as
Ray Tune requires of its storage path); the trials write their run folders there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchcnn.serialization import atomic_write_text
from scratchcnn.studies.results import (
    ENDED,
    STUDY_FILE,
    TRIALS_DIR,
    TrialRow,
    collect_results,
    read_study,
    write_results,
)
from scratchcnn.studies.spec import SearchParameter, Study
from scratchcnn.studies.trial import FINISHED

__all__ = ["ClusterUnreachable", "StudyOutcome", "connect_ray", "run_study"]

RAY_DIR = "ray"  # Ray Tune's experiment folder inside the study folder
CONNECT_TIMEOUT_S = 5.0  # how long to try reaching --address before saying it is unreachable


class ClusterUnreachable(ConnectionError):
    """``--address`` names no Ray cluster that answers."""


@dataclass
class StudyOutcome:
    """How :func:`run_study` ended: the study folder, its trials, and whether it was interrupted."""

    out: Path  # the study folder
    rows: list[TrialRow]  # every trial's row of the results table
    interrupted: bool

    @property
    def failed(self) -> list[TrialRow]:
        """The trials that ended with an error."""
        return [row for row in self.rows if row.status == "error"]


# --- Ray -------------------------------------------------------------------------------------
def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds when nothing listens at ``address`` (``host:port`` or
    ``ray://host:port``); Ray itself would keep retrying for a minute or more."""
    if address == "auto":
        return  # Ray looks for a cluster started on this machine and says at once if none
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUnreachable(
            f"--address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ClusterUnreachable(
            f"no Ray cluster answers at {address} ({err}); start one there with "
            "`ray start --head`, check the address, or leave --address out to run locally"
        ) from err


@contextlib.contextmanager
def connect_ray(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to the Ray cluster at ``address``, or start a local one; shut down on exit.

    A Ray session that is already running (a notebook, a test fixture) is used as it is and
    left running. A local Ray starts without its dashboard and with usage reporting off.

    Args:
        address: a cluster's address (``ray://host:10001`` or ``host:6379``); ``None`` starts a
            local Ray.
        num_cpus: CPUs a local Ray may use; ``None``: all of them.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if address is not None:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=True, logging_level="WARNING")
        except (ConnectionError, RuntimeError) as err:
            raise ClusterUnreachable(
                f"cannot connect to a Ray cluster at {address}: {err}"
            ) from err
    else:
        # Read by the Ray processes started here (they inherit the environment); restored
        # afterwards so that nothing outlives the sweep in this process.
        previous = os.environ.get("RAY_USAGE_STATS_ENABLED")
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        try:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=True,
                logging_level="WARNING",
            )
        finally:
            if previous is None:
                os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
            else:
                os.environ["RAY_USAGE_STATS_ENABLED"] = previous
    try:
        yield
    finally:
        ray.shutdown()


def _tune_domain(parameter: SearchParameter) -> Any:
    from ray import tune

    if parameter.kind == "grid":
        return tune.grid_search(list(parameter.values))
    if parameter.kind == "choice":
        return tune.choice(list(parameter.values))
    if parameter.kind == "uniform":
        return tune.uniform(parameter.low, parameter.high)
    return tune.loguniform(parameter.low, parameter.high)


def _search_algorithm(study: Study) -> Any:
    if study.search == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "--search optuna needs Optuna: pip install 'scratchcnn[sweep]'"
            ) from err
        return OptunaSearch(seed=study.search_seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Ray applies max_concurrent_trials to searchers such as Optuna, but not to this generator,
    # which takes the limit itself (0: none).
    return BasicVariantGenerator(
        random_state=study.search_seed, max_concurrent=study.max_concurrent or 0
    )


def _scheduler(study: Study) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if study.scheduler == "asha":
        return ASHAScheduler(
            max_t=study.max_epochs,
            grace_period=study.grace_period,
            reduction_factor=study.reduction_factor,
        )
    return FIFOScheduler()


def _trainable(study: Study, out: Path) -> Any:
    from ray import tune

    from scratchcnn.studies.trial import ray_trainable

    with_args = tune.with_parameters(
        ray_trainable, study=study.to_dict(), trials_dir=str(out / TRIALS_DIR)
    )
    return tune.with_resources(with_args, {"cpu": study.cpus_per_trial})


# --- the study -------------------------------------------------------------------------------
def _absolute_paths(study: Study) -> Study:
    """Trials run in other working folders: make the data path (when it names a local file or
    folder) and the cache folder absolute."""
    train = dict(study.train)
    data = Path(str(train["data"])).expanduser()
    if data.exists():
        train["data"] = str(data.resolve())
    if train.get("cache_dir"):
        train["cache_dir"] = str(Path(train["cache_dir"]).expanduser().resolve())
    return dataclasses.replace(study, train=train)


def _load_data_once(study: Study) -> None:
    """Decode each dataset the trials use once, here, before they start: it checks the data
    spec before anything runs, and the trials then read the decoded cache instead of all
    decoding the same images at once."""
    from scratchcnn.data import load_dataset

    specs = {study.train["data"]}
    for parameter in study.space:
        if parameter.field == "data":
            specs = set(parameter.values)
    for spec in sorted(specs):
        load_dataset(spec, cache_dir=study.train.get("cache_dir"), progress=True)


def run_study(
    study: Study | None,
    out: str | Path,
    address: str | None = None,
    resume: bool = False,
    print_fn: Callable[[str], None] = print,
) -> StudyOutcome:
    """Run ``study`` on Ray Tune into the study folder ``out`` (or, with ``resume``, continue
    the study that ``out`` holds: finished trials are kept, the others run or continue).

    Args:
        study: the study to run; ``None`` with ``resume``.
        out: the study folder.
        address: a Ray cluster to run on; ``None``: a local Ray.
        resume: continue the study ``out`` holds.
        print_fn: called with each progress line.

    Raises:
        FileExistsError: ``out`` already holds a study and ``resume`` is false.
        FileNotFoundError: ``resume`` and ``out`` holds no study.
        ClusterUnreachable: ``address`` does not answer.
    """
    from ray import tune

    from scratchcnn.studies.progress import StudyProgress

    out = Path(out).resolve()
    if resume:
        study = read_study(out)
        if not tune.Tuner.can_restore(str(out / RAY_DIR)):
            raise FileNotFoundError(
                f"{out} holds no Ray Tune state to resume ({out / RAY_DIR} is missing or "
                "incomplete); start the study again without --resume"
            )
    else:
        if study is None:
            raise ValueError("run_study needs a study, or resume=True")
        if (out / STUDY_FILE).exists():
            raise FileExistsError(
                f"{out} already holds a study; continue it with --resume {out}, or choose "
                "another --out"
            )
        study = _absolute_paths(study)
        if address is None:
            _load_data_once(study)
    if study.search == "optuna":
        _search_algorithm(study)  # fail on a missing Optuna before starting Ray

    # Nothing is written before Ray answers: a wrong --address leaves no half-made study.
    with connect_ray(address):
        if not resume:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / STUDY_FILE, json.dumps(study.to_dict(), indent=2) + "\n")
        if resume:
            kept = [row for row in collect_results(out) if row.status in FINISHED]
            print_fn(f"resuming {out}: {len(kept)} finished trial(s) kept, the rest continue")
            tuner = tune.Tuner.restore(
                str(out / RAY_DIR),
                trainable=_trainable(study, out),
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            print_fn(
                f"study {study.name}: {study.trial_count()} trial(s) over "
                f"{', '.join(study.parameter_names)}; {study.cpus_per_trial} CPU(s) each; "
                f"writing {out}"
            )
            tuner = tune.Tuner(
                _trainable(study, out),
                param_space={p.field: _tune_domain(p) for p in study.space},
                tune_config=tune.TuneConfig(
                    metric=study.metric,
                    mode=study.mode,
                    num_samples=study.num_samples,
                    max_concurrent_trials=study.max_concurrent
                    if study.search != "random"
                    else None,
                    search_alg=_search_algorithm(study),
                    scheduler=_scheduler(study),
                    # A fresh process per trial: a trial the scheduler stops takes its
                    # training thread with it.
                    reuse_actors=False,
                ),
                run_config=tune.RunConfig(
                    name=RAY_DIR,
                    storage_path=str(out),
                    callbacks=[StudyProgress(study)],
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                    verbose=0,  # StudyProgress prints a line per trial and a periodic status
                ),
            )
        started = time.perf_counter()
        tuner.fit()
    rows = write_results(out)
    # Ray Tune returns normally after Ctrl-C, having saved its state; fewer ended trials than
    # the study has (some not even created yet) mean the study is unfinished.
    ended = sum(row.status in ENDED for row in rows)
    interrupted = ended < study.trial_count()
    from scratchcnn.studies.summary import summarize

    summarize(out, rows)
    print_fn(
        f"{len(rows)} trial(s) in {time.perf_counter() - started:.0f} s; "
        f"{sum(r.status == 'error' for r in rows)} failed; results in {out}"
    )
    return StudyOutcome(out, rows, interrupted)
