"""Redraw a study folder's results: the table, the summary figure and the study report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scratchcnn.studies.results import (
    RESULTS_CSV,
    RESULTS_JSON,
    TrialRow,
    read_study,
    write_results,
)

__all__ = ["SUMMARY_PNG", "Summary", "summarize"]

SUMMARY_PNG = "summary.png"


@dataclass
class Summary:
    """What :func:`summarize` wrote: the trials and the paths of the table, figure and page.

    ``figure`` is ``None`` while no trial has reported an epoch.
    """

    rows: list[TrialRow]  # the trials, in the table's order
    table_csv: Path  # results.csv
    table_json: Path  # results.json
    figure: Path | None  # None when no trial has reported an epoch yet
    report: Path  # report.html


def summarize(out: str | Path, rows: list[TrialRow] | None = None) -> Summary:
    """Rewrite ``results.csv``/``.json``, ``summary.png`` and ``report.html`` of a study folder
    from its trials' records (works while a study runs, after it, or on a copied folder).

    Args:
        out: the study folder.
        rows: the trials; ``None`` reads them from the folder.
    """
    from scratchcnn import viz
    from scratchcnn.report.study import build_study_report
    from scratchcnn.studies.trial import read_history

    out = Path(out)
    study = read_study(out)
    rows = write_results(out, rows)
    histories = {row.trial: read_history(out / row.folder) for row in rows}
    figure = None
    if any(row.best_val_accuracy is not None for row in rows):
        figure = out / SUMMARY_PNG
        log_scale = [p.field for p in study.space if p.kind == "loguniform"]
        viz.plot_study_summary(rows, histories, study.parameter_names, title=study.name,
                               log_parameters=log_scale, path=figure)  # fmt: skip
    report = build_study_report(out, rows)
    return Summary(rows, out / RESULTS_CSV, out / RESULTS_JSON, figure, report)
