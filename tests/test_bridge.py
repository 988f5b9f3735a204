"""The PyTorch bridge: same architecture, same weights, same numbers in both frameworks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from scratchcnn import layers as L  # noqa: E402
from scratchcnn.interop.bridge import (  # noqa: E402
    TorchGlobalAvgPool2d,
    TorchResidual,
    from_torch,
    load_torch_checkpoint,
    load_torch_state_dict,
    scratchcnn_state_to_torch,
    to_torch,
)
from scratchcnn.models import build_model, model_config, seed_cnn  # noqa: E402
from scratchcnn.serialization import save_model  # noqa: E402

# torch's own note that an even kernel with padding="same" pads a copy of the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def all_layers_model(rng: np.random.Generator, dtype: type = np.float32) -> L.Sequential:
    """Every built-in layer type, with non-default hyperparameters where a layer has them.

    Shape: ``(N, 3, 16, 16) -> (N, 5)``.
    """
    return L.Sequential(
        L.Conv2d(3, 8, 3, padding="same", rng=rng, dtype=dtype),
        L.BatchNorm2d(8, eps=1e-3, momentum=0.2, dtype=dtype),
        L.ReLU(),
        L.Conv2d(8, 8, (2, 4), padding="same", rng=rng, dtype=dtype),  # asymmetric padding
        L.LeakyReLU(0.1),
        L.Residual(L.Sequential(L.Conv2d(8, 8, 3, padding=1, rng=rng, dtype=dtype), L.GELU())),
        L.Residual(
            L.Sequential(L.Conv2d(8, 12, 3, stride=2, padding=1, rng=rng, dtype=dtype), L.Tanh()),
            L.Conv2d(8, 12, 1, stride=2, bias=False, rng=rng, dtype=dtype),
        ),  # (N, 12, 8, 8)
        L.MaxPool2d(2),  # (N, 12, 4, 4)
        L.Conv2d(12, 12, (3, 1), padding=(1, 0), rng=rng, dtype=dtype),
        L.AvgPool2d(3, stride=1, padding=1),  # zero padding counts towards the mean
        L.Conv2d(12, 16, 2, padding="valid", dilation=1, rng=rng, dtype=dtype),  # (N, 16, 3, 3)
        L.Sigmoid(),
        L.GlobalAvgPool2d(),  # (N, 16)
        L.Flatten(),
        L.Linear(16, 32, rng=rng, dtype=dtype),
        L.BatchNorm1d(32, momentum=0.3, dtype=dtype),
        L.GELU(approximate="tanh"),
        L.Dropout(0.3, rng=np.random.default_rng(7)),
        L.Linear(32, 5, bias=True, rng=rng, dtype=dtype),
    )


def zoo_layers_model(rng: np.random.Generator, dtype: type = np.float32) -> L.Sequential:
    """The layer types the model zoo added, and a frozen parameter.

    Shape: ``(N, 3, 16, 16) -> (N, 4)``.
    """
    model = L.Sequential(
        L.Conv2d(3, 6, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        L.BatchNorm2d(6, eps=1e-12, momentum=0.4, dtype=dtype),
        L.ReLU(),
        L.Concat(
            L.Conv2d(6, 4, 1, rng=rng, dtype=dtype),
            L.Sequential(
                L.MaxPool2d(3, stride=1, padding=1), L.Conv2d(6, 2, 1, rng=rng, dtype=dtype)
            ),
        ),  # (N, 6, 16, 16)
        L.Residual(
            L.Sequential(L.Conv2d(6, 9, 3, stride=2, padding=1, rng=rng, dtype=dtype), L.Tanh()),
            L.ChannelPad(6, 9, stride=2),
        ),  # (N, 9, 8, 8)
        L.GlobalMaxPool2d(),
        L.Linear(9, 4, bias=False, rng=rng, dtype=dtype),
        L.Scale(0.125),
    )
    model[1].weight.requires_grad = False  # as airbench freezes its batch-norm scales
    return model


def randomise_buffers(model: L.Sequential, rng: np.random.Generator) -> None:
    """Give batch norm non-trivial affine parameters and running statistics."""
    for layer in model.modules():
        if isinstance(layer, (L.BatchNorm1d, L.BatchNorm2d)):
            c = layer.num_features
            layer.weight.data[...] = rng.uniform(0.5, 1.5, c)
            layer.bias.data[...] = rng.normal(0, 0.1, c)
            layer.running_mean[...] = rng.normal(0, 0.2, c)
            layer.running_var[...] = rng.uniform(0.5, 2.0, c)


MODELS = {
    "seed_cnn": (lambda rng: seed_cnn(rng=rng), (4, 3, 32, 32)),
    "all_layers": (lambda rng: all_layers_model(rng), (6, 3, 16, 16)),
    "zoo_layers": (lambda rng: zoo_layers_model(rng), (5, 3, 16, 16)),
}


def make(name: str, seed: int = 0, dtype: type = np.float32):
    builder, shape = MODELS[name]
    rng = np.random.default_rng(seed)
    model = builder(rng)
    randomise_buffers(model, rng)
    x = rng.standard_normal(shape).astype(np.float32)
    return model.astype(dtype), x.astype(dtype)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def biases_before_batch_norm(model: L.Sequential) -> set[str]:
    """Names of biases that feed a batch norm directly: in training mode their gradient is zero
    in exact arithmetic (the batch mean absorbs them), so both frameworks return float noise."""
    return {
        f"{i}.bias"
        for i, (layer, after) in enumerate(zip(model.layers, model.layers[1:], strict=False))
        if isinstance(after, (L.BatchNorm1d, L.BatchNorm2d)) and getattr(layer, "bias", None)
    }


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name], b[name]), name


# --- basic: structure and names ---------------------------------------------------------------
def test_the_test_models_cover_every_registered_layer_type():
    """So that every type the registry lists is converted, round-tripped and compared below."""
    from scratchcnn.layers.registry import LAYER_TYPES

    rng = np.random.default_rng(0)
    seen = {type(m).__name__ for name in MODELS for m in MODELS[name][0](rng).modules()}
    assert seen == set(LAYER_TYPES)


def test_requires_grad_carries_over_both_ways():
    model, _ = make("zoo_layers")
    module = to_torch(model)
    assert not module[1].weight.requires_grad and module[1].bias.requires_grad
    module[6].weight.requires_grad_(False)
    back = from_torch(module)
    assert [name for name, p in back.named_parameters() if not p.requires_grad] == [
        "1.weight",
        "6.weight",
    ]


def test_zoo_layers_become_their_torch_twins():
    from scratchcnn.interop.bridge import (
        TorchChannelPad,
        TorchConcat,
        TorchGlobalMaxPool2d,
        TorchScale,
    )

    model, _ = make("zoo_layers")
    module = to_torch(model)
    assert isinstance(module[3], TorchConcat) and len(module[3].branches) == 2
    assert isinstance(module[4].shortcut, TorchChannelPad) and module[4].shortcut.stride == 2
    assert isinstance(module[5], TorchGlobalMaxPool2d)
    assert isinstance(module[7], TorchScale) and module[7].scale == 0.125
    assert "3.branches.1.1.weight" in module.state_dict()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_dict_names_and_shapes_match(name):
    model, _ = make(name)
    torch_state = to_torch(model).state_dict()
    expected = {k: v.shape for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in torch_state.items() if "num_batches_tracked" not in k}
    assert got == expected


def test_hyperparameters_carry_over():
    model, _ = make("all_layers")
    module = to_torch(model)
    assert isinstance(module[5], TorchResidual) and module[5].shortcut is None
    assert isinstance(module[12], TorchGlobalAvgPool2d)
    assert module[1].eps == 1e-3 and module[1].momentum == 0.2
    assert module[15].momentum == 0.3
    assert module[3].padding == "same"
    assert module[4].negative_slope == 0.1
    assert module[16].approximate == "tanh"
    assert module[17].p == 0.3
    assert module[9].count_include_pad
    assert module[6].shortcut.bias is None


def test_training_mode_follows_the_model():
    model, _ = make("seed_cnn")
    assert not to_torch(model.eval()).training
    assert to_torch(model.train()).training
    assert not from_torch(to_torch(model).eval()).training


# --- correctness: forward and gradients --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_parity_eval(name):
    model, x = make(name)
    module = to_torch(model).eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = model.forward(x, training=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def share_dropout_masks(model: L.Layer, module: nn.Module) -> None:
    """Make torch's dropout use the masks scratchcnn drew in its last training forward."""
    pairs = zip(
        [m for m in model.modules() if isinstance(m, L.Dropout)],
        [m for m in module.modules() if isinstance(m, nn.Dropout)],
        strict=True,
    )
    for ours, theirs in pairs:
        mask = torch.from_numpy(ours._cache[0])
        theirs.register_forward_hook(lambda _mod, inputs, _out, mask=mask: inputs[0] * mask)


# float64 checks the mapping to rounding; float32 checks what users run, where the fast
# backend's Winograd and Numba kernels round differently from torch's oneDNN: through the
# 15-odd layers of all_layers its largest output difference measured 2.4e-5 (the reference
# backend's 1.1e-5), so float32 outputs are compared norm-wise, as the gradients always were.
TOLERANCES = {np.float64: (1e-9, 1e-8), np.float32: (1e-5, 1e-4)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("training", [False, True])
def test_gradient_parity(name, training, dtype):
    output_tolerance, grad_tolerance = TOLERANCES[dtype]
    model, x = make(name, dtype=dtype)
    module = to_torch(model).train(training)
    grad_out_rng = np.random.default_rng(1)

    with model.recording():
        out = model.forward(x, training=training)
    grad_out = grad_out_rng.standard_normal(out.shape).astype(dtype)
    if training:
        share_dropout_masks(model, module)
    x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
    out_torch = module(x_torch)
    (out_torch * torch.from_numpy(grad_out)).sum().backward()
    theirs = out_torch.detach().numpy()
    if dtype == np.float64:
        np.testing.assert_allclose(out, theirs, rtol=output_tolerance, atol=output_tolerance)
    else:
        assert relative_error(out, theirs) < output_tolerance

    grad_x = model.backward(grad_out)
    assert relative_error(grad_x, x_torch.grad.numpy()) < grad_tolerance
    torch_params = dict(module.named_parameters())
    vanishing = biases_before_batch_norm(model) if training else set()
    for param_name, param in model.named_parameters():
        if not param.requires_grad:  # frozen: torch computes no gradient for it
            assert torch_params[param_name].grad is None
            continue
        theirs = torch_params[param_name].grad.numpy()
        if param_name in vanishing:
            scale = np.linalg.norm(torch_params[param_name.replace("bias", "weight")].grad)
            assert max(np.linalg.norm(param.grad), np.linalg.norm(theirs)) < 1e-3 * scale
            continue
        assert relative_error(param.grad, theirs) < grad_tolerance, param_name
    if training:  # the running statistics moved the same way
        torch_state = module.state_dict()
        for buf_name, buf in model.named_buffers():
            np.testing.assert_allclose(buf, torch_state[buf_name].numpy(), rtol=1e-5, atol=1e-6)


def test_float64_model_stays_float64():
    model = all_layers_model(np.random.default_rng(0), dtype=np.float64)
    module = to_torch(model).eval()
    assert all(p.dtype == torch.float64 for p in module.parameters())
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16))
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-10, atol=1e-12)
    assert from_torch(module).state_dict()["0.weight"].dtype == np.float64


# --- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_from_scratchcnn_is_exact(name):
    model, _ = make(name)
    back = from_torch(to_torch(model))
    assert model_config(back) == model_config(model)
    assert_same_state(back.state_dict(), model.state_dict())


def torch_native_model() -> nn.Sequential:
    """A model written the usual torch way (AdaptiveAvgPool2d + Flatten, tuple padding)."""
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=(1, 2)),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.AvgPool2d(2, padding=1),
        TorchResidual(nn.Sequential(nn.Conv2d(6, 6, 3, padding="same"), nn.GELU())),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(6, 4),
    )
    with torch.no_grad():
        module[1].running_mean.normal_()
        module[1].running_var.uniform_(0.5, 2)
    return module.eval()


def test_round_trip_from_torch_is_exact():
    module = torch_native_model()
    back = to_torch(from_torch(module))
    expected = {k: v for k, v in module.state_dict().items() if "num_batches_tracked" not in k}
    got = {k: v for k, v in back.state_dict().items() if "num_batches_tracked" not in k}
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        np.testing.assert_allclose(
            from_torch(module).forward(x.numpy()), module(x).numpy(), rtol=1e-5, atol=1e-5
        )


# --- state dicts and checkpoints --------------------------------------------------------------
def test_torch_state_dict_loads_into_scratchcnn():
    model, x = make("all_layers")
    module = to_torch(model).eval()
    with torch.no_grad():  # change the torch weights, then carry them back by state dict
        for p in module.parameters():
            p.mul_(1.5)
        expected = module(torch.from_numpy(x)).numpy()
    fresh = build_model(model_config(model)).eval()
    load_torch_state_dict(fresh, module.state_dict())
    np.testing.assert_allclose(fresh.forward(x), expected, rtol=1e-5, atol=1e-5)


def test_scratchcnn_state_loads_into_torch_strictly():
    model, x = make("all_layers")
    module = to_torch(build_model(model_config(model))).eval()
    module.load_state_dict(scratchcnn_state_to_torch(model.state_dict()))
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-5, atol=1e-5)


def test_checkpoint_loads_into_torch(tmp_path):
    model, x = make("all_layers")
    save_model(model, tmp_path / "model.safetensors", class_names=list("abcde"))
    module, meta = load_torch_checkpoint(tmp_path / "model.safetensors")
    assert meta["class_names"] == list("abcde") and not module.training
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-5, atol=1e-5)


# --- errors ------------------------------------------------------------------------------------
def test_unsupported_layer_is_named_with_its_place():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LSTM(4, 4))
    with pytest.raises(ValueError, match=r"from_torch: unsupported layer nn\.LSTM at '3'"):
        from_torch(module)


def test_to_torch_rejects_layers_it_does_not_know():
    class Odd(L.ReLU):
        pass

    with pytest.raises(ValueError, match=r"to_torch: unsupported layer Odd at '1'"):
        to_torch(L.Sequential(L.Flatten(), Odd()))


def test_unsupported_nested_and_custom_layers():
    nested = nn.Sequential(TorchResidual(nn.Sequential(nn.ReLU(), nn.ELU())))
    with pytest.raises(ValueError, match=r"nn\.ELU at '0\.block\.1'"):
        from_torch(nested)

    class Net(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"unsupported layer .*Net at '<root>'"):
        from_torch(Net())
    with pytest.raises(ValueError, match=r"groups=1"):
        from_torch(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d at '0'"):
        from_torch(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.ReLU()))
    with pytest.raises(ValueError, match=r"ceil_mode"):
        from_torch(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)))


def test_torch_global_max_pooling_spelling_is_read():
    torch.manual_seed(1)
    module = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    ).eval()
    model = from_torch(module)
    assert [type(layer).__name__ for layer in model] == [
        "Conv2d", "GlobalMaxPool2d", "Flatten", "Linear"
    ]  # fmt: skip
    x = torch.randn(2, 3, 6, 5)
    with torch.no_grad():
        np.testing.assert_allclose(model.forward(x.numpy()), module(x).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool2d at '0'.*AdaptiveMaxPool2d\(1\)"):
        from_torch(nn.Sequential(nn.AdaptiveMaxPool2d(2), nn.Flatten()))
