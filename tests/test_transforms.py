"""Batch augmentations in scratchcnn.data.transforms: basic (shape, dtype, determinism) and
correctness (exact results on hand-made images, and loop references)."""

from __future__ import annotations

import numpy as np
import pytest

from scratchcnn.data.transforms import (
    AlternatingFlip,
    ColorJitter,
    Compose,
    CutMix,
    Cutout,
    Mixup,
    MixupOrCutMix,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    build_mixer,
    build_transforms,
    one_hot,
)

PER_IMAGE = [
    RandomHorizontalFlip(0.5),
    RandomCrop(8, padding=2),
    RandomCrop(None, padding=3, padding_mode="reflect"),
    ColorJitter(0.4, 0.4, 0.4),
    RandomAffine(15, scale=(0.9, 1.1)),
    Cutout(3, p=0.7),
    Compose([RandomCrop(8, 1), RandomHorizontalFlip(), Cutout(2)]),
]
MIXERS = [Mixup(0.4), CutMix(1.0), MixupOrCutMix(0.2, 1.0)]


def _batch(dtype=np.float32, n: int = 6, channels: int = 3, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, channels, size, size)).astype(dtype)


# ---------------------------------------------------------------- basic


@pytest.mark.parametrize("transform", PER_IMAGE, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 3])
def test_per_image_keeps_shape_dtype_range_and_is_seeded(transform, dtype, channels):
    images = _batch(dtype, channels=channels)
    original = images.copy()
    out = transform(images, np.random.default_rng(3))
    assert out.shape == images.shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(images, original)  # the input is never modified
    np.testing.assert_array_equal(out, transform(images, np.random.default_rng(3)))


@pytest.mark.parametrize("mixer", MIXERS, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mixers_keep_shape_dtype_label_mass_and_are_seeded(mixer, dtype):
    images = _batch(dtype)
    targets = one_hot(np.arange(6) % 4, 4, dtype)
    out_images, soft = mixer(images, targets, np.random.default_rng(5))
    assert out_images.shape == images.shape and out_images.dtype == dtype
    assert soft.shape == targets.shape and soft.dtype == dtype
    np.testing.assert_allclose(soft.sum(axis=1), 1, rtol=1e-6)
    assert soft.min() >= 0
    again = mixer(images, targets, np.random.default_rng(5))
    np.testing.assert_array_equal(out_images, again[0])
    np.testing.assert_array_equal(soft, again[1])


@pytest.mark.parametrize("mixer_class", [Mixup, CutMix])
def test_mixer_targets_match_pixels(mixer_class):
    """Image i is the constant value i; after mixing, its mean pixel must equal the soft
    target's weighted sum of the values, i.e. labels mix exactly as pixels do."""
    n = 8
    images = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None, None] / n, (n, 3, 8, 8))
    targets = one_hot(np.arange(n), n, np.float64)
    for seed in range(5):
        mixed, soft = mixer_class(1.0)(images.copy(), targets, np.random.default_rng(seed))
        np.testing.assert_allclose(mixed.mean(axis=(1, 2, 3)), soft @ (np.arange(n) / n))


def test_mixers_off_are_identity():
    images, targets = _batch(), one_hot(np.arange(6) % 2, 2)
    for mixer in (Mixup(0.0), CutMix(0.0)):
        out_images, out_targets = mixer(images, targets, np.random.default_rng(0))
        assert out_images is images and out_targets is targets


def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert one_hot(np.array([1]), 2, np.float64).dtype == np.float64
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        one_hot(np.array([3]), 3)


def test_build_transforms_and_mixer():
    assert len(build_transforms()) == 0
    images = _batch()
    np.testing.assert_array_equal(build_transforms()(images, np.random.default_rng(0)), images)
    full = build_transforms(
        flip=True,
        crop_padding=4,
        brightness=0.2,
        rotation_degrees=10,
        cutout_size=4,
    )
    kinds = [type(t) for t in full.transforms]
    assert kinds == [RandomAffine, RandomCrop, RandomHorizontalFlip, ColorJitter, Cutout]
    assert full(images, np.random.default_rng(0)).shape == images.shape
    assert build_mixer() is None
    assert isinstance(build_mixer(mixup_alpha=0.2), Mixup)
    assert isinstance(build_mixer(cutmix_alpha=1.0), CutMix)
    assert isinstance(build_mixer(0.2, 1.0), MixupOrCutMix)


def test_constructors_reject_bad_values():
    with pytest.raises(ValueError, match="p must lie in"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        RandomCrop(4, -1)
    with pytest.raises(ValueError, match="padding_mode"):
        RandomCrop(4, 1, "wrap")
    with pytest.raises(ValueError, match="brightness"):
        ColorJitter(brightness=-0.1)
    with pytest.raises(ValueError, match="size must be >= 1"):
        Cutout(0)
    with pytest.raises(ValueError, match="float"):
        RandomHorizontalFlip()(np.zeros((1, 1, 2, 2), np.uint8), np.random.default_rng(0))


# ---------------------------------------------------------------- correctness


def test_flip_exact():
    image = np.array([[[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]]])  # (1, 1, 2, 3)
    flipped = RandomHorizontalFlip(p=1.0)(image, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped, [[[[0.3, 0.2, 0.1], [0.6, 0.5, 0.4]]]])
    np.testing.assert_array_equal(
        RandomHorizontalFlip(p=0.0)(image, np.random.default_rng(0)), image
    )
    # With p = 0.5 each image is either itself or its mirror, both occurring.
    batch = np.repeat(image, 64, axis=0)
    out = RandomHorizontalFlip()(batch, np.random.default_rng(1))
    is_flipped = np.all(out == image[..., ::-1], axis=(1, 2, 3))
    assert np.all(is_flipped | np.all(out == image, axis=(1, 2, 3)))
    assert 0 < is_flipped.sum() < 64


TINY = np.array([[[[1.0, 2.0], [3.0, 4.0]]]]) / 10  # (1, 1, 2, 2)


@pytest.mark.parametrize(
    ("mode", "hand_made"),
    [
        # Padding 1 around [[1, 2], [3, 4]]: crops at offsets (0, 0), (1, 1), (2, 2), (0, 2).
        ("constant", [[[0, 0], [0, 1]], [[1, 2], [3, 4]], [[4, 0], [0, 0]], [[0, 0], [2, 0]]]),
        # Reflect padding gives rows [4 3 4 3], [2 1 2 1], [4 3 4 3], [2 1 2 1].
        ("reflect", [[[4, 3], [2, 1]], [[1, 2], [3, 4]], [[4, 3], [2, 1]], [[4, 3], [2, 1]]]),
    ],
)
def test_crop_exact_on_tiny_image(mode, hand_made):
    batch = np.repeat(TINY, 300, axis=0)
    out = RandomCrop(2, padding=1, padding_mode=mode)(batch, np.random.default_rng(0))
    padded = np.pad(TINY[0, 0], 1, mode=mode)
    all_crops = {
        padded[top : top + 2, left : left + 2].tobytes() for top in range(3) for left in range(3)
    }
    seen = {crop.tobytes() for crop in out[:, 0]}
    assert seen == all_crops  # every translation occurs, and nothing else
    for expected in hand_made:
        assert (np.array(expected, dtype=float) / 10).tobytes() in seen


def test_crop_matches_loop_reference():
    images = _batch(n=5, size=6)
    out = RandomCrop(4, padding=2)(images, np.random.default_rng(11))
    # Replay the same draws and crop image by image.
    rng = np.random.default_rng(11)
    top, left = rng.integers(0, 7, 5), rng.integers(0, 7, 5)
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(5):
        np.testing.assert_array_equal(
            out[i], padded[i, :, top[i] : top[i] + 4, left[i] : left[i] + 4]
        )


def test_cutout_matches_loop_reference():
    images = np.ones((20, 2, 7, 7))
    out = Cutout(3, p=1.0)(images, np.random.default_rng(2))
    rng = np.random.default_rng(2)
    rng.random(20)  # the apply draws, all true for p = 1
    centre_y, centre_x = rng.integers(0, 7, 20), rng.integers(0, 7, 20)
    for i in range(20):
        expected = np.ones((2, 7, 7))
        top, left = max(centre_y[i] - 1, 0), max(centre_x[i] - 1, 0)
        expected[:, top : centre_y[i] + 2, left : centre_x[i] + 2] = 0
        np.testing.assert_array_equal(out[i], expected)
    untouched = Cutout(3, p=0.0)(images, np.random.default_rng(2))
    np.testing.assert_array_equal(untouched, images)


def test_affine_identity_and_quarter_turn():
    images = _batch(np.float64, size=7)
    same = RandomAffine(0.0)(images, np.random.default_rng(0))
    np.testing.assert_array_equal(same, images)
    # A fixed +90 degree turn (counter-clockwise as displayed) equals np.rot90 on a square image.
    turned = RandomAffine((90.0, 90.0))(images, np.random.default_rng(0))
    np.testing.assert_allclose(turned, np.rot90(images, k=1, axes=(2, 3)), atol=1e-12)


def test_affine_zoom_out_leaves_black_border():
    images = np.ones((2, 1, 9, 9))
    shrunk = RandomAffine(0.0, scale=(0.5, 0.5))(images, np.random.default_rng(0))
    assert shrunk[0, 0, 4, 4] == 1 and shrunk[0, 0, 0, 0] == 0


def test_color_jitter_values():
    grey = np.full((4, 3, 5, 5), 0.5)
    # A flat grey image has nothing to saturate or stretch.
    np.testing.assert_allclose(ColorJitter(0, 0.5, 0.5)(grey, np.random.default_rng(0)), grey)
    brighter = ColorJitter(brightness=0.5)(grey, np.random.default_rng(0))
    factors = np.random.default_rng(0).uniform(0.5, 1.5, 4)
    np.testing.assert_allclose(brighter[:, 0, 0, 0], 0.5 * factors)
    # Saturation 0 .. 2 keeps each pixel's luma (before clipping, here avoided).
    images = 0.3 + 0.4 * _batch(np.float64)
    weights = np.array([0.299, 0.587, 0.114])
    out = ColorJitter(saturation=0.3)(images, np.random.default_rng(4))
    np.testing.assert_allclose(
        np.einsum("nchw,c->nhw", out, weights), np.einsum("nchw,c->nhw", images, weights)
    )


def test_alternating_flip_by_hand():
    flipper = AlternatingFlip(6, np.random.default_rng(0))
    coins = np.random.default_rng(0).random(6) < 0.5  # the same draw, made here
    np.testing.assert_array_equal(flipper.first_epoch_flips, coins)
    images = _batch(n=3)
    indices = np.array([4, 0, 5])
    for epoch in range(4):
        out = flipper(images, indices, epoch)
        for row, index in enumerate(indices):
            mirrored = coins[index] != (epoch % 2 == 1)
            expected = images[row, :, :, ::-1] if mirrored else images[row]
            np.testing.assert_array_equal(out[row], expected)


def test_alternating_flip_alternates_per_image_whatever_the_batches():
    flipper = AlternatingFlip(1000, np.random.default_rng(1))
    everything = np.arange(1000)
    epochs = np.array([flipper.flips(everything, epoch) for epoch in range(6)])  # (6, 1000)
    assert 0.45 < epochs[0].mean() < 0.55  # a random half at first
    np.testing.assert_array_equal(epochs[1], ~epochs[0])  # every image flips every epoch
    np.testing.assert_array_equal(epochs[2:], np.tile(epochs[:2], (2, 1)))
    # an image's flip depends only on its index and the epoch, not on the batch it is in
    shuffled = np.random.default_rng(2).permutation(1000)[:64]
    np.testing.assert_array_equal(flipper.flips(shuffled, 3), epochs[3][shuffled])
    assert repr(flipper) == "AlternatingFlip(num_images=1000)"


def test_alternating_flip_is_seeded_and_keeps_its_input():
    images = _batch(np.float64, n=4)
    original = images.copy()
    a = AlternatingFlip(10, np.random.default_rng(3))(images, np.arange(4), 0)
    b = AlternatingFlip(10, np.random.default_rng(3))(images, np.arange(4), 0)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float64 and a.shape == images.shape
    np.testing.assert_array_equal(images, original)


def test_alternating_flip_rejects_bad_input():
    flipper = AlternatingFlip(5, np.random.default_rng(0))
    images = _batch(n=2)
    with pytest.raises(ValueError, match="num_images must be an int >= 1, got 0"):
        AlternatingFlip(0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\), got \[1, 5\]"):
        flipper(images, np.array([1, 5]), 0)
    with pytest.raises(ValueError, match="1-D integer image indices, got float64"):
        flipper(images, np.array([0.0, 1.0]), 0)
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        flipper(images, np.array([0, 1]), -1)
    with pytest.raises(ValueError, match="got 2 images but 3 indices"):
        flipper(images, np.array([0, 1, 2]), 0)


def test_reflect_translation_matches_torch_reflect_padding():
    """RandomCrop(None, r, "reflect") is airbench's translation: torch's reflect padding, then
    a crop at offsets drawn from {0, ..., 2r}."""
    torch = pytest.importorskip("torch")
    images = _batch(np.float64, n=7, size=6)
    out = RandomCrop(None, padding=2, padding_mode="reflect")(images, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    top, left = rng.integers(0, 5, 7), rng.integers(0, 5, 7)
    padded = torch.nn.functional.pad(torch.from_numpy(images), (2, 2, 2, 2), mode="reflect")
    for i in range(7):
        np.testing.assert_array_equal(
            out[i], padded[i, :, top[i] : top[i] + 6, left[i] : left[i] + 6].numpy()
        )
