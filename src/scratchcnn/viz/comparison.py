"""The scratchcnn-vs-PyTorch figure of ``scratchcnn compare``: both learning curves side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scratchcnn.viz._common import finish, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from scratchcnn.interop.compare import ComparisonResult

# One colour per framework, the same in every panel; torch dashed so overlapping curves show.
_STYLES = {"scratchcnn": {"color": "tab:blue"}, "torch": {"color": "tab:orange", "ls": "--"}}


def plot_comparison(
    result: ComparisonResult, path: str | Path | None = None, show: bool = False
) -> Figure:
    """Six panels: loss and accuracy per step and per epoch for both frameworks, their relative
    loss difference per step, and training seconds per epoch.

    ``result`` is :func:`scratchcnn.interop.compare.compare_frameworks`'s output.
    """
    from matplotlib.ticker import MaxNLocator

    frameworks = tuple(_STYLES)
    steps = np.array([s["step"] for s in result.steps])
    epochs = np.array([r["epoch"] for r in result.epochs])
    fig = new_figure(15.0, 8.0)
    axes = fig.subplots(2, 3)
    for fw in frameworks:
        style = _STYLES[fw]
        axes[0, 0].plot(steps, [s[f"{fw}_loss"] for s in result.steps], label=fw, **style)
        axes[1, 0].plot(steps, moving_average([s[f"{fw}_accuracy"] for s in result.steps]), **style)
        for quantity, ax in (("loss", axes[0, 1]), ("accuracy", axes[1, 1])):
            for split, marker in (("train", "s"), ("val", "o")):
                values = [r[fw][f"{split}_{quantity}"] for r in result.epochs]
                ax.plot(epochs, values, marker=marker, **style)
    ours, theirs = result.loss_curve("scratchcnn"), result.loss_curve("torch")
    axes[0, 2].semilogy(steps, np.abs(ours - theirs) / np.abs(theirs) + 1e-12, color="tab:green")
    width = 0.35
    for offset, fw in zip((-width / 2, width / 2), frameworks, strict=True):
        seconds = [r[fw]["train_seconds"] for r in result.epochs]
        axes[1, 2].bar(epochs + offset, seconds, width, label=fw, color=_STYLES[fw]["color"])
    titles = [
        ("training loss per step", "step", "loss"),
        ("loss per epoch (squares: train, circles: validation)", "epoch", "loss"),
        ("relative loss difference per step", "step", "|scratchcnn - torch| / torch"),
        ("training accuracy per step (moving average of 20)", "step", "accuracy"),
        ("accuracy per epoch (squares: train, circles: validation)", "epoch", "accuracy"),
        ("training seconds per epoch", "epoch", "seconds"),
    ]
    for ax, (title, xlabel, ylabel) in zip(axes.flat, titles, strict=True):
        if xlabel == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    axes[1, 2].legend()
    fig.suptitle("scratchcnn vs PyTorch: same model, same initial weights, same batches")
    return finish(fig, path, show)


def moving_average(values: list[float], window: int = 20) -> np.ndarray:
    """The mean of each value and up to ``window - 1`` values before it.

    Shape: ``(T,) -> (T,)``.
    """
    values_array = np.asarray(values, dtype=np.float64)
    cumulative = np.cumsum(np.insert(values_array, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values_array) + 1), window)
    starts = np.arange(1, len(values_array) + 1) - counts
    return (cumulative[1:] - cumulative[starts]) / counts
