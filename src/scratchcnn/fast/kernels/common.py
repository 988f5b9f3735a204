"""Small inlined helpers shared by the pooling and Winograd kernels."""

from __future__ import annotations

from numba import njit


@njit(cache=True, inline="always")
def _wins(value, best):
    # A strictly larger value wins (ties go to the first); so does the first NaN, as in argmax.
    return value > best or (value != value and best == best)


@njit(cache=True, inline="always")
def _window_max(window):
    """The winner of a 2x2 window ``(y00, y01, y10, y11)`` and its position in ``0..3``, by
    ``_wins``' rule."""
    best, y01, y10, y11 = window
    where = 0
    if _wins(y01, best):
        best = y01
        where = 1
    if _wins(y10, best):
        best = y10
        where = 2
    if _wins(y11, best):
        best = y11
        where = 3
    return best, where


@njit(cache=True, inline="always")
def _max_2x2(x, b, oh, ow, ch):
    """The winner of window ``(oh, ow)`` of a 2x2/stride-2 pool and its position in ``0..3``."""
    top, left = 2 * oh, 2 * ow
    return _window_max(
        (
            x[b, top, left, ch],
            x[b, top, left + 1, ch],
            x[b, top + 1, left, ch],
            x[b, top + 1, left + 1, ch],
        )
    )
