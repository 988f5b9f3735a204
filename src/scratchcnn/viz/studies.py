"""Pictures of several runs: curves of runs overlaid, and the summary of a study."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scratchcnn.viz._common import finish, new_figure
from scratchcnn.viz.training import read_history

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from scratchcnn.studies.results import TrialRow

STATUS_COLORS = {
    "completed": "tab:green",
    "early_stopped": "tab:olive",
    "stopped": "tab:orange",
    "error": "tab:red",
}


def plot_runs(
    runs: Mapping[str, str | Path | Sequence[dict[str, Any]]],
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """Several runs' curves overlaid, one colour per run with a legend: validation and training
    loss and accuracy per epoch (solid: validation, dashed: training).

    ``runs`` maps a label to a run folder, a ``metrics.jsonl`` path or the records themselves.

    Args:
        runs: the runs by label.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    if not runs:
        raise ValueError("plot_runs needs at least one run")
    histories = {label: read_history(run) for label, run in runs.items()}
    empty = [label for label, records in histories.items() if not records]
    if empty:
        raise ValueError(f"no training history in {empty}")
    fig = new_figure(12.0, 4.2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    cmap = _colors(len(histories))
    for color, (label, records) in zip(cmap, histories.items(), strict=True):
        epochs = [r["epoch"] for r in records]
        for ax, quantity in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            for split, style in (("val", "-"), ("train", "--")):
                key = f"{split}_{quantity}"
                if all(key in r for r in records):
                    ax.plot(epochs, [r[key] for r in records], style, color=color, lw=1.4,
                            label=label if split == "val" else None)  # fmt: skip
    for ax, quantity in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_title(f"{quantity} (solid: validation, dashed: training)", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7, ncol=1 + len(histories) // 12, loc="best")
    return finish(fig, path, show)


def plot_study_summary(
    rows: Sequence[TrialRow],
    histories: Mapping[str, Sequence[dict[str, Any]]],
    parameters: Sequence[str],
    title: str = "",
    log_parameters: Sequence[str] = (),
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """A study at a glance: every trial's validation accuracy per epoch; the trials ranked by
    best validation accuracy (bar colour: how the trial ended); and the best validation
    accuracy against each searched parameter (up to four; log axes for ``log_parameters``) and,
    when the trials' models differ in size, against their parameter count.

    ``histories`` maps a trial id to its per-epoch records.

    Args:
        rows: the trials (:func:`scratchcnn.studies.results.read_study`).
        histories: per-epoch records by trial id.
        parameters: the searched parameters to plot against.
        title: the figure's title.
        log_parameters: the parameters drawn on log axes.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    if not rows:
        raise ValueError("the study has no trials to summarise")
    shown = list(parameters)[:4]
    counts = {row.parameters for row in rows if row.parameters is not None}
    if len(counts) > 1:  # models of different sizes: accuracy against parameter count
        shown = [*shown[:3], "parameters"]
    fig = new_figure(4.2 * max(2, len(shown)), 7.6)
    grid = fig.add_gridspec(2, max(2, len(shown)))
    ax_curves = fig.add_subplot(grid[0, : max(1, len(shown) // 2)])
    ax_rank = fig.add_subplot(grid[0, max(1, len(shown) // 2) :])

    best = {row.trial: row.best_val_accuracy for row in rows}
    colors = dict(zip([row.trial for row in rows], _colors(len(rows)), strict=True))
    for row in rows:
        records = histories.get(row.trial, [])
        if records:
            ax_curves.plot([r["epoch"] for r in records], [r["val_accuracy"] for r in records],
                           "-o", ms=2.5, lw=1.2, color=colors[row.trial])  # fmt: skip
    ax_curves.set_xlabel("epoch")
    ax_curves.set_ylabel("validation accuracy")
    ax_curves.set_title("every trial's validation accuracy", fontsize=10)
    ax_curves.grid(alpha=0.3)

    ranked = [row for row in rows if best[row.trial] is not None]
    ranked.sort(key=lambda row: -best[row.trial])
    positions = np.arange(len(ranked))
    ax_rank.bar(positions, [best[row.trial] for row in ranked],
                color=[STATUS_COLORS.get(row.status, "tab:gray") for row in ranked])  # fmt: skip
    if len(ranked) <= 24:
        ax_rank.set_xticks(positions, [_params_label(row.params) for row in ranked],
                           rotation=60, ha="right", fontsize=6)  # fmt: skip
    failed = sum(row.status == "error" for row in rows)
    ax_rank.set_title(
        f"trials by best validation accuracy ({failed} failed)" if failed
        else "trials by best validation accuracy", fontsize=10
    )  # fmt: skip
    ax_rank.set_ylabel("best validation accuracy")
    ax_rank.grid(alpha=0.3, axis="y")
    handles = [_patch(color, status) for status, color in STATUS_COLORS.items()
               if any(row.status == status for row in ranked)]  # fmt: skip
    if handles:
        ax_rank.legend(handles=handles, fontsize=7)

    for column, name in enumerate(shown):
        ax = fig.add_subplot(grid[1, column])
        if name == "parameters":
            points = [(row.parameters, best[row.trial]) for row in ranked]
        else:
            points = [(row.params.get(name), best[row.trial]) for row in ranked]
        values = [value for value, _ in points]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            ax.scatter(values, [b for _, b in points], s=18,
                       c=[STATUS_COLORS.get(r.status, "tab:gray") for r in ranked])  # fmt: skip
            if name in log_parameters or name == "parameters":
                ax.set_xscale("log")
        else:  # categories: one column each, in first-seen order
            categories = list(dict.fromkeys(str(v) for v in values))
            x = [categories.index(str(v)) for v in values]
            ax.scatter(x, [b for _, b in points], s=18,
                       c=[STATUS_COLORS.get(r.status, "tab:gray") for r in ranked])  # fmt: skip
            ax.set_xticks(range(len(categories)), categories, fontsize=7, rotation=30)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        ax.set_xlabel(name)
        ax.set_ylabel("best validation accuracy")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return finish(fig, path, show)


def _params_label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in params.values())


def _patch(color: str, label: str):
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


def _colors(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "viridis"]
    if count <= 10:
        return [cmap(i) for i in range(count)]
    return [cmap(i / max(count - 1, 1)) for i in range(count)]


def plot_baselines(
    results: Sequence[Any],
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """Classical baselines side by side: test accuracy, and fit time on a log scale.

    ``results`` are :class:`scratchcnn.studies.baselines.BaselineResult` objects; a model
    trained on a subset of the training images is marked with ``*``.

    Args:
        results: the baselines' results.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    if not results:
        raise ValueError("no baseline results to plot")
    labels = [f"{r.title}\n({r.features}{', subset' if r.subsampled else ''})" for r in results]
    positions = np.arange(len(results))
    fig = new_figure(max(8.0, 1.6 * len(results) + 2), 4.2)
    ax_acc, ax_time = fig.subplots(1, 2)
    bars = ax_acc.bar(positions, [r.test_accuracy for r in results], color="tab:blue")
    for bar, r in zip(bars, results, strict=True):
        ax_acc.annotate(f"{r.test_accuracy:.3f}{'*' if r.subsampled else ''}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("test accuracy (* trained on a subset)", fontsize=10)
    ax_time.bar(positions, [max(r.fit_seconds, 1e-3) for r in results], color="tab:gray")
    ax_time.set_yscale("log")
    ax_time.set_ylabel("seconds")
    ax_time.set_title("fit time", fontsize=10)
    for ax in (ax_acc, ax_time):
        ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    return finish(fig, path, show)


def plot_gradient_flow_by_run(
    runs: Mapping[str, Sequence[dict[str, Any]]],
    epoch: int = 1,
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """Each run's mean gradient norm per parameter in one epoch (log scale), one line per run:
    where the gradients vanish or explode, compared across runs (e.g. initialisations).

    ``runs`` maps a label to the run's ``grad_norms.jsonl`` records
    (``{"epoch": e, "<parameter name>": mean norm, ...}``).

    Args:
        runs: records by label.
        epoch: which epoch's norms to compare.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    chosen = {}
    for label, records in runs.items():
        record = next((r for r in records if r.get("epoch") == epoch), None)
        if record is not None:
            chosen[label] = record
    if not chosen:
        raise ValueError(f"no run has gradient norms for epoch {epoch}")
    names = [k for k in next(iter(chosen.values())) if k != "epoch"]
    positions = np.arange(len(names))
    fig = new_figure(max(7.0, 0.6 * len(names) + 3), 4.4)
    ax = fig.subplots()
    for color, (label, record) in zip(_colors(len(chosen)), chosen.items(), strict=True):
        values = [max(float(record.get(n, np.nan)), 1e-30) for n in names]
        ax.plot(positions, values, "-o", ms=3, lw=1.2, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("mean gradient L2 norm")
    ax.set_title(f"gradient norm by parameter in epoch {epoch} (input side on the left)",
                 fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=1 + len(chosen) // 12)
    return finish(fig, path, show)
