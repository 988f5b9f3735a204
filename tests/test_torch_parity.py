"""Tier 2: every layer against its PyTorch equivalent, forward outputs and all gradients."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.backend import available_backends, use_backend
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import seed_cnn

torch = pytest.importorskip("torch")
nn = torch.nn

DTYPES = {
    np.float32: (torch.float32, {"rtol": 1e-5, "atol": 1e-5}),
    np.float64: (torch.float64, {"rtol": 1e-10, "atol": 1e-10}),
}
GELU_FLOAT64_TOL = {"rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(autouse=True, params=available_backends())
def each_backend(request):
    """Every test in this file runs on each backend (a bug in either fails its own test)."""
    with use_backend(request.param):
        yield request.param


def copy_into_torch(ours: Layer, theirs: nn.Module) -> None:
    """Copy our parameters and buffers into the torch module, matching PyTorch-style names."""
    state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        assert name in state, f"torch module has no {name}"
        state[name] = torch.from_numpy(np.ascontiguousarray(value))
    theirs.load_state_dict(state)


def compare(
    ours: Layer,
    theirs: nn.Module,
    input_shape: tuple[int, ...],
    dtype: type,
    training: bool,
    tol: dict | None = None,
    seed: int = 0,
) -> None:
    """Same input, same upstream gradient: outputs, input gradients, parameter gradients agree."""
    torch_dtype, default_tol = DTYPES[dtype]
    tol = tol or default_tol
    rng = np.random.default_rng(seed)
    ours.astype(dtype)
    theirs.to(torch_dtype)
    copy_into_torch(ours, theirs)
    theirs.train(training)

    x = rng.standard_normal(input_shape).astype(dtype)
    x_torch = torch.tensor(x, requires_grad=True)
    with ours.recording():
        out = ours.forward(x, training)
    out_torch = theirs(x_torch)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, out_torch.detach().numpy(), **tol)

    grad_out = rng.standard_normal(out.shape).astype(dtype)
    grad_x = ours.backward(grad_out)
    out_torch.backward(torch.from_numpy(grad_out))
    np.testing.assert_allclose(grad_x, x_torch.grad.numpy(), **tol)
    torch_params = dict(theirs.named_parameters())
    assert set(torch_params) == {name for name, _ in ours.named_parameters()}
    for name, param in ours.named_parameters():
        np.testing.assert_allclose(param.grad, torch_params[name].grad.numpy(), **tol, err_msg=name)
    torch_buffers = dict(theirs.named_buffers())
    for name, buf in ours.named_buffers():  # running statistics after the step
        np.testing.assert_allclose(buf, torch_buffers[name].numpy(), **tol, err_msg=name)


both_dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


@both_dtypes
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "bias"),
    [
        (3, 1, 0, 1, True),
        (3, 1, 1, 1, True),
        (3, 1, "same", 1, True),
        (4, 1, "same", 1, True),  # even kernel: asymmetric padding, extra on the bottom/right
        ((2, 3), 1, "same", 2, False),
        (3, 1, "valid", 1, True),
        (3, 2, 1, 1, True),
        ((3, 1), (2, 3), (2, 0), 1, False),
        (3, 1, 2, 2, True),
        (1, 1, 0, 1, True),
        (5, 3, 2, 1, True),
    ],
)
def test_conv2d(dtype, kernel, stride, padding, dilation, bias) -> None:
    rng = np.random.default_rng(1)
    ours = L.Conv2d(3, 4, kernel, stride, padding, dilation, bias=bias, rng=rng)
    if bias:
        ours.bias.data = rng.standard_normal(4).astype(np.float32)
    theirs = nn.Conv2d(3, 4, kernel, stride, padding, dilation, bias=bias)
    compare(ours, theirs, (2, 3, 9, 8), dtype, training=True)


@both_dtypes
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1)), (4, 2, 2)],
)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling(dtype, kernel, stride, padding, kind) -> None:
    ours_type, theirs_type = (
        (L.MaxPool2d, nn.MaxPool2d) if kind == "max" else (L.AvgPool2d, nn.AvgPool2d)
    )
    compare(
        ours_type(kernel, stride, padding),
        theirs_type(kernel, stride, padding),
        (2, 3, 9, 8),
        dtype,
        training=True,
    )


@both_dtypes
def test_global_avg_pool(dtype) -> None:
    theirs = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    compare(L.GlobalAvgPool2d(), theirs, (2, 3, 5, 4), dtype, training=True)


ACTIVATIONS: list[tuple[str, Callable[[], Layer], Callable[[], nn.Module]]] = [
    ("relu", L.ReLU, nn.ReLU),
    ("leaky_relu", lambda: L.LeakyReLU(0.1), lambda: nn.LeakyReLU(0.1)),
    ("gelu_erf", L.GELU, nn.GELU),
    ("gelu_tanh", lambda: L.GELU("tanh"), lambda: nn.GELU(approximate="tanh")),
    ("tanh", L.Tanh, nn.Tanh),
    ("sigmoid", L.Sigmoid, nn.Sigmoid),
    ("flatten", L.Flatten, nn.Flatten),
]


@both_dtypes
@pytest.mark.parametrize(("name", "ours", "theirs"), ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation(dtype, name, ours, theirs) -> None:
    tol = GELU_FLOAT64_TOL if name.startswith("gelu") and dtype == np.float64 else None
    compare(ours(), theirs(), (2, 3, 4, 5), dtype, training=True, tol=tol)


@both_dtypes
@pytest.mark.parametrize("bias", [True, False])
def test_linear(dtype, bias) -> None:
    rng = np.random.default_rng(2)
    ours = L.Linear(6, 4, bias=bias, rng=rng)
    if bias:
        ours.bias.data = rng.standard_normal(4).astype(np.float32)
    compare(ours, nn.Linear(6, 4, bias=bias), (5, 6), dtype, training=True)


def random_batchnorm(ours: L.BatchNorm1d | L.BatchNorm2d, rng: np.random.Generator):
    c = ours.num_features
    ours.weight.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
    ours.bias.data = rng.standard_normal(c).astype(np.float32)
    ours.running_mean = rng.standard_normal(c).astype(np.float32)
    ours.running_var = rng.uniform(0.5, 2.0, c).astype(np.float32)
    return ours


@both_dtypes
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    ("ours_type", "theirs_type", "shape"),
    [(L.BatchNorm2d, nn.BatchNorm2d, (4, 3, 5, 4)), (L.BatchNorm1d, nn.BatchNorm1d, (6, 3))],
    ids=["2d", "1d"],
)
def test_batchnorm(dtype, training, ours_type, theirs_type, shape) -> None:
    rng = np.random.default_rng(3)
    ours = random_batchnorm(ours_type(3, momentum=0.2), rng)
    compare(ours, theirs_type(3, momentum=0.2), shape, dtype, training=training)


@both_dtypes
@pytest.mark.parametrize(("p", "training"), [(0.5, False), (0.0, True)], ids=["eval", "p0"])
def test_dropout_identity_cases(dtype, p, training) -> None:
    compare(L.Dropout(p, rng=np.random.default_rng(0)), nn.Dropout(p), (4, 6), dtype, training)


@both_dtypes
@pytest.mark.parametrize(
    ("label_smoothing", "soft"),
    [(0.0, False), (0.0, True), (0.1, False), (0.25, True)],
    ids=["int", "soft", "smooth", "soft-smooth"],
)
def test_cross_entropy(dtype, label_smoothing, soft) -> None:
    torch_dtype, tol = DTYPES[dtype]
    rng = np.random.default_rng(4)
    logits = (3 * rng.standard_normal((6, 5))).astype(dtype)
    target = rng.dirichlet(np.ones(5), size=6).astype(dtype) if soft else rng.integers(0, 5, 6)
    ours = CrossEntropyLoss(label_smoothing=label_smoothing)
    loss = ours.forward(logits, target)
    grad = ours.backward()

    logits_torch = torch.tensor(logits, requires_grad=True)
    theirs = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    loss_torch = theirs(logits_torch, torch.from_numpy(target))
    loss_torch.backward()
    np.testing.assert_allclose(loss, loss_torch.item(), **tol)
    np.testing.assert_allclose(grad, logits_torch.grad.numpy(), **tol)
    assert grad.dtype == dtype


def torch_seed_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4096, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


@both_dtypes
def test_seed_cnn_with_loss(dtype) -> None:
    torch_dtype, tol = DTYPES[dtype]
    rng = np.random.default_rng(5)
    ours = seed_cnn(rng=rng, dtype=dtype)
    for param in ours.parameters():
        if param.data.ndim == 1:
            param.data = (0.1 * rng.standard_normal(param.shape)).astype(dtype)
    theirs = torch_seed_cnn().to(torch_dtype)
    copy_into_torch(ours, theirs)
    x = rng.standard_normal((4, 3, 32, 32)).astype(dtype)
    labels = rng.integers(0, 10, 4)
    loss_fn = CrossEntropyLoss()
    logits = ours.forward(x, training=True)
    loss = loss_fn.forward(logits, labels)
    grad_x = ours.backward(loss_fn.backward())

    x_torch = torch.tensor(x, requires_grad=True)
    logits_torch = theirs(x_torch)
    loss_torch = nn.functional.cross_entropy(logits_torch, torch.from_numpy(labels))
    loss_torch.backward()
    np.testing.assert_allclose(logits, logits_torch.detach().numpy(), **tol)
    np.testing.assert_allclose(loss, loss_torch.item(), **tol)
    np.testing.assert_allclose(grad_x, x_torch.grad.numpy(), **tol)
    torch_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        np.testing.assert_allclose(param.grad, torch_params[name].grad.numpy(), **tol, err_msg=name)
