"""Training-run helpers shared by the trainer, CLI and fault tests: a tiny config, the CLI
command line of a config, a subprocess that is interrupted once its first checkpoint exists,
and comparisons of run results."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scratchcnn.serialization import load_arrays
from scratchcnn.training import TrainConfig, resolve_config


def tiny_config(data: Path, run_dir: Path, **overrides) -> TrainConfig:
    """A few quick epochs of the seed CNN on a :func:`helpers_data.make_image_folder` dataset."""
    values = dict(
        data=str(data),
        cache_dir=str(run_dir / "cache"),
        val_size=30,
        epochs=3,
        batch_size=16,
        lr=0.02,
        run_dir=str(run_dir),
        name="run",
        progress=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def train_cli(config: TrainConfig, *extra: str) -> list[str]:
    """The ``python -m scratchcnn train`` command line that trains ``config`` (an
    ``architecture`` needs a file: pass ``--model-config FILE`` in ``extra``)."""
    args = [sys.executable, "-m", "scratchcnn", "train", "--no-progress"]
    for key, value in config.to_dict().items():
        if value is None or key in ("progress", "architecture"):
            continue
        flag = "--" + key.replace("_", "-")
        if key == "model_options":
            args += [
                a for k, v in value.items() for a in ("--model-option", f"{k}={json.dumps(v)}")
            ]
        elif key == "freeze":
            args += [a for pattern in value for a in ("--freeze", pattern)]
        elif key == "lr_knots":
            args += [flag, *(f"{fraction}:{factor}" for fraction, factor in value)]
        elif isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            args += [flag, *(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args + list(extra)


def default_sigint() -> None:
    """``preexec_fn`` for a child the test will Ctrl-C: SIGINT back to its default action.

    A shell without job control starts background commands with SIGINT ignored, the children
    inherit that, and Python then installs no KeyboardInterrupt handler; the test would see a
    Ctrl-C that never arrives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_wait_for(args: list[str], path: Path, timeout: float = 120) -> subprocess.Popen:
    """Start ``args`` and return once ``path`` exists (the process is still running)."""
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.005)
    return process


def without_timing(history: list[dict]) -> list[dict]:
    timing = {"epoch_seconds", "images_per_second"}
    return [{k: v for k, v in record.items() if k not in timing} for record in history]


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    arrays, _ = load_arrays(run_dir / "last.safetensors")
    return {k: v for k, v in arrays.items() if k.startswith(("model.", "optim."))}


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def snapshot(*roots: Path) -> dict[Path, str]:
    """Every file under ``roots`` with the sha256 of its bytes: equal snapshots before and after
    a command mean it changed no file and left none behind."""
    files = {}
    for root in roots:
        if root.is_file():
            files[root] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                files[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


SMALL_AIRBENCH = {"widths": [4, 8, 8]}


def fast_config(data: Path, run_dir: Path, **changes) -> TrainConfig:
    """The fast recipe, shrunk: airbench at widths 4/8/8, 6 steps of 8 images per epoch."""
    values = dict(
        data=str(data),
        cache_dir=str(run_dir / "cache"),
        model_options=SMALL_AIRBENCH,
        epochs=3,
        batch_size=8,
        lr=0.05,
        lookahead=4,  # 18 steps: not a multiple of 4, so the last step's sync(0) shows
        ema_decay=0.9,
        whiten_bias_epochs=1,
        record_activations=True,
        tta=1,
        run_dir=str(run_dir),
        name="run",
        progress=False,
    )
    values.update(changes)
    return resolve_config("fast", None, values)


def benchmark_script(name: str):
    """A script from ``benchmarks/``, imported as a module."""
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script
