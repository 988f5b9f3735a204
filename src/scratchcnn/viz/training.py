"""Pictures of a training run: learning curves, gradient flow, the LR finder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scratchcnn.viz._common import finish, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from scratchcnn.optim.lr_finder import LRFinderResult

GRAD_NORMS = "grad_norms.jsonl"  # one {"epoch": e, "<parameter name>": mean norm, ...} per line


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def read_history(run: str | Path | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch records from a run folder's ``metrics.jsonl`` (or the records themselves)."""
    if isinstance(run, (str, Path)):
        path = Path(run)
        path = path / "metrics.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"no training history at {path}")
        return read_jsonl(path)
    return list(run)


def read_grad_norms(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per-epoch gradient norms from ``grad_norms.jsonl``; an empty list if it is not there.

    Args:
        run_dir: the run folder.
    """
    path = Path(run_dir) / GRAD_NORMS
    return read_jsonl(path) if path.is_file() else []


def plot_training_curves(
    history: str | Path | Sequence[dict[str, Any]],
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """Loss and accuracy per epoch, training against validation, and the learning rate.

    ``history`` is a run folder, a ``metrics.jsonl`` path or the list of per-epoch records
    (``epoch, train_loss, val_loss, train_accuracy, val_accuracy, lr``).

    Args:
        history: the run or its records.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    records = read_history(history)
    if not records:
        raise ValueError("the training history is empty")
    epochs = [r["epoch"] for r in records]

    def series(key: str) -> list[float] | None:
        return [r[key] for r in records] if all(key in r for r in records) else None

    fig = new_figure(12.0, 3.6)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for ax, quantity in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = series(f"{split}_{quantity}")
            if values is not None:
                ax.plot(epochs, values, style, ms=3, label=split)
        ax.set_title(quantity)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    best = series("val_accuracy")
    if best is not None:
        i = int(np.argmax(best))
        ax_acc.annotate(f"best {best[i]:.3f}", (epochs[i], best[i]), fontsize=8,
                        xytext=(0, -14), textcoords="offset points", ha="center")  # fmt: skip
    lrs = series("lr")
    if lrs is not None:
        ax_lr.plot(epochs, lrs, "-o", ms=3, color="tab:green")
    ax_lr.set_title("learning rate (end of epoch)")
    ax_lr.set_xlabel("epoch")
    ax_lr.grid(alpha=0.3)
    return finish(fig, path, show)


def plot_gradient_flow(
    records: str | Path | Sequence[dict[str, Any]],
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """Each parameter's mean gradient norm per epoch (log scale): vanishing or exploding layers.

    ``records`` is a run folder (its ``grad_norms.jsonl``) or the per-epoch records themselves.

    Args:
        records: the run or its records.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    if isinstance(records, (str, Path)):
        records = read_grad_norms(records)
    records = list(records)
    if not records:
        raise ValueError(
            f"no gradient norms recorded (the run folder has no {GRAD_NORMS}); the trainer "
            "writes it when asked to record gradient norms"
        )
    names = [k for k in records[0] if k != "epoch"]
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(records)]
    fig = new_figure(11.0, 4.0)
    ax_time, ax_layers = fig.subplots(1, 2)
    for name in names:
        values = [max(r.get(name, np.nan), 1e-30) for r in records]
        ax_time.plot(epochs, values, "-o", ms=2.5, lw=1.2, label=name)
    ax_time.set_yscale("log")
    ax_time.set_xlabel("epoch")
    ax_time.set_ylabel("mean gradient L2 norm")
    ax_time.set_title("gradient norm per parameter over training")
    ax_time.legend(fontsize=7, ncol=2)
    ax_time.grid(alpha=0.3, which="both")
    # Across the network at the first and last epochs: where gradients shrink on the way back.
    positions = np.arange(len(names))
    for record, label in ((records[0], f"epoch {epochs[0]}"), (records[-1], f"epoch {epochs[-1]}")):
        ax_layers.plot(positions, [max(record.get(n, np.nan), 1e-30) for n in names], "-o",
                       ms=3, label=label)  # fmt: skip
    ax_layers.set_yscale("log")
    ax_layers.set_xticks(positions, names, rotation=45, ha="right", fontsize=7)
    ax_layers.set_title("gradient norm by layer (input side on the left)")
    ax_layers.legend(fontsize=8)
    ax_layers.grid(alpha=0.3, which="both")
    return finish(fig, path, show)


def plot_lr_finder(
    result: LRFinderResult | dict[str, Any],
    path: str | Path | None = None,
    show: bool = False,
) -> Figure:
    """The learning-rate range test: loss against learning rate (log x), raw and smoothed.

    ``result`` is an :class:`~scratchcnn.optim.lr_finder.LRFinderResult` or a dict with the
    same fields (``lrs, losses, smoothed, suggested_lr``), e.g. read from ``lr_finder.json``.

    Args:
        result: the range test's result.
        path: write the figure there as a PNG (atomically); ``None`` writes nothing.
        show: display the figure inline (in a notebook).
    """
    if isinstance(result, dict):
        lrs, losses = np.asarray(result["lrs"]), np.asarray(result["losses"])
        smoothed = np.asarray(result.get("smoothed", losses))
        suggested = result.get("suggested_lr")
    else:
        lrs, losses, smoothed = result.lrs, result.losses, result.smoothed
        suggested = result.suggested_lr
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    ax.plot(lrs, losses, color="lightgray", lw=1, label="loss")
    ax.plot(lrs, smoothed, color="tab:blue", lw=1.6, label="smoothed")
    if suggested is not None:
        ax.axvline(suggested, color="tab:red", ls="--", lw=1, label=f"suggested {suggested:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    # Clip the divergence spike so the useful part of the curve stays readable.
    finite = smoothed[np.isfinite(smoothed)]
    if finite.size:
        ax.set_ylim(finite.min() * 0.95, min(finite.max(), 4 * finite[0]) * 1.05)
    ax.set_title("learning-rate range test")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return finish(fig, path, show)
