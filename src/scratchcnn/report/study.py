"""The report of a study folder: its settings, the results table linking every trial's run
folder, the summary figure and every trial's curves overlaid. One function per section."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchcnn.report.html import Section, figure, link, page, paragraph, table
from scratchcnn.studies.results import TrialRow, collect_results, read_study
from scratchcnn.studies.spec import Study

__all__ = ["STUDY_SECTIONS", "StudyContext", "build_study_report"]

STUDY_REPORT = "report.html"
SUMMARY_PNG = "summary.png"


@dataclass
class StudyContext:
    """What the study sections share."""

    out: Path
    study: Study
    rows: list[TrialRow]
    histories: dict[str, list[dict[str, Any]]]  # trial id -> its metrics.jsonl records


def settings_section(ctx: StudyContext) -> Section:
    study = ctx.study
    space = [[p.field, p.kind, json.dumps(p.to_toml_value()[p.kind])] for p in study.space]
    options = [[key, json.dumps(value)] for key, value in study.to_dict()["options"].items()]
    base = [
        [key, json.dumps(value)]
        for key, value in study.train.items()
        if key not in study.parameter_names
    ]
    body = (
        (paragraph(study.description) if study.description else "")
        + paragraph(f"Study file: {study.source or '(unknown)'}; ranked by {study.metric}.")
        + table(["searched field", "how", "values"], space)
        + table(["option", "value"], options)
        + "<details><summary>The settings every trial shares</summary>"
        + table(["setting", "value"], base)
        + "</details>"
    )
    return Section("settings", "Study settings", body)


def results_section(ctx: StudyContext) -> Section:
    names = ctx.study.parameter_names
    header = ["trial", "status", *names, "best val acc", "epoch", "test acc", "epochs",
              "parameters", "time (s)", "error"]  # fmt: skip
    rows = []
    for row in ctx.rows:
        target = ctx.out / row.folder
        href = f"{row.folder}/report.html" if (target / "report.html").is_file() else row.folder
        rows.append(
            [
                link(href, row.trial),
                row.status,
                *[row.params.get(name, "") for name in names],
                _blank(row.best_val_accuracy),
                _blank(row.best_epoch),
                _blank(row.test_accuracy),
                row.epochs_run,
                "" if row.parameters is None else f"{row.parameters:,}",
                "" if row.seconds is None else f"{row.seconds:.1f}",
                row.error or "",
            ]
        )
    done = sum(row.status in ("completed", "early_stopped") for row in ctx.rows)
    failed = sum(row.status == "error" for row in ctx.rows)
    body = paragraph(
        f"{len(ctx.rows)} trial(s): {done} ran to the end, {failed} failed, "
        f"{len(ctx.rows) - done - failed} stopped early by the scheduler or unfinished. "
        "Each trial links to its run folder (its report.html when it has one). The same "
        "table is in results.csv and results.json."
    ) + table(header, rows)
    return Section("results", "Results", body)


def summary_section(ctx: StudyContext) -> Section | None:
    from scratchcnn import viz

    if not any(row.best_val_accuracy is not None for row in ctx.rows):
        return None
    log_scale = [p.field for p in ctx.study.space if p.kind == "loguniform"]
    fig = viz.plot_study_summary(ctx.rows, ctx.histories, ctx.study.parameter_names,
                                 title=ctx.study.name, log_parameters=log_scale)  # fmt: skip
    return Section("summary", "Summary", figure(fig, "study summary"))


def curves_section(ctx: StudyContext) -> Section | None:
    from scratchcnn import viz

    runs = {
        f"{row.trial} ({_params(row.params)})": ctx.histories[row.trial]
        for row in ctx.rows
        if ctx.histories.get(row.trial)
    }
    if not runs:
        return None
    body = figure(viz.plot_runs(runs), "every trial's curves", "One colour per trial.")
    return Section("curves", "Every trial's curves", body)


def gradient_flow_section(ctx: StudyContext) -> Section | None:
    from scratchcnn import viz

    runs = {}
    for row in ctx.rows:
        records = viz.read_grad_norms(ctx.out / row.folder)
        if records:
            runs[f"{row.trial} ({_params(row.params)})"] = records
    if not runs:
        return None
    last = min(max(r["epoch"] for r in records) for records in runs.values())
    body = figure(
        viz.plot_gradient_flow_by_run(runs, 1),
        "gradient flow, first epoch",
        "Each trial's mean gradient norm per parameter over its first epoch.",
    )
    if last > 1:
        body += figure(
            viz.plot_gradient_flow_by_run(runs, last),
            f"gradient flow, epoch {last}",
            f"The same in epoch {last}, the last that every trial reached.",
        )
    return Section("gradient-flow", "Gradient flow by trial", body)


def best_section(ctx: StudyContext) -> Section | None:
    ranked = [row for row in ctx.rows if row.best_val_accuracy is not None]
    if not ranked:
        return None
    best = ranked[0]
    rows = [[key, json.dumps(value)] for key, value in best.config.items()]
    body = paragraph(
        f"Trial {best.trial} ({_params(best.params)}): best validation accuracy "
        f"{best.best_val_accuracy:.4f} at epoch {best.best_epoch}"
        + ("" if best.test_accuracy is None else f", test accuracy {best.test_accuracy:.4f}")
        + "."
    ) + table(["setting", "value"], rows)
    return Section("best", "Best trial", body)


STUDY_SECTIONS: tuple[Callable[[StudyContext], Section | None], ...] = (
    settings_section,
    results_section,
    summary_section,
    curves_section,
    gradient_flow_section,
    best_section,
)


def build_study_report(
    out: str | Path, rows: list[TrialRow] | None = None, target: str | Path | None = None
) -> Path:
    """Write ``out/report.html`` (or ``target``) for the study folder ``out``; return its path.

    Args:
        out: the study folder.
        rows: the trials; ``None`` reads them from the folder.
        target: the HTML file to write; ``None``: ``out/report.html``.
    """
    from scratchcnn.serialization import atomic_write_text
    from scratchcnn.studies.trial import read_history

    out = Path(out)
    study = read_study(out)
    rows = collect_results(out) if rows is None else rows
    histories = {row.trial: read_history(out / row.folder) for row in rows}
    ctx = StudyContext(out, study, rows, histories)
    sections = [s for s in (make(ctx) for make in STUDY_SECTIONS) if s is not None]
    intro = f"<p>Study folder <code>{html.escape(str(out))}</code>.</p>"
    path = Path(target) if target is not None else out / STUDY_REPORT
    atomic_write_text(path, page(f"scratchcnn study: {study.name}", intro, sections))
    return path


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
