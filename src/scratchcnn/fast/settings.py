"""The fast backend's settings: one immutable object, changed only inside a ``with`` block.

Every tunable of the fast backend lives in :class:`Settings`. The current value is held in a
context variable, so ``with settings(winograd=False, workers=1): ...`` changes it for the code
inside the block only (and only in the calling thread or task), restoring the previous value on
exit even when an exception escapes. Nothing here is a module global that one caller flips for
everyone (the pattern of tinygrad's ``Context``).

>>> from scratchcnn import fast
>>> with fast.settings(workers=1):
...     fast.current_settings().workers
1

The backend reads the settings once per operation, in the calling thread, and hands the values
to its worker threads explicitly (worker threads do not inherit context variables).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields

STORAGE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class Settings:
    """Every knob of the fast backend; each default says why (measurements: benchmarks/README.md).

    Byte sizes are per chunk of images that one worker thread takes at a time: small enough to
    stay in a core's L2 cache between the step that writes the data and the one that reads it.
    """

    # Threads that run a batch's chunks: the calling thread plus ``workers - 1`` pool threads.
    # Each chunk is independent work, so one core per thread uses the machine fully.
    workers: int = os.cpu_count() or 1
    # Threads NumPy's BLAS may use inside a fast operation. The workers already split the batch
    # across cores; a multi-threaded BLAS on top spin-waits against them. None leaves BLAS alone.
    blas_threads: int | None = 1
    # Run the Numba kernels (False: the NumPy fallbacks that run wherever Numba is missing).
    numba: bool = True
    # The dtype of the activations a training forward pass keeps for backward: "float16" halves
    # their memory (mixed precision); arithmetic stays in the model's dtype either way.
    storage: str = "float32"
    # Run 3x3 stride-1 convolutions on Winograd (needs Numba).
    winograd: bool = True
    # The largest output tile of Winograd's forward passes, input gradients and weight
    # gradients: 4 allows F(4x4, 3x3), 36 products per 16 outputs (4x fewer multiplications
    # than im2col), wherever it needs fewer products than F(2x2, 3x3), 16 per 4 (2.25x fewer);
    # 2 keeps F(2x2, 3x3) throughout (the engine before 4x4 tiles). Inference's conv + ReLU +
    # pool chains keep 2x2 tiles either way (they are the pool windows).
    winograd_tile: int = 4
    # Winograd's 16 products get too thin for BLAS below this many input channels.
    winograd_min_channels: int = 8
    # Outputs smaller than this a side stay on im2col: a 3x3 output's 2x2 tiles compute 16 values
    # for 9 (measured 1.8x slower than im2col on airbench's 128-channel 3x3 layer).
    winograd_min_size: int = 5
    # Weight gradients of convolutions that run forward on Winograd go through it too from this
    # many input channels, on 2x2 tiles; with fewer, its 16 products (C, tiles) @ (tiles, OC)
    # are too thin and im2col is faster (both measured in benchmarks/README.md).
    winograd_weight_grad_min_channels: int = 64
    # The same on 4x4 tiles, whose weight gradient measured 1.2-1.6x faster than im2col's on
    # every layer with 16-64 input channels (8x8-32x32 outputs), and no faster with 8.
    winograd4_weight_grad_min_channels: int = 16
    # Bytes of im2col rows per chunk of the im2col convolution.
    im2col_chunk_bytes: int = 1 << 21
    # Bytes of transformed tiles (inputs and products) per chunk of a Winograd convolution.
    winograd_chunk_bytes: int = 1 << 21
    # The same for a Winograd weight gradient: larger, as its products reduce over the tiles and
    # run faster the more tiles they have.
    winograd_weight_grad_chunk_bytes: int = 1 << 23
    # Images per chunk of a few-channel (RGB) Winograd conv + ReLU + pool: small chunks keep both
    # workers busy to the end, as no tiles are stored.
    few_channels_chunk_images: int = 4
    # Inputs with fewer channels keep their im2col matrix from forward to backward: its rows are
    # built from C-value copies (3 for RGB), slow per byte, and the matrix is small.
    keep_cols_below_channels: int = 8
    # Memory-bound and element-wise kernels (pooling, ReLU, GELU) are split over the workers
    # only above this many bytes.
    split_min_bytes: int = 1 << 18
    # Matrix products (Linear) are split over the workers only above this many multiply-adds.
    split_min_product: int = 1 << 22

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in ("numba", "winograd"):
                if not isinstance(value, bool):
                    raise TypeError(f"fast setting {field.name} must be a bool, got {value!r}")
            elif field.name == "storage":
                if value not in STORAGE_DTYPES:
                    raise ValueError(
                        f"fast setting storage must be one of {STORAGE_DTYPES}, got {value!r}"
                    )
            elif field.name == "winograd_tile":
                if isinstance(value, bool) or not isinstance(value, int) or value not in (2, 4):
                    raise ValueError(f"fast setting winograd_tile must be 2 or 4, got {value!r}")
            elif field.name == "blas_threads" and value is None:
                continue
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"fast setting {field.name} must be an int >= 1, got {value!r}")


# Settings is frozen, so the shared default instance cannot be changed in place.
_current: ContextVar[Settings] = ContextVar("scratchcnn_fast_settings", default=Settings())  # noqa: B039


def current_settings() -> Settings:
    """The settings in effect here (the defaults outside any :func:`settings` block)."""
    return _current.get()


@contextmanager
def settings(**changes: object) -> Iterator[Settings]:
    """Change some fast-backend settings inside a ``with`` block; restore them on exit.

    Unknown names and invalid values are rejected before anything changes.
    """
    known = {field.name for field in fields(Settings)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"unknown fast setting(s) {unknown}; known settings: {sorted(known)}")
    new = dataclasses.replace(_current.get(), **changes)
    token = _current.set(new)
    try:
        yield new
    finally:
        _current.reset(token)
