"""scratchcnn vs PyTorch in lockstep: same weights, same batches, the same loss curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from scratchcnn.cli import main  # noqa: E402
from scratchcnn.data import Normalizer  # noqa: E402
from scratchcnn.interop.compare import (  # noqa: E402
    compare_frameworks,
    count_code_lines,
    lines_of_code,
    markdown_table,
    write_report,
)
from scratchcnn.models import seed_cnn  # noqa: E402
from scratchcnn.training import TrainConfig, TrainingData  # noqa: E402

PLAIN_SGD = dict(
    batch_size=20,
    lr=0.05,
    momentum=0.0,
    nesterov=False,
    weight_decay=0.0,
    schedule="constant",
    warmup_epochs=0.0,
    flip=False,
    crop_padding=0,
    progress=False,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Two shared cores: one torch thread avoids oversubscription, and results do not change."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def learnable_data(n_train: int = 200, n_val: int = 40, size: int = 8) -> TrainingData:
    """Random 8x8 images whose brightness carries the class, so the loss really falls."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, n_train + n_val)
    images = (
        rng.integers(0, 120, (n_train + n_val, size, size, 3)) + 30 * labels[:, None, None, None]
    )
    images = images.astype(np.uint8)
    train, val = slice(0, n_train), slice(n_train, None)
    return TrainingData(
        train_images=images[train],
        train_labels=labels[train],
        val_images=images[val],
        val_labels=labels[val],
        test_images=images[:0],
        test_labels=labels[:0],
        class_names=["a", "b", "c", "d"],
        normalizer=Normalizer.fit(images[train]),
    )


@pytest.fixture(scope="module")
def result():
    torch.set_num_threads(1)
    config = TrainConfig(epochs=10, **PLAIN_SGD)
    return compare_frameworks(config, steps=100, data=learnable_data(), log=None)


# --- correctness -----------------------------------------------------------------------------
def test_loss_curves_agree_over_100_steps_of_plain_sgd(result):
    ours, theirs = result.loss_curve("scratchcnn"), result.loss_curve("torch")
    assert len(ours) == len(theirs) == 100
    assert ours[-1] < 0.5 * ours[0]  # it learned, so the agreement is not that of a flat line
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)


def test_epoch_metrics_agree(result):
    assert [r["epoch"] for r in result.epochs] == list(range(1, 11))
    for record in result.epochs:
        ours, theirs = record["scratchcnn"], record["torch"]
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-3)
        assert ours["val_accuracy"] == pytest.approx(theirs["val_accuracy"], abs=0.03)
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-3)
        assert ours["train_seconds"] > 0 and theirs["train_seconds"] > 0


def test_momentum_nesterov_and_weight_decay_carry_over():
    config = TrainConfig(
        epochs=1, **(PLAIN_SGD | dict(momentum=0.9, nesterov=True, weight_decay=5e-3))
    )
    result = compare_frameworks(config, steps=10, data=learnable_data(), log=None)
    np.testing.assert_allclose(result.loss_curve("scratchcnn"), result.loss_curve("torch"), 1e-3)


def test_float64_runs_agree_to_rounding():
    config = TrainConfig(epochs=1, dtype="float64", **PLAIN_SGD)
    result = compare_frameworks(config, steps=10, data=learnable_data(), log=None)
    np.testing.assert_allclose(result.loss_curve("scratchcnn"), result.loss_curve("torch"), 1e-10)
    assert result.epochs[0]["torch"]["val_loss"] == pytest.approx(
        result.epochs[0]["scratchcnn"]["val_loss"], rel=1e-10
    )


def test_mixed_precision_runs_both_sides_in_their_mixed_precision(result):
    """scratchcnn keeps float16 copies for backward, PyTorch runs under bfloat16 autocast: both
    learn; scratchcnn's forward pass is still float32 (the first loss is the float32 run's) and
    its first steps stay close to the float32 run's until the trajectories part (plain SGD at
    this learning rate is chaotic: the float32 run's own loss jumps to 9 at step 2)."""
    config = TrainConfig(epochs=10, **PLAIN_SGD)
    mixed = compare_frameworks(config, steps=40, data=learnable_data(), log=None, precision="mixed")
    assert mixed.config["precision"] == "mixed"
    ours = mixed.loss_curve("scratchcnn")
    theirs = mixed.loss_curve("torch")
    full = result.loss_curve("scratchcnn")[:40]
    assert ours[-5:].mean() < ours[:5].mean() and theirs[-5:].mean() < theirs[:5].mean()
    assert ours[0] == full[0]
    np.testing.assert_allclose(ours[:4], full[:4], rtol=1e-2)  # float16 copies: close
    assert np.abs(theirs - mixed.loss_curve("scratchcnn")).max() > 1e-6  # bfloat16 differs
    with pytest.raises(ValueError, match="precision must be 'float32' or 'mixed'"):
        compare_frameworks(config, steps=1, data=learnable_data(), log=None, precision="half")


def test_only_sgd_is_compared():
    with pytest.raises(ValueError, match="SGD only, got optimizer 'adam'"):
        compare_frameworks(TrainConfig(optimizer="adam", momentum=0.0, nesterov=False), steps=1)


# --- the report --------------------------------------------------------------------------------
def test_report_writes_figure_table_and_curves(result, tmp_path):
    paths = write_report(result, tmp_path, prefix="compare_test")
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = paths["table"].read_text()
    assert "| epoch 10: train seconds |" in table
    assert "final validation accuracy" in table and "lines of code: model" in table
    curves = json.loads(paths["curves"].read_text())
    assert len(curves["steps"]) == 100 and len(curves["epochs"]) == 10
    assert table == markdown_table(result)


def test_count_code_lines_skips_blanks_comments_and_docstrings():
    source = '''
def f(x):
    """A docstring
    over two lines."""
    # a comment
    y = (x +
         1)  # trailing comment

    return y
'''
    assert count_code_lines(source) == 4  # def, the two lines of y = ..., return


def test_lines_of_code_cover_the_engine_modules_used():
    loc = lines_of_code(seed_cnn(image_size=8))
    ours = loc["scratchcnn"]
    for module in ("layers.conv", "layers.pool", "layers.linear", "functional.conv", "losses"):
        assert f"engine:scratchcnn.{module}" in ours
    assert "engine:scratchcnn.layers.norm" not in ours  # seed_cnn has no batch norm
    assert ours["engine"] > 10 * loc["torch"]["model"] > 0


# --- the command line ------------------------------------------------------------------------
def test_cli_compare_on_an_image_folder(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for split, count in (("train", 12), ("test", 2)):
        for label, name in enumerate(("cat", "dog")):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 100, (8, 8, 3)) + 100 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    code = main(
        [
            "compare",
            "--data",
            str(tmp_path / "images"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--val-size",
            "4",
            "--batch-size",
            "5",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--prefix",
            "compare_folder",
        ]
    )
    assert code == 0
    assert (out / "compare_folder.png").is_file() and (out / "compare_folder.json").is_file()
    assert "| epoch 2: train seconds |" in capsys.readouterr().out


def test_cli_compare_with_the_default_recipe_and_one_epoch(tmp_path, capsys):
    """The run setup is train's: a cosine warm-up longer than the run is capped, as in train."""
    from helpers_data import make_image_folder

    images = make_image_folder(tmp_path / "images", train_per_class=8, test_per_class=2)
    out = tmp_path / "out"
    args = ["compare", "--recipe", "default", "--epochs", "1", "--data", str(images)]
    args += ["--cache-dir", str(tmp_path / "cache"), "--val-size", "6", "--batch-size", "6"]
    assert main([*args, "--out", str(out)]) == 0
    curves = json.loads((out / "compare.json").read_text())
    assert curves["config"]["epochs"] == 1 and curves["config"]["nesterov"] is True
    assert len(curves["steps"]) == 3  # 18 training images, batches of 6
