"""Matrix products split across the worker threads, each with a one-thread BLAS.

A Linear layer's products come while the convolution workers are idle. The longest of the three
dimensions is split: the output's rows or columns (each worker writes its own block), or the
shared inner dimension (each worker makes a partial product; they are summed). The seed model's
``(64, 4096) @ (4096, 128)`` splits its inner dimension, its weight and input gradients (4096
output columns) their columns.
"""

from __future__ import annotations

import numpy as np

from scratchcnn.fast.runtime import blas_limit, even_slices, map_chunks
from scratchcnn.fast.settings import Settings


def matmul(a: np.ndarray, b: np.ndarray, settings: Settings) -> np.ndarray:
    """``a @ b`` for 2-D arrays, split across ``settings.workers`` threads.

    Shape: ``a (M, K)``, ``b (K, N)`` -> ``(M, N)``.
    """
    (rows, inner), columns = a.shape, b.shape[1]
    parts = min(settings.workers, max(rows, inner, columns))
    if parts <= 1 or rows * inner * columns < settings.split_min_product:
        return a @ b
    workers = settings.workers
    with blas_limit(settings.blas_threads):
        if inner >= max(rows, columns):
            partial = map_chunks(lambda k: a[:, k] @ b[k], even_slices(inner, parts), workers)
            return np.sum(partial, axis=0, dtype=partial[0].dtype)
        out = np.empty((rows, columns), dtype=np.result_type(a, b))
        if rows >= columns:

            def rows_block(block: slice) -> None:
                np.matmul(a[block], b, out=out[block])

            map_chunks(rows_block, even_slices(rows, parts), workers)
        else:

            def columns_block(block: slice) -> None:
                np.matmul(a, b[:, block], out=out[:, block])

            map_chunks(columns_block, even_slices(columns, parts), workers)
        return out
