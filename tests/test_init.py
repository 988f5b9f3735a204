"""Initialisers: orthogonal and dirac against PyTorch, partial dirac, patch whitening (identity
covariance of the whitened patches), selection by name, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.init import (
    INITIALIZERS,
    dirac,
    he_normal,
    init_patch_whitening,
    initialize,
    orthogonal,
    partial_dirac,
    patch_second_moment,
    patch_whitening,
    small_normal,
    torch_default,
    xavier_uniform,
)
from scratchcnn.layers import Conv2d, Linear

# --- orthogonal ------------------------------------------------------------------------------


class _FixedNormal:
    """Stands in for a Generator: ``standard_normal`` returns a given matrix (torch's draw)."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        assert shape == self.matrix.shape
        return self.matrix


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (5, 5), (8, 3, 3, 3), (40, 2, 2, 2)])
def test_orthogonal_equals_torch_for_the_same_gaussian_draw(shape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    rows, cols = shape[0], int(np.prod(shape[1:]))
    # orthogonal_ draws one (rows, cols) normal matrix; replay that draw for our function.
    torch.manual_seed(7)
    gaussian = torch.empty(rows, cols, dtype=torch.float64).normal_(0, 1).numpy()
    torch.manual_seed(7)
    expected = torch.nn.init.orthogonal_(torch.empty(shape, dtype=torch.float64), gain=1.5)
    ours = orthogonal(shape, _FixedNormal(gaussian), gain=1.5, dtype=np.float64)  # type: ignore[arg-type]
    np.testing.assert_allclose(ours, expected.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 6), (6, 4), (8, 3, 3, 3), (40, 2, 2, 2)])
@pytest.mark.parametrize("gain", [1.0, 2.0**0.5])
def test_orthogonal_rows_or_columns_are_orthonormal(shape: tuple[int, ...], gain: float) -> None:
    weight = orthogonal(shape, np.random.default_rng(0), gain=gain, dtype=np.float64)
    assert weight.shape == shape
    matrix = weight.reshape(shape[0], -1)
    rows, cols = matrix.shape
    gram = matrix @ matrix.T if rows <= cols else matrix.T @ matrix
    np.testing.assert_allclose(gram, gain**2 * np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_is_unbiased_like_torch() -> None:
    """Without the sign correction, QR makes W[0, 0] always negative; Haar-random it is not."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    ours = np.array([orthogonal((3, 5), rng, dtype=np.float64)[0, 0] for _ in range(400)])
    torch.manual_seed(1)
    theirs = np.array(
        [torch.nn.init.orthogonal_(torch.empty(3, 5)).numpy()[0, 0] for _ in range(400)]
    )
    for draws in (ours, theirs):
        assert 0.4 < (draws > 0).mean() < 0.6
        # a row of a Haar-random semi-orthogonal 3x5 matrix is uniform on the sphere of R^5
        assert abs(draws.mean()) < 0.07
        assert draws.var() == pytest.approx(1 / 5, rel=0.2)


def test_orthogonal_is_seeded_and_typed() -> None:
    a = orthogonal((6, 4), np.random.default_rng(3))
    b = orthogonal((6, 4), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32


# --- dirac -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "groups"),
    [
        ((4, 4, 3, 3), 1),
        ((6, 3, 3, 3), 1),
        ((3, 6, 3, 3), 1),
        ((4, 2, 2, 2), 1),
        ((4, 4, 3, 3), 2),
        ((6, 2, 5, 5), 3),
        ((4, 3, 3), 1),
    ],
)
def test_dirac_equals_torch(shape: tuple[int, ...], groups: int) -> None:
    torch = pytest.importorskip("torch")
    expected = torch.nn.init.dirac_(torch.full(shape, 7.0, dtype=torch.float64), groups=groups)
    ours = dirac(shape, dtype=np.float64, groups=groups)
    np.testing.assert_array_equal(ours, expected.numpy())


def test_dirac_conv_with_same_padding_is_the_identity() -> None:
    conv = Conv2d(4, 4, 3, padding="same", bias=False, init="dirac", dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 6))
    np.testing.assert_array_equal(conv.forward(x), x)
    wider = Conv2d(2, 5, 3, padding=1, bias=False, init="dirac", dtype=np.float64)
    out = wider.forward(x[:, :2])
    np.testing.assert_array_equal(out[:, :2], x[:, :2])  # the first in_channels copy the input
    np.testing.assert_array_equal(out[:, 2:], 0.0)


def test_partial_dirac_is_torch_default_with_identity_filters() -> None:
    shape = (6, 4, 3, 3)
    weight = partial_dirac(shape, np.random.default_rng(5), dtype=np.float64)
    default = torch_default(shape, np.random.default_rng(5), dtype=np.float64)
    np.testing.assert_array_equal(weight[:4], dirac((4, 4, 3, 3), dtype=np.float64))
    np.testing.assert_array_equal(weight[4:], default[4:])
    # more inputs than outputs: every filter is an identity filter
    narrow = partial_dirac((2, 4, 3, 3), np.random.default_rng(5))
    np.testing.assert_array_equal(narrow, dirac((2, 4, 3, 3)))


def test_dirac_rejects_bad_shapes_and_groups() -> None:
    with pytest.raises(ValueError, match=r"3 to 5 dimensions, got shape \(4, 4\)"):
        dirac((4, 4))
    with pytest.raises(ValueError, match="groups must be >= 1 and divide out_channels=4, got 3"):
        dirac((4, 4, 3, 3), groups=3)
    with pytest.raises(ValueError, match=r"3 to 5 dimensions, got shape \(3, 5\)"):
        Linear(5, 3, init="dirac")


# --- PyTorch's default ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 3, 3, 3), (10, 7)])
def test_torch_default_has_torchs_bound(shape: tuple[int, ...]) -> None:
    """kaiming_uniform_(a=sqrt(5)) is bound * U(-1, 1): torch's own draw gives its bound."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = torch.nn.init.kaiming_uniform_(torch.empty(shape, dtype=torch.float64), a=5**0.5)
    torch.manual_seed(0)
    unit = torch.empty(shape, dtype=torch.float64).uniform_(-1.0, 1.0)
    torch_bound = float((theirs / unit).mean())
    fan_in = int(np.prod(shape[1:]))
    assert torch_bound == pytest.approx(1 / fan_in**0.5, rel=1e-9)
    ours = torch_default(shape, np.random.default_rng(0), dtype=np.float64)
    assert np.abs(ours).max() <= torch_bound
    many = torch_default((400, *shape[1:]), np.random.default_rng(1), dtype=np.float64)
    assert many.var() == pytest.approx(torch_bound**2 / 3, rel=0.05)  # U(-a, a): a^2 / 3
    default_layer = torch.nn.Conv2d(3, 8, 3) if len(shape) == 4 else torch.nn.Linear(7, 10)
    assert np.abs(default_layer.weight.detach().numpy()).max() <= torch_bound


# --- small normal ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 3, 3, 3), (256, 512), (32, 128, 5, 5)])
def test_small_normal_has_std_0_01_whatever_the_fan_in(shape: tuple[int, ...]) -> None:
    weight = small_normal(shape, np.random.default_rng(0))
    assert weight.shape == shape and weight.dtype == np.float32
    # tens of thousands of draws: the sample std is within 2% of 0.01, the mean near 0
    assert abs(weight.std() - 0.01) < 2e-4
    assert abs(weight.mean()) < 4 * 0.01 / np.sqrt(weight.size)


# --- selection by name -------------------------------------------------------------------------


@pytest.mark.parametrize("name", INITIALIZERS)
def test_initialize_by_name_reaches_each_initializer(name: str) -> None:
    shape = (6, 4, 3, 3)
    direct = {
        "he": lambda rng: he_normal(shape, rng),
        "xavier": lambda rng: xavier_uniform(shape, rng),
        "torch_default": lambda rng: torch_default(shape, rng),
        "small_normal": lambda rng: small_normal(shape, rng),
        "zeros": lambda rng: np.zeros(shape, np.float32),
        "orthogonal": lambda rng: orthogonal(shape, rng),
        "dirac": lambda rng: dirac(shape),
        "partial_dirac": lambda rng: partial_dirac(shape, rng),
    }[name]
    weight = initialize(name, shape, np.random.default_rng(2))
    assert weight.shape == shape and weight.dtype == np.float32
    np.testing.assert_array_equal(weight, direct(np.random.default_rng(2)))
    conv = Conv2d(4, 6, 3, init=name, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(conv.weight.data, weight)


def test_initialize_unknown_name_lists_all() -> None:
    with pytest.raises(ValueError, match=r"init must be one of \(.*'orthogonal'.*\), got 'lsuv'"):
        initialize("lsuv", (2, 2), np.random.default_rng(0))


# --- patch whitening ---------------------------------------------------------------------------


def _correlated_images(n: int = 40, channels: int = 3, size: int = 9) -> np.ndarray:
    """Smooth random images: neighbouring pixels and channels correlate, as in real photos."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((n, channels, size + 2, size + 2))
    smooth = (noise[:, :, 1:, 1:] + noise[:, :, :-1, 1:] + noise[:, :, 1:, :-1])[:, :, :size, :size]
    mixing = np.array([[1.0, 0.5, 0.2], [0.3, 1.0, 0.4], [0.1, 0.6, 1.0]])[:channels, :channels]
    return np.einsum("dc,nchw->ndhw", mixing, smooth) + 0.3


def test_patch_second_moment_matches_loop() -> None:
    images = _correlated_images(n=3, size=5)
    kh, kw = 2, 3
    patches = [
        images[n, :, y : y + kh, x : x + kw].reshape(-1)  # (c, i, j) order
        for n in range(3)
        for y in range(5 - kh + 1)
        for x in range(5 - kw + 1)
    ]
    patches = np.array(patches)  # (P, C * kh * kw)
    expected = patches.T @ patches / len(patches)
    np.testing.assert_allclose(patch_second_moment(images, (kh, kw)), expected, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 5e-4, 0.5])
def test_whitened_patches_have_identity_covariance_up_to_eps(eps: float) -> None:
    images = _correlated_images()
    weight = patch_whitening((24, 3, 2, 2), images, eps=eps, dtype=np.float64)
    moment = patch_second_moment(images, (2, 2))  # (12, 12)
    eigenvalues = np.linalg.eigvalsh(moment)[::-1]
    filters = weight.reshape(24, 12)
    np.testing.assert_array_equal(filters[12:], -filters[:12])  # negated copies
    whitened = filters[:12] @ moment @ filters[:12].T  # covariance of the whitened patches
    np.testing.assert_allclose(whitened, np.diag(eigenvalues / (eigenvalues + eps)), atol=1e-10)
    if eps == 0.0:
        np.testing.assert_allclose(whitened, np.eye(12), atol=1e-10)
    # filters come in decreasing eigenvalue order: their norms 1 / sqrt(lambda + eps) grow
    assert np.all(np.diff(np.linalg.norm(filters[:12], axis=1)) >= 0)
    assert not np.allclose(moment, np.diag(np.diag(moment)), atol=0.1)  # the input was not white


def test_init_patch_whitening_whitens_the_conv_outputs() -> None:
    images = _correlated_images()
    conv = Conv2d(3, 24, 2, bias=False, dtype=np.float64)
    init_patch_whitening(conv, images, eps=0.0)
    out = conv.forward(images)  # (N, 24, 8, 8)
    flat = out.transpose(1, 0, 2, 3).reshape(24, -1)  # one row per output channel
    np.testing.assert_allclose(
        flat @ flat.T / flat.shape[1],
        np.block([[np.eye(12), -np.eye(12)], [-np.eye(12), np.eye(12)]]),
        atol=1e-9,
    )
    # only the positive half: outputs without the negated copies, float32 weights kept float32
    half = Conv2d(3, 12, 2, bias=False)
    init_patch_whitening(half, images.astype(np.float32))
    assert half.weight.data.dtype == np.float32
    np.testing.assert_allclose(half.weight.data, conv.weight.data[:12], rtol=2e-3, atol=1e-4)


def test_patch_whitening_rejects_bad_inputs() -> None:
    images = _correlated_images(n=2)
    with pytest.raises(ValueError, match="makes 12 filters .or 24.*out_channels=16"):
        patch_whitening((16, 3, 2, 2), images)
    with pytest.raises(ValueError, match=r"expects images \(N, 1, H, W\), got shape \(2, 3"):
        patch_whitening((8, 1, 2, 2), images)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0, got -1.0"):
        patch_whitening((24, 3, 2, 2), images, eps=-1.0)
    with pytest.raises(ValueError, match="singular.*use eps > 0"):
        patch_whitening((24, 3, 2, 2), np.ones((2, 3, 4, 4)), eps=0.0)
    with pytest.raises(ValueError, match="float .N, C, H, W. images, got uint8"):
        patch_whitening((24, 3, 2, 2), np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="expects a Conv2d.*got Linear"):
        init_patch_whitening(Linear(3, 2), images)  # type: ignore[arg-type]
