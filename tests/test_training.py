"""Trainer behaviour: outputs, determinism, exact resume (kill -9 and Ctrl-C), NaN stop,
early stopping, TOML configs and the real-data check on CIFAR-10."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers_data import CLASS_NAMES, make_image_folder
from helpers_training import (
    assert_same_weights,
    final_weights,
    start_and_wait_for,
    tiny_config,
    train_cli,
    without_timing,
)

from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.serialization import load_arrays, load_model
from scratchcnn.training import TrainConfig, TrainingDiverged, resolve_config, train

REAL_CIFAR = Path(__file__).resolve().parents[1].parent / "shared/datasets/cifar10-jpeg.zip"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


# --- basic -----------------------------------------------------------------------------------
def test_run_writes_every_output_and_learns(tiny_data, tmp_path):
    result = train(tiny_config(tiny_data, tmp_path, epochs=4))
    run = tmp_path / "run"
    for name in (
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "grad_norms.jsonl",
        "last.safetensors",
        "best.safetensors",
        "results.json",
    ):
        assert (run / name).is_file(), name
    assert result.status == "completed"
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    assert (run / "metrics.csv").read_text().count("\n") == 5
    grad_norms = [json.loads(line) for line in (run / "grad_norms.jsonl").read_text().splitlines()]
    assert len(grad_norms) == 4 and grad_norms[0]["0.weight"] > 0
    # The colour-coded classes are easy: the run must beat chance (1/3) clearly.
    assert result.history[-1]["val_accuracy"] > 0.6
    results = json.loads((run / "results.json").read_text())
    assert set(results["per_class_accuracy"]) == set(CLASS_NAMES)
    model, meta = load_model(run / "best.safetensors")
    assert meta["class_names"] == list(CLASS_NAMES)
    assert meta["epoch"] == result.best_epoch
    assert set(meta["normalization"]) == {"mean", "std"}
    assert json.loads((run / "config.json").read_text())["epochs"] == 4


def test_same_seed_gives_identical_history_and_weights(tiny_data, tmp_path):
    first = train(tiny_config(tiny_data, tmp_path / "a"))
    second = train(tiny_config(tiny_data, tmp_path / "b"))
    assert without_timing(first.history) == without_timing(second.history)
    assert_same_weights(final_weights(tmp_path / "a/run"), final_weights(tmp_path / "b/run"))
    other = train(tiny_config(tiny_data, tmp_path / "c", seed=1))
    assert without_timing(other.history) != without_timing(first.history)


def test_existing_run_folder_is_not_overwritten(tiny_data, tmp_path):
    train(tiny_config(tiny_data, tmp_path, epochs=1))
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(tiny_data, tmp_path, epochs=1))


# --- failure handling ------------------------------------------------------------------------
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    config = tiny_config(tiny_data, tmp_path, epochs=3)
    steps_per_epoch = -(-(120 - 30) // 16)
    original = CrossEntropyLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, target):
        calls["n"] += 1
        loss = original(self, logits, target)
        return float("nan") if calls["n"] > steps_per_epoch + 2 else loss

    monkeypatch.setattr(CrossEntropyLoss, "forward", poisoned)
    kept = r"kept its last good checkpoint, .*last\.safetensors \(end of epoch 1\)"
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, batch 3 .*" + kept):
        train(config)
    _, meta = load_arrays(tmp_path / "run/last.safetensors")
    assert meta["epoch"] == 1  # the checkpoint from before the divergence is intact
    model, _ = load_model(tmp_path / "run/last.safetensors")
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_early_stopping_stops_when_validation_stalls(tiny_data, tmp_path):
    # A learning rate this small cannot move validation accuracy: patience 2 ends the run.
    config = tiny_config(tiny_data, tmp_path, epochs=10, lr=1e-12, early_stopping=2)
    result = train(config)
    assert result.status == "early_stopped"
    assert len(result.history) == 3
    assert result.best_epoch == 1


def test_bad_settings_are_rejected_with_the_value():
    with pytest.raises(ValueError, match="lr must be > 0, got -1"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="unknown config keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="unknown recipe"):
        resolve_config("fastest")


def test_optimizer_options_default_per_optimizer():
    """The default recipe's SGD momentum and Nesterov never reach Adam (issue: `train
    --optimizer adam` failed with "nesterov applies only to sgd")."""
    sgd = resolve_config("default")
    assert (sgd.momentum, sgd.nesterov, sgd.betas, sgd.warmup_epochs) == (0.9, True, None, 1.0)
    adam = resolve_config("default", None, {"optimizer": "adam"})
    assert (adam.momentum, adam.nesterov, adam.betas) == (None, None, (0.9, 0.999))
    rmsprop = resolve_config("seed", None, {"optimizer": "rmsprop"})
    assert (rmsprop.momentum, rmsprop.nesterov) == (0.0, None)
    step = resolve_config("default", None, {"schedule": "step"})
    assert step.warmup_epochs == 0.0 and step.step_size is None
    assert TrainConfig.from_dict(adam.to_dict()) == adam  # a saved config reads back the same


def test_adam_trains_with_the_default_recipe(tiny_data, tmp_path):
    # TrainConfig's defaults are the default recipe; only the optimizer and its lr change.
    config = tiny_config(
        tiny_data, tmp_path, epochs=1, optimizer="adam", lr=1e-3, betas=[0.8, 0.99]
    )
    assert train(config).status == "completed"
    _, meta = load_arrays(tmp_path / "run" / "last.safetensors")
    assert meta["optimizer"]["optimizer"] == "Adam" and meta["optimizer"]["betas"] == [0.8, 0.99]


def test_step_schedule_takes_step_size_in_epochs_and_gamma(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path, schedule="step", step_size=1, gamma=0.5)
    result = train(config)
    # the lr each epoch ended with: halved once per epoch
    assert [r["lr"] for r in result.history] == pytest.approx([0.02, 0.01, 0.005])


def test_val_size_0_trains_on_every_image_and_keeps_the_last_epoch(tiny_data, tmp_path):
    result = train(tiny_config(tiny_data, tmp_path, val_size=0, epochs=2))
    assert result.best_epoch == 2
    assert all("val_loss" not in r and "val_accuracy" not in r for r in result.history)
    run = tmp_path / "run"
    _, meta = load_arrays(run / "last.safetensors")
    assert meta["train_size"] == 120  # all training images, none held out
    assert load_model(run / "best.safetensors")[1]["epoch"] == 2
    results = json.loads((run / "results.json").read_text())
    assert results["val_accuracy"] is None and results["best_epoch"] == 2
    assert 0 <= results["test_accuracy"] <= 1  # the test set, used once at the end
    assert "val_loss" not in (run / "metrics.csv").read_text().splitlines()[0]


def test_find_lr_runs_the_range_test_first_and_trains_with_its_suggestion(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path, epochs=1, find_lr=True, schedule="constant")
    result = train(config)
    run = tmp_path / "run"
    record = json.loads((run / "lr_finder.json").read_text())
    assert record["suggestion_rule"] and len(record["lrs"]) == len(record["losses"]) > 2
    assert record["settings"]["optimizer"] == "sgd" and record["settings"]["batch_size"] == 16
    suggested = record["suggested_lr"]
    assert suggested != config.lr
    assert result.history[0]["lr"] == pytest.approx(suggested)  # constant schedule: the lr used
    saved = json.loads((run / "config.json").read_text())
    assert saved["find_lr"] is True
    assert load_model(run / "best.safetensors")[1]["config"]["lr"] == pytest.approx(suggested)


def test_recipe_file_and_flags_layer_in_order(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('epochs = 7\nlr = 0.1\noptimizer = "adam"\n')
    from scratchcnn.training import load_toml

    config = resolve_config("seed", load_toml(toml), {"lr": 0.3})
    assert (config.epochs, config.lr, config.optimizer, config.batch_size) == (7, 0.3, "adam", 64)
    seed = resolve_config("seed")
    assert (seed.lr, seed.batch_size, seed.epochs, seed.momentum, seed.flip) == (
        0.01,
        64,
        5,
        0.0,
        False,
    )


# --- exact resume ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resume_setup(tmp_path_factory):
    """A dataset big enough that an epoch takes a moment, and the uninterrupted reference run."""
    root = tmp_path_factory.mktemp("resume")
    data = make_image_folder(root / "images", train_per_class=300, test_per_class=2, size=16)
    config = tiny_config(data, root, epochs=3, val_size=60, batch_size=8, name="reference")
    reference = train(config)
    return data, root, config, reference


def test_kill_9_then_resume_equals_uninterrupted(resume_setup):
    data, root, config, reference = resume_setup
    config.name = "killed"
    run = root / "killed"
    process = start_and_wait_for(train_cli(config), run / "last.safetensors")
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, meta = load_arrays(run / "last.safetensors")
    assert meta["epoch"] < config.epochs, "the run finished before it could be killed"

    subprocess.run(
        [sys.executable, "-m", "scratchcnn", "train", "--resume", str(run)],
        check=True,
        capture_output=True,
    )
    assert_same_weights(final_weights(run), final_weights(root / "reference"))
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert without_timing(history) == without_timing(reference.history)


def test_ctrl_c_saves_mid_epoch_checkpoint_and_resume_is_exact(resume_setup):
    data, root, config, reference = resume_setup
    config.name = "interrupted"
    run = root / "interrupted"
    process = start_and_wait_for(train_cli(config), run / "last.safetensors")
    time.sleep(0.05)  # land inside the second epoch
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 130, output
    assert "resume with" in output
    _, meta = load_arrays(run / "last.safetensors")
    assert meta["loop"]["batch"] > 0, "expected a mid-epoch checkpoint"

    result = train(None, resume=run)
    assert result.status == "completed"
    assert_same_weights(final_weights(run), final_weights(root / "reference"))
    assert without_timing(result.history) == without_timing(reference.history)


# --- real data -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not REAL_CIFAR.is_file(), reason=f"real CIFAR-10 not found at {REAL_CIFAR}")
def test_one_epoch_on_5000_real_cifar_images_reaches_35_percent(tmp_path):
    config = TrainConfig(
        data=str(REAL_CIFAR),
        cache_dir=str(tmp_path / "cache"),  # never touch the user's own dataset cache
        train_subset=5000,
        val_size=10_000,
        epochs=1,
        batch_size=32,
        lr=0.02,
        warmup_epochs=0.1,
        flip=False,
        crop_padding=0,
        run_dir=str(tmp_path),
        name="real",
        progress=False,
    )
    result = train(config)
    assert result.history[0]["val_accuracy"] >= 0.35


def test_tensorboard_flag_writes_event_files(tiny_data, tmp_path):
    pytest.importorskip("tensorboardX")
    train(tiny_config(tiny_data, tmp_path, epochs=1, tensorboard=True))
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
