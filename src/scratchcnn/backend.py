"""Which implementation the layers compute with: "fast" (default) or "reference".

Both backends implement the same math behind the same layer API:

- ``"reference"``: the readable im2col code in ``functional.conv`` and ``functional.pool``, NCHW
  throughout; the version to read and step through.
- ``"fast"``: ``functional.fast``, channels-last inside, with Numba kernels when Numba is
  installed (NumPy slab operations otherwise) and Winograd F(2x2, 3x3) for 3x3 stride-1
  convolutions (``functional.winograd``, Numba only).

Layers look the backend up when they run ``forward`` and remember it for their ``backward``, so
switching between a forward and its backward is safe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

BACKENDS = ("fast", "reference")

_current = "fast"


def get_backend() -> str:
    """The name of the backend that layers use now."""
    return _current


def set_backend(name: str) -> None:
    """Select the backend for every layer: ``"fast"`` or ``"reference"``."""
    global _current
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _current = name


@contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Use backend ``name`` inside a ``with`` block, then restore the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield name
    finally:
        set_backend(previous)


def compute_scope() -> contextlib.AbstractContextManager:
    """A scope for a whole model's forward or backward under the current backend's threading.

    For ``"fast"``, NumPy's BLAS runs with ``functional.fast.BLAS_THREADS`` threads inside the
    scope (see there for why); for ``"reference"`` nothing changes.
    """
    if _current == "fast":
        from scratchcnn.functional import fast

        return fast.blas_limit()
    return contextlib.nullcontext()


def functional_module(name: str | None = None):
    """The module of pure functions behind backend ``name`` (default: the current backend).

    Both modules offer ``conv2d_forward``, ``conv2d_backward``, ``max_pool2d_forward`` and
    ``max_pool2d_backward`` with the same signatures.
    """
    name = get_backend() if name is None else name
    if name == "reference":
        from scratchcnn import functional

        return functional
    from scratchcnn.functional import fast

    return fast
