"""Shared plumbing for the plots: figures without pyplot, atomic PNG saving, notebook display.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot, no global figure
registry, nothing to close), which renders with the Agg backend whatever backend is configured.
matplotlib is imported inside functions so that ``import scratchcnn`` never loads it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100  # PNG resolution; figure sizes below are in inches at this density


def new_figure(width: float, height: float) -> Figure:
    """An Agg-rendered figure of ``width`` x ``height`` inches, independent of pyplot."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("scratchcnn.viz needs matplotlib: pip install 'scratchcnn[viz]'") from err
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def figure_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes.

    Args:
        fig: the figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def finish(fig: Figure, path: str | Path | None, show: bool) -> Figure:
    """Save ``fig`` to ``path`` as PNG (atomically: a temporary file renamed into place) and/or
    display it inline (in a notebook); return it."""
    if path is not None or show:
        png = figure_png(fig)
        if path is not None:
            from scratchcnn.serialization import atomic_write_bytes

            atomic_write_bytes(Path(path), png)
        if show:
            _display_png(png)
    return fig


def _display_png(png: bytes) -> None:
    try:
        from IPython.display import Image, display
    except ImportError:  # outside IPython: a window through pyplot, if there is a GUI
        import matplotlib.pyplot as plt
        from PIL import Image as PILImage

        image = np.asarray(PILImage.open(io.BytesIO(png)))
        plt.figure(figsize=(image.shape[1] / DPI, image.shape[0] / DPI))
        plt.imshow(image)
        plt.axis("off")
        plt.show()
        return
    display(Image(data=png))


def image_tile(ax, image: np.ndarray, title: str | None = None, fontsize: float = 7) -> None:
    """Draw one uint8 ``(H, W, C)`` image (C = 1 or 3) without axes."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize)


def hide_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def scale_to_unit(array: np.ndarray, constant: float = 0.5) -> np.ndarray:
    """Min-max scale an array to [0, 1] (a constant array becomes ``constant``)."""
    array = np.asarray(array, dtype=np.float64)
    low, high = array.min(), array.max()
    if high - low < 1e-12:
        return np.full_like(array, constant)
    return (array - low) / (high - low)


def grid_shape(count: int, columns: int) -> tuple[int, int]:
    """``(rows, columns)`` of a grid holding ``count`` tiles at most ``columns`` wide."""
    columns = max(1, min(columns, count))
    return -(-count // columns), columns


def mosaic(
    tiles: np.ndarray, columns: int, pad: int = 1, pad_value: float = 1.0
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Lay equally sized tiles out in a grid with ``pad`` pixels between them.

    Drawing one mosaic with a single ``imshow`` is much faster than one axes per tile (a
    64-channel layer would otherwise need 64 axes).

    Shape: ``tiles (N, h, w)`` or ``(N, h, w, 3)`` -> ``(rows*(h+pad)-pad, cols*(w+pad)-pad[, 3])``,
    and the ``(x, y)`` pixel centre of each tile, for labels.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    count, h, w = tiles.shape[:3]
    rows, cols = grid_shape(count, columns)
    shape = (rows * (h + pad) - pad, cols * (w + pad) - pad, *tiles.shape[3:])
    canvas = np.full(shape, pad_value, dtype=np.float64)
    centres = []
    for i in range(count):
        r, c = divmod(i, cols)
        top, left = r * (h + pad), c * (w + pad)
        canvas[top : top + h, left : left + w] = tiles[i]
        centres.append((left + (w - 1) / 2, top + (h - 1) / 2))
    return canvas, centres


def to_rgb_unit(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` images (C = 1 or 3) as float RGB in [0, 1], ``(N, H, W, 3)``."""
    images = np.asarray(images, dtype=np.float64) / 255.0
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def draw_mosaic(ax, canvas: np.ndarray, **imshow_kwargs) -> None:
    ax.imshow(canvas, interpolation="nearest", **imshow_kwargs)
    hide_axes(ax)
