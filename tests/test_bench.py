"""Smoke tests of ``scratchcnn bench``: it runs and reports; speed itself is never asserted."""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.cli import main
from scratchcnn.layers import fuse
from scratchcnn.tools.bench import (
    BenchConfig,
    build_model,
    format_report,
    layer_profile,
    machine_info,
    matmul_peak_gflops,
    run_benchmark,
)

TINY = {"batch": 2, "steps": 1, "rounds": 1, "warmup": 1, "peak_size": 64}


def test_machine_info_names_cpu_numpy_and_blas():
    info = machine_info()
    assert {"cpu", "cores", "numpy", "blas", "numba", "torch"} <= set(info)
    assert info["numpy"] == np.__version__


def test_matmul_peak_is_a_positive_number():
    assert matmul_peak_gflops(size=32, repeats=1) > 0


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_bench_runs_on_a_tiny_batch(backend):
    result = run_benchmark(BenchConfig(backend=backend, **TINY))
    assert result.train_s > 0 and result.infer_s > 0
    assert result.forward_flops > 0
    names = [row.name for row in result.layers]
    # the profile times the units of the fused model, as a training step runs them
    assert names[0].startswith("0 ConvReLUMaxPoolChain 3->32->64") and names[-1] == "SGD update"
    assert sum(row.share for row in result.layers) == pytest.approx(1.0)
    report = format_report(result)
    assert "Per-layer profile" in report and "GFLOP/s" in report
    assert result.train_ratio is None  # no PyTorch run asked for


def test_bench_against_torch_on_a_tiny_batch():
    pytest.importorskip("torch")
    result = run_benchmark(BenchConfig(vs_torch=True, **TINY))
    assert set(result.torch_train_s) == {"NCHW", "channels_last"}
    assert result.train_ratio > 0 and result.infer_ratio > 0
    assert "scratchcnn / PyTorch" in format_report(result)


def test_torch_twin_computes_the_same_logits():
    torch = pytest.importorskip("torch")
    from scratchcnn.tools.bench import torch_model_from

    model, x, _ = build_model(BenchConfig(batch=3))
    twin = torch_model_from(model, "float32")
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), theirs, rtol=1e-4, atol=1e-4)


def test_layer_profile_rows_cover_the_model():
    model, x, y = build_model(BenchConfig(batch=2))
    rows = layer_profile(model, x, y, steps=1, lr=0.01)
    assert len(rows) == len(fuse(model).units()) + 2  # the fused model's units, loss, update
    assert all(row.forward_ms >= 0 and row.backward_ms >= 0 for row in rows)


def test_bench_rejects_an_unknown_model():
    with pytest.raises(ValueError, match="unknown model"):
        build_model(BenchConfig(model="resnet9000"))


def test_cli_bench_writes_its_report(tmp_path, capsys):
    report = tmp_path / "bench.txt"
    argv = ["bench", "--batch", "2", "--steps", "1", "--rounds", "1", "--warmup", "1"]
    assert main([*argv, "--output", str(report)]) == 0
    assert "Per-layer profile" in capsys.readouterr().out
    assert "images/s" in report.read_text() or "img/s" in report.read_text()


def test_winograd_ablation_script_reports_both_settings(tmp_path, capsys):
    """``benchmarks/ablate_winograd.py`` times the model with and without Winograd and leaves
    the settings as they were."""
    from scratchcnn import fast

    before = fast.current_settings()
    script = _benchmark_script("ablate_winograd")
    report = tmp_path / "ablation.txt"
    argv = ["--batch", "2", "--steps", "1", "--rounds", "1", "--output", str(report)]
    assert script.main(argv) == 0
    text = report.read_text()
    assert text == capsys.readouterr().out
    assert "Winograd" in text and "im2col only" in text and "speed-up" in text
    assert fast.current_settings() == before and before.winograd


def _benchmark_script(name: str):
    """A script from ``benchmarks/``, imported as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_benchmark_script_writes_the_cli_report(tmp_path, capsys):
    """``benchmarks/bench_seed_cnn.py`` runs ``scratchcnn bench`` and saves what it prints."""
    report = tmp_path / "results" / "seed.txt"  # the folder does not exist yet
    argv = ["--batch", "2", "--steps", "1", "--rounds", "1", "--no-torch", "--output", str(report)]
    assert _benchmark_script("bench_seed_cnn").main(argv) == 0
    printed = capsys.readouterr()
    assert report.read_text() == printed.out
    assert "Per-layer profile" in printed.out and "PyTorch" not in printed.out
    assert f"report written to {report}" in printed.err
