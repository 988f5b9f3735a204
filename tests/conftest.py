"""Test-session setup shared by every test file.

BLAS thread pools are pinned to one thread before NumPy is imported: the test machines have
two cores shared by parallel jobs, and a multi-threaded BLAS spinning on tiny matrices under
that load made the gradient checks ~8x slower (82 s instead of 11 s). An explicit setting in
the environment still wins.
"""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import pytest  # noqa: E402

from scratchcnn import fast  # noqa: E402
from scratchcnn.backend import use_backend  # noqa: E402
from scratchcnn.fast.runtime import kernels  # noqa: E402

HAVE_NUMBA = kernels(fast.current_settings()) is not None


@pytest.fixture(params=["reference", "fast"])
def backend(request):
    """Run a test on each backend: a bug in either fails a test named after it."""
    with use_backend(request.param) as selected:
        yield selected


@pytest.fixture(params=["numba", "numpy"])
def numba_path(request):
    """Run a test on the fast backend's Numba kernels and on its NumPy-only fallback (what runs
    wherever Numba is missing)."""
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("Numba is not installed")
    with fast.settings(numba=request.param == "numba"):
        yield request.param
