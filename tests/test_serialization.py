"""Saved models and checkpoints: safetensors + JSON, atomic, never pickled."""

from __future__ import annotations

import json

import numpy as np
import pytest

import scratchcnn as sc
from scratchcnn.errors import CheckpointError
from scratchcnn.serialization import atomic_write_bytes, load_arrays


def test_save_and_load_round_trip_exactly(tmp_path):
    model = sc.Sequential(
        sc.Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(0)),
        sc.BatchNorm2d(4),
        sc.ReLU(),
        sc.GlobalAvgPool2d(),
        sc.Dropout(0.2),
        sc.Linear(4, 2, rng=np.random.default_rng(1)),
    )
    model.train()
    model.forward(np.random.default_rng(2).standard_normal((4, 3, 6, 6)).astype(np.float32), True)
    sc.save_model(model, tmp_path / "m.safetensors", class_names=["a", "b"], note="hi")
    loaded, meta = sc.load_model(tmp_path / "m.safetensors")
    assert meta["class_names"] == ["a", "b"] and meta["note"] == "hi"
    assert meta["library_version"] == sc.__version__
    for (name, a), (name_b, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert name == name_b and np.array_equal(a, b) and a.dtype == b.dtype
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert np.array_equal(model.eval()(x), loaded(x))
    assert not loaded.training


def test_file_is_safetensors_with_json_metadata_not_a_pickle(tmp_path):
    sc.save_model(sc.seed_cnn(), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    assert header["model.0.weight"]["shape"] == [32, 3, 3, 3]
    assert json.loads(header["__metadata__"]["scratchcnn"])["architecture"]["type"] == "Sequential"
    assert b"\x80\x04" not in data[:2] and b"cnumpy" not in data  # no pickle opcodes/globals


def test_float64_model_stays_float64(tmp_path):
    model = sc.seed_cnn().astype(np.float64)
    sc.save_model(model, tmp_path / "m.safetensors")
    loaded, _ = sc.load_model(tmp_path / "m.safetensors")
    assert all(p.dtype == np.float64 for p in loaded.parameters())


def test_corrupt_and_missing_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x0a\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="bad.safetensors is not a valid safetensors file"):
        sc.load_model(bad)
    with pytest.raises(CheckpointError, match="no checkpoint at .*missing.safetensors"):
        sc.load_model(tmp_path / "missing.safetensors")


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.safetensors"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_load_arrays_reads_back_what_was_written(tmp_path):
    from scratchcnn.serialization import save_arrays

    arrays = {"a": np.arange(6, dtype=np.int64).reshape(2, 3), "b": np.ones(3, np.float32)}
    save_arrays(tmp_path / "x.safetensors", arrays, {"k": [1, 2]})
    loaded, meta = load_arrays(tmp_path / "x.safetensors")
    assert meta == {"k": [1, 2]}
    assert all(np.array_equal(arrays[k], loaded[k]) for k in arrays)


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644
