"""The model zoo: every model builds by the common contract, passes the gradient check, matches
PyTorch through the bridge, exports to ONNX and survives a checkpoint; plus each model's options.

Correctness tests run a small instance of each model (a tiny width, small images, float64 where
numbers are compared); the default-size models are only built, never run.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.backend import use_backend
from scratchcnn.layers.summary import summarize
from scratchcnn.models import (
    MODEL_DESCRIPTIONS,
    MODELS,
    airbench,
    build_model,
    cifar_resnet,
    create_model,
    inception,
    model_config,
    resnet9,
    vgg,
)
from scratchcnn.serialization import load_model, save_model
from scratchcnn.tools.gradcheck import check_layer

# A small instance of each model: ((N, C, H, W) of the test batch, builder arguments). Widths
# keep every layer at 2+ channels; images leave each batch norm several values per channel.
SMALL: dict[str, tuple[tuple[int, int, int, int], dict]] = {
    "seed_cnn": ((2, 3, 8, 8), {"width": 0.125}),
    "vgg": ((2, 3, 8, 8), {"width": 0.0625}),
    "resnet8": ((2, 3, 8, 8), {"width": 0.25}),
    "resnet20": ((2, 3, 8, 8), {"width": 0.25, "shortcut": "projection"}),
    "resnet32": ((2, 3, 8, 8), {"width": 0.25}),
    "resnet9": ((2, 3, 16, 16), {"width": 1 / 16}),
    "airbench": ((2, 3, 25, 25), {"width": 0.0625}),
    "inception": ((2, 3, 8, 8), {"width": 0.125}),
    "dilated": ((2, 3, 8, 8), {"width": 0.125, "dilations": (1, 2)}),
}
SLOW = {"resnet20", "resnet32"}  # the same blocks as resnet8, only more of them
# Finite-difference step: rounding error grows as 1e-16 / eps and truncation error as eps^2, so
# about the cube root of float64's epsilon is best. Some of these gradients are small (a max-pool
# routes each output to one input), and at gradcheck's default 1e-6 their noise reaches 1e-6.
EPS = 1e-5
NUM_CLASSES = 3

# For 32x32 RGB images and 10 classes, as the builders' docstrings state them.
PARAMETERS = {
    "seed_cnn": 545_098,
    "vgg": 1_148_874,
    "resnet8": 75_290,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet9": 6_573_120,
    "airbench": 569_656,
    "inception": 174_002,
    "dilated": 77_834,
}


def zoo_params(slow: set[str] = SLOW) -> list:
    return [pytest.param(name, marks=pytest.mark.slow) if name in slow else name for name in MODELS]


def small_model(name: str, seed: int = 0, dtype: type = np.float64) -> tuple[L.Layer, np.ndarray]:
    """The small instance with non-trivial batch norms and biases, and an input batch for it."""
    shape, options = SMALL[name]
    rng = np.random.default_rng(seed)
    model = MODELS[name](
        num_classes=NUM_CLASSES, in_channels=shape[1], image_size=shape[2], rng=rng, dtype=dtype,
        **options,
    )  # fmt: skip
    randomise(model, rng)
    return model, rng.standard_normal(shape).astype(dtype)


def randomise(model: L.Layer, rng: np.random.Generator) -> None:
    """Batch norms with scales, shifts and running statistics away from 1 and 0, and non-zero
    biases: with the defaults, ReLU after batch norm is positively homogeneous and a following
    batch norm makes some gradients exactly zero, which leaves a relative error of pure noise."""
    for layer in model.modules():
        if isinstance(layer, (L.BatchNorm1d, L.BatchNorm2d)):
            c = layer.num_features
            layer.weight.data[...] = rng.uniform(0.5, 1.5, c)
            layer.bias.data[...] = rng.normal(0, 0.2, c)
            layer.running_mean[...] = rng.normal(0, 0.2, c)
            layer.running_var[...] = rng.uniform(0.5, 2.0, c)
        if isinstance(layer, (L.Conv2d, L.Linear)) and layer.bias is not None:
            layer.bias.data[...] = rng.normal(0, 0.1, layer.bias.shape)


# --- basic: the registry and the builder contract ----------------------------------------------
def test_every_model_has_a_small_instance_a_description_and_a_count():
    assert set(SMALL) == set(MODELS) == set(MODEL_DESCRIPTIONS) == set(PARAMETERS)
    assert all(0 < len(text) <= 70 for text in MODEL_DESCRIPTIONS.values())


@pytest.mark.parametrize("name", list(MODELS))
def test_builder_takes_the_common_keywords(name):
    """``MODELS[name](num_classes, in_channels, image_size, rng, dtype, width, **options)``."""
    parameters = inspect.signature(MODELS[name]).parameters
    common = ["num_classes", "in_channels", "image_size", "rng", "dtype", "width"]
    assert list(parameters)[:6] == common
    assert parameters["num_classes"].default == 10 and parameters["width"].default == 1.0
    model = MODELS[name](num_classes=7, in_channels=1, image_size=32, width=0.125)
    assert model.output_shape((2, 1, 32, 32)) == (2, 7)
    assert all(p.dtype == np.float32 for p in model.parameters())


@pytest.mark.parametrize("name", list(MODELS))
def test_default_parameter_count_is_the_documented_one(name):
    model = MODELS[name]()
    assert model.num_parameters() == PARAMETERS[name]
    doc = inspect.getdoc(cifar_resnet if name.startswith("resnet") and name != "resnet9" else
                         MODELS[name])  # fmt: skip
    assert f"{PARAMETERS[name]:,}" in doc


def test_parameter_counts_by_hand():
    """Two counts derived independently of the code, from the papers' layer lists."""
    # ResNet-20, option A: stem conv + BN, 3 stages of 3 blocks of two 3x3 convs with BN, FC.
    stem = 3 * 16 * 9 + 2 * 16
    stages = 0
    for c_in, c in ((16, 16), (16, 32), (32, 64)):
        stages += (c_in * c * 9 + 2 * c) + (c * c * 9 + 2 * c)  # the first block of the stage
        stages += 2 * 2 * (c * c * 9 + 2 * c)  # the other two blocks
    assert cifar_resnet(depth=20).num_parameters() == stem + stages + 64 * 10 + 10 == 269_722
    # airbench93: whitening conv (bias) 3->24, groups 64/128/128 (two 3x3 convs, two BNs each).
    whiten = 3 * 24 * 4 + 24
    groups = sum(9 * (a * b + b * b) + 4 * b for a, b in ((24, 64), (64, 128), (128, 128)))
    assert airbench().num_parameters() == whiten + groups + 128 * 10 == 569_656


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_model(name):
    a, _ = small_model(name, seed=3)
    b, _ = small_model(name, seed=3)
    for (name_a, value_a), (name_b, value_b) in zip(
        a.state_dict().items(), b.state_dict().items(), strict=True
    ):
        assert name_a == name_b
        np.testing.assert_array_equal(value_a, value_b)


@pytest.mark.parametrize("name", list(MODELS))
def test_config_round_trip(name):
    model, x = small_model(name)
    config = json.loads(json.dumps(model_config(model)))
    rebuilt = build_model(config, dtype=np.float64)
    assert model_config(rebuilt) == config
    assert repr(rebuilt) == repr(model)
    assert {n: p.shape for n, p in rebuilt.named_parameters()} == {
        n: p.shape for n, p in model.named_parameters()
    }
    assert [n for n, p in rebuilt.named_parameters() if not p.requires_grad] == [
        n for n, p in model.named_parameters() if not p.requires_grad
    ]
    assert rebuilt.forward(x).shape == (x.shape[0], NUM_CLASSES)


# --- correctness: gradients, PyTorch, ONNX, checkpoints ----------------------------------------
@pytest.mark.parametrize("backend", ["reference", "fast"])
@pytest.mark.parametrize("name", zoo_params())
def test_gradient_check_evaluation_mode(name, backend):
    """Finite differences in float64 of ``sum(model(x) * R)``, batch norm on running statistics.

    Evaluation mode keeps every gradient well away from zero; the training-mode batch statistics
    are checked in the test below and, exactly, against PyTorch.
    """
    model, x = small_model(name)
    with use_backend(backend):
        errors = check_layer(
            model, x.shape, np.random.default_rng(1), EPS, training=False, max_entries=12
        )
    assert set(errors) == {"input"} | {n for n, _ in model.named_parameters()}
    assert max(errors.values()) < 1e-6, {k: v for k, v in errors.items() if v >= 1e-6}


# gradcheck walks Sequential, Residual and Concat to see each ReLU and max-pool input and keeps
# finite differences off their kinks. Inception is left out in training mode: in its small
# instance the last module's pool branch normalises 8 values per channel (2x2 maps, batch 2),
# where its 1x1 conv's weight gradient is nearly zero, and the relative error of a near-zero
# gradient grows as eps shrinks (rounding noise, measured 4e-7 .. 6e-5 over seeds on both
# backends). A bigger instance crosses ReLU kinks at every batch-norm step instead. Its
# training-mode gradients are checked against PyTorch in float64 (test_torch_parity below).
@pytest.mark.parametrize("name", [n for n in zoo_params() if n != "inception"])
def test_gradient_check_training_mode(name):
    model, x = small_model(name)
    errors = check_layer(
        model, x.shape, np.random.default_rng(1), EPS, training=True, max_entries=12
    )
    assert max(errors.values()) < 1e-6, {k: v for k, v in errors.items() if v >= 1e-6}


def share_dropout_masks(model: L.Layer, module) -> None:
    """Make torch's dropout use the masks scratchcnn drew in its last training forward."""
    from torch import nn

    pairs = zip(
        [m for m in model.modules() if isinstance(m, L.Dropout)],
        [m for m in module.modules() if isinstance(m, nn.Dropout)],
        strict=True,
    )
    for ours, theirs in pairs:
        mask = torch_from(ours._cache[0])
        theirs.register_forward_hook(lambda _mod, inputs, _out, mask=mask: inputs[0] * mask)


def torch_from(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("training", [False, True])
def test_torch_parity(name, training):
    """Forward, input and parameter gradients, and running statistics, in float64."""
    torch = pytest.importorskip("torch")
    from scratchcnn.interop.bridge import to_torch

    model, x = small_model(name)
    module = to_torch(model).train(training)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in module.named_parameters() if not p.requires_grad}
    with model.recording():
        out = model.forward(x, training=training)
    grad_out = np.random.default_rng(1).standard_normal(out.shape)
    if training:
        share_dropout_masks(model, module)
    x_torch = torch.from_numpy(x.copy()).requires_grad_(True)
    out_torch = module(x_torch)
    (out_torch * torch.from_numpy(grad_out)).sum().backward()
    np.testing.assert_allclose(out, out_torch.detach().numpy(), rtol=1e-10, atol=1e-10)
    grad_in = model.backward(grad_out)
    np.testing.assert_allclose(grad_in, x_torch.grad.numpy(), rtol=1e-9, atol=1e-11)
    theirs = dict(module.named_parameters())
    for param_name, param in model.named_parameters():
        if param_name in frozen:  # torch computes no gradient for these
            assert theirs[param_name].grad is None
            continue
        np.testing.assert_allclose(
            param.grad, theirs[param_name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=param_name
        )
    torch_state = module.state_dict()
    for buffer_name, buffer in model.named_buffers():
        np.testing.assert_allclose(buffer, torch_state[buffer_name].numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_export_agrees_with_onnxruntime(name):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from scratchcnn.interop.onnx_export import build_onnx_model

    model, x = small_model(name, dtype=np.float32)
    model.eval()
    session = ort.InferenceSession(
        build_onnx_model(model, x.shape[1:]).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    got = session.run(None, {"input": x})[0]
    expected = model.forward(x)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpoint_round_trip(name, tmp_path):
    model, x = small_model(name)
    model.forward(x, training=True)  # move the running statistics
    path = tmp_path / f"{name}.safetensors"
    save_model(model, path, class_names=["a", "b", "c"])
    loaded, meta = load_model(path)
    assert meta["class_names"] == ["a", "b", "c"]
    assert model_config(loaded) == model_config(model)
    state, expected = loaded.state_dict(), model.state_dict()
    assert list(state) == list(expected)
    for tensor_name, value in expected.items():
        assert state[tensor_name].dtype == value.dtype
        np.testing.assert_array_equal(state[tensor_name], value, err_msg=tensor_name)
    assert [p.requires_grad for p in loaded.parameters()] == [
        p.requires_grad for p in model.parameters()
    ]
    np.testing.assert_array_equal(loaded.forward(x), model.eval().forward(x))


def test_committed_seed_checkpoint_still_loads():
    from pathlib import Path

    from scratchcnn.models import seed_cnn

    path = Path(__file__).resolve().parents[1] / "models" / "seed_cnn_cifar10.safetensors"
    loaded, _ = load_model(path)
    assert model_config(loaded) == model_config(seed_cnn())


def test_seed_cnn_initialisation_is_unchanged():
    """The write-up's model draws its weights in the same order from the same generator."""
    from scratchcnn.models import seed_cnn

    rng = np.random.default_rng(11)
    expected = L.Sequential(
        L.Conv2d(3, 32, 3, padding="same", rng=rng),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Conv2d(32, 64, 3, padding="same", rng=rng),
        L.ReLU(),
        L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(4096, 128, rng=rng),
        L.ReLU(),
        L.Linear(128, 10, rng=rng),
    ).state_dict()
    got = seed_cnn(rng=np.random.default_rng(11)).state_dict()
    assert list(got) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value)


# --- behaviour: each model's options and structure ----------------------------------------------
def kinds(model: L.Layer) -> list[str]:
    return [type(m).__name__ for m in model.modules()]


def test_vgg_options():
    default = vgg(width=0.25)
    convs = [m for m in default.modules() if isinstance(m, L.Conv2d)]
    assert len(convs) == 6 and {c.kernel_size for c in convs} == {(3, 3)}
    assert kinds(default).count("MaxPool2d") == 3 and kinds(default).count("Dropout") == 3
    assert kinds(default).count("BatchNorm2d") == 6 and isinstance(default[-2], L.GlobalAvgPool2d)

    five = vgg(width=0.25, kernel_size=5, pointwise=True, pool="avg", global_pool=False)
    kernels = [m.kernel_size for m in five.modules() if isinstance(m, L.Conv2d)]
    assert kernels == [(5, 5), (5, 5), (1, 1)] * 3
    assert "MaxPool2d" not in kinds(five) and kinds(five).count("AvgPool2d") == 3
    assert isinstance(five[-2], L.Flatten) and five[-1].in_features == 64 * 4 * 4
    assert five.forward(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 10)

    four = vgg(channels=(8, 8, 16, 16), convs_per_block=1, image_size=16)
    assert kinds(four).count("Conv2d") == 4 and four.output_shape((1, 3, 16, 16)) == (1, 10)


def test_vgg_without_batch_norm_has_biased_convs_and_the_same_convs_otherwise():
    """The architecture study's "no batch norm" variant: every BatchNorm2d goes, and each conv
    gets back the bias that the batch norm's shift had replaced."""
    plain = vgg(width=0.25, pointwise=True, batch_norm=False)
    normed = vgg(width=0.25, pointwise=True)
    assert "BatchNorm2d" not in kinds(plain)
    convs = [m for m in plain.modules() if isinstance(m, L.Conv2d)]
    assert len(convs) == 9 and all(c.bias is not None for c in convs)
    assert all(m.bias is None for m in normed.modules() if isinstance(m, L.Conv2d))
    assert [c.weight.shape for c in convs] == [
        m.weight.shape for m in normed.modules() if isinstance(m, L.Conv2d)
    ]
    # parameters: the batch norms' scale and shift (2 per channel) become one bias per channel
    channels = sum(c.out_channels for c in convs)
    assert plain.num_parameters() == normed.num_parameters() - channels
    assert plain.forward(np.ones((2, 3, 32, 32), np.float32)).shape == (2, 10)
    with pytest.raises(ValueError, match="vgg: batch_norm must be a bool, got 0"):
        vgg(batch_norm=0)


def test_cifar_resnet_depth_and_shortcuts():
    for depth, blocks in ((8, 3), (20, 9), (32, 15)):
        model = cifar_resnet(depth=depth)
        assert kinds(model).count("Residual") == blocks
        convs = kinds(model).count("Conv2d")
        assert convs + 1 == depth  # 6n + 1 convolutions and the classifier
    padded = kinds(cifar_resnet(depth=20))
    assert padded.count("ChannelPad") == 2 and padded.count("Residual") == 9
    projected = cifar_resnet(depth=20, shortcut="projection")
    shortcuts = [m.shortcut for m in projected.modules() if isinstance(m, L.Residual)]
    projections = [s for s in shortcuts if s is not None]
    assert len(projections) == 2 and all(isinstance(s[0], L.Conv2d) for s in projections)
    assert [s[0].kernel_size for s in projections] == [(1, 1), (1, 1)]
    assert projected.num_parameters() - cifar_resnet(depth=20).num_parameters() == 2_752
    assert MODELS["resnet32"]().num_parameters() == cifar_resnet(depth=32).num_parameters()


def test_resnet9_head():
    model = resnet9()
    assert isinstance(model[-3], L.GlobalMaxPool2d)
    assert model[-2].bias is None and model[-2].in_features == 512
    assert isinstance(model[-1], L.Scale) and model[-1].scale == 0.125
    assert [m.out_channels for m in model.modules() if isinstance(m, L.Conv2d)] == [
        64, 128, 128, 128, 256, 512, 512, 512
    ]  # fmt: skip
    assert kinds(model).count("Residual") == 2


def test_airbench_structure():
    model = airbench()
    whiten = model[0]
    assert whiten.weight.shape == (24, 3, 2, 2) and whiten.bias is not None
    assert whiten.padding == 0 and isinstance(model[1], L.GELU)
    norms = [m for m in model.modules() if isinstance(m, L.BatchNorm2d)]
    assert len(norms) == 6
    assert all(n.eps == 1e-12 and n.momentum == 0.4 for n in norms)
    assert all(not n.weight.requires_grad and n.bias.requires_grad for n in norms)
    assert all(np.all(n.weight.data == 1) for n in norms)
    assert [m.out_channels for m in model.modules() if isinstance(m, L.Conv2d)] == [
        24, 64, 64, 128, 128, 128, 128
    ]  # fmt: skip
    assert isinstance(model[5], L.MaxPool2d) and model[5].kernel_size == (3, 3)
    assert model[7].bias is None and isinstance(model[8], L.Scale)
    assert model[8].scale == pytest.approx(1 / 9)
    assert airbench(widths=(64, 256, 256)).num_parameters() == 1_972_792  # airbench94 (its "1.97M")


def test_airbench_identity_init_passes_channels_through():
    group = airbench(identity_init=True)[3]  # 64 -> 128 channels
    conv = group[0]
    x = np.random.default_rng(0).standard_normal((1, 64, 5, 5)).astype(np.float32)
    out = conv.forward(x)
    np.testing.assert_allclose(out[:, :64], x, rtol=1e-5, atol=1e-5)  # the first 64: identity
    assert np.abs(out[:, 64:]).mean() > 0.1  # the rest: random
    random = airbench(identity_init=False)[3][0]
    assert np.abs(random.forward(x)[:, :64] - x).mean() > 0.1


def test_inception_modules_concatenate_four_branches():
    model = inception()
    modules = [m for m in model if isinstance(m, L.Concat)]
    assert len(modules) == 3 and all(len(m) == 4 for m in modules)
    x_shape = (1, 3, 32, 32)
    outputs = []
    for layer in model:
        x_shape = layer.output_shape(x_shape)
        if isinstance(layer, L.Concat):
            outputs.append(x_shape[1:])
    assert outputs == [(112, 32, 32), (160, 16, 16), (224, 8, 8)]
    first = modules[0]
    kernels = [[c.kernel_size[0] for c in b.modules() if isinstance(c, L.Conv2d)] for b in first]
    assert kernels == [[1], [1, 3], [1, 5], [1]]
    assert isinstance(first[3][0], L.MaxPool2d)
    assert "3.branches.2.3.weight" in dict(model.named_parameters())  # the 5x5 conv


def test_dilated_receptive_field_covers_the_image_without_pooling():
    model = MODELS["dilated"]()
    assert "MaxPool2d" not in kinds(model) and "AvgPool2d" not in kinds(model)
    dilations = [m.dilation[0] for m in model.modules() if isinstance(m, L.Conv2d)]
    assert dilations == [1, 1, 2, 4, 8]
    rows = summarize(model, (3, 32, 32))
    last_conv = max(i for i, layer in enumerate(model) if isinstance(layer, L.Conv2d))
    assert rows[last_conv].receptive_field == 33
    assert rows[last_conv].output_shape == (48, 32, 32)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: vgg(pool="median"), r"vgg: pool must be one of \('max', 'avg'\), got 'median'"),
        (lambda: vgg(kernel_size=4), "vgg: kernel_size must be an odd int >= 1"),
        (lambda: vgg(channels=(64, 0)), "vgg: channels must be a sequence of ints >= 1"),
        (lambda: vgg(dropout=1.0), r"vgg: dropout must be a probability in \[0, 1\)"),
        (lambda: vgg(image_size=4), "vgg: 3 blocks halve the grid 3 times; image_size must be"),
        (lambda: cifar_resnet(depth=21), "resnet: depth must be 6n \\+ 2"),
        (lambda: cifar_resnet(shortcut="conv"), "resnet: shortcut must be one of"),
        (lambda: resnet9(image_size=4), "resnet9: three 2x2 max-pools need image_size >= 8"),
        (lambda: airbench(image_size=24), "airbench: image_size must be >= 25"),
        (lambda: airbench(widths=(64, 128)), "airbench: widths must be a sequence of 3 ints"),
        (lambda: inception(dropout=-0.1), "inception: dropout must be a probability"),
        (lambda: MODELS["dilated"](dilations=()), "dilated: dilations must be a sequence"),
        (lambda: MODELS["seed_cnn"](width=0), "seed_cnn: width must be a number > 0, got 0"),
        (lambda: MODELS["resnet8"](num_classes=0), "resnet: num_classes must be an int >= 1"),
        (lambda: create_model("resnet50"), "unknown model 'resnet50'; valid models: seed_cnn, "),
        (lambda: create_model("vgg", kernel=5), "vgg: unknown argument 'kernel'; valid argu"),
    ],
)
def test_bad_options_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_create_model_passes_options_through():
    model = create_model("resnet8", num_classes=4, width=0.5, shortcut="projection")
    assert model.output_shape((1, 3, 32, 32)) == (1, 4)
    assert "ChannelPad" not in kinds(model) and kinds(model).count("Residual") == 3


# --- the command line --------------------------------------------------------------------------
def test_models_command_lists_the_zoo(capsys):
    from scratchcnn.cli import main

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[2:-1]}
    assert list(rows) == list(MODELS)
    for name, row in rows.items():
        assert f"{PARAMETERS[name]:,}" in row and MODEL_DESCRIPTIONS[name] in row
    flops = MODELS["resnet20"]().flops((1, 3, 32, 32)) / 1e6
    assert f"{flops:.1f}" in rows["resnet20"]
    assert lines[-1] == "(forward FLOPs per 3x32x32 image, 10 classes, width 1)"


def test_models_command_prints_one_summary_and_rejects_unknown_names(capsys):
    from scratchcnn.cli import main

    assert main(["models", "resnet8", "--width", "0.5"]) == 0
    out = capsys.readouterr().out
    half_width = MODELS["resnet8"](width=0.5).num_parameters()
    assert f"Total parameters: {half_width:,}" in out and "GlobalAvgPool2d" in out
    assert main(["models", "resnet50"]) == 1
    assert "unknown model 'resnet50'; valid models: seed_cnn" in capsys.readouterr().err
