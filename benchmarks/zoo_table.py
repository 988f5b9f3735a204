"""A study of models (``studies/zoo.toml``, ``studies/parameters.toml``) as one table and one
figure: test accuracy against parameter count and against training time.

Reads the study folder that ``scratchcnn sweep`` wrote, counts each trial's parameters and
forward FLOPs per image on its trained model (``best.safetensors``), and prints a Markdown table
(model, width, parameters, MFLOPs, epochs, images per epoch, wall minutes, test accuracy);
optionally writes the rows as JSON and the two-panel figure::

    python benchmarks/zoo_table.py runs/sweep-zoo \\
        --output benchmarks/results/studies/zoo_quick.json --figure docs/images/zoo_quick.png

The wall time is each trial's own (data loading, every epoch's validation and the test
included), as the trials ran: with ``--cpus-per-trial 1`` on a 2-core machine, two at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scratchcnn.serialization import atomic_write_text, load_model
from scratchcnn.studies.results import collect_results
from scratchcnn.viz._common import finish, new_figure


def read_rows(study: Path) -> list[dict]:
    """One row per completed trial, smallest model first."""
    rows = []
    for trial in collect_results(study):
        if trial.status != "completed":
            continue
        config = trial.config
        model, meta = load_model(study / trial.folder / "best.safetensors")
        height, width, channels = meta["image_shape"]
        rows.append(
            {
                "trial": trial.trial,
                # The config names the zoo model (none given resolves to seed_cnn); a trial of
                # a network from a [model] table (the architecture setting) has none.
                "model": config.get("model") or "architecture",
                "width": float((config.get("model_options") or {}).get("width", 1.0)),
                "parameters": model.num_parameters(),
                "mflops": round(model.flops((1, channels, height, width)) / 1e6, 1),
                "epochs": trial.epochs_run,
                "train_images": config.get("train_subset"),
                "wall_minutes": round(trial.seconds / 60, 2),
                "best_val_accuracy": trial.best_val_accuracy,
                "test_accuracy": trial.test_accuracy,
            }
        )
    if not rows:
        raise ValueError(f"{study}: no completed trial to tabulate")
    return sorted(rows, key=lambda r: (r["parameters"], r["model"]))


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| model | width | parameters | MFLOPs | epochs | images/epoch | minutes | test accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        images = "all" if r["train_images"] is None else f"{r['train_images']:,}"
        lines.append(
            f"| {r['model']} | {r['width']:g} | {r['parameters']:,} | {r['mflops']:.1f}"
            f" | {r['epochs']} | {images} | {r['wall_minutes']:.1f}"
            f" | {100 * r['test_accuracy']:.2f}% |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Test accuracy against parameters and against wall minutes (log axes), one colour per
    model, each point labelled with its model (and width where it is not 1)."""
    fig = new_figure(11, 4.2)
    models = list(dict.fromkeys(r["model"] for r in rows))
    colors = {name: f"C{i % 10}" for i, name in enumerate(models)}
    for i, (key, label) in enumerate(
        (("parameters", "parameters"), ("wall_minutes", "wall time, minutes"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        for r in rows:
            x, y = r[key], 100 * r["test_accuracy"]
            ax.scatter([x], [y], color=colors[r["model"]])
            tag = r["model"] if r["width"] == 1 else f"{r['model']} x{r['width']:g}"
            ax.annotate(tag, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xscale("log")  # both span two orders of magnitude or more
        ax.set_xlabel(f"{label} (log scale)")
        ax.set_ylabel("CIFAR-10 test accuracy, %")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    finish(fig, path, show=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="the study folder scratchcnn sweep wrote")
    parser.add_argument("--output", type=Path, help="write the rows here as JSON")
    parser.add_argument("--figure", type=Path, help="write the figure here as PNG")
    parser.add_argument("--title", default="", help="the figure's title")
    args = parser.parse_args(argv)
    rows = read_rows(args.study)
    print(markdown(rows))
    if args.output:
        atomic_write_text(args.output, json.dumps(rows, indent=2) + "\n")
    if args.figure:
        plot(rows, args.figure, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
