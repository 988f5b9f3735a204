"""The command line end to end: train, evaluate, predict, help texts and error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_data import CLASS_NAMES, make_image_folder
from PIL import Image

from scratchcnn.cli import COMMANDS, main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    data = make_image_folder(root / "images")
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--cache-dir",
            str(root / "cache"),
            "--val-size",
            "30",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--lr",
            "0.02",
            "--run-dir",
            str(root / "runs"),
            "--name",
            "cli",
            "--no-progress",
        ]
    )
    assert code == 0
    return data, root / "runs" / "cli"


def evaluate_args(data: Path, run: Path, *extra: str) -> list[str]:
    """``scratchcnn evaluate`` of a run's best model on the tiny image folder."""
    return [
        "evaluate",
        "--checkpoint",
        str(run / "best.safetensors"),
        "--data",
        str(data),
        "--cache-dir",
        str(run.parent.parent / "cache"),
        *extra,
    ]


def test_train_writes_a_run_folder(trained_run):
    _, run = trained_run
    assert (run / "best.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["batch_size"] == 16


def test_evaluate_reports_accuracy_per_class_and_loss(trained_run, capsys):
    data, run = trained_run
    code = main(evaluate_args(data, run, "--json"))
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 30
    assert set(report["per_class_accuracy"]) == set(CLASS_NAMES)
    # the same number the trainer wrote for the best model
    results = json.loads((run / "results.json").read_text())
    assert report["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert report["test_loss"] == pytest.approx(results["test_loss"])


def test_evaluate_text_output(trained_run, capsys):
    data, run = trained_run
    assert main(evaluate_args(data, run)) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "top-3 accuracy:" in out and "macro precision" in out
    per_class = out.split("per class:\n")[1].splitlines()
    assert per_class[0].split() == ["class", "accuracy", "precision", "F1", "support"]
    assert [line.split()[0] for line in per_class[1:]] == list(CLASS_NAMES)
    assert all(line.split()[-1] == "10" for line in per_class[1:])  # 10 test images per class


def test_predict_ranks_classes_and_resizes_other_sizes(trained_run, tmp_path, capsys):
    data, run = trained_run
    red = tmp_path / "red.png"
    big = np.zeros((16, 16, 3), dtype=np.uint8)
    big[..., 0] = 220  # strongly red: class "red" has channel 0 brightened
    Image.fromarray(big).save(red)
    same = sorted((data / "test" / "blue").glob("*.png"))[0]
    code = main(["predict", "--checkpoint", str(run / "best.safetensors"), str(red), str(same)])
    assert code == 0
    header, *rows = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["image", "top-1", "prob", "top-2", "prob", "top-3", "prob"]
    assert len(rows) == 2
    assert rows[0].startswith(str(red)) and rows[0].endswith("(resized from 16x16 to 8x8)")
    assert rows[0].split()[1] == "red"
    cells = rows[1].split()[1:]
    probabilities = [float(p) for p in cells[1::2]]
    assert cells[::2] and set(cells[::2]) == set(CLASS_NAMES)
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)


def test_missing_checkpoint_and_unreadable_image_give_clear_errors(trained_run, tmp_path, capsys):
    _, run = trained_run
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.safetensors")]) == 1
    assert "no checkpoint at" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["predict", "--checkpoint", str(run / "best.safetensors"), str(broken)]) == 1
    assert "cannot read image" in capsys.readouterr().err


def test_bad_setting_is_an_error_not_a_traceback(capsys, tmp_path):
    assert main(["train", "--lr", "-1", "--run-dir", str(tmp_path)]) == 1
    assert "lr must be > 0, got -1" in capsys.readouterr().err


def test_resume_refuses_new_settings(trained_run, capsys):
    _, run = trained_run
    assert main(["train", "--resume", str(run), "--epochs", "9"]) == 1
    assert "--resume continues a run with its saved settings" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: scratchcnn {command}" in capsys.readouterr().out


def test_train_help_lists_every_config_field(capsys):
    from dataclasses import fields

    from scratchcnn.training import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    own_forms = {"model_options": "--model-option", "architecture": "--model-config"}
    for field in fields(TrainConfig):
        assert own_forms.get(field.name, "--" + field.name.replace("_", "-")) in out


def test_console_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "scratchcnn", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("scratchcnn ")


def test_closed_pipe_ends_quietly(trained_run):
    """``scratchcnn evaluate | head -1``: the reader is gone before the output is written."""
    data, run = trained_run
    process = subprocess.Popen(
        [sys.executable, "-m", "scratchcnn", *evaluate_args(data, run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # nobody will read: every write to stdout now fails
    stderr = process.communicate(timeout=120)[1].decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert process.returncode == 141


def test_predict_takes_folders_recursively_and_prints_json_and_csv(trained_run, capsys):
    data, run = trained_run
    checkpoint = ["--checkpoint", str(run / "best.safetensors")]
    assert main(["predict", *checkpoint, "--top-k", "2", "--json", str(data / "test")]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 30  # every PNG under test/<class>/, found recursively
    assert all(len(r["predictions"]) == 2 and r["resized_from"] is None for r in records)
    by_class = {}
    for record in records:
        by_class.setdefault(Path(record["image"]).parent.name, []).append(
            record["predictions"][0]["class"]
        )
    assert sorted(by_class) == sorted(CLASS_NAMES)
    assert main(["predict", *checkpoint, "--csv", str(data / "test" / "red")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "image,rank,class,probability,resized_from"
    assert len(rows) == 1 + 10 * 3  # ten images, the top 3 classes each
    ranks = [int(row.split(",")[1]) for row in rows[1:]]
    assert ranks == [1, 2, 3] * 10


def test_evaluate_json_has_top_k_and_macro_scores(trained_run, capsys):
    data, run = trained_run
    assert main(evaluate_args(data, run, "--json", "--top-k", "2")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top_k"] == 2 and report["test_accuracy"] <= report["top_k_accuracy"] <= 1
    per_class = report["per_class"]
    assert set(per_class) == set(CLASS_NAMES)
    recalls = [per_class[name]["recall"] for name in CLASS_NAMES]
    assert report["macro_recall"] == pytest.approx(np.mean(recalls))
    assert report["macro_f1"] == pytest.approx(np.mean([per_class[n]["f1"] for n in CLASS_NAMES]))
    assert sum(per_class[name]["support"] for name in CLASS_NAMES) == report["images"]


def test_report_never_writes_into_a_run_folder_whose_model_is_elsewhere(
    trained_run, tmp_path, monkeypatch
):
    """Like the committed models/seed_cnn_cifar10-run, reported with the model beside it."""
    pytest.importorskip("matplotlib")
    data, run = trained_run
    record = tmp_path / "record-run"
    record.mkdir()
    for name in ("config.json", "metrics.jsonl", "grad_norms.jsonl"):
        (record / name).write_bytes((run / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    args = ["report", str(record), "--checkpoint", str(run / "best.safetensors")]
    args += ["--data", str(data), "--cache-dir", str(run.parent.parent / "cache")]
    assert main([*args, "--max-images", "12"]) == 0
    assert (tmp_path / "record-run-report.html").is_file()
    names = sorted(p.name for p in record.iterdir())
    assert names == ["config.json", "grad_norms.jsonl", "metrics.jsonl"]


def test_lr_finder_cache_is_reused_only_for_the_same_settings(trained_run, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import scratchcnn.training

    data, run = trained_run
    cache = str(run.parent.parent / "cache")
    args = ["visualize", "lr-finder", "--run", str(run), "--data", str(data), "--cache-dir", cache]
    assert main([*args, "--steps", "6", "--out", str(tmp_path / "a.png")]) == 0
    record = json.loads((run / "lr_finder.json").read_text())
    assert record["settings"]["num_steps"] == 6 and len(record["lrs"]) <= 6

    def refuse(*args, **kwargs):
        raise AssertionError("the cached range test should have been reused")

    monkeypatch.setattr(scratchcnn.training, "find_lr", refuse)
    assert main([*args, "--steps", "6", "--out", str(tmp_path / "b.png")]) == 0  # reused
    monkeypatch.undo()
    assert main([*args, "--steps", "8", "--out", str(tmp_path / "c.png")]) == 0  # other settings
    assert json.loads((run / "lr_finder.json").read_text())["settings"]["num_steps"] == 8
    (run / "lr_finder.json").unlink()  # leave the shared run as the other tests expect it
