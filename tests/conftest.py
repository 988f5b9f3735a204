"""Test-session setup shared by every test file.

BLAS thread pools are pinned to one thread before NumPy is imported: the test machines have
two cores shared by parallel jobs, and a multi-threaded BLAS spinning on tiny matrices under
that load made the gradient checks ~8x slower (82 s instead of 11 s). An explicit setting in
the environment still wins.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
