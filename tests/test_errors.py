"""Bad input and faults: every one ends in a clear error, and nothing on disk is lost or left.

Each case checks three things: the exit status (1 for bad input, 2 for a usage error, 130 for
Ctrl-C), that the message names the problem (the file, the field or the setting, and what was
expected), and that no file that existed before was changed and no new file was left behind
(``snapshot`` of every folder involved, before and after).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers_data import make_image_folder
from helpers_training import (
    assert_same_weights,
    default_sigint,
    final_weights,
    snapshot,
    tiny_config,
    without_timing,
)
from PIL import Image

import scratchcnn as sc
from scratchcnn.cli import main
from scratchcnn.errors import CheckpointError, ConfigError, DataError, ScratchCNNError
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.serialization import (
    load_arrays,
    load_checkpoint,
    load_training_checkpoint,
    save_arrays,
)
from scratchcnn.training import TrainConfig, TrainingDiverged, train

REPO = Path(__file__).resolve().parents[1]
COMMITTED_MODEL = REPO / "models" / "seed_cnn_cifar10.safetensors"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny dataset, its cache, and a one-epoch run: ``(root, images, cache, run)``."""
    root = tmp_path_factory.mktemp("faults")
    images = make_image_folder(root / "images", train_per_class=30, test_per_class=4)
    config = tiny_config(images, root / "runs", epochs=1, cache_dir=str(root / "cache"))
    train(config)
    return root, images, root / "cache", root / "runs" / "run"


def cli(capsys, *args: str) -> tuple[int, str]:
    """Run ``scratchcnn ARGS`` in this process: the exit status and what went to stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    return code, capsys.readouterr().err


def assert_error(code: int, err: str, pattern: str, status: int = 1) -> None:
    """Exit ``status``, no traceback, and a last line (after any progress bars) that is the
    one-line error matching ``pattern``."""
    assert code == status, err
    assert "Traceback" not in err
    last = err.rstrip("\n").split("\n")[-1]
    if status == 1:
        assert last.startswith("scratchcnn: error: "), err
    assert re.search(pattern, last), f"{pattern!r} not in {last!r}"


def tampered(good: Path, out: Path, change) -> Path:
    """Copy checkpoint ``good`` to ``out`` after ``change(meta, arrays)`` edits its contents
    (written with the raw writer, so the loader's checks are what is tested)."""
    arrays, meta = load_arrays(good)
    change(meta, arrays)
    save_arrays(out, arrays, meta)
    return out


def _set(path: str, value):
    """A change that sets the metadata field at a dotted ``path`` (``architecture.layers.0``)."""

    def change(meta, arrays):
        *parents, last = path.split(".")
        target = meta
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _delete(field: str):
    return lambda meta, arrays: meta.pop(field)


def _arrays(edit):
    return lambda meta, arrays: edit(arrays)


# --- checkpoints: tampered, truncated, incomplete ---------------------------------------------
CHECKPOINT_FAULTS = {
    "missing tensor": (_arrays(lambda a: a.pop("model.0.bias")), r"missing \['0\.bias'\]"),
    "tensor of another shape": (
        _arrays(lambda a: a.update({"model.0.weight": np.zeros((2, 2), np.float32)})),
        r"tensor 'model\.0\.weight' is float32 \(2, 2\), the architecture needs float32",
    ),
    "tensor of another dtype": (
        _arrays(lambda a: a.update({"model.0.bias": a["model.0.bias"].astype(np.float64)})),
        r"tensor 'model\.0\.bias' is float64",
    ),
    "NaN weights": (
        _arrays(lambda a: a["model.0.bias"].__setitem__(0, np.nan)),
        r"'model\.0\.bias' holds NaN",
    ),
    "tampered dtype": (_set("dtype", "int32"), r"field 'dtype' must be one of \['float32'"),
    "bad layer argument": (
        _set("architecture.layers.0.stride", "wide"),
        r"architecture: layers\[0\] \(Conv2d\): argument 'stride' must be int \| tuple\[int, "
        r"int\], got \"wide\" \(string\)",
    ),
    "unexpected layer argument": (
        _set("architecture.layers.3.foo", 1),
        r"architecture: layers\[3\] \(Conv2d\): unknown argument 'foo'; valid arguments: 'in_ch",
    ),
    "unknown layer type": (
        _set("architecture.layers.1", {"type": "Evil"}),
        r"architecture: layers\[1\]: unknown layer type 'Evil'; valid types: ",
    ),
    "format version from the future": (
        _set("format_version", 99),
        r"format version 99.*reads versions 1 to 2",
    ),
    "format version missing": (_delete("format_version"), r"'format_version' must be an integer"),
    "kind unknown": (_set("kind", "pickle"), r"'kind' must be one of \['model', 'checkpoint'\]"),
    "architecture missing": (_delete("architecture"), r"field 'architecture' is missing"),
    "class names not a list": (_set("class_names", "abc"), r"'class_names' must be a list"),
    "class names of another count": (
        _set("class_names", ["a", "b"]),
        r"2 class names but the model has 3 outputs",
    ),
    "normalisation of another channel count": (
        _set("normalization", {"mean": [0.5], "std": [0.2]}),
        r"'normalization' has 1 channels but 'image_shape' \[8, 8, 3\] has 3",
    ),
    "normalisation with zero std": (
        _set("normalization", {"mean": [0.5] * 3, "std": [0.2, 0.0, 0.2]}),
        r"'normalization' must be .*std > 0",
    ),
    "image shape the model cannot take": (
        _set("image_shape", [12, 12, 3]),
        r"cannot take images of image_shape \[12, 12, 3\]",
    ),
}


@pytest.mark.parametrize("fault", list(CHECKPOINT_FAULTS))
def test_evaluate_refuses_a_tampered_checkpoint(setup, tmp_path, capsys, fault):
    root, images, cache, run = setup
    change, pattern = CHECKPOINT_FAULTS[fault]
    bad = tampered(run / "best.safetensors", tmp_path / "bad.safetensors", change)
    before = snapshot(tmp_path, root)
    code, err = cli(capsys, "evaluate", "--checkpoint", bad, "--data", images, "--cache-dir", cache)
    assert_error(code, err, pattern)
    assert str(bad) in err  # the message names the file
    assert snapshot(tmp_path, root) == before


def _raw_safetensors(path: Path, metadata: dict[str, str]) -> Path:
    from safetensors.numpy import save

    path.write_bytes(save({"model.0.weight": np.zeros((1,), np.float32)}, metadata=metadata))
    return path


RAW_FAULTS = {
    "truncated file": (
        lambda p, good: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
        r"truncated",
    ),
    "header cut short": (lambda p, good: p.write_bytes(b"\x05\x00"), r"too short for a header"),
    "garbage header": (
        lambda p, good: p.write_bytes(b"\x0a\x00\x00\x00\x00\x00\x00\x00{not json}"),
        r"not a valid safetensors file",
    ),
    "invalid metadata JSON": (
        lambda p, good: _raw_safetensors(p, {"scratchcnn": "{not json"}),
        r"the 'scratchcnn' metadata entry is not valid JSON",
    ),
    "not a scratchcnn file": (
        lambda p, good: _raw_safetensors(p, {"other": "x"}),
        r"has no 'scratchcnn' metadata entry",
    ),
    "metadata not an object": (
        lambda p, good: _raw_safetensors(p, {"scratchcnn": "[1, 2]"}),
        r"metadata must be a JSON object, got list",
    ),
    "a folder instead of a file": (lambda p, good: p.mkdir(), r"is a folder"),
    "no such file": (lambda p, good: None, r"no checkpoint at"),
}


@pytest.mark.parametrize("fault", list(RAW_FAULTS))
def test_predict_refuses_a_damaged_file(setup, tmp_path, capsys, fault):
    root, images, cache, run = setup
    write, pattern = RAW_FAULTS[fault]
    bad = tmp_path / "bad.safetensors"
    write(bad, run / "best.safetensors")
    image = next((images / "test" / "red").glob("*.png"))
    before = snapshot(tmp_path, root)
    code, err = cli(capsys, "predict", "--checkpoint", bad, image)
    assert_error(code, err, pattern)
    assert str(bad) in err
    assert snapshot(tmp_path, root) == before


def test_save_model_as_the_readme_shows_then_predict_asks_for_what_is_missing(
    setup, tmp_path, capsys
):
    root, images, cache, run = setup
    model, metadata = sc.load_model(run / "best.safetensors")
    path = tmp_path / "my_model.safetensors"
    sc.save_model(model, path, class_names=metadata["class_names"])  # the README's call
    image = next((images / "test" / "red").glob("*.png"))
    before = snapshot(tmp_path, root)
    code, err = cli(capsys, "predict", "--checkpoint", path, image)
    assert_error(
        code,
        err,
        r"my_model\.safetensors does not record its input image size \(pass --image-size H W\)"
        r" or normalisation statistics \(pass --normalization MEAN/STD",
    )
    assert snapshot(tmp_path, root) == before
    normalization = "/".join(
        ",".join(str(v) for v in metadata["normalization"][key]) for key in ("mean", "std")
    )
    code, err = cli(
        capsys, "predict", "--checkpoint", path, "--normalization", normalization, image
    )
    assert_error(code, err, r"does not record its input image size \(pass --image-size H W\);")
    code = main(
        ["predict", "--checkpoint", str(path), "--normalization", normalization]
        + ["--image-size", "8", "8", "--json", str(image)]
    )
    assert code == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["predictions"][0]["class"] == "red"
    # evaluate needs the normalisation too, and can fit it on the data's training images
    args = ["evaluate", "--checkpoint", path, "--data", images, "--cache-dir", cache]
    code, err = cli(capsys, *args)
    assert_error(code, err, r"does not record normalisation statistics \(pass --normalization")
    assert main([str(a) for a in args] + ["--normalization", "fit", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 12


def test_save_model_refuses_bad_metadata_before_writing(tmp_path):
    model = sc.seed_cnn(num_classes=3, image_size=8)
    with pytest.raises(ValueError, match=r"save_model writes \['dtype'\] itself"):
        sc.save_model(model, tmp_path / "a.safetensors", dtype="float16")
    with pytest.raises(CheckpointError, match=r"'normalization' must be"):
        sc.save_model(model, tmp_path / "b.safetensors", normalization={"mean": [0.5]})
    with pytest.raises(CheckpointError, match=r"'image_shape' must be \[height, width"):
        sc.save_model(model, tmp_path / "c.safetensors", image_shape=(8, 8))
    assert list(tmp_path.iterdir()) == []


def test_committed_model_migrates_from_version_1_and_finds_its_data_from_anywhere(
    tmp_path, monkeypatch
):
    raw = COMMITTED_MODEL.read_bytes()
    # The committed model records ../shared/datasets/cifar10-jpeg.zip, relative to the
    # repository it was trained in. Rebuild that layout elsewhere and work from a third folder.
    copy = tmp_path / "repo" / "models" / COMMITTED_MODEL.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(raw)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = load_checkpoint(copy)
    assert loaded.metadata["kind"] == "model" and loaded.metadata["format_version"] == 2
    assert loaded.image_shape == (32, 32, 3) and len(loaded.class_names) == 10
    recorded = loaded.metadata["config"]["data"]
    assert recorded == "../shared/datasets/cifar10-jpeg.zip"
    with pytest.raises(DataError, match=r"is not at any of: .*elsewhere.*; pass --data"):
        loaded.data()
    data = tmp_path / "shared" / "datasets" / "cifar10-jpeg.zip"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"")
    assert loaded.data() == str(data)
    assert COMMITTED_MODEL.read_bytes() == raw == copy.read_bytes()  # read, never rewritten


# --- resume -----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["best.safetensors", "committed model"])
def test_resume_refuses_a_model_file_before_writing_anything(setup, capsys, which):
    root, images, cache, run = setup
    path = run / which if which.endswith(".safetensors") else COMMITTED_MODEL
    before = snapshot(path.parent, root)
    code, err = cli(capsys, "train", "--resume", path)
    assert_error(code, err, r"is a model file, not a resumable training checkpoint")
    assert snapshot(path.parent, root) == before  # no config.json written beside it


def test_resume_refuses_a_folder_without_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = cli(capsys, "train", "--resume", tmp_path / "empty")
    assert_error(code, err, r"no last\.safetensors in .*empty")
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]
    assert list((tmp_path / "empty").iterdir()) == []


def test_resume_refuses_a_tampered_loop_state(setup, tmp_path, capsys):
    root, images, cache, run = setup
    folder = tmp_path / "run"
    folder.mkdir()
    tampered(run / "last.safetensors", folder / "last.safetensors", _set("loop.surprise", 1))
    (folder / ".last.safetensors.abc.tmp").write_bytes(b"a save cut short")  # kept: no resume
    before = snapshot(tmp_path, root)
    code, err = cli(capsys, "train", "--resume", folder)
    assert_error(code, err, r"metadata field 'loop' has unknown keys \['surprise'\]")
    assert snapshot(tmp_path, root) == before


def test_resume_refuses_a_checkpoint_whose_data_changed(setup, tmp_path):
    root, images, cache, run = setup
    folder = tmp_path / "run"
    folder.mkdir()
    tampered(run / "last.safetensors", folder / "last.safetensors", _set("train_size", 7))
    before = snapshot(tmp_path, root)
    with pytest.raises(CheckpointError, match=r"trained with train_size 7, but the data now"):
        train(None, resume=folder)
    assert snapshot(tmp_path, root) == before


def test_load_training_checkpoint_refuses_model_files(setup):
    root, images, cache, run = setup
    with pytest.raises(CheckpointError, match="not a resumable training checkpoint"):
        load_training_checkpoint(run / "best.safetensors")
    assert load_training_checkpoint(run / "last.safetensors").metadata["kind"] == "checkpoint"


# --- settings: refused before any data is read or any folder made ------------------------------
SETTING_FAULTS = {
    "unknown model": (
        ["--model", "resnet9000"],
        r"unknown model 'resnet9000'; valid models: seed_cnn",
    ),
    "negative crop padding": (["--crop-padding", "-3"], r"crop_padding must be >= 0, got -3"),
    "negative mixup": (["--mixup", "-1"], r"mixup must be >= 0, got -1"),
    "zero early stopping": (["--early-stopping", "0"], r"early_stopping must be >= 1, got 0"),
    "rotation past 180": (["--rotation", "270"], r"rotation must be in \[0, 180\]"),
    "early stopping without validation": (
        ["--val-size", "0", "--early-stopping", "2"],
        r"early_stopping needs a validation split, but val_size is 0",
    ),
    "monitor without validation": (
        ["--val-size", "0", "--monitor", "val_loss"],
        r"monitor='val_loss' needs a validation split",
    ),
    "momentum for adam": (
        ["--optimizer", "adam", "--momentum", "0.9"],
        r"momentum applies to \['sgd', 'rmsprop'\], not 'adam'",
    ),
    "betas for sgd": (["--betas", "0.9", "0.99"], r"betas apply to \['adam', 'adamw'\], not 'sgd'"),
    "nesterov without momentum": (
        ["--momentum", "0", "--nesterov"],
        r"nesterov needs momentum > 0",
    ),
    "warm-up for the step schedule": (
        ["--schedule", "step", "--warmup-epochs", "2"],
        r"warmup_epochs applies to the 'cosine' schedule, not 'step'",
    ),
    "unknown schedule": (["--schedule", "linear"], r"unknown schedule 'linear'; valid names"),
    "unknown optimizer": (["--optimizer", "lbfgs"], r"unknown optimizer 'lbfgs'; valid names"),
    "folder name with a slash": (["--name", "a/b"], r"name must be a plain folder name"),
    "infinite learning rate": (["--lr", "inf"], r"lr must be a finite number, got inf"),
}


@pytest.mark.parametrize("fault", list(SETTING_FAULTS))
def test_train_refuses_bad_settings_before_reading_data(setup, tmp_path, capsys, fault):
    root, images, cache, run = setup
    flags, pattern = SETTING_FAULTS[fault]
    args = ["train", "--data", images, "--cache-dir", tmp_path / "cache"]
    args += ["--run-dir", tmp_path / "runs", "--no-progress", *flags]
    code, err = cli(capsys, *args)
    assert_error(code, err, pattern)
    assert list(tmp_path.iterdir()) == []  # no cache (data never read), no run folder


TOML_FAULTS = {
    "wrong type": ('epochs = "three"\n', r"run\.toml: epochs must be an integer, got 'three'"),
    "float for an integer": ("batch_size = 12.5\n", r"run\.toml: batch_size must be an integer"),
    "invalid TOML": ("epochs = [\n", r"run\.toml is not valid TOML"),
    "unknown key": ("epoch = 3\n", r"run\.toml.*unknown .*keys \['epoch'\]"),
}


@pytest.mark.parametrize("fault", list(TOML_FAULTS))
def test_train_refuses_a_bad_config_file(tmp_path, capsys, fault):
    text, pattern = TOML_FAULTS[fault]
    (tmp_path / "run.toml").write_text(text)
    before = snapshot(tmp_path)
    code, err = cli(capsys, "train", "--config", tmp_path / "run.toml", "--run-dir", tmp_path)
    assert_error(code, err, pattern)
    assert snapshot(tmp_path) == before


def test_train_config_type_errors_from_python():
    with pytest.raises(ConfigError, match=r"epochs must be an integer, got 'three' \(str\)"):
        TrainConfig(epochs="three")
    with pytest.raises(ConfigError, match=r"flip must be true or false, got 1 \(int\)"):
        TrainConfig(flip=1)
    assert isinstance(ConfigError("x"), ValueError)  # code that caught ValueError still works


def test_train_refuses_an_existing_run(setup, capsys):
    root, images, cache, run = setup
    before = snapshot(root)
    args = ["train", "--data", images, "--cache-dir", cache, "--run-dir", run.parent]
    code, err = cli(capsys, *args, "--name", run.name, "--no-progress")
    assert_error(code, err, r"already holds a run; resume it with --resume")
    assert snapshot(root) == before


# --- data the trainer cannot use: refused, and the run folder is not left behind ----------------
def test_one_class_dataset_is_refused(tmp_path, capsys):
    for split in ("train", "test"):
        (tmp_path / "images" / split / "cat").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(
                tmp_path / "images" / split / "cat" / f"{i}.png"
            )
    args = ["train", "--data", tmp_path / "images", "--cache-dir", tmp_path / "cache"]
    code, err = cli(capsys, *args, "--run-dir", tmp_path / "runs", "--no-progress")
    assert_error(
        code, err, r"needs at least two classes, but the training images hold 1: \['cat'\]"
    )
    assert not (tmp_path / "runs").exists()


def test_validation_split_larger_than_the_data(setup, tmp_path, capsys):
    root, images, cache, run = setup
    args = ["train", "--data", images, "--cache-dir", cache, "--val-size", "500"]
    code, err = cli(capsys, *args, "--run-dir", tmp_path / "runs", "--no-progress")
    assert_error(code, err, r"val_size 500 leaves no training images: .* has 90 training images")
    assert not (tmp_path / "runs").exists()


def test_image_size_the_model_cannot_take_suggests_image_size(tmp_path, capsys):
    images = make_image_folder(tmp_path / "images", train_per_class=4, test_per_class=2, size=10)
    args = ["train", "--data", images, "--cache-dir", tmp_path / "cache", "--val-size", "3"]
    code, err = cli(capsys, *args, "--run-dir", tmp_path / "runs", "--no-progress")
    assert_error(code, err, r"cannot take the data's 10x10x3 images.*--image-size")
    assert not (tmp_path / "runs").exists()
    # and --image-size is the way out
    more = ["--run-dir", tmp_path / "runs", "--no-progress", "--epochs", "1", "--image-size", "8"]
    code = main([str(a) for a in args + more + ["--batch-size", "4"]])
    assert code == 0
    assert (
        json.loads((tmp_path / "runs").glob("*/config.json").__next__().read_text())["image_size"]
        == 8
    )


# --- prediction and evaluation input ----------------------------------------------------------
def test_predict_refuses_a_decompression_bomb(setup, tmp_path, capsys, monkeypatch):
    root, images, cache, run = setup
    bomb = tmp_path / "bomb.png"
    Image.new("L", (400, 400)).save(bomb)  # small on disk, "too many pixels" for the limit below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    before = snapshot(tmp_path, root)
    code, err = cli(capsys, "predict", "--checkpoint", run / "best.safetensors", bomb)
    assert_error(code, err, r"cannot read image .*bomb\.png: refused as a decompression bomb")
    assert snapshot(tmp_path, root) == before


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: p.write_bytes(b"not an image"), r"cannot read image .*input"),
        (lambda p: p.mkdir(), r"input: no image files"),
        (lambda p: None, r"input: no such image file or folder"),
    ],
    ids=["not an image", "empty folder", "missing"],
)
def test_predict_refuses_unusable_inputs(setup, tmp_path, capsys, make, pattern):
    root, images, cache, run = setup
    make(tmp_path / "input")
    before = snapshot(tmp_path, root)
    code, err = cli(capsys, "predict", "--checkpoint", run / "best.safetensors", tmp_path / "input")
    assert_error(code, err, pattern)
    assert snapshot(tmp_path, root) == before


@pytest.mark.parametrize(
    "flags",
    [
        ["evaluate", "--batch-size", "0"],
        ["evaluate", "--batch-size", "-1"],
        ["predict", "--top-k", "0", "x.png"],
    ],
    ids=["batch size 0", "batch size -1", "top-k 0"],
)
def test_non_positive_counts_are_usage_errors(capsys, flags):
    code, err = cli(capsys, *flags)
    assert_error(code, err, r"must be >= 1, got -?\d", status=2)


def test_evaluate_on_images_of_another_size(setup, tmp_path, capsys):
    root, images, cache, run = setup
    other = make_image_folder(tmp_path / "big", train_per_class=2, test_per_class=2, size=16)
    args = ["evaluate", "--checkpoint", run / "best.safetensors", "--data", other]
    code, err = cli(capsys, *args, "--cache-dir", tmp_path / "cache")
    assert_error(code, err, r"has 16x16x3 images .* takes 8x8x3")


def test_evaluate_on_data_with_other_classes(setup, tmp_path, capsys):
    root, images, cache, run = setup
    other = tmp_path / "other"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (other / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(other / split / name / "0.png")
    args = ["evaluate", "--checkpoint", run / "best.safetensors", "--data", other]
    code, err = cli(capsys, *args, "--cache-dir", tmp_path / "cache")
    assert_error(code, err, r"the data's classes \['cat', 'dog'\] differ from the model's")


class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _python_archive(path: Path, poison) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                     "test_batch", "batches.meta"):  # fmt: skip
            data = pickle.dumps({b"data": poison, b"labels": [0]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (
            lambda p: _python_archive(p / "evil.tar.gz", _Evil(p / "pwned")),
            r"evil\.tar\.gz:.*refused to unpickle global (posix|os)\.system",
        ),
        (
            lambda p: _write(p / "images.zip", b"PK\x03\x04 truncated"),
            r"images\.zip: not a readable zip file",
        ),
        (
            lambda p: _write(p / "cifar-10-binary.tar.gz", b"\x1f\x8b tampered"),
            r"md5 mismatch for .*cifar-10-binary\.tar\.gz",
        ),
        (lambda p: p / "nowhere", r"no dataset '.*nowhere'"),
    ],
    ids=["malicious pickle", "truncated zip", "tampered official archive", "missing data"],
)
def test_evaluate_refuses_bad_archives(setup, tmp_path, capsys, make, pattern):
    root, images, cache, run = setup
    data = make(tmp_path)
    before = snapshot(tmp_path, root)
    args = ["evaluate", "--checkpoint", run / "best.safetensors", "--data", data]
    code, err = cli(capsys, *args, "--cache-dir", tmp_path / "cache")
    assert_error(code, err, pattern)
    assert not (tmp_path / "pwned").exists()
    after = snapshot(tmp_path, root)
    assert after == before  # nothing cached from a bad archive


# --- outputs that cannot be written: refused before the work -----------------------------------
def _blocked(tmp_path: Path) -> Path:
    """A path whose parent is a regular file: nothing can be written there."""
    (tmp_path / "file").write_text("I am a file")
    return tmp_path / "file" / "out"


@pytest.mark.parametrize(
    "command",
    [
        lambda run, out: [
            "visualize",
            "filters",
            "--checkpoint",
            run / "best.safetensors",
            "--out",
            out / "f.png",
        ],
        lambda run, out: ["report", run, "--out", out / "r.html"],
        lambda run, out: [
            "export",
            "--checkpoint",
            run / "best.safetensors",
            "--onnx",
            out / "m.onnx",
        ],
        lambda run, out: ["train", "--data", run, "--run-dir", out],
    ],  # fmt: skip
    ids=["visualize --out", "report --out", "export --onnx", "train --run-dir"],
)
def test_unwritable_outputs_fail_before_any_work(setup, tmp_path, capsys, command):
    root, images, cache, run = setup
    out = _blocked(tmp_path)
    before = snapshot(tmp_path, root)
    code, err = cli(capsys, *command(run, out))
    assert_error(code, err, r"cannot write there: .*file is a file, not a folder")
    assert snapshot(tmp_path, root) == before


# --- divergence -------------------------------------------------------------------------------
def _poison_loss(monkeypatch, after_calls: int) -> None:
    original = CrossEntropyLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, target):
        calls["n"] += 1
        loss = original(self, logits, target)
        return float("nan") if calls["n"] > after_calls else loss

    monkeypatch.setattr(CrossEntropyLoss, "forward", poisoned)


def test_divergence_in_the_first_epoch_says_nothing_was_kept(setup, tmp_path, monkeypatch):
    root, images, cache, run = setup
    _poison_loss(monkeypatch, after_calls=2)
    config = tiny_config(images, tmp_path / "runs", cache_dir=str(cache))
    before = snapshot(tmp_path, root)
    with pytest.raises(TrainingDiverged) as info:
        train(config)
    message = str(info.value)
    assert "the loss became nan at epoch 1, batch 3" in message
    assert "had saved no checkpoint yet, so its run folder" in message
    assert "last good checkpoint" not in message
    assert snapshot(tmp_path, root) == before
    assert not (tmp_path / "runs").exists()


def test_a_failed_run_in_an_existing_folder_removes_only_its_own_files(
    setup, tmp_path, monkeypatch
):
    root, images, cache, run = setup
    folder = tmp_path / "runs" / "run"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("the user's own file")
    config = tiny_config(images, tmp_path / "runs", cache_dir=str(cache), val_size=30,
                         batch_size=16, epochs=2)  # fmt: skip
    # The disk fills after the first epoch's metrics and best model, at its checkpoint.
    monkeypatch.setattr(
        "scratchcnn.training.trainer.save_training_checkpoint",
        lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")),
    )
    before = snapshot(tmp_path, root)
    with pytest.raises(OSError, match=r"No space left on device while saving .*last\.safetensors"):
        train(config)
    assert snapshot(tmp_path, root) == before  # best.safetensors, metrics, config.json: gone


def test_divergence_in_a_later_epoch_keeps_the_last_checkpoint(setup, tmp_path, monkeypatch):
    root, images, cache, run = setup
    steps_per_epoch = -(-(90 - 30) // 16)
    _poison_loss(monkeypatch, after_calls=steps_per_epoch + 1)
    config = tiny_config(images, tmp_path / "runs", cache_dir=str(cache))
    with pytest.raises(TrainingDiverged, match=r"kept its last good checkpoint, .*last\.safetensors"
                       r" \(end of epoch 1\)"):  # fmt: skip
        train(config)
    loaded = load_training_checkpoint(tmp_path / "runs" / "run" / "last.safetensors")
    assert loaded.metadata["epoch"] == 1
    model, _ = sc.load_model(tmp_path / "runs" / "run" / "best.safetensors")
    assert all(np.isfinite(p.data).all() for p in model.parameters())


def test_non_finite_gradient_with_a_finite_loss_stops_the_run(setup, tmp_path, monkeypatch):
    root, images, cache, run = setup
    original = sc.Linear.backward

    def poisoned(self, grad_out):
        grad_in = original(self, grad_out)
        self.weight.grad[0, 0] = np.inf
        return grad_in

    monkeypatch.setattr(sc.Linear, "backward", poisoned)
    config = tiny_config(images, tmp_path / "runs", cache_dir=str(cache))
    with pytest.raises(TrainingDiverged, match=r"the gradient of '\d+\.weight' became inf at "
                       r"epoch 1, batch 1"):  # fmt: skip
        train(config)
    assert not (tmp_path / "runs").exists()


def test_divergence_through_the_cli_is_one_line(setup, tmp_path, capsys, monkeypatch):
    root, images, cache, run = setup
    _poison_loss(monkeypatch, after_calls=0)
    args = ["train", "--data", images, "--cache-dir", cache, "--val-size", "30"]
    code, err = cli(capsys, *args, "--run-dir", tmp_path / "runs", "--no-progress")
    assert_error(code, err, r"the loss became nan at epoch 1, batch 1 .*--lr")
    assert err.count("\n") == 1


# --- processes killed, interrupted, or out of disk ---------------------------------------------
def _train_args(images: Path, cache: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "train", "--data", str(images), "--cache-dir", str(cache), "--val-size", "30",
        "--epochs", "2", "--batch-size", "16", "--lr", "0.02", "--run-dir", str(run_dir),
        "--name", "run", "--no-progress", *extra,
    ]  # fmt: skip


def test_full_disk_while_saving_names_the_file_and_leaves_nothing(setup, tmp_path):
    root, images, cache, run = setup
    # The model file (~200 kB) fits under the limit, the checkpoint with its momentum does not.
    script = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        from scratchcnn.cli import main
        sys.exit(main({_train_args(images, cache, tmp_path / "runs")!r}))
        """
    )
    before = snapshot(tmp_path, root)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "File too large while saving" in done.stderr and "last.safetensors" in done.stderr
    assert "no checkpoint was saved" in done.stderr
    assert snapshot(tmp_path, root) == before
    assert not (tmp_path / "runs").exists()


def test_kill_9_during_a_save_keeps_the_previous_checkpoint_and_resumes_exactly(setup, tmp_path):
    root, images, cache, run = setup
    reference = train(tiny_config(images, tmp_path / "ref", epochs=2, cache_dir=str(cache)))
    # A slow disk: the second save of last.safetensors stalls between writing its temporary
    # file and renaming it into place; that is when the process is killed.
    script = textwrap.dedent(
        f"""
        import os, sys, time
        rename = os.replace
        def slow_replace(src, dst, *args, **kwargs):
            if str(dst).endswith("last.safetensors") and os.path.exists(dst):
                print("SAVING", flush=True)
                time.sleep(120)
            return rename(src, dst, *args, **kwargs)
        os.replace = slow_replace
        from scratchcnn.cli import main
        sys.exit(main({_train_args(images, cache, tmp_path / "runs")!r}))
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("SAVING"):
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    folder = tmp_path / "runs" / "run"
    stale = list(folder.glob(".last.safetensors.*.tmp"))
    assert len(stale) == 1  # the interrupted save
    assert load_training_checkpoint(folder / "last.safetensors").metadata["epoch"] == 1

    resumed = subprocess.run(
        [sys.executable, "-m", "scratchcnn", "train", "--resume", str(folder)],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not stale[0].exists()  # the resumed run removed the leftover
    assert_same_weights(final_weights(folder), final_weights(tmp_path / "ref" / "run"))
    history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert without_timing(history) == without_timing(reference.history)


def test_ctrl_c_while_the_data_loads_exits_130_and_leaves_nothing(tmp_path):
    images = make_image_folder(tmp_path / "images", train_per_class=700, test_per_class=2)
    args = [sys.executable, "-m", "scratchcnn", *_train_args(images, tmp_path / "cache",
                                                              tmp_path / "runs")]  # fmt: skip
    args.remove("--no-progress")  # the progress bar says when decoding has started
    before = snapshot(tmp_path)
    process = subprocess.Popen(args, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    seen = b""
    while b"decoding" not in seen:
        chunk = process.stderr.read1(256)
        assert chunk, seen.decode()
        seen += chunk
    process.send_signal(signal.SIGINT)
    seen += process.communicate(timeout=60)[1]
    assert process.returncode == 130, seen.decode()
    assert b"scratchcnn: interrupted" in seen and b"Traceback" not in seen
    after = snapshot(tmp_path)
    assert after == before  # no run folder, no half-written cache entry
    assert not (tmp_path / "runs").exists()


def test_debug_flag_shows_the_traceback(capsys):
    with pytest.raises(CheckpointError):
        main(["--debug", "evaluate", "--checkpoint", "/nonexistent/model.safetensors"])
    assert issubclass(CheckpointError, ScratchCNNError)
    cmd = [sys.executable, "-m", "scratchcnn", "evaluate", "--checkpoint", "/nope.safetensors"]
    done = subprocess.run([*cmd, "--debug"], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" in done.stderr
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == "scratchcnn: error: no checkpoint at /nope.safetensors\n"
