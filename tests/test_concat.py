"""Concat (parallel branches) and the zoo's small layers: Scale, ChannelPad, GlobalMaxPool2d.

Basic tests (shapes, names, errors), then correctness: finite differences in float64 on both
backends, a plain NumPy reference in this file, and PyTorch where it is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.backend import use_backend
from scratchcnn.tools.gradcheck import check_layer

BACKENDS = ["reference", "fast"]
F64 = np.float64


def inception_like(rng: np.random.Generator, dtype: type = F64) -> L.Concat:
    """Four branches of different kernels, as in an Inception module.

    Shape: ``(N, 3, H, W) -> (N, 2 + 3 + 1 + 2, H, W)``.
    """
    return L.Concat(
        L.Conv2d(3, 2, 1, rng=rng, dtype=dtype),
        L.Sequential(
            L.Conv2d(3, 2, 1, rng=rng, dtype=dtype),
            L.Tanh(),
            L.Conv2d(2, 3, 3, padding="same", rng=rng, dtype=dtype),
        ),
        L.Conv2d(3, 1, 5, padding="same", rng=rng, dtype=dtype),
        L.Sequential(L.AvgPool2d(3, stride=1, padding=1), L.Conv2d(3, 2, 1, rng=rng, dtype=dtype)),
    )


def randomise_biases(layer: L.Layer, rng: np.random.Generator) -> None:
    """Non-zero biases, so that a bias bug shows in the outputs."""
    for name, param in layer.named_parameters():
        if name.endswith("bias"):
            param.data = rng.normal(0, 0.5, param.shape).astype(param.dtype)
            param.grad = np.zeros_like(param.data)


# --- basic: shapes, names, configs, errors -----------------------------------------------------
def test_concat_shapes_names_and_counts():
    model = L.Sequential(L.ReLU(), inception_like(np.random.default_rng(0), np.float32))
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6)).astype(np.float32)
    out = model.forward(x)
    assert out.shape == (2, 8, 7, 6) == model.output_shape(x.shape)
    assert out.dtype == np.float32
    names = [name for name, _ in model.named_parameters()]
    assert names[:4] == ["1.branches.0.weight", "1.branches.0.bias", "1.branches.1.0.weight",
                         "1.branches.1.0.bias"]  # fmt: skip
    assert "1.branches.3.1.weight" in names
    branch_params = sum(b.num_parameters() for b in model[1].branches)
    assert model.num_parameters() == branch_params == 8 + (8 + 57) + 76 + 8
    assert model[1].flops(x.shape) == sum(b.flops(x.shape) for b in model[1].branches)
    assert len(model[1]) == 4 and model[1][2] is model[1].branches[2]


def test_concat_is_each_branch_stacked_on_channels():
    concat = inception_like(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((3, 3, 5, 5))
    parts = [branch.forward(x) for branch in concat.branches]
    np.testing.assert_array_equal(concat.forward(x), np.concatenate(parts, axis=1))


def test_concat_rejects_bad_branches_and_mismatched_outputs():
    with pytest.raises(ValueError, match="at least one branch"):
        L.Concat()
    with pytest.raises(TypeError, match="Concat branch 1 is not a Layer"):
        L.Concat(L.ReLU(), "conv")
    concat = L.Concat(L.Conv2d(3, 2, 3, padding=1), L.Conv2d(3, 2, 3))  # 5x5 vs 3x3 outputs
    x = np.zeros((1, 3, 5, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"branch output shapes .*\(1, 2, 5, 5\), \(1, 2, 3, 3\)"):
        concat.forward(x)
    with pytest.raises(ValueError, match="must agree on every axis but axis 1"):
        concat.output_shape(x.shape)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: inception_like(np.random.default_rng(0)), (1, 3, 4, 4)),
        (lambda: L.Scale(0.5), (2, 3)),
        (lambda: L.ChannelPad(2, 4, stride=2), (1, 2, 4, 4)),
        (L.GlobalMaxPool2d, (1, 2, 3, 3)),
    ],
    ids=["Concat", "Scale", "ChannelPad", "GlobalMaxPool2d"],
)
def test_backward_before_forward_raises(make, shape):
    layer = make()
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros(shape))
    layer.forward(np.zeros(shape), training=False)  # an evaluation forward keeps no cache
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros(layer.output_shape(shape)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: L.Scale(float("nan")), "scale must be a finite number, got nan"),
        (lambda: L.Scale("1/9"), "scale must be a finite number, got '1/9'"),
        (lambda: L.Scale(True), "scale must be a finite number, got True"),
        (lambda: L.ChannelPad(8, 4), r"out_channels must be >= in_channels \(8\), got 4"),
        (lambda: L.ChannelPad(4, 8, stride=0), "stride must be an int >= 1, got 0"),
        (lambda: L.ChannelPad(0, 8), "in_channels must be an int >= 1, got 0"),
    ],
)
def test_bad_hyperparameters_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_configs_and_output_shapes():
    assert L.Scale(0.125).config() == {"scale": 0.125}
    pad = L.ChannelPad(3, 8, stride=2)
    assert pad.config() == {"in_channels": 3, "out_channels": 8, "stride": 2}
    assert pad.output_shape((2, 3, 7, 8)) == (2, 8, 4, 4)  # ceil(7 / 2), ceil(8 / 2)
    assert pad.flops((2, 3, 7, 8)) == 0
    assert L.GlobalMaxPool2d().output_shape((2, 5, 3, 4)) == (2, 5)
    assert L.GlobalMaxPool2d().flops((2, 5, 3, 4)) == 120
    assert L.Scale(2.0).flops((2, 5, 3, 4)) == 120
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\) with 3 chan"):
        pad.forward(np.zeros((1, 4, 2, 2)))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\)"):
        L.GlobalMaxPool2d().forward(np.zeros((2, 3)))


# --- correctness: NumPy references -------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_channel_pad_forward_and_backward_by_hand(backend):
    x = np.arange(2 * 3 * 5 * 4, dtype=F64).reshape(2, 3, 5, 4)
    pad = L.ChannelPad(3, 8, stride=2)  # 2 zero channels before, 3 after
    with use_backend(backend):
        out = pad.forward(x, training=True)
        grad_out = np.random.default_rng(0).standard_normal(out.shape)
        grad_in = pad.backward(grad_out)
    assert out.shape == (2, 8, 3, 2)
    np.testing.assert_array_equal(out[:, 2:5], x[:, :, ::2, ::2])
    assert not out[:, :2].any() and not out[:, 5:].any()
    expected = np.zeros_like(x)
    for i, row in enumerate(range(0, 5, 2)):
        for j, col in enumerate(range(0, 4, 2)):
            expected[:, :, row, col] = grad_out[:, 2:5, i, j]
    np.testing.assert_array_equal(grad_in, expected)


def test_global_max_pool_routes_gradient_to_the_winner_only():
    x = np.zeros((1, 2, 2, 3))
    x[0, 0, 1, 2] = 5.0
    x[0, 1] = [[1.0, 7.0, 7.0], [0.0, 3.0, 2.0]]  # a tie: the first position wins
    pool = L.GlobalMaxPool2d()
    np.testing.assert_array_equal(pool.forward(x, training=True), [[5.0, 7.0]])
    grad = pool.backward(np.array([[2.0, 3.0]]))
    expected = np.zeros_like(x)
    expected[0, 0, 1, 2] = 2.0
    expected[0, 1, 0, 1] = 3.0
    np.testing.assert_array_equal(grad, expected)
    assert pool.kink_distance(x) == 0.0  # the tie


def test_scale_keeps_dtype_and_scales_gradient():
    x = np.ones((2, 3), dtype=np.float32)
    scale = L.Scale(1 / 9)
    out = scale.forward(x, training=True)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.full((2, 3), 1 / 9), rtol=1e-7)
    np.testing.assert_allclose(scale.backward(np.full((2, 3), 9.0, np.float32)), 1.0, rtol=1e-6)


# --- correctness: finite differences (float64) --------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False])
def test_concat_gradient_check(backend, training):
    rng = np.random.default_rng(0)
    concat = inception_like(rng)
    randomise_biases(concat, rng)
    with use_backend(backend):
        errors = check_layer(concat, (2, 3, 5, 6), rng, training=training)
    assert set(errors) == {"input"} | {name for name, _ in concat.named_parameters()}
    assert max(errors.values()) < 1e-7, errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_concat_with_kinked_and_normalised_branches_gradient_check(backend):
    """Inception-style branches (conv, batch norm, ReLU, max-pool) on one input."""
    rng = np.random.default_rng(1)
    concat = L.Concat(
        L.Sequential(
            L.Conv2d(2, 3, 1, bias=False, rng=rng, dtype=F64), L.BatchNorm2d(3, dtype=F64)
        ),
        L.Sequential(L.MaxPool2d(3, stride=1, padding=1), L.Conv2d(2, 2, 1, rng=rng, dtype=F64)),
        L.Sequential(L.Conv2d(2, 2, 3, padding=1, rng=rng, dtype=F64), L.ReLU()),
    )
    randomise_biases(concat, rng)
    with use_backend(backend):
        errors = check_layer(concat, (3, 2, 4, 5), rng)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: L.Scale(-0.3), (2, 3, 4)),
        (lambda: L.ChannelPad(3, 6, stride=2), (2, 3, 5, 4)),
        (lambda: L.ChannelPad(3, 4, stride=1), (2, 3, 3, 3)),
        (L.GlobalMaxPool2d, (2, 3, 4, 5)),
    ],
    ids=["Scale", "ChannelPad s2", "ChannelPad s1", "GlobalMaxPool2d"],
)
def test_small_layers_gradient_check(backend, make, shape):
    with use_backend(backend):
        errors = check_layer(make(), shape, np.random.default_rng(2))
    assert errors["input"] < 1e-8


def test_concat_backward_sums_the_branch_gradients():
    """Two identical branches: the input gradient is twice one branch's."""
    rng = np.random.default_rng(3)
    conv = L.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=F64)
    twin = L.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=F64)
    twin.load_state_dict(conv.state_dict())
    concat = L.Concat(conv, twin)
    x = rng.standard_normal((2, 2, 4, 4))
    out = concat.forward(x, training=True)
    grad_out = np.concatenate([np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4))], axis=1)
    grad_in = concat.backward(grad_out)
    conv.forward(x, training=True)
    np.testing.assert_allclose(grad_in, 2 * conv.backward(np.ones((2, 3, 4, 4))), rtol=1e-12)
    assert out.shape == (2, 6, 4, 4)


# --- correctness: PyTorch ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_new_layers_match_torch_functional(backend):
    """Each layer against torch's own operators (not the bridge), forward and input gradient."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 6))
    cases = [
        (L.Scale(0.125), lambda t: t * 0.125),
        (
            L.ChannelPad(3, 8, 2),
            lambda t: torch.nn.functional.pad(t[:, :, ::2, ::2], (0, 0, 0, 0, 2, 3)),
        ),
        (L.GlobalMaxPool2d(), lambda t: torch.amax(t, dim=(2, 3))),
    ]
    for layer, theirs in cases:
        with use_backend(backend):
            out = layer.forward(x, training=True)
            grad_out = rng.standard_normal(out.shape)
            grad_in = layer.backward(grad_out)
        x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
        out_torch = theirs(x_torch)
        (out_torch * torch.from_numpy(grad_out)).sum().backward()
        np.testing.assert_allclose(out, out_torch.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad_in, x_torch.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concat_matches_torch_cat(backend):
    torch = pytest.importorskip("torch")
    from scratchcnn.interop.bridge import TorchConcat, to_torch

    rng = np.random.default_rng(5)
    concat = inception_like(rng)
    randomise_biases(concat, rng)
    # The torch side: torch.cat over torch convolutions holding the same weights.
    module = to_torch(concat)
    assert isinstance(module, TorchConcat)
    assert [name for name, _ in module.named_parameters()] == [
        name for name, _ in concat.named_parameters()
    ]
    x = rng.standard_normal((2, 3, 6, 5))
    with use_backend(backend):
        out = concat.forward(x, training=True)
        grad_out = rng.standard_normal(out.shape)
        grad_in = concat.backward(grad_out)
    x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
    out_torch = torch.cat([branch(x_torch) for branch in module.branches], dim=1)
    (out_torch * torch.from_numpy(grad_out)).sum().backward()
    np.testing.assert_allclose(out, out_torch.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_in, x_torch.grad.numpy(), rtol=1e-10, atol=1e-12)
    theirs = dict(module.named_parameters())
    for name, param in concat.named_parameters():
        np.testing.assert_allclose(param.grad, theirs[name].grad.numpy(), rtol=1e-10, atol=1e-12)


# --- ONNX --------------------------------------------------------------------------------------
def test_new_layers_export_to_onnx():
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from scratchcnn.interop.onnx_export import build_onnx_model

    rng = np.random.default_rng(6)
    model = L.Sequential(
        inception_like(rng, np.float32),  # (N, 8, 6, 6)
        L.ChannelPad(8, 11, stride=2),  # (N, 11, 3, 3)
        L.Concat(L.GlobalMaxPool2d(), L.GlobalAvgPool2d()),  # (N, 22)
        L.Scale(1 / 9),
    )
    onnx_model = build_onnx_model(model, (3, 6, 6))
    ops = {node.op_type for node in onnx_model.graph.node}
    assert {"Concat", "Slice", "Pad", "GlobalMaxPool", "Mul"} <= ops
    assert onnx_model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 22
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    got = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-5, atol=1e-6)
