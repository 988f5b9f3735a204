"""``fuse``: the explicit pass that replaces runs of layers with fused layers.

A fused model must be the same model: the same parameters (shared, not copied), the same
``state_dict`` names, the same outputs and the same gradients, on each backend, in training,
inference and recording mode.
"""

from __future__ import annotations

import numpy as np
import pytest

import scratchcnn as sc
from scratchcnn import layers as L
from scratchcnn.models import model_config, seed_cnn


def tolerance(dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}


def small_net(rng: np.random.Generator, dtype=np.float64) -> L.Sequential:
    """Conv-ReLU-pool twice (a chain), a ReLU-pool pair, then a head; 8x8 inputs."""
    return L.Sequential(
        L.Conv2d(3, 8, 3, padding=1, rng=rng, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(8, 9, 3, padding=1, rng=rng, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(9, 4, 1, rng=rng, dtype=dtype),
        L.ReLU(),
        L.MaxPool2d(2, stride=1),
        L.Flatten(),
        L.Linear(4, 3, rng=rng, dtype=dtype),
    )


def test_fuse_makes_visible_fused_layers_with_the_original_names():
    model = small_net(np.random.default_rng(0))
    fused = L.fuse(model)
    kinds = [type(unit).__name__ for unit in fused.units()]
    assert kinds == ["ConvReLUMaxPoolChain", "Flatten", "Linear"]
    assert fused[0].describe() == "ConvReLUMaxPoolChain 3->8->9->4 (0-8)"
    assert list(fused.state_dict()) == list(model.state_dict())
    named = dict(fused.named_parameters())
    for name, param in model.named_parameters():
        assert named[name] is param  # shared, not copied
    assert "ConvReLUMaxPoolChain" in repr(fused) and "(3): Conv2d(8, 9" in repr(fused)
    assert "ConvReLUMaxPoolChain 3->8->9->4 (0-8)" in fused.summary((3, 8, 8), print_fn=None)
    assert [type(u).__name__ for u in model.units()][:3] == ["Conv2d", "ReLU", "MaxPool2d"]


def test_fuse_leaves_other_runs_and_subclasses_alone():
    class MyReLU(L.ReLU):
        pass

    rng = np.random.default_rng(1)
    model = L.Sequential(
        L.Conv2d(3, 4, 3, rng=rng), MyReLU(), L.MaxPool2d(2),  # a subclass may differ
        L.ReLU(), L.AvgPool2d(2), L.ReLU(), L.MaxPool2d(2),
    )  # fmt: skip
    kinds = [type(unit).__name__ for unit in L.fuse(model).units()]
    assert kinds == ["Conv2d", "MyReLU", "MaxPool2d", "ReLU", "AvgPool2d", "ReLUMaxPool"]
    lone = L.fuse(L.Sequential(L.Conv2d(3, 4, 1, rng=rng), L.ReLU(), L.MaxPool2d(2), L.Flatten()))
    assert [unit.describe() for unit in lone.units()] == [
        "ConvReLUMaxPool 3->4 1x1 (0-2)",
        "Flatten",
    ]


def test_fused_model_trains_like_the_plain_one(backend):
    rng = np.random.default_rng(2)
    model = small_net(rng)
    fused = L.fuse(model)
    x = rng.standard_normal((3, 3, 8, 8))
    x[0, 0, :2, :2] = -5.0  # some all-negative pooling windows
    grad_out = rng.standard_normal((3, 3))
    out = fused.forward(x, training=True)
    grad_x = fused.backward(grad_out)
    fused_grads = [p.grad.copy() for p in model.parameters()]
    want = model.forward(x, training=True)
    want_grad_x = model.backward(grad_out)
    np.testing.assert_allclose(out, want, **tolerance(np.float64))
    np.testing.assert_allclose(grad_x, want_grad_x, **tolerance(np.float64))
    for got, param in zip(fused_grads, model.parameters(), strict=True):
        np.testing.assert_allclose(got, param.grad, **tolerance(np.float64))
    np.testing.assert_allclose(fused.forward(x), model.forward(x), **tolerance(np.float64))


def test_a_chain_stops_where_nothing_before_it_trains(backend):
    """The first conv frozen and the second's weight frozen (its bias trains): the second block
    skips its input gradient, and the chain's backward stops there, as Sequential's does,
    with the same gradients as the plain model."""
    rng = np.random.default_rng(3)
    model = small_net(rng)
    model.freeze("0", "3.weight")
    L.skip_untrained_input_gradient(model)
    fused = L.fuse(model)
    x = rng.standard_normal((2, 3, 8, 8))
    grad_out = rng.standard_normal((2, 3))
    fused.forward(x, training=True)
    assert fused.backward(grad_out) is None
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trained[0] == "3.bias" and "3.weight" not in trained
    fused_grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    model.forward(x, training=True)
    assert model.backward(grad_out) is None
    assert np.any(fused_grads["3.bias"] != 0)
    for name, param in model.named_parameters():
        if name in trained:
            np.testing.assert_allclose(fused_grads[name], param.grad, **tolerance(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_seed_cnn_matches_the_plain_one_in_inference_and_recording(backend, dtype):
    model = seed_cnn(rng=np.random.default_rng(3), dtype=dtype)
    fused = L.fuse(model)
    x = np.random.default_rng(4).standard_normal((3, 3, 32, 32)).astype(dtype)
    got = fused.forward(x)
    np.testing.assert_allclose(got, model.forward(x), **tolerance(dtype))
    assert all(layer._cache is None for layer in fused.modules())  # inference keeps nothing
    with fused.recording():  # evaluation-mode forward that still allows backward
        recorded = fused.forward(x, training=False)
        fused.backward(np.ones_like(recorded))
    np.testing.assert_allclose(recorded, got, **tolerance(dtype))


def test_fused_layers_raise_on_backward_before_forward():
    fused = L.fuse(small_net(np.random.default_rng(5)))
    for unit in fused.units()[:2]:
        with pytest.raises(RuntimeError, match="backward called before forward"):
            unit.backward(np.zeros((1, 4, 1, 1)))


def test_fuse_reaches_inside_residual_blocks_and_unfuse_gives_the_plain_model_back():
    rng = np.random.default_rng(6)
    block = L.Sequential(L.Conv2d(3, 3, 3, padding=1, rng=rng), L.ReLU(), L.MaxPool2d(1))
    model = L.Sequential(L.Residual(block), L.Flatten())
    fused = L.fuse(model)
    assert type(fused[0].block.units()[0]).__name__ == "ConvReLUMaxPool"
    assert type(model[0].block[0]).__name__ == "Conv2d"  # the original is unchanged
    plain = L.unfuse(fused)
    assert [type(u).__name__ for u in plain[0].block.units()] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert model_config(fused) == model_config(model) == model_config(plain)
    assert list(fused.state_dict()) == list(model.state_dict())


def test_a_fused_model_saves_as_the_plain_architecture(tmp_path):
    model = seed_cnn(rng=np.random.default_rng(7))
    sc.save_model(L.fuse(model), tmp_path / "m.safetensors")
    loaded, meta = sc.load_model(tmp_path / "m.safetensors")
    assert meta["architecture"] == model_config(model)
    x = np.random.default_rng(8).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(loaded.forward(x), model.forward(x), rtol=1e-6, atol=1e-6)


def test_a_fused_layer_has_no_config_of_its_own():
    fused = L.fuse(seed_cnn(rng=np.random.default_rng(9)))
    with pytest.raises(TypeError, match="made by scratchcnn.layers.fuse"):
        fused[0].config()


def test_nan_is_never_hidden_by_the_fused_layers(backend):
    """An image with a NaN pixel gives NaN logits (it does in PyTorch), fused or not."""
    model = seed_cnn(rng=np.random.default_rng(10))
    x = np.random.default_rng(11).standard_normal((2, 3, 32, 32)).astype(np.float32)
    x[0, 1, 5, 7] = np.nan
    for net in (model, L.fuse(model)):
        for training in (False, True):
            logits = net.forward(x, training=training)
            assert np.isnan(logits[0]).all() and np.isfinite(logits[1]).all(), (net, training)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_activation_fuses_and_trains_like_the_plain_layers(backend, dtype):
    rng = np.random.default_rng(12)
    model = L.Sequential(
        L.Conv2d(3, 4, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        L.BatchNorm2d(4, dtype=dtype),
        L.GELU(),
        L.Conv2d(4, 4, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        L.BatchNorm2d(4, dtype=dtype),
        L.ReLU(),
        L.Flatten(),
        L.Linear(64, 3, rng=rng, dtype=dtype),
        L.BatchNorm1d(3, dtype=dtype),
        L.GELU("tanh"),  # the tanh form does not fuse
    )
    model[4].weight.requires_grad = False  # a frozen scale, as in airbench
    fused = L.fuse(model)
    assert [type(u).__name__ for u in fused.units()][:5] == [
        "Conv2d", "BatchNormActivation", "Conv2d", "BatchNormActivation", "Flatten"
    ]  # fmt: skip
    assert [type(u).__name__ for u in fused.units()][-2:] == ["BatchNorm1d", "GELU"]
    x = rng.standard_normal((5, 3, 4, 4)).astype(dtype)
    grad_out = rng.standard_normal((5, 3)).astype(dtype)
    out = fused.forward(x, training=True)
    grad_x = fused.backward(grad_out)
    grads = {name: p.grad.copy() for name, p in model.named_parameters()}
    buffers = {name: b.copy() for name, b in model.named_buffers()}
    for layer in (model[1], model[4], model[8]):  # run the plain model from the same statistics
        layer.running_mean[:] = 0
        layer.running_var[:] = 1
    want = model.forward(x, training=True)
    want_grad_x = model.backward(grad_out)
    tol = tolerance(dtype)
    np.testing.assert_allclose(out, want, **tol)
    np.testing.assert_allclose(grad_x, want_grad_x, **tol)
    for name, param in model.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad, **tol, err_msg=name)
    for name, buf in model.named_buffers():
        np.testing.assert_allclose(buffers[name], buf, **tol, err_msg=name)
    np.testing.assert_allclose(fused.forward(x), model.forward(x), **tol)
