"""The seed CNN's size, determinism, summary and a tiny overfit; architecture configs (round trip
and the errors a hand-written one gets); transfer learning from a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import (
    ModelConfigError,
    build_model,
    check_model_fits,
    load_matching,
    load_model_config,
    model_config,
    seed_cnn,
)
from scratchcnn.serialization import load_checkpoint, load_pretrained, save_model

SEED_CNN_PARAMETERS = 545_098


def test_seed_cnn_parameter_count() -> None:
    model = seed_cnn(rng=np.random.default_rng(0))
    # conv 3->32 (896) + conv 32->64 (18,496) + linear 4096->128 (524,416) + 128->10 (1,290)
    assert 3 * 32 * 9 + 32 + 32 * 64 * 9 + 64 + 4096 * 128 + 128 + 128 * 10 + 10 == 545_098
    assert model.num_parameters() == SEED_CNN_PARAMETERS
    assert sum(p.size for p in model.parameters()) == SEED_CNN_PARAMETERS


def test_seed_cnn_output_shape_and_dtype() -> None:
    model = seed_cnn(num_classes=7, rng=np.random.default_rng(0))
    x = np.zeros((3, 3, 32, 32), dtype=np.float32)
    out = model.forward(x)
    assert out.shape == (3, 7)
    assert out.dtype == np.float32
    assert model.output_shape(x.shape) == (3, 7)
    assert seed_cnn(dtype=np.float64).forward(x.astype(np.float64)).dtype == np.float64


def test_same_seed_same_weights_different_seed_different() -> None:
    a = seed_cnn(rng=np.random.default_rng(42)).state_dict()
    b = seed_cnn(rng=np.random.default_rng(42)).state_dict()
    c = seed_cnn(rng=np.random.default_rng(43)).state_dict()
    assert list(a) == list(b) == list(c)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    weights = [name for name in a if name.endswith("weight")]
    assert all(not np.array_equal(a[name], c[name]) for name in weights)


def test_summary_contains_totals() -> None:
    model = seed_cnn(rng=np.random.default_rng(0))
    text = model.summary((3, 32, 32), print_fn=None)
    assert "Total parameters: 545,098" in text
    assert "Forward FLOPs per example" in text
    assert "Activation memory per example" in text
    for kind in (
        "Conv2d 3->32",
        "Conv2d 32->64",
        "MaxPool2d",
        "Linear 4096->128",
        "Linear 128->10",
    ):
        assert kind in text
    printed: list[str] = []
    model.summary((3, 32, 32), print_fn=printed.append)
    assert printed == [text]


def architecture(model) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, param.shape) for name, param in model.named_parameters()]


@pytest.mark.parametrize(
    ("make", "size"),
    [
        (lambda: seed_cnn(rng=np.random.default_rng(0)), 32),
        (
            lambda: L.Sequential(
                L.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                L.BatchNorm2d(8, momentum=0.2),
                L.LeakyReLU(0.1),
                L.Residual(
                    L.Sequential(L.Conv2d(8, 8, (3, 1), padding="same"), L.GELU("tanh")),
                ),
                L.Residual(L.Conv2d(8, 4, 1), shortcut=L.Conv2d(8, 4, 1, bias=False)),
                L.AvgPool2d(2, stride=1, padding=1),
                L.MaxPool2d(3, stride=2, padding=1),
                L.GlobalAvgPool2d(),
                L.Dropout(0.25),
                L.Linear(4, 6),
                L.BatchNorm1d(6),
                L.Tanh(),
                L.Sigmoid(),
                L.ReLU(),
                L.Linear(6, 3),
            ),
            16,
        ),
    ],
    ids=["seed_cnn", "every_layer"],
)
def test_config_round_trip(make, size: int) -> None:
    model = make()
    config = model_config(model)
    assert json.loads(json.dumps(config)) == config  # JSON-able
    rebuilt = build_model(json.loads(json.dumps(config)), rng=np.random.default_rng(1))
    assert model_config(rebuilt) == config
    assert architecture(rebuilt) == architecture(model)
    assert rebuilt.num_parameters() == model.num_parameters()
    assert repr(rebuilt) == repr(model)
    x = np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32)
    assert rebuilt.forward(x).shape == model.forward(x).shape


def test_build_model_rejects_unknown_layer() -> None:
    with pytest.raises(ValueError, match="unknown layer type 'Softmax'"):
        build_model({"type": "Sequential", "layers": [{"type": "Softmax"}]})


def test_tiny_batch_overfits_with_plain_sgd() -> None:
    """32 random images with fixed random labels are memorised: loss from ~2.3 to below 0.01."""
    rng = np.random.default_rng(0)
    model = seed_cnn(rng=np.random.default_rng(1))
    x = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, size=32)
    loss_fn = CrossEntropyLoss()
    lr = 0.02
    losses = []
    for _ in range(150):
        losses.append(loss_fn.forward(model.forward(x, training=True), labels))
        if losses[-1] < 0.01:
            break
        model.backward(loss_fn.backward())
        for p in model.parameters():
            p.data -= lr * p.grad
    assert losses[-1] < 0.01, f"loss after {len(losses)} steps: {losses[-1]:.4f}"
    assert losses[0] > 1.0
    predictions = model.forward(x).argmax(axis=1)
    np.testing.assert_array_equal(predictions, labels)


# --- hand-written architecture configs: every error names the place and the problem -----------
def conv(**overrides) -> dict:
    return {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3, **overrides}


def sequential(*layers: dict) -> dict:
    return {"type": "Sequential", "layers": list(layers)}


def test_hand_written_config_builds():
    config = sequential(
        conv(padding="same", bias=False),
        {"type": "BatchNorm2d", "num_features": 4, "frozen": ["weight"]},
        {"type": "ReLU"},
        {
            "type": "Concat",
            "branches": [
                {"type": "Conv2d", "in_channels": 4, "out_channels": 2, "kernel_size": [1, 1]},
                {"type": "MaxPool2d", "kernel_size": 3, "stride": 1, "padding": 1},
            ],
        },
        {"type": "Residual", "block": {"type": "Scale", "scale": 0.5}},
        {"type": "GlobalMaxPool2d"},
        {"type": "Linear", "in_features": 6, "out_features": 10},
    )
    model = build_model(config, rng=np.random.default_rng(0), dtype=np.float64)
    assert model.output_shape((2, 3, 8, 8)) == (2, 10)
    assert model[0].bias is None and model[3][0].kernel_size == (1, 1)
    assert not model[1].weight.requires_grad and model[1].bias.requires_grad
    assert model_config(model)["layers"][1]["frozen"] == ["weight"]
    assert model.forward(np.zeros((2, 3, 8, 8))).dtype == np.float64


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            sequential(conv(), {"type": "ReLU"}, {"type": "Flatten"}, {"type": "Softmax"}),
            r"^layers\[3\]: unknown layer type 'Softmax'; valid types: AvgPool2d, BatchNorm1d, ",
        ),
        (
            sequential(conv(), {"type": "Residual", "block": sequential(conv(kernal_size=3))}),
            r"^layers\[1\]\.block\.layers\[0\] \(Conv2d\): unknown argument 'kernal_size'; "
            r"valid arguments: 'in_channels', 'out_channels', 'kernel_size', 'stride', ",
        ),
        (
            sequential({"type": "Conv2d", "in_channels": 3, "kernel_size": 3}),
            r"^layers\[0\] \(Conv2d\): missing required argument 'out_channels'",
        ),
        (
            sequential(conv(kernel_size="three")),
            r"^layers\[0\] \(Conv2d\): argument 'kernel_size' must be int \| tuple\[int, int\], "
            r'got "three" \(string\)',
        ),
        (
            sequential(conv(), conv(in_channels=4, bias="yes")),
            r"^layers\[1\] \(Conv2d\): argument 'bias' must be bool, got \"yes\" \(string\)",
        ),
        (
            sequential(conv(kernel_size=[3, 3, 3])),
            r"argument 'kernel_size' must be int \| tuple\[int, int\], got \[3, 3, 3\] \(list\)",
        ),
        (
            sequential({"type": "Dropout", "p": None}),
            r"^layers\[0\] \(Dropout\): argument 'p' must be float, got null \(null\)",
        ),
        (
            sequential(conv(stride=0)),
            r"^layers\[0\] \(Conv2d\): stride must be >= 1, got 0",
        ),
        (
            sequential({"type": "Dropout", "p": 1.5}),
            r"^layers\[0\] \(Dropout\): dropout probability p must be in \[0, 1\), got 1\.5",
        ),
        (sequential(conv(), "ReLU"), r"^layers\[1\]: a layer config must be a JSON object"),
        ({"layers": []}, r"^top level: missing 'type'; valid types: "),
        ({"type": "Sequential", "layers": {"0": conv()}}, r"'layers' must be a list of layer"),
        ({"type": "Sequential"}, r"^top level \(Sequential\): missing required argument 'layers'"),
        ({"type": "Concat", "branches": []}, r"'branches' must hold at least one layer config"),
        (
            {"type": "Residual", "block": conv(), "skip": None},
            r"^top level \(Residual\): unknown argument 'skip'; valid arguments: 'block', 'short",
        ),
        (
            sequential({"type": "Concat", "branches": [conv(), {"type": "Pool"}]}),
            r"^layers\[0\]\.branches\[1\]: unknown layer type 'Pool'",
        ),
        (
            sequential({"type": "BatchNorm2d", "num_features": 4, "frozen": ["scale"]}),
            r"'frozen' names 'scale', which is not one of its parameters \['bias', 'weight'\]",
        ),
    ],
    ids=[
        "unknown type",
        "unknown argument (nested)",
        "missing argument",
        "wrong type",
        "bool expected",
        "pair of three",
        "null",
        "constructor rejects",
        "out of range",
        "not an object",
        "no type",
        "layers not a list",
        "no layers",
        "empty concat",
        "residual argument",
        "concat branch",
        "frozen name",
    ],
)
def test_bad_config_errors_name_the_place(config, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model(config)


def test_model_config_error_is_a_value_error():
    assert issubclass(ModelConfigError, ValueError)


def test_load_model_config_reads_and_checks_a_json_file(tmp_path):
    config = model_config(seed_cnn(image_size=8, width=0.25))
    path = tmp_path / "net.json"
    path.write_text(json.dumps(config))
    assert load_model_config(path) == config
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sequential(conv(), {"type": "Softmax"})))
    with pytest.raises(ModelConfigError, match=r"bad\.json: layers\[1\]: unknown layer type"):
        load_model_config(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{"type": "Sequential", "layers": [}')
    with pytest.raises(ModelConfigError, match=r"broken\.json is not valid JSON: .*line 1"):
        load_model_config(broken)
    with pytest.raises(FileNotFoundError, match="no model config at"):
        load_model_config(tmp_path / "missing.json")


def test_check_model_fits_names_the_layer_and_the_class_count():
    model = seed_cnn(num_classes=10, image_size=8, width=0.25)
    check_model_fits(model, (3, 8, 8), 10)
    with pytest.raises(ValueError, match=r"returns shape \(10,\) .* but the data has 5 classes"):
        check_model_fits(model, (3, 8, 8), 5)
    with pytest.raises(ValueError, match=r"layers\[7\] \(Linear\) got shape \(256,\) per example"):
        check_model_fits(model, (3, 16, 16), 10)  # the flatten grows; the linear layer does not
    with pytest.raises(ValueError, match=r"layers\[0\] \(Conv2d\) got shape \(1, 8, 8\)"):
        check_model_fits(model, (1, 8, 8), 10)


# --- transfer learning ---------------------------------------------------------------------
def test_load_matching_keeps_a_fresh_head_for_another_class_count():
    source = seed_cnn(num_classes=10, image_size=8, width=0.25, rng=np.random.default_rng(0))
    target = seed_cnn(num_classes=5, image_size=8, width=0.25, rng=np.random.default_rng(1))
    fresh_head = target[9].weight.data.copy()
    report = load_matching(target, source.state_dict())
    assert report.loaded == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]
    assert report.skipped == {
        "9.weight": "shape (10, 32) in the checkpoint, (5, 32) in the model",
        "9.bias": "shape (10,) in the checkpoint, (5,) in the model",
    }
    assert report.initialised == ["9.weight", "9.bias"]
    for name in report.loaded:
        np.testing.assert_array_equal(target.state_dict()[name], source.state_dict()[name])
    np.testing.assert_array_equal(target[9].weight.data, fresh_head)
    text = report.format()
    assert "loaded 6 tensors, skipped 2, newly initialised 2" in text
    assert "skipped 9.weight: shape (10, 32)" in text


def test_load_matching_includes_buffers_and_names_unknown_tensors():
    from scratchcnn.models import MODELS

    source = MODELS["resnet8"](width=0.25, rng=np.random.default_rng(0))
    source.forward(np.ones((2, 3, 8, 8), np.float32), training=True)  # move running statistics
    target = MODELS["resnet8"](width=0.25, num_classes=4, rng=np.random.default_rng(1))
    state = source.state_dict()
    state["extra.weight"] = np.zeros(3, np.float32)
    report = load_matching(target, state)
    assert "1.running_mean" in report.loaded
    np.testing.assert_array_equal(target[1].running_mean, source[1].running_mean)
    assert report.skipped["extra.weight"] == "not in the model"
    assert report.initialised == ["7.weight", "7.bias"]


def test_load_matching_with_nothing_in_common_is_an_error():
    from scratchcnn.models import MODELS

    target = seed_cnn(image_size=8, width=0.25)
    before = target.state_dict()
    with pytest.raises(ValueError, match=r"no tensor of the checkpoint matches the model"):
        load_matching(target, MODELS["dilated"](width=0.5).state_dict())
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[name])  # nothing changed


def test_load_pretrained_reads_model_files_and_training_checkpoints(tmp_path):
    from helpers_data import make_image_folder
    from helpers_training import tiny_config

    from scratchcnn.errors import CheckpointError
    from scratchcnn.training import train

    source = seed_cnn(image_size=8, width=0.25, rng=np.random.default_rng(0))
    save_model(source, tmp_path / "model.safetensors")
    target = seed_cnn(image_size=8, width=0.25, rng=np.random.default_rng(1))
    report = load_pretrained(target, tmp_path / "model.safetensors")
    assert len(report.loaded) == 8 and not report.skipped and not report.initialised
    np.testing.assert_array_equal(target[0].weight.data, source[0].weight.data)
    # A training checkpoint also holds optimizer state, under "optim.": never loaded.
    images = make_image_folder(tmp_path / "images", train_per_class=12, test_per_class=2)
    run = train(tiny_config(images, tmp_path / "runs", epochs=1, val_size=6)).run_dir
    architecture = load_checkpoint(run / "last.safetensors").metadata["architecture"]
    fresh = build_model(architecture, rng=np.random.default_rng(2))
    report = load_pretrained(fresh, run / "last.safetensors")
    assert len(report.loaded) == 8 and not report.skipped and not report.initialised
    with pytest.raises(CheckpointError, match="no checkpoint at .*nothing.safetensors"):
        load_pretrained(target, tmp_path / "nothing.safetensors")
