"""TensorBoard event files for a training run, written through tensorboardX (optional extra).

``TensorBoardLogger(run_dir / "tensorboard")`` then ``log_epoch(record, model, epoch)`` after
each epoch: every number in the record becomes a scalar (``loss/train``, ``accuracy/val``,
``lr``, ...), every parameter gets a weight histogram and a gradient histogram (the gradient of
the epoch's last batch), and the first conv layer's filters are shown as an image grid. Watch a
run with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.layers.base import Layer

__all__ = ["TensorBoardLogger", "scalar_tag"]

# Per-epoch record keys and their TensorBoard tags: loss and accuracy pair train with val.
_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "lr": "lr",
}


def scalar_tag(key: str) -> str:
    """The TensorBoard tag for a record key (``train_loss`` -> ``loss/train``)."""
    return _TAGS.get(key, f"other/{key}")


class TensorBoardLogger:
    """Write scalars, weight and gradient histograms and first-layer filters per epoch."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoard logging needs tensorboardX: pip install 'scratchcnn[tensorboard]'"
            ) from err
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(logdir=str(self.log_dir))

    def log_epoch(self, record: dict[str, Any], model: Layer, epoch: int) -> None:
        """Log one epoch: ``record``'s numbers, parameter histograms, conv1 filters.

        Shape: filters ``(F, C, KH, KW)`` become one ``(3, H, W)`` grid image.
        """
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if np.isfinite(value):
                self._writer.add_scalar(scalar_tag(key), float(value), epoch)
        for name, param in model.named_parameters():
            self._writer.add_histogram(f"weights/{name}", param.data.astype(np.float64), epoch)
            grad = param.grad.astype(np.float64)
            if np.all(np.isfinite(grad)):
                self._writer.add_histogram(f"gradients/{name}", grad, epoch)
        filters = _first_conv_weight(model)
        if filters is not None:
            self._writer.add_image("filters/conv1", filter_grid(filters), epoch, dataformats="CHW")
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_conv_weight(model: Layer) -> np.ndarray | None:
    from scratchcnn.layers import Conv2d

    conv = next((m for m in model.modules() if isinstance(m, Conv2d)), None)
    return None if conv is None else conv.weight.data


def filter_grid(weight: np.ndarray, columns: int = 8, scale: int = 4) -> np.ndarray:
    """Filters as one RGB image: each scaled to [0, 1] on its own, enlarged ``scale`` times,
    laid out ``columns`` wide with a 1-pixel gap (grey filters for non-RGB input).

    Shape: ``weight (F, C, KH, KW)`` -> ``(3, rows * (KH*s + 1) - 1, cols * (KW*s + 1) - 1)``
    with ``s = scale``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    count, channels, kh, kw = weight.shape
    low = weight.min(axis=(1, 2, 3), keepdims=True)
    span = weight.max(axis=(1, 2, 3), keepdims=True) - low
    tiles = (weight - low) / np.where(span > 0, span, 1.0)  # (F, C, KH, KW) in [0, 1]
    tiles = tiles if channels == 3 else np.repeat(tiles[:, :1], 3, axis=1)
    tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)  # (F, 3, KH*s, KW*s)
    cols = min(columns, count)
    rows = -(-count // cols)
    th, tw = kh * scale, kw * scale
    grid = np.ones((3, rows * (th + 1) - 1, cols * (tw + 1) - 1))
    for i in range(count):
        r, c = divmod(i, cols)
        grid[:, r * (th + 1) : r * (th + 1) + th, c * (tw + 1) : c * (tw + 1) + tw] = tiles[i]
    return grid
