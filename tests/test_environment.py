"""What a run folder records about its making: machine, versions, the source's commit and the
backend's settings (``scratchcnn.tools.environment``), and the trainer's ``environment.json``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from scratchcnn import fast
from scratchcnn._version import __version__
from scratchcnn.backend import use_backend
from scratchcnn.tools.environment import machine_info, run_environment, source_version
from scratchcnn.training import trainer

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_machine_info_names_cpu_numpy_and_blas_and_leaves_torch_out_when_asked():
    info = machine_info(torch=False)
    assert {"cpu", "cores", "python", "numpy", "blas", "numba"} <= set(info)
    assert "torch" not in info and info["numpy"] == np.__version__
    assert "torch" in machine_info(torch=True)


@needs_git
def test_source_version_is_the_checkouts_commit_and_says_when_tracked_files_changed(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    git(tmp_path, "add", "model.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    commit = git(tmp_path, "rev-parse", "HEAD")
    assert source_version(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert source_version(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "model.py").write_text("a = 2\n")
    assert source_version(tmp_path) == {"commit": commit, "dirty": True}


@needs_git
def test_source_version_is_none_outside_a_checkout_and_for_untracked_copies_inside_one(tmp_path):
    assert source_version(tmp_path) is None
    git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    git(tmp_path, "add", "model.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    installed = tmp_path / ".venv" / "site-packages" / "scratchcnn"  # pip install . in a venv
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert source_version(installed) is None
    assert source_version(tmp_path)["commit"] == git(tmp_path, "rev-parse", "HEAD")


def test_run_environment_records_the_backend_and_the_fast_settings_in_force():
    with fast.settings(winograd_tile=2, workers=1):
        environment = run_environment()
    assert environment["scratchcnn"] == __version__ and environment["backend"] == "fast"
    assert environment["fast_settings"]["winograd_tile"] == 2
    assert environment["fast_settings"]["workers"] == 1
    assert "torch" not in environment["machine"]
    json.dumps(environment)  # all of it can be written as JSON
    with use_backend("reference"):
        reference = run_environment()
    assert reference["backend"] == "reference" and "fast_settings" not in reference


def test_resuming_appends_to_environment_json_and_survives_a_run_from_before_it(tmp_path):
    folder = trainer._RunFolder(tmp_path / "run")
    folder.create()
    folder.record_environment({"backend": "fast"})
    folder.record_environment({"backend": "reference"}, resumed_at=(1, 7))
    record = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert record == {
        "started": {"backend": "fast"},
        "resumed": [{"epoch": 2, "batch": 7, "backend": "reference"}],
    }
    (tmp_path / "run" / "environment.json").unlink()  # a run folder from before the file
    folder.record_environment({"backend": "fast"}, resumed_at=(3, 0))
    record = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert record == {"started": None, "resumed": [{"epoch": 4, "batch": 0, "backend": "fast"}]}
