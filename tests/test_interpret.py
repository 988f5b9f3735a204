"""Interpretation tools on hand-built models whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn import layers as L
from scratchcnn.analysis import interpret
from scratchcnn.data import Normalizer
from scratchcnn.models import seed_cnn

SIZE = 12


def blob_detector() -> L.Sequential:
    """Channel 0 fires on bright pixels, channel 1 on dark ones; class k = mean of channel k.

    conv 1->2 (3x3 box filters +1/9 and -1/9, same padding) -> ReLU -> global average -> identity
    linear. So class 0's evidence lies exactly where the image is bright, class 1's where dark.
    """
    conv = L.Conv2d(1, 2, 3, padding="same", dtype=np.float64)
    conv.weight.data[0] = 1.0 / 9
    conv.weight.data[1] = -1.0 / 9
    conv.bias.data[:] = 0.0
    fc = L.Linear(2, 2, dtype=np.float64)
    fc.weight.data[:] = np.eye(2) * 10.0
    fc.bias.data[:] = 0.0
    return L.Sequential(conv, L.ReLU(), L.GlobalAvgPool2d(), fc)


def blob_image() -> np.ndarray:
    """A bright 3x3 blob centred at (2, 3) and a dark one centred at (8, 8).

    Shape: ``(1, 1, SIZE, SIZE)``.
    """
    x = np.zeros((1, 1, SIZE, SIZE))
    x[0, 0, 1:4, 2:5] = 1.0
    x[0, 0, 7:10, 7:10] = -1.0
    return x


def near(peak: tuple[int, int], centre: tuple[int, int], radius: int = 1) -> bool:
    return max(abs(peak[0] - centre[0]), abs(peak[1] - centre[1])) <= radius


def outside(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    """True outside the (2 * radius + 1) square around ``centre`` (clipped to the image)."""
    rows, cols = np.indices(shape)
    return np.maximum(abs(rows - centre[0]), abs(cols - centre[1])) > radius


def argmax2d(m: np.ndarray) -> tuple[int, int]:
    return tuple(int(i) for i in np.unravel_index(np.argmax(m), m.shape))  # type: ignore[return-value]


# --- basic -----------------------------------------------------------------------------------
def test_layer_names_and_resolution() -> None:
    model = seed_cnn(rng=np.random.default_rng(0))
    names = interpret.layer_names(model)
    assert names == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten1", "fc1", "relu3", "fc2",
    ]  # fmt: skip
    assert interpret.resolve_layer(model, None) == 4  # relu after the last conv
    assert interpret.resolve_layer(model, "pool1") == 2
    assert interpret.resolve_layer(model, "3") == 3
    assert interpret.resolve_layer(model, -1) == 9
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        interpret.resolve_layer(model, "conv9")


def test_receptive_fields_of_seed_cnn() -> None:
    rf = dict(interpret.receptive_fields(seed_cnn(), (3, 32, 32)))
    assert [rf[n] for n in ("conv1", "pool1", "conv2", "pool2")] == [3, 4, 8, 10]
    assert rf["fc1"] is None


def test_feature_maps_labels_and_shapes() -> None:
    model = seed_cnn(rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    maps = interpret.feature_maps(model, x)
    assert [(label, m.shape) for label, m in maps] == [
        ("conv1 + relu1", (32, 32, 32)),
        ("pool1", (32, 16, 16)),
        ("conv2 + relu2", (64, 16, 16)),
        ("pool2", (64, 8, 8)),
    ]


def test_resize_bilinear_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).standard_normal((2, 5, 7))
    ours = interpret.resize_bilinear(maps, (12, 9))
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[:, None], size=(12, 9), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


# --- correctness on the hand-built model -----------------------------------------------------
@pytest.mark.parametrize(("class_index", "centre"), [(0, (2, 3)), (1, (8, 8))])
def test_grad_cam_peaks_on_the_evidence(class_index: int, centre: tuple[int, int]) -> None:
    model, x = blob_detector(), blob_image()
    cam = interpret.grad_cam(model, x, layer="relu1", class_index=class_index)[0]
    assert cam.shape == (SIZE, SIZE)
    assert cam.max() == pytest.approx(1.0)
    assert argmax2d(cam) == centre
    # The 3x3 filter spreads the 3x3 blob over 5x5 pixels; nothing is outside them.
    assert np.all(cam[outside(cam.shape, centre, 2)] == 0)


def test_grad_cam_equals_the_formula() -> None:
    # For this model dy_k/dA_k = 10 / (H*W) everywhere, so cam_k = A_k / max(A_k).
    model, x = blob_detector(), blob_image()
    activation = np.maximum(model[0].forward(x), 0)[0]  # (2, H, W)
    for k in (0, 1):
        cam = interpret.grad_cam(model, x, layer=1, class_index=k, upsample=False)[0]
        np.testing.assert_allclose(cam, activation[k] / activation[k].max())


@pytest.mark.parametrize(("class_index", "centre"), [(0, (2, 3)), (1, (8, 8))])
def test_saliency_peaks_on_the_evidence(class_index: int, centre: tuple[int, int]) -> None:
    model, x = blob_detector(), blob_image()
    sal = interpret.saliency(model, x, class_index=class_index)[0]
    assert sal.shape == (SIZE, SIZE)
    assert near(argmax2d(sal), centre)
    # The ReLU passes a 5x5 region, the 3x3 filter's transpose spreads it to 7x7.
    assert np.all(sal[outside(sal.shape, centre, 3)] == 0)


@pytest.mark.parametrize(("class_index", "centre"), [(0, (2, 3)), (1, (8, 8))])
def test_occlusion_peaks_on_the_evidence(class_index: int, centre: tuple[int, int]) -> None:
    model, x = blob_detector(), blob_image()
    sens = interpret.occlusion(model, x, class_index, patch_size=3, stride=1, batch_size=7)
    assert sens.shape == (SIZE, SIZE)
    assert near(argmax2d(sens), centre)
    assert sens.max() > 0
    # Hiding the other class's blob only helps this class.
    other = (8, 8) if class_index == 0 else (2, 3)
    assert sens[other] <= 0


def test_occlusion_batches_do_not_change_the_result() -> None:
    model, x = blob_detector(), blob_image()
    a = interpret.occlusion(model, x, 0, patch_size=4, stride=3, batch_size=1)
    b = interpret.occlusion(model, x[0], 0, patch_size=4, stride=3, batch_size=1000)
    np.testing.assert_allclose(a, b)


def test_saliency_of_a_linear_model_is_its_weight_row() -> None:
    rng = np.random.default_rng(0)
    fc = L.Linear(2 * 4 * 4, 3, rng=rng, dtype=np.float64)
    model = L.Sequential(L.Flatten(), fc)
    x = rng.standard_normal((2, 2, 4, 4))
    grad = interpret.input_gradient(model, x, class_index=np.array([2, 0]))
    np.testing.assert_allclose(grad[0], fc.weight.data[2].reshape(2, 4, 4))
    np.testing.assert_allclose(grad[1], fc.weight.data[0].reshape(2, 4, 4))
    sal = interpret.saliency(model, x, class_index=1)[0]
    expected = np.abs(fc.weight.data[1].reshape(2, 4, 4)).max(axis=0)
    np.testing.assert_allclose(sal, expected / expected.max())


def test_input_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    model = seed_cnn(num_classes=4, image_size=8, rng=rng, dtype=np.float64)
    x = rng.standard_normal((1, 3, 8, 8))
    grad = interpret.input_gradient(model, x, class_index=2)
    eps = 1e-6
    for index in [(0, 0, 0, 0), (0, 1, 3, 4), (0, 2, 7, 7), (0, 0, 5, 2)]:
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric = (model.forward(plus)[0, 2] - model.forward(minus)[0, 2]) / (2 * eps)
        assert grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_grad_cam_matches_a_torch_reference() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    model = seed_cnn(num_classes=5, image_size=8, rng=rng, dtype=np.float64)
    x = rng.standard_normal((3, 3, 8, 8))
    ours = interpret.grad_cam(model, x, layer="relu2", class_index=np.array([0, 3, 4]))

    t = {k: torch.from_numpy(v.data) for k, v in model.named_parameters()}
    xt = torch.from_numpy(x).requires_grad_(True)
    a = torch.relu(torch.nn.functional.conv2d(xt, t["0.weight"], t["0.bias"], padding=1))
    a = torch.nn.functional.max_pool2d(a, 2)
    a = torch.relu(torch.nn.functional.conv2d(a, t["3.weight"], t["3.bias"], padding=1))
    a.retain_grad()
    h = torch.nn.functional.max_pool2d(a, 2).flatten(1)
    logits = torch.relu(h @ t["7.weight"].T + t["7.bias"]) @ t["9.weight"].T + t["9.bias"]
    logits[[0, 1, 2], [0, 3, 4]].sum().backward()
    cam = torch.relu((a.grad.mean(dim=(2, 3))[:, :, None, None] * a).sum(1))
    cam = torch.nn.functional.interpolate(cam[:, None], size=(8, 8), mode="bilinear")[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-300)[:, None, None]
    np.testing.assert_allclose(ours, (cam / peak).detach().numpy(), atol=1e-10)


def test_interpretation_leaves_parameter_gradients_alone() -> None:
    model = seed_cnn(num_classes=3, image_size=8, rng=np.random.default_rng(0))
    model[0].needs_input_grad = False  # as a trainer may leave it
    for p in model.parameters():
        p.grad[...] = 7.0
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    interpret.grad_cam(model, x)
    assert interpret.saliency(model, x).shape == (2, 8, 8)
    assert model[0].needs_input_grad is False
    assert all(np.all(p.grad == 7.0) for p in model.parameters())
    # and no layer is left holding a backward cache
    assert all(m._cache is None for m in model.modules())


# --- dataset scans ---------------------------------------------------------------------------
def brightness_model() -> L.Sequential:
    """Channel 0 = brightness, channel 1 = darkness, channel 2 = dead (bias -100)."""
    conv = L.Conv2d(1, 3, 1, dtype=np.float64)
    conv.weight.data[:, 0, 0, 0] = [1.0, -1.0, 1.0]
    conv.bias.data[:] = [0.0, 0.0, -100.0]
    return L.Sequential(conv, L.ReLU(), L.GlobalAvgPool2d(), L.Linear(3, 2, dtype=np.float64))


def test_top_activating_images_are_the_extremes() -> None:
    # Image i is uniformly grey at level 10 * i; shuffled so index order is not the answer.
    levels = np.random.default_rng(0).permutation(20)
    images = (levels * 10).astype(np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
    normalizer = Normalizer([0.5], [0.25])
    indices, scores = interpret.top_activating_images(
        brightness_model(), images, normalizer, layer="relu1", num_images=3, batch_size=6
    )
    assert indices.shape == scores.shape == (3, 3)
    np.testing.assert_array_equal(levels[indices[0]], [19, 18, 17])  # brightest
    np.testing.assert_array_equal(levels[indices[1]], [0, 1, 2])  # darkest
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_activation_stats_finds_the_dead_channel() -> None:
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    normalizer = Normalizer([0.5], [0.25])
    (stats,) = interpret.activation_stats(brightness_model(), images, normalizer, batch_size=4)
    assert stats.name == "relu1 (after conv1)"
    assert stats.units == 3
    assert stats.dead_fraction == pytest.approx(1 / 3)
    x = normalizer(images).astype(np.float64)
    expected = np.maximum(brightness_model()[0].forward(x), 0)
    assert stats.mean_activation == pytest.approx(expected.mean())
    assert stats.zero_fraction == pytest.approx((expected <= 0).mean())


def test_parameter_grad_norms() -> None:
    model = brightness_model()
    model.zero_grad()
    model[0].weight.grad[:] = 2.0  # 3 entries of 2: norm sqrt(12)
    norms = interpret.parameter_grad_norms(model)
    assert norms["0.weight"] == pytest.approx(np.sqrt(12))
    assert norms["3.bias"] == 0.0
