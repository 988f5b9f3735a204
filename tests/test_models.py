"""Tier 3: the seed CNN's size, determinism, summary, config round trip, and a tiny overfit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import build_model, model_config, seed_cnn

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
