"""The fast recipe's runs in one table and one figure: accuracy against wall time.

Each run is a run folder made by ``scratchcnn train --recipe fast`` under ``/usr/bin/time -v``,
whose output (the training log, ending in time's report) was saved beside it as
``<run folder>.log``::

    /usr/bin/time -v scratchcnn train --recipe fast --data ../shared/datasets/cifar10-jpeg.zip \\
        --run-dir runs --name fast-seed1 --seed 1 > runs/fast-seed1.log 2>&1

This script reads every run's ``config.json`` and ``results.json``, its per-epoch seconds from
``metrics.jsonl``, and the wall time and peak resident memory from the log, then writes one
JSON table and a figure of test accuracy (with and without TTA) against wall time::

    python benchmarks/fast_recipe_runs.py runs/fast-seed0 runs/fast-seed1 runs/fast-e4 \\
        --output benchmarks/results/fast_recipe_runs.json --figure docs/images/fast_recipe.png

Runs made with a different engine than the rest are named with ``--engine RUN=LABEL`` and drawn
with their own markers; a run of the airbench model at other widths (``--model-option
widths=[...]``) is labelled with them. Each row's ``commit`` is the code's commit from the run
folder's ``environment.json`` (``None`` for runs made before the trainer wrote that file).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from scratchcnn.serialization import atomic_write_text
from scratchcnn.viz._common import finish, new_figure
from scratchcnn.viz.training import read_jsonl

GOAL_ACCURACY = 0.92
GOAL_MINUTES = 30


def parse_time_report(text: str) -> tuple[float, int]:
    """Wall seconds and peak resident kB from GNU time's ``-v`` report."""
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if wall is None or rss is None:
        raise ValueError("no /usr/bin/time -v report found (Elapsed ... and Maximum resident)")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds, int(rss.group(1))


def read_run(folder: Path, engine: str | None = None) -> dict:
    """One row of the table: the run's settings, accuracies, wall time and memory."""
    config = json.loads((folder / "config.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    log = folder.with_name(folder.name + ".log")
    wall, rss_kb = parse_time_report(log.read_text(errors="replace"))
    history = read_jsonl(folder / "metrics.jsonl")
    return {
        "run": folder.name,
        "seed": config["seed"],
        "epochs": config["epochs"],
        "precision": config.get("precision", "float32"),
        "widths": (config.get("model_options") or {}).get("widths"),
        "engine": engine,
        "commit": read_commit(folder),
        "batch_size": config["batch_size"],
        "test_accuracy_tta": results["test_accuracy"],
        "test_accuracy": results["test_accuracy_without_tta"],
        "wall_seconds": round(wall, 1),
        "train_seconds": round(sum(r["epoch_seconds"] for r in history), 1),
        "epoch_seconds": [round(r["epoch_seconds"], 1) for r in history],
        "peak_rss_mb": round(rss_kb / 1024, 1),
    }


def read_commit(folder: Path) -> str | None:
    """The short commit the run started on (``"8c23f72"``, ``"8c23f72+changes"`` when tracked
    files differed from it), from its ``environment.json``; ``None`` without one."""
    path = folder / "environment.json"
    if not path.is_file():
        return None
    source = (json.loads(path.read_text()).get("started") or {}).get("source")
    if not source:
        return None
    return source["commit"][:7] + ("+changes" if source.get("dirty") else "")


def plot(rows: list[dict], path: Path, references: list[dict]) -> None:
    """Test accuracy against wall minutes, with and without TTA, the goal marked; each
    reference (``airbench_torch.py --output``) drawn as lines at its accuracies, dotted for the
    first, another style for each next one, named in the legend when there are several."""
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    styles = (":", "-.")  # the goal line is dashed
    for i, ref in enumerate(references):  # accuracy only: its time is not comparable
        style = styles[i % len(styles)]
        for key, color in (("test_accuracy_tta2", "C0"), ("test_accuracy", "C1")):
            ax.axhline(100 * ref[key], color=color, linestyle=style, linewidth=1)
        label = "PyTorch, same recipe and data"
        if len(references) > 1:  # which network and budget each style of line is
            widths = "/".join(str(w) for w in ref.get("widths", (64, 128, 128)))
            label = f"PyTorch, {widths}, {ref['epochs']:g} ep"
        ax.plot([], [], color="grey", linestyle=style, label=label)
    engines = list(dict.fromkeys(r["engine"] for r in rows))  # None (the rest) first
    engines.sort(key=lambda engine: engine is not None)
    markers = {"test_accuracy_tta": "o^v", "test_accuracy": "sDP"}
    for key, label in (
        ("test_accuracy_tta", "with TTA (level 2)"),
        ("test_accuracy", "without TTA"),
    ):
        for index, engine in enumerate(engines):
            for precision, fill in (("float32", None), ("mixed", "none")):
                points = [r for r in rows if r["precision"] == precision and r["engine"] == engine]
                if not points:
                    continue
                ax.scatter(
                    [r["wall_seconds"] / 60 for r in points],
                    [100 * r[key] for r in points],
                    marker=markers[key][index % 3],
                    facecolors=fill,
                    edgecolors="C0" if key == "test_accuracy_tta" else "C1",
                    color="C0" if key == "test_accuracy_tta" else "C1",
                    label=f"{label}, {precision}" + (f", {engine}" if engine else ""),
                )
    labelled: dict[tuple, list[tuple[float, float]]] = {}  # (epochs, widths) -> label points
    for r in rows:
        widths = "" if r["widths"] is None else ", " + "/".join(str(w) for w in r["widths"])
        x, y = r["wall_seconds"] / 60, 100 * r["test_accuracy_tta"]
        # A label goes to the left of its point when another point sits just to its right; a
        # repeat of a network with other widths already labelled (another seed) is named by
        # its epochs alone, below its point, or not at all when a point already labelled with
        # the same network and epochs sits close by (the table names every point).
        crowded = any(
            0 < other["wall_seconds"] / 60 - x < 3
            and abs(100 * other["test_accuracy_tta"] - y) < 0.5
            for other in rows
        )
        same = labelled.setdefault((r["epochs"], widths), [])
        repeat = r["widths"] is not None and bool(same)
        if repeat and any(abs(x - px) < 3 and abs(y - py) < 0.5 for px, py in same):
            continue
        same.append((x, y))
        ax.annotate(
            f"{r['epochs']:g} ep" + ("" if repeat else widths),
            (x, y),
            textcoords="offset points",
            xytext=(4, -10) if repeat else (-4, 4) if crowded else (4, 4),
            horizontalalignment="right" if crowded and not repeat else "left",
            fontsize=7,
        )
    ax.axhline(100 * GOAL_ACCURACY, color="grey", linestyle="--", linewidth=1)
    ax.axvline(GOAL_MINUTES, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, max(r["wall_seconds"] / 60 for r in rows) + 6)
    ax.set_xlabel("wall time, minutes (2 cores; data loading and test included)")
    ax.set_ylabel("CIFAR-10 test accuracy, % (JPEG copy)")
    ax.set_title("scratchcnn train --recipe fast: accuracy against time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left")
    finish(fig, path, show=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, each with FOLDER.log")
    parser.add_argument("--output", type=Path, help="write the table here as JSON")
    parser.add_argument("--figure", type=Path, help="write the figure here as PNG")
    parser.add_argument(
        "--reference",
        type=Path,
        action="append",
        default=[],
        help="a JSON result of benchmarks/airbench_torch.py to mark on the figure (repeatable)",
    )
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="RUN=LABEL",
        help="the run folder named RUN ran on the engine LABEL (repeatable); drawn apart",
    )
    args = parser.parse_args(argv)
    engines = {}
    for item in args.engine:
        run, sep, label = item.partition("=")
        if not sep or not run or not label:
            parser.error(f"--engine takes RUN=LABEL, got {item!r}")
        engines[run] = label
    unknown = sorted(set(engines) - {folder.name for folder in args.runs})
    if unknown:
        parser.error(f"--engine names runs that are not given: {', '.join(unknown)}")
    rows = sorted(
        (read_run(folder, engines.get(folder.name)) for folder in args.runs),
        key=lambda r: r["wall_seconds"],
    )
    header = ("run", "epochs", "precision", "wall", "peak MB", "TTA", "no TTA")
    print("{:<20} {:>6} {:>9} {:>8} {:>8} {:>7} {:>7}".format(*header))
    for r in rows:
        minutes, seconds = divmod(r["wall_seconds"], 60)
        print(
            f"{r['run']:<20} {r['epochs']:>6g} {r['precision']:>9}"
            f" {int(minutes):>4}:{seconds:04.1f}"
            f" {r['peak_rss_mb']:>8.0f} {100 * r['test_accuracy_tta']:>6.2f}%"
            f" {100 * r['test_accuracy']:>6.2f}%"
        )
    if args.output:
        atomic_write_text(args.output, json.dumps(rows, indent=2) + "\n")
    if args.figure:
        references = [json.loads(path.read_text()) for path in args.reference]
        plot(rows, args.figure, references)
    return 0


if __name__ == "__main__":
    sys.exit(main())
