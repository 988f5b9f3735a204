"""The fast implementation behind the ``"fast"`` backend, kept apart from the readable layers.

Layers never import this package: they call the :class:`~scratchcnn.backend.Backend` interface,
and this package registers :class:`FastBackend` as ``"fast"`` (the default) when scratchcnn is
imported. Importing it is cheap; Numba is imported on the first operation that uses a kernel.

Modules, from the bottom up:

- :mod:`.settings`: every tunable in one immutable :class:`Settings`, changed in a scope with
  ``with scratchcnn.fast.settings(winograd=False, workers=1): ...``.
- :mod:`.runtime`: worker threads, chunks of a batch, per-thread scratch buffers, BLAS limits.
- :mod:`.kernels`: the Numba kernels (loops over channels-last arrays).
- :mod:`.layout`: channels-last views; :mod:`.conv` (im2col), :mod:`.winograd`,
  :mod:`.pool`, :mod:`.elementwise`, :mod:`.linear`: the operations.
- :mod:`.backend`: :class:`FastBackend`, the interface on top of them.
- :mod:`.memory`: :func:`keep_freed_memory`, an explicit opt-in allocator setting.
"""

from scratchcnn.backend import register_backend
from scratchcnn.fast.backend import FastBackend
from scratchcnn.fast.memory import keep_freed_memory
from scratchcnn.fast.settings import Settings, current_settings, settings

register_backend(FastBackend())

__all__ = ["FastBackend", "Settings", "current_settings", "keep_freed_memory", "settings"]
