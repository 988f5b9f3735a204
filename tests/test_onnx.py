"""ONNX export: the graph onnxruntime runs gives scratchcnn's outputs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from scratchcnn import layers as L  # noqa: E402
from scratchcnn.cli import main  # noqa: E402
from scratchcnn.data import Normalizer, load_dataset  # noqa: E402
from scratchcnn.interop.onnx_export import build_onnx_model, export_onnx  # noqa: E402
from scratchcnn.models import seed_cnn  # noqa: E402
from scratchcnn.serialization import save_model  # noqa: E402

CIFAR_ZIP = Path(__file__).resolve().parents[1].parent / "shared/datasets/cifar10-jpeg.zip"


def run_onnx(onnx_model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"input": x})[0]


def all_layers_model(rng: np.random.Generator) -> L.Sequential:
    """Every layer type, batch norm with non-trivial statistics. Shape: (N, 3, 16, 16) -> (N, 5)."""
    model = L.Sequential(
        L.Conv2d(3, 8, 3, padding="same", rng=rng),
        L.BatchNorm2d(8, eps=1e-3),
        L.ReLU(),
        L.Conv2d(8, 8, (2, 4), padding="same", rng=rng),  # asymmetric padding
        L.LeakyReLU(0.1),
        L.Residual(L.Sequential(L.Conv2d(8, 8, 3, padding=1, rng=rng), L.GELU())),
        L.Residual(
            L.Sequential(L.Conv2d(8, 12, 3, stride=2, padding=1, rng=rng), L.Tanh()),
            L.Conv2d(8, 12, 1, stride=2, bias=False, rng=rng),
        ),
        L.MaxPool2d(3, stride=2, padding=1),  # padded max pool: pads never win
        L.AvgPool2d(3, stride=1, padding=1),  # padded average pool: zeros count
        L.Conv2d(12, 16, 2, dilation=2, rng=rng),
        L.Sigmoid(),
        L.GlobalAvgPool2d(),
        L.Flatten(),
        L.Linear(16, 32, rng=rng),
        L.BatchNorm1d(32),
        L.GELU(approximate="tanh"),
        L.Dropout(0.5),
        L.Linear(32, 5, bias=False, rng=rng),
    )
    for layer in model.modules():
        if isinstance(layer, (L.BatchNorm1d, L.BatchNorm2d)):
            c = layer.num_features
            layer.weight.data[...] = rng.uniform(0.5, 1.5, c)
            layer.bias.data[...] = rng.normal(0, 0.1, c)
            layer.running_mean[...] = rng.normal(0, 0.2, c)
            layer.running_var[...] = rng.uniform(0.5, 2.0, c)
    return model.eval()


def zoo_layers_model(rng: np.random.Generator) -> L.Sequential:
    """The layer types the model zoo added. Shape: (N, 3, 16, 16) -> (N, 4)."""
    return L.Sequential(
        L.Conv2d(3, 6, 3, padding=1, rng=rng),
        L.ReLU(),
        L.Concat(
            L.Conv2d(6, 4, 1, rng=rng),
            L.Sequential(L.MaxPool2d(3, stride=1, padding=1), L.Conv2d(6, 2, 1, rng=rng)),
        ),  # (N, 6, 16, 16)
        L.Residual(
            L.Sequential(L.Conv2d(6, 9, 3, stride=2, padding=1, rng=rng), L.Tanh()),
            L.ChannelPad(6, 9, stride=2),
        ),  # (N, 9, 8, 8)
        L.Residual(L.Conv2d(9, 9, 1, rng=rng), L.ChannelPad(9, 9)),  # stride 1: no Slice
        L.GlobalMaxPool2d(),
        L.Linear(9, 4, bias=False, rng=rng),
        L.Scale(0.125),
    ).eval()


# --- basic -------------------------------------------------------------------------------------
def test_the_test_models_cover_every_registered_layer_type():
    from scratchcnn.layers.registry import LAYER_TYPES

    rng = np.random.default_rng(0)
    models = (all_layers_model(rng), zoo_layers_model(rng))
    assert {type(m).__name__ for model in models for m in model.modules()} == set(LAYER_TYPES)


def test_graph_is_valid_and_uses_the_expected_operators():
    model = all_layers_model(np.random.default_rng(0))
    onnx_model = build_onnx_model(model, (3, 16, 16))
    onnx.checker.check_model(onnx_model, full_check=True)
    ops = {node.op_type for node in onnx_model.graph.node}
    expected = {"Conv", "BatchNormalization", "Relu", "LeakyRelu", "Add", "Erf", "Tanh"}
    expected |= {"MaxPool", "AveragePool", "Sigmoid", "GlobalAveragePool", "Flatten", "Gemm"}
    assert expected <= ops
    conv = next(n for n in onnx_model.graph.node if n.name == "3.conv")
    pads = next(a for a in conv.attribute if a.name == "pads")
    assert list(pads.ints) == [0, 1, 1, 2]  # [top, left, bottom, right] of kernel (2, 4), "same"
    assert onnx_model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_unsupported_layer_is_named():
    class Odd(L.ReLU):
        pass

    with pytest.raises(ValueError, match="export_onnx: unsupported layer Odd at '1'"):
        build_onnx_model(L.Sequential(L.Flatten(), Odd()), (4,))


# --- correctness -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [all_layers_model, zoo_layers_model])
@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("softmax", [False, True])
def test_all_layer_types_match_scratchcnn(make, opset, softmax):
    rng = np.random.default_rng(0)
    model = make(rng)
    x = rng.standard_normal((7, 3, 16, 16)).astype(np.float32)
    got = run_onnx(build_onnx_model(model, (3, 16, 16), softmax=softmax, opset=opset), x)
    expected = model.forward(x)
    if softmax:
        expected = np.exp(expected - expected.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def small_cifar_zip(tmp_path: Path, per_class: int = 30) -> Path:
    """A few hundred real CIFAR-10 images: the first ``per_class`` of each class per split."""
    taken: dict[tuple[str, str], int] = {}
    out = tmp_path / "cifar_small.zip"
    with zipfile.ZipFile(CIFAR_ZIP) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            parts = name.split("/")
            if len(parts) < 3 or not parts[-1].endswith(".jpg"):
                continue
            key = (parts[-3], parts[-2])  # (split, class)
            if taken.get(key, 0) < (per_class if key[0] == "train" else 2):
                taken[key] = taken.get(key, 0) + 1
                target.writestr("/".join(parts[-3:]), source.read(name))
    return out


@pytest.mark.skipif(not CIFAR_ZIP.is_file(), reason=f"{CIFAR_ZIP} not present")
def test_export_command_on_real_images(tmp_path):
    dataset = load_dataset(small_cifar_zip(tmp_path), cache_dir=tmp_path / "cache", progress=False)
    assert dataset.train_images.shape == (300, 32, 32, 3)
    normalizer = Normalizer.fit(dataset.train_images)
    model = seed_cnn(rng=np.random.default_rng(0))
    checkpoint = tmp_path / "model.safetensors"
    save_model(
        model,
        checkpoint,
        class_names=dataset.class_names,
        normalization=normalizer.to_dict(),
        image_shape=[32, 32, 3],
    )
    assert (
        main(["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 0
    )
    onnx_model = onnx.load(tmp_path / "m.onnx")
    props = {p.key: json.loads(p.value) for p in onnx_model.metadata_props}
    assert props["class_names"] == dataset.class_names

    x = normalizer(dataset.train_images)  # (300, 3, 32, 32) float32
    np.testing.assert_allclose(run_onnx(onnx_model, x), model.forward(x), rtol=1e-5, atol=1e-5)

    # With the normalisation inside the graph, raw [0, 1] pixels go in.
    args = ["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "p.onnx")]
    assert main([*args, "--include-normalization", "--softmax"]) == 0
    pixels = dataset.train_images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    probabilities = run_onnx(onnx.load(tmp_path / "p.onnx"), pixels)
    logits = model.forward(x)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-5)


# --- behaviour ---------------------------------------------------------------------------------
def test_export_onnx_writes_a_loadable_file(tmp_path):
    model = seed_cnn(image_size=8, rng=np.random.default_rng(1))
    path = export_onnx(model, tmp_path / "seed.onnx", (3, 8, 8), metadata={"note": "hi"})
    loaded = onnx.load(path)
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(loaded, x), model.forward(x), rtol=1e-5, atol=1e-5)


def test_export_command_errors(tmp_path, capsys):
    model = seed_cnn(image_size=8)
    save_model(model, tmp_path / "m.safetensors")  # no image_shape recorded
    code = main(["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--onnx", "x.onnx"])
    assert code == 1 and "--input-shape" in capsys.readouterr().err
    code = main(["export", "--checkpoint", str(tmp_path / "none"), "--onnx", "x.onnx"])
    assert code == 1 and "no checkpoint" in capsys.readouterr().err
    out = tmp_path / "m.onnx"
    args = ["export", "--checkpoint", str(tmp_path / "m.safetensors"), "--onnx", str(out)]
    assert main([*args, "--input-shape", "3", "8", "8"]) == 0 and out.is_file()
