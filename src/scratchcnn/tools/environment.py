"""What produced a result: the machine, the library versions, the source's git commit and the
backend's settings.

A run folder's numbers mean little without them: the same recipe trains at different speeds on
another CPU, or on an engine a commit later. :func:`run_environment` gathers them for the
trainer's ``environment.json``; :func:`machine_info` is the part that benchmark reports print.
Nothing here imports PyTorch unless asked to (``machine_info(torch=True)``).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn._version import __version__
from scratchcnn.backend import current_backend


def machine_info(torch: bool = True) -> dict[str, str]:
    """CPU model and cores, Python, NumPy and its BLAS, Numba and (with ``torch``) PyTorch
    versions."""
    info = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_description(),
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = "not installed (fast backend uses its NumPy path)"
    if torch:
        try:
            import torch as torch_module

            info["torch"] = f"{torch_module.__version__} ({torch_module.get_num_threads()} threads)"
        except ImportError:
            info["torch"] = "not installed"
    return info


def source_version(path: Path | None = None) -> dict[str, Any] | None:
    """The git commit of the checkout the package is imported from, and whether its tracked
    files differ from it (``{"commit": "8c23f72...", "dirty": False}``); ``None`` for an
    installed copy (even one installed into a virtual environment inside a checkout: its files
    are not the checkout's tracked files), or where git is missing.

    Args:
        path: a folder inside the checkout (default: this package's folder).
    """
    folder = Path(__file__).resolve().parent if path is None else Path(path)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None or not _git(folder, "ls-files", "--", "."):
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def run_environment() -> dict[str, Any]:
    """Everything above for a training run, at this moment: the time (UTC), the scratchcnn
    version, the source's commit (:func:`source_version`), the backend and (for the fast
    backend) its settings, and the machine (:func:`machine_info`, without PyTorch)."""
    backend = current_backend()
    environment: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scratchcnn": __version__,
        "source": source_version(),
        "backend": backend.name,
    }
    if backend.name == "fast":
        from scratchcnn.fast import current_settings

        environment["fast_settings"] = dataclasses.asdict(current_settings())
    environment["machine"] = machine_info(torch=False)
    return environment


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = (
            np.show_config(mode="dicts") if np.lib.NumpyVersion(np.__version__) >= "1.26.0" else {}
        )
        blas = config.get("Build Dependencies", {}).get("blas", {}) if config else {}
        return f"{blas.get('name', 'unknown')} {blas.get('version', '')}".strip()
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if not pools:
        return "unknown"
    # SciPy and PyTorch may bring their own BLAS; NumPy's is the one scratchcnn uses.
    numpy_pools = [p for p in pools if "numpy" in p["filepath"]]
    pool = (numpy_pools or pools)[0]
    return (
        f"{pool.get('internal_api')} {pool.get('version')} "
        f"({pool.get('architecture')}, {pool.get('num_threads')} threads)"
    )
