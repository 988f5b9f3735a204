"""Tier 3: layer behaviour (shapes, counts, argument and input errors, modes, state, dtypes)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.backend import available_backends, use_backend
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import seed_cnn


@pytest.fixture(autouse=True, params=available_backends())
def each_backend(request):
    """Every test in this file runs on each backend (a bug in either fails its own test)."""
    with use_backend(request.param):
        yield request.param


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- basic: shapes and parameter counts --------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "input_shape", "output_shape", "num_params"),
    [
        (lambda: L.Conv2d(3, 8, 3, rng=rng()), (2, 3, 10, 9), (2, 8, 8, 7), 8 * 3 * 9 + 8),
        (lambda: L.Conv2d(3, 8, 3, padding="same", rng=rng()), (2, 3, 10, 9), (2, 8, 10, 9), 224),
        (lambda: L.Conv2d(3, 8, (1, 5), bias=False, rng=rng()), (2, 3, 6, 6), (2, 8, 6, 2), 120),
        (
            lambda: L.Conv2d(3, 4, 3, stride=2, padding=1, rng=rng()),
            (1, 3, 9, 8),
            (1, 4, 5, 4),
            112,
        ),
        (lambda: L.Conv2d(2, 2, 3, dilation=2, rng=rng()), (1, 2, 9, 8), (1, 2, 5, 4), 38),
        (lambda: L.Linear(12, 5, rng=rng()), (4, 12), (4, 5), 65),
        (lambda: L.Linear(12, 5, bias=False, rng=rng()), (4, 12), (4, 5), 60),
        (lambda: L.MaxPool2d(2), (2, 3, 8, 7), (2, 3, 4, 3), 0),
        (lambda: L.MaxPool2d(3, stride=2, padding=1), (2, 3, 8, 7), (2, 3, 4, 4), 0),
        (lambda: L.AvgPool2d(2, stride=1), (2, 3, 8, 7), (2, 3, 7, 6), 0),
        (lambda: L.GlobalAvgPool2d(), (2, 3, 8, 7), (2, 3), 0),
        (lambda: L.ReLU(), (2, 3, 4, 4), (2, 3, 4, 4), 0),
        (lambda: L.LeakyReLU(0.2), (2, 5), (2, 5), 0),
        (lambda: L.GELU(), (2, 5), (2, 5), 0),
        (lambda: L.Tanh(), (2, 5), (2, 5), 0),
        (lambda: L.Sigmoid(), (2, 5), (2, 5), 0),
        (lambda: L.Flatten(), (2, 3, 4, 5), (2, 60), 0),
        (lambda: L.Dropout(0.5, rng=rng()), (2, 5), (2, 5), 0),
        (lambda: L.BatchNorm2d(3), (2, 3, 4, 4), (2, 3, 4, 4), 6),
        (lambda: L.BatchNorm1d(7), (4, 7), (4, 7), 14),
    ],
)
def test_shapes_and_parameter_counts(make, input_shape, output_shape, num_params) -> None:
    layer = make()
    x = rng(1).standard_normal(input_shape).astype(np.float32)
    out = layer.forward(x, training=True)
    assert out.shape == output_shape
    assert layer.output_shape(input_shape) == output_shape
    assert layer.num_parameters() == num_params
    grad = layer.backward(np.ones_like(out))
    assert grad.shape == input_shape
    for param in layer.parameters():
        assert param.grad.shape == param.data.shape


# --- bad hyperparameters are rejected at construction, naming the value ------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: L.Conv2d(3, 4, 0), "kernel_size must be >= 1, got 0"),
        (lambda: L.Conv2d(3, 4, (3, 0)), "kernel_size must be >= 1, got (3, 0)"),
        (lambda: L.Conv2d(3, 4, 3, padding=-1), "padding must be >= 0, got -1"),
        (lambda: L.Conv2d(3, 4, 3, stride=0), "stride must be >= 1, got 0"),
        (lambda: L.Conv2d(3, 4, 3, dilation=0), "dilation must be >= 1, got 0"),
        (lambda: L.Conv2d(0, 4, 3), "in_channels must be an int >= 1, got 0"),
        (
            lambda: L.Conv2d(3, 4, 3, stride=2, padding="same"),
            "requires stride 1, got stride (2, 2)",
        ),
        (lambda: L.Conv2d(3, 4, 3, padding="full"), "got 'full'"),
        (lambda: L.MaxPool2d(0), "kernel_size must be >= 1, got 0"),
        (lambda: L.MaxPool2d(2, stride=0), "stride must be >= 1, got 0"),
        (lambda: L.AvgPool2d(2, padding=-1), "padding must be >= 0, got -1"),
        (lambda: L.MaxPool2d(2, padding=2), "got 2"),
        (lambda: L.Dropout(1.0), "got 1.0"),
        (lambda: L.Dropout(-0.1), "got -0.1"),
        (lambda: L.Linear(0, 3), "in_features must be an int >= 1, got 0"),
        (lambda: L.LeakyReLU(-0.5), "got -0.5"),
        (lambda: L.GELU("fast"), "got 'fast'"),
        (lambda: L.BatchNorm2d(3, momentum=1.5), "got 1.5"),
        (lambda: L.BatchNorm2d(3, eps=0.0), "got 0.0"),
        (lambda: CrossEntropyLoss(label_smoothing=1.0), "got 1.0"),
    ],
)
def test_bad_hyperparameters_rejected(make, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


# --- wrong inputs: ValueError naming the layer and the shapes ----------------------------------


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        (L.Conv2d(3, 4, 3, rng=rng()), (3, 8, 8), r"Conv2d.*\(N, C, H, W\).*\(3, 8, 8\)"),
        (L.Conv2d(3, 4, 3, rng=rng()), (2, 5, 8, 8), r"Conv2d.*3 channels.*\(2, 5, 8, 8\)"),
        (L.Conv2d(3, 4, 5, rng=rng()), (2, 3, 4, 8), r"Conv2d.*\(4, 8\).*too small"),
        (L.Linear(6, 2, rng=rng()), (4, 5), r"Linear.*6 channels/features.*\(4, 5\)"),
        (L.Linear(6, 2, rng=rng()), (4, 6, 1), r"Linear.*\(N, in_features\).*\(4, 6, 1\)"),
        (L.MaxPool2d(3), (2, 3, 2, 8), r"MaxPool2d.*\(2, 8\).*smaller than the kernel"),
        (L.AvgPool2d(2), (2, 3, 4), r"AvgPool2d.*\(N, C, H, W\).*\(2, 3, 4\)"),
        (L.GlobalAvgPool2d(), (2, 3), r"GlobalAvgPool2d.*\(2, 3\)"),
        (L.BatchNorm2d(3), (2, 4, 5, 5), r"BatchNorm2d.*3 channels.*\(2, 4, 5, 5\)"),
        (L.BatchNorm1d(3), (2, 3, 5, 5), r"BatchNorm1d.*\(N, C\).*\(2, 3, 5, 5\)"),
        (L.Flatten(), (5,), r"Flatten.*\(5,\)"),
    ],
)
def test_wrong_input_shape_names_layer_and_shapes(layer, shape, expected) -> None:
    with pytest.raises(ValueError, match=expected):
        layer.forward(np.zeros(shape, dtype=np.float32), training=True)


def test_batchnorm_single_value_per_channel_rejected_in_training() -> None:
    with pytest.raises(ValueError, match=r"BatchNorm1d.*\(1, 3\)"):
        L.BatchNorm1d(3).forward(np.zeros((1, 3)), training=True)


def test_cross_entropy_rejects_bad_targets() -> None:
    loss = CrossEntropyLoss()
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        loss.forward(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"expected 3 labels"):
        loss.forward(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        loss.forward(np.zeros(4), np.array([0]))


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (L.Conv2d(2, 3, 3, rng=rng()), (1, 2, 5, 5)),
        (L.Linear(4, 3, rng=rng()), (2, 4)),
        (L.MaxPool2d(2), (1, 2, 4, 4)),
        (L.AvgPool2d(2), (1, 2, 4, 4)),
        (L.GlobalAvgPool2d(), (1, 2, 4, 4)),
        (L.ReLU(), (2, 3)),
        (L.LeakyReLU(), (2, 3)),
        (L.GELU(), (2, 3)),
        (L.Tanh(), (2, 3)),
        (L.Sigmoid(), (2, 3)),
        (L.Flatten(), (2, 3, 2)),
        (L.Dropout(0.5, rng=rng()), (2, 3)),
        (L.BatchNorm2d(2), (2, 2, 3, 3)),
        (L.BatchNorm1d(3), (4, 3)),
        (L.Sequential(L.Linear(4, 3, rng=rng()), L.ReLU()), (2, 4)),
        (L.Residual(L.Linear(4, 4, rng=rng())), (2, 4)),
    ],
)
def test_backward_before_forward_raises(layer, shape) -> None:
    grad = np.ones(layer.output_shape(shape), dtype=np.float32)
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(grad)
    # An evaluation forward keeps no cache either, so backward is still an error...
    out = layer.forward(np.ones(shape, dtype=np.float32), training=False)
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(np.ones_like(out))
    # ...and the cache is consumed: a second backward after one training forward fails too.
    out = layer.forward(np.ones(shape, dtype=np.float32), training=True)
    layer.backward(np.ones_like(out))
    with pytest.raises(RuntimeError, match="backward"):
        layer.backward(np.ones_like(out))


def test_loss_backward_before_forward_raises() -> None:
    with pytest.raises(RuntimeError, match="before forward"):
        CrossEntropyLoss().backward()


# --- dropout -----------------------------------------------------------------------------------


def test_dropout_is_identity_in_eval() -> None:
    x = rng().standard_normal((8, 10)).astype(np.float32)
    out = L.Dropout(0.5, rng=rng()).forward(x, training=False)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_inverted_scaling_and_gradient_mask(p: float) -> None:
    x = rng().uniform(1.0, 2.0, (50, 40))
    layer = L.Dropout(p, rng=rng(3))
    out = layer.forward(x, training=True)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
    grad = layer.backward(np.ones_like(out))
    np.testing.assert_allclose(grad, kept / (1 - p), rtol=1e-12)
    assert abs(kept.mean() - (1 - p)) < 0.05


def test_dropout_preserves_mean_statistically() -> None:
    x = np.ones((200, 500))
    out = L.Dropout(0.3, rng=rng(4)).forward(x, training=True)
    # 100,000 Bernoulli draws: the mean is 1 up to about 4 standard errors (0.0065 each).
    assert abs(out.mean() - 1.0) < 0.03


def test_dropout_determinism_by_seed() -> None:
    x = np.ones((20, 30))
    a = L.Dropout(0.5, rng=rng(7)).forward(x, training=True)
    b = L.Dropout(0.5, rng=rng(7)).forward(x, training=True)
    c = L.Dropout(0.5, rng=rng(8)).forward(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --- batch norm: per channel, not per activation -----------------------------------------------


def test_batchnorm2d_normalises_per_channel() -> None:
    x = rng().normal(loc=[[[[3.0]], [[-2.0]], [[0.5]]]], scale=[[[[2.0]], [[0.5]], [[1.0]]]],
                     size=(8, 3, 5, 4))  # fmt: skip
    bn = L.BatchNorm2d(3, eps=1e-5, momentum=0.1, dtype=np.float64)
    bn.weight.data = np.array([1.0, 2.0, 0.5])
    bn.bias.data = np.array([0.0, -1.0, 3.0])
    out = bn.forward(x, training=True)
    mean = x.mean(axis=(0, 2, 3))  # one number per channel, over batch AND space
    var = x.var(axis=(0, 2, 3))
    expected = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    expected = expected * bn.weight.data[None, :, None, None] + bn.bias.data[None, :, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    # A per-activation batch norm would make every (c, h, w) position zero-mean over the batch.
    normalised = (out - bn.bias.data[None, :, None, None]) / bn.weight.data[None, :, None, None]
    assert np.abs(normalised.mean(axis=0)).max() > 0.1
    np.testing.assert_allclose(normalised.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)

    n = x.size // 3
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * n / (n - 1), rtol=1e-12)


def test_batchnorm1d_statistics_and_eval_uses_running_stats() -> None:
    x = rng().normal(2.0, 3.0, size=(16, 4))
    bn = L.BatchNorm1d(4, momentum=0.5, dtype=np.float64)
    out = bn.forward(x, training=True)
    expected = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + bn.eps)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=0, ddof=1), rtol=1e-12)
    out_eval = bn.forward(x, training=False)
    expected_eval = (x - bn.running_mean) / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(out_eval, expected_eval, rtol=1e-12)
    running_mean = bn.running_mean.copy()
    bn.forward(x, training=False)
    np.testing.assert_array_equal(bn.running_mean, running_mean)  # eval never updates


# --- state dicts, dtypes, recording ------------------------------------------------------------


def small_net(seed: int = 0) -> L.Sequential:
    r = rng(seed)
    return L.Sequential(
        L.Conv2d(3, 4, 3, padding=1, rng=r),
        L.ReLU(),
        L.MaxPool2d(2),
        L.BatchNorm2d(4),
        L.Flatten(),
        L.Linear(4 * 3 * 3, 5, rng=r),
    )


def test_state_dict_names_are_pytorch_style_and_round_trip() -> None:
    net = small_net(0)
    net.forward(rng().standard_normal((2, 3, 6, 6)).astype(np.float32), training=True)
    state = net.state_dict()
    assert list(state) == [
        "0.weight",
        "0.bias",
        "3.weight",
        "3.bias",
        "5.weight",
        "5.bias",
        "3.running_mean",
        "3.running_var",
    ]
    other = small_net(1)
    assert not np.array_equal(other.state_dict()["0.weight"], state["0.weight"])
    other.load_state_dict(state)
    for name, value in other.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    x = rng(2).standard_normal((2, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(net.forward(x), other.forward(x))
    state["0.weight"][...] = 0  # a copy: the network is untouched
    assert np.abs(net.state_dict()["0.weight"]).sum() > 0


def test_load_state_dict_rejects_missing_and_misshapen() -> None:
    net = small_net()
    state = net.state_dict()
    del state["3.running_var"]
    with pytest.raises(KeyError, match="3.running_var"):
        net.load_state_dict(state)
    state = net.state_dict()
    state["5.bias"] = np.zeros(6)
    with pytest.raises(ValueError, match=r"5.bias.*\(6,\).*\(5,\)"):
        net.load_state_dict(state)


def test_float64_end_to_end() -> None:
    net = small_net().astype(np.float64)
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert all(buf.dtype == np.float64 for _, buf in net.named_buffers())
    x = rng().standard_normal((2, 3, 6, 6))
    loss = CrossEntropyLoss()
    out = net.forward(x, training=True)
    assert out.dtype == np.float64
    loss.forward(out, np.array([0, 3]))
    grad_x = net.backward(loss.backward())
    assert grad_x.dtype == np.float64
    assert all(p.grad.dtype == np.float64 for p in net.parameters())


def test_float32_stays_float32() -> None:
    net = small_net()
    x = rng().standard_normal((2, 3, 6, 6)).astype(np.float32)
    out = net.forward(x, training=True)
    assert out.dtype == np.float32
    assert net.backward(np.ones_like(out)).dtype == np.float32


def test_recording_allows_backward_after_eval_forward() -> None:
    net = small_net()
    net.forward(rng().standard_normal((4, 3, 6, 6)).astype(np.float32), training=True)
    running = net[3].running_mean.copy()
    x = rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    with net.recording():
        out = net.forward(x, training=False)
        grad = net.backward(np.ones_like(out))
    assert grad.shape == x.shape
    np.testing.assert_array_equal(net[3].running_mean, running)  # still evaluation mode
    # Without recording, inference fuses conv + ReLU + pool (Winograd on the fast backend): the
    # same values up to float32 rounding.
    np.testing.assert_allclose(out, net.forward(x, training=False), rtol=1e-6, atol=1e-6)
    # Outside the block, evaluation forwards keep no cache again.
    net.forward(x, training=False)
    with pytest.raises(RuntimeError):
        net.backward(np.ones_like(out))


def test_residual_shape_mismatch_error() -> None:
    block = L.Conv2d(3, 4, 3, padding=1, rng=rng())
    with pytest.raises(ValueError, match=r"Residual.*\(2, 4, 5, 5\).*\(2, 3, 5, 5\)"):
        L.Residual(block).forward(np.zeros((2, 3, 5, 5), dtype=np.float32))
    fixed = L.Residual(block, shortcut=L.Conv2d(3, 4, 1, rng=rng()))
    assert fixed.forward(np.zeros((2, 3, 5, 5), dtype=np.float32)).shape == (2, 4, 5, 5)
    assert [name for name, _ in fixed.named_parameters()] == [
        "block.weight",
        "block.bias",
        "shortcut.weight",
        "shortcut.bias",
    ]


def test_sequential_rejects_non_layers() -> None:
    with pytest.raises(TypeError, match="item 1"):
        L.Sequential(L.ReLU(), "relu")


def test_freeze_matches_names_prefixes_and_globs() -> None:
    model = seed_cnn(rng=np.random.default_rng(0))
    assert model.freeze("0") == ["0.weight", "0.bias"]
    assert model.freeze("*.bias") == ["0.bias", "3.bias", "7.bias", "9.bias"]
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"0.weight", "0.bias", "3.bias", "7.bias", "9.bias"}
    assert model.unfreeze("3") == ["3.weight", "3.bias"]
    assert model[3].bias.requires_grad  # unfrozen again
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters())
    model.freeze("9")
    assert "requires_grad=False" in repr(model[9].weight)


def test_freeze_rejects_a_pattern_that_matches_nothing() -> None:
    model = seed_cnn(rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"'conv9' matches no parameter; parameters are \['0\.w"):
        model.freeze("conv9")


def test_sequential_item_assignment_replaces_a_layer() -> None:
    model = seed_cnn(rng=np.random.default_rng(0))
    head = L.Linear(128, 3, rng=np.random.default_rng(1))
    model[9] = head
    assert model[9] is head
    assert model(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 3)
    with pytest.raises(TypeError, match="must be a Layer"):
        model[9] = "not a layer"


def test_skip_untrained_input_gradient_stops_backward_at_the_first_trained_conv():
    """A frozen prefix (airbench's whitening conv) needs no gradient: the first trained conv
    skips its input gradient and the backward pass stops there, with the same parameter
    gradients as a full backward pass."""
    rng = np.random.default_rng(3)
    model = L.Sequential(
        L.Conv2d(3, 4, 2, rng=rng),
        L.GELU(),
        L.Sequential(L.Conv2d(4, 5, 3, padding=1, rng=rng), L.ReLU()),
        L.Flatten(),
        L.Linear(5 * 7 * 7, 3, rng=rng),
    )
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    grad = rng.standard_normal((2, 3)).astype(np.float32)
    model.forward(x, training=True)
    full_input_grad = model.backward(grad)
    want = {n: p.grad.copy() for n, p in model.named_parameters()}
    assert L.skip_untrained_input_gradient(model) is model[0]  # nothing is frozen yet
    model.freeze("0")
    assert L.skip_untrained_input_gradient(model) is model[2][0]
    assert model[0].needs_input_grad  # switched back on
    model.forward(x, training=True)
    assert full_input_grad is not None and model.backward(grad) is None
    for name, param in model.named_parameters():
        if param.requires_grad:
            np.testing.assert_allclose(param.grad, want[name], rtol=1e-5, atol=1e-6)
    model.unfreeze()
    assert L.skip_untrained_input_gradient(model) is model[0]
    branchy = L.Sequential(L.Residual(L.Conv2d(3, 3, 3, padding=1, rng=rng)), L.Flatten())
    assert L.skip_untrained_input_gradient(branchy) is None  # a residual's input gradient sums
