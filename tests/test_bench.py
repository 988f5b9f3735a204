"""Smoke tests of ``scratchcnn bench``: it runs and reports; speed itself is never asserted."""

from __future__ import annotations

import json

import pytest
from helpers_training import benchmark_script

from scratchcnn.cli import build_parser, main
from scratchcnn.layers import Conv2d, Sequential, fuse
from scratchcnn.models import MODELS
from scratchcnn.tools.bench import (
    BenchConfig,
    build_model,
    format_report,
    layer_profile,
    matmul_peak_gflops,
    run_benchmark,
)
from scratchcnn.tools.environment import source_version

TINY = {"batch": 2, "steps": 1, "rounds": 1, "warmup": 1, "peak_size": 64}


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


def test_bench_mixed_precision_times_float16_storage_against_torch_autocast(monkeypatch):
    pytest.importorskip("torch")
    import torch

    from scratchcnn.fast import current_settings
    from scratchcnn.tools import bench

    seen = {"storage": set(), "autocast": set()}
    scratch_steps, torch_steps = bench._scratch_steps, bench._torch_steps

    def spy(fn, key, probe):
        def wrapped(*args, **kwargs):
            seen[key].add(probe())
            return fn(*args, **kwargs)

        return wrapped

    def spied_scratch(*args):
        train, infer, *rest = scratch_steps(*args)
        return (spy(train, "storage", lambda: current_settings().storage), infer, *rest)

    def spied_torch(*args):
        original = torch.nn.functional.cross_entropy

        def cross_entropy(logits, labels):  # the logits' dtype shows the autocast
            seen["autocast"].add(logits.dtype)
            return original(logits, labels)

        monkeypatch.setattr(torch.nn.functional, "cross_entropy", cross_entropy)
        return torch_steps(*args)

    monkeypatch.setattr(bench, "_scratch_steps", spied_scratch)
    monkeypatch.setattr(bench, "_torch_steps", spied_torch)
    result = run_benchmark(BenchConfig(vs_torch=True, precision="mixed", **TINY))
    assert seen == {"storage": {"float16"}, "autocast": {torch.bfloat16}}
    assert "mixed precision" in format_report(result).splitlines()[0]
    with pytest.raises(ValueError, match="needs dtype float32"):
        run_benchmark(BenchConfig(precision="mixed", dtype="float64", **TINY))


def test_bench_against_torch_runs_a_zoo_model():
    """The PyTorch side comes from the bridge, so batch norm and residual shortcuts convert."""
    pytest.importorskip("torch")
    result = run_benchmark(BenchConfig(model="resnet8", vs_torch=True, **TINY))
    assert result.train_ratio > 0 and result.infer_ratio > 0
    assert result.forward_flops == 2 * MODELS["resnet8"]().flops((1, 3, 32, 32))


@pytest.mark.parametrize("name", list(MODELS))
def test_bench_accepts_every_zoo_model(name):
    args = build_parser().parse_args(["bench", "--model", name])
    model, x, y = build_model(BenchConfig(model=args.model, batch=2))
    assert model.output_shape(x.shape) == (2, 10) and y.shape == (2,)
    first = model[0]
    while isinstance(first, Sequential):
        first = first[0]
    assert isinstance(first, Conv2d) and first.needs_input_grad is False
    # Only the convolution that reads the images skips its input gradient.
    others = [m for m in model.modules() if isinstance(m, Conv2d) and m is not first]
    assert all(conv.needs_input_grad for conv in others)


def test_cli_bench_rejects_an_unknown_model(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--model", "resnet9000"])
    assert "invalid choice: 'resnet9000'" in capsys.readouterr().err


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
    """``benchmarks/ablate_winograd.py`` times a zoo model with Winograd, with 2x2 tiles only,
    with its weight gradients on im2col and without it, and leaves the settings as they were."""
    from scratchcnn import fast

    before = fast.current_settings()
    script = benchmark_script("ablate_winograd")
    report = tmp_path / "ablation.txt"
    argv = ["--model", "airbench", "--batch", "2", "--steps", "1", "--rounds", "1"]
    assert script.main([*argv, "--output", str(report)]) == 0
    text = report.read_text()
    assert text == capsys.readouterr().out
    assert text.startswith("airbench, batch 2,")
    rows = [line.split() for line in text.splitlines()[2:]]
    assert [row[:-4] for row in rows] == [
        ["Winograd"],
        ["2x2", "tiles"],
        ["im2col", "weight", "grads"],
        ["im2col", "only"],
    ]
    assert rows[3][-2:] == ["1.00x", "1.00x"]  # im2col only against itself
    assert all(float(value) > 0 for row in rows for value in row[-4:-2])
    assert fast.current_settings() == before and before.winograd


def test_benchmark_script_writes_the_cli_report(tmp_path, capsys):
    """``benchmarks/bench_seed_cnn.py`` runs ``scratchcnn bench`` and saves what it prints."""
    report = tmp_path / "results" / "seed.txt"  # the folder does not exist yet
    argv = ["--batch", "2", "--steps", "1", "--rounds", "1", "--no-torch", "--output", str(report)]
    assert benchmark_script("bench_seed_cnn").main(argv) == 0
    printed = capsys.readouterr()
    assert report.read_text() == printed.out
    assert "Per-layer profile" in printed.out and "PyTorch" not in printed.out
    assert f"report written to {report}" in printed.err


def test_layer_profile_opens_nested_blocks():
    """airbench's conv groups are Sequentials: the profile times the fused units inside them."""
    model, x, y = build_model(BenchConfig(model="airbench", batch=2))
    names = [row.name for row in layer_profile(model, x, y, steps=1, lr=0.01)]
    assert not any("Sequential" in name for name in names)
    assert sum("BatchNormActivation" in name for name in names) == 6  # two per group
    assert names[-2:] == ["loss (cross-entropy)", "SGD update"]


def test_conv_algorithms_script_times_every_product(tmp_path, capsys):
    """``benchmarks/conv_algorithms.py`` times forward, input and weight gradients per layer,
    each on Winograd with either tile size and on im2col."""
    report = tmp_path / "algorithms.txt"
    argv = ["--batch", "2", "--reps", "1", "--output", str(report)]
    assert benchmark_script("conv_algorithms").main(argv) == 0
    text = report.read_text()
    assert text == capsys.readouterr().out
    lines = text.splitlines()
    columns = "fwd w4 fwd w2 fwd i2c dx w4 dx w2 dx i2c dx col2im dw i2c dw w4 dw w2"
    assert lines[1].split() == ["layer", *columns.split()]
    assert len(lines) == 2 + 13  # header + thirteen layers
    for row in lines[2:]:
        values = row.split()[-10:]  # fwd x3, dx x4, dw x3
        assert len(values) == 10 and all(float(value) > 0 for value in values), row


TIME_REPORT = """\
\tCommand being timed: "scratchcnn train --recipe fast"
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:02:03.50
\tMaximum resident set size (kbytes): 1048576
"""


def test_fast_recipe_runs_script_tables_and_plots_real_runs(tmp_path, capsys):
    """``benchmarks/fast_recipe_runs.py`` reads a run folder and its time report into one row
    and draws the figure; a log without time's report is refused by name."""
    from helpers_data import make_image_folder
    from helpers_training import fast_config

    from scratchcnn.training import train

    data = make_image_folder(tmp_path / "images", train_per_class=16, test_per_class=4, size=32)
    config = fast_config(data, tmp_path / "runs", epochs=2, name="fast-tiny", ema_decay=None)
    result = train(config)
    (tmp_path / "runs" / "fast-tiny.log").write_text("training output...\n" + TIME_REPORT)
    script = benchmark_script("fast_recipe_runs")
    table, figure = tmp_path / "out" / "runs.json", tmp_path / "out" / "curve.png"
    reference = tmp_path / "torch.json"
    reference.write_text(
        '{"seconds": 60, "epochs": 11, "test_accuracy": 0.5, "test_accuracy_tta2": 0.6}'
    )
    argv = [str(tmp_path / "runs" / "fast-tiny"), "--output", str(table), "--figure", str(figure)]
    wide = tmp_path / "torch-wide.json"  # two references: each gets its own line style
    wide_record = {"epochs": 10, "widths": [64, 256, 256], "test_accuracy": 0.55}
    wide.write_text(json.dumps({**wide_record, "test_accuracy_tta2": 0.65}))
    assert script.main([*argv, "--reference", str(reference), "--reference", str(wide)]) == 0
    (row,) = json.loads(table.read_text())
    assert row["epochs"] == 2 and row["run"] == "fast-tiny"
    assert row["wall_seconds"] == 3723.5 and row["peak_rss_mb"] == 1024.0
    assert row["test_accuracy_tta"] == result.test["test_accuracy"]
    assert row["test_accuracy"] == result.test["test_accuracy_without_tta"]
    assert len(row["epoch_seconds"]) == 2
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert "fast-tiny" in capsys.readouterr().out
    assert row["engine"] is None and row["widths"] == list(config.model_options["widths"])
    source = source_version()  # the run's environment.json names the code's commit
    want = (
        None if source is None else source["commit"][:7] + ("+changes" if source["dirty"] else "")
    )
    assert row["commit"] == want
    (tmp_path / "runs" / "fast-tiny" / "environment.json").unlink()  # a run from before it
    assert script.read_run(tmp_path / "runs" / "fast-tiny")["commit"] is None
    assert script.main([*argv, "--engine", "fast-tiny=4x4 tiles"]) == 0
    (row,) = json.loads(table.read_text())
    assert row["engine"] == "4x4 tiles"
    for bad in ("fast-other=4x4 tiles", "fast-tiny"):  # an unknown run, no label
        with pytest.raises(SystemExit):
            script.main([*argv, "--engine", bad])
    (tmp_path / "runs" / "fast-tiny.log").write_text("no report\n")
    with pytest.raises(ValueError, match="time -v"):
        script.read_run(tmp_path / "runs" / "fast-tiny")


def test_step_memory_script_sees_mixed_precision_keep_less():
    """``benchmarks/step_memory.py``: float16 storage shrinks what the forward pass keeps."""
    script = benchmark_script("step_memory")
    full = script.step_memory("airbench", 4, "float32")
    mixed = script.step_memory("airbench", 4, "mixed")
    assert 0 < mixed["kept_mib"] < 0.75 * full["kept_mib"]
    assert full["kept_mib"] <= full["peak_mib"] and mixed["kept_mib"] <= mixed["peak_mib"]


def test_activation_workers_script_times_each_pass_on_one_and_two_workers(tmp_path, capsys):
    """``benchmarks/activation_workers.py`` times ReLU and GELU, forward and backward, on one
    worker and on two, and writes the table it prints."""
    report = tmp_path / "activations.txt"
    argv = ["--shape", "2", "3", "5", "4", "--reps", "1", "--output", str(report)]
    assert benchmark_script("activation_workers").main(argv) == 0
    text = report.read_text()
    assert text == capsys.readouterr().out
    rows = text.splitlines()[2:]
    assert [row[:26].strip() for row in rows] == [
        "ReLU forward (with mask)", "ReLU backward", "GELU forward", "GELU backward"
    ]  # fmt: skip
    for row in rows:
        one, two, ratio = row[26:].split()
        assert float(one) > 0 and float(two) > 0 and ratio.endswith("x"), row


@pytest.mark.parametrize("widths", [(64, 128, 128), (8, 16, 16)])
def test_airbench_torch_reference_builds_the_zoo_network(widths):
    """``benchmarks/airbench_torch.py``'s independent PyTorch network has the zoo airbench's
    parameter shapes in the same order, for airbench93's widths and any others."""
    torch = pytest.importorskip("torch")
    from torch import nn

    script = benchmark_script("airbench_torch")
    net, whiten = script.build(torch, nn, widths)
    ours = MODELS["airbench"](widths=widths)
    theirs = [tuple(p.shape) for p in net.parameters()]
    assert theirs == [p.data.shape for _, p in ours.named_parameters()]
    assert tuple(whiten.weight.shape) == (24, 3, 2, 2) and not whiten.weight.requires_grad
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_airbench_torch_reference_rejects_bad_widths(capsys):
    """``--widths`` takes three positive channel counts and says so otherwise."""
    pytest.importorskip("torch")
    script = benchmark_script("airbench_torch")
    with pytest.raises(SystemExit):
        script.main(["--widths", "64,256"])
    assert "expected three positive channel counts such as 64,256,256, got '64,256'" in (
        capsys.readouterr().err
    )
