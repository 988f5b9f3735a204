"""Batch data augmentation on float NCHW images in [0, 1], vectorised and seeded.

Three kinds of callables:

* per-image transforms, ``t(images, rng) -> images``: each image gets its own random draw,
  computed for the whole batch at once (no Python loop over images);
* label mixers, ``m(images, targets, rng) -> (images, soft_targets)``: Mixup and CutMix blend
  pairs of images and their one-hot targets, keeping every target row summing to 1;
* :class:`AlternatingFlip`, ``flip(images, indices, epoch) -> images``, which decides from the
  images' dataset indices and the epoch rather than from a draw.

All of them keep the batch's shape and dtype and draw only from the ``rng`` passed in. They run
before normalisation (the trainer normalises afterwards), so fills such as zero padding and
Cutout's blank square mean black.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "AlternatingFlip",
    "ColorJitter",
    "Compose",
    "CutMix",
    "Cutout",
    "Mixup",
    "MixupOrCutMix",
    "RandomAffine",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Transform",
    "build_mixer",
    "build_transforms",
    "one_hot",
]


class Transform(Protocol):
    """A per-image augmentation applied to a whole batch."""

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


class Mixer(Protocol):
    """A batch augmentation that mixes images and their soft targets."""

    def __call__(
        self, images: np.ndarray, targets: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]: ...


def _check_batch(images: np.ndarray, who: str) -> None:
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{who} expects float (N, C, H, W) images in [0, 1], got {images.dtype} {images.shape}"
        )


def one_hot(
    labels: np.ndarray, num_classes: int, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """Encode integer labels as one-hot rows.

    Shape:
        labels: (N,) integers in ``[0, num_classes)``. Returns (N, num_classes) of ``dtype``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot expects 1-D integer labels, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"one_hot: labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    encoded = np.zeros((labels.shape[0], num_classes), dtype=dtype)
    encoded[np.arange(labels.shape[0]), labels] = 1
    return encoded


class Compose:
    """Apply transforms in order; an empty list is the identity."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shape: images (N, C, H, W) float -> same."""
        for transform in self.transforms:
            images = transform(images, rng)
        return images

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shape: images (N, C, H, W) float -> same."""
        _check_batch(images, "RandomHorizontalFlip")
        flip = rng.random(images.shape[0]) < self.p  # (N,)
        return np.where(flip[:, None, None, None], images[..., ::-1], images)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class AlternatingFlip:
    """Mirror each image on alternate epochs: airbench's derandomised horizontal flip.

    At construction every image ``i`` of the training set gets a fair coin ``b_i`` from
    ``rng``. In epoch ``e`` (0-based), image ``i`` is mirrored left-right when::

        flipped(i, e) = b_i XOR (e is odd)

    so epoch 0 mirrors a random half of the images, epoch 1 exactly the other half, epoch 2 the
    first half again, and so on: every image is seen both ways in every two consecutive epochs,
    where independent random flips show about half of the images the same way twice running.
    Jordan (2024) finds this helps whenever flipping helps at all.

    Unlike the per-image transforms it needs to know which images the batch holds (their
    indices into the training set) and the epoch. It draws nothing when called, so a run
    resumed mid-epoch flips the same images as an uninterrupted one, provided it is built from
    a generator in the same state (e.g. ``np.random.default_rng([seed, k])``).

    Args:
        num_images: the size of the training set the indices refer to.
        rng: draws the first epoch's coins, once.

    Shape: ``first_epoch_flips (num_images,)`` bool.
    """

    def __init__(self, num_images: int, rng: np.random.Generator) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"AlternatingFlip: num_images must be an int >= 1, got {num_images!r}")
        self.first_epoch_flips = rng.random(num_images) < 0.5  # (num_images,)

    @property
    def num_images(self) -> int:
        """The number of images the flips were drawn for."""
        return len(self.first_epoch_flips)

    def flips(self, indices: np.ndarray, epoch: int) -> np.ndarray:
        """Which of the images ``indices`` are mirrored in ``epoch``.

        Shape: ``indices (B,)`` integers in ``[0, num_images)`` -> ``(B,)`` bool.
        """
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(
                f"AlternatingFlip expects 1-D integer image indices, got {indices.dtype} "
                f"{indices.shape}"
            )
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_images):
            raise ValueError(
                f"AlternatingFlip: indices must lie in [0, {self.num_images}), got "
                f"[{indices.min()}, {indices.max()}]"
            )
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"AlternatingFlip: epoch must be an int >= 0, got {epoch!r}")
        return self.first_epoch_flips[indices] ^ bool(epoch % 2)

    def __call__(self, images: np.ndarray, indices: np.ndarray, epoch: int) -> np.ndarray:
        """Shape: images (N, C, H, W) float, indices (N,) -> images (N, C, H, W)."""
        _check_batch(images, "AlternatingFlip")
        flip = self.flips(indices, epoch)
        if flip.shape[0] != images.shape[0]:
            raise ValueError(
                f"AlternatingFlip got {images.shape[0]} images but {flip.shape[0]} indices"
            )
        return np.where(flip[:, None, None, None], images[..., ::-1], images)

    def __repr__(self) -> str:
        return f"AlternatingFlip(num_images={self.num_images})"


class RandomCrop:
    """Pad each image by ``padding`` on every side, then crop ``size`` at a random offset.

    The usual CIFAR recipe is ``RandomCrop(32, padding=4)``: a random translation of up to 4
    pixels. ``size=None`` crops to the input's own size. ``padding_mode`` is ``"constant"``
    (zeros) or ``"reflect"`` (mirror without repeating the edge, as ``np.pad`` and torchvision
    do). ``RandomCrop(None, padding=r, padding_mode="reflect")`` is airbench's translation:
    each image shifted by ``dy, dx`` drawn uniformly from ``{-r, ..., r}``, with the uncovered
    border filled by reflection instead of black.
    """

    def __init__(
        self,
        size: int | tuple[int, int] | None,
        padding: int = 0,
        padding_mode: str = "constant",
    ) -> None:
        if size is not None:
            height, width = (size, size) if isinstance(size, int) else size
            if height < 1 or width < 1:
                raise ValueError(f"RandomCrop: size must be >= 1, got {size}")
            size = (int(height), int(width))
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        if padding_mode not in ("constant", "reflect"):
            raise ValueError(
                f"RandomCrop: padding_mode must be 'constant' or 'reflect', got {padding_mode!r}"
            )
        self.size = size
        self.padding = int(padding)
        self.padding_mode = padding_mode

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shape: images (N, C, H, W) float -> (N, C, size_h, size_w), or the same with
        ``size=None``."""
        _check_batch(images, "RandomCrop")
        n, _, height, width = images.shape
        pad = self.padding
        padded = np.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=self.padding_mode)
        crop_h, crop_w = (height, width) if self.size is None else self.size
        if crop_h > height + 2 * pad or crop_w > width + 2 * pad:
            raise ValueError(
                f"RandomCrop: crop {self.size} exceeds the padded image "
                f"({height + 2 * pad}, {width + 2 * pad})"
            )
        top = rng.integers(0, height + 2 * pad - crop_h + 1, size=n)
        left = rng.integers(0, width + 2 * pad - crop_w + 1, size=n)
        # A view of every possible crop: (N, C, positions_y, positions_x, crop_h, crop_w).
        windows = sliding_window_view(padded, (crop_h, crop_w), axis=(2, 3))
        # Advanced indices on axes 0, 2, 3 around a slice: result is (N, C, crop_h, crop_w).
        return np.ascontiguousarray(windows[np.arange(n), :, top, left])

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding}, {self.padding_mode!r})"


def _grey(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of RGB images; greyscale images are their own luma.

    Shape: images (N, C, H, W) -> (N, 1, H, W).
    """
    if images.shape[1] == 1:
        return images
    weights = np.array([0.299, 0.587, 0.114], dtype=images.dtype)
    return np.einsum("nchw,c->nhw", images, weights)[:, None]


class ColorJitter:
    """Randomly scale brightness, contrast and saturation, each by a factor drawn per image
    from ``[max(0, 1 - amount), 1 + amount]``; 0 turns one off.

    Applied in the fixed order brightness, contrast, saturation, each clipped to [0, 1].
    Contrast blends towards the image's mean grey, saturation towards each pixel's grey (a
    no-op on one-channel images).
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0):
        for name, amount in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
        ):
            if amount < 0:
                raise ValueError(f"ColorJitter: {name} must be >= 0, got {amount}")
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    @staticmethod
    def _factors(amount: float, n: int, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        factors = rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount, size=n)
        return factors.astype(dtype)[:, None, None, None]  # (N, 1, 1, 1)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shape: images (N, C, H, W) float -> same."""
        _check_batch(images, "ColorJitter")
        n, dtype = images.shape[0], images.dtype
        if self.brightness > 0:
            images = np.clip(images * self._factors(self.brightness, n, rng, dtype), 0, 1)
        if self.contrast > 0:
            mean_grey = _grey(images).mean(axis=(1, 2, 3), keepdims=True)  # (N, 1, 1, 1)
            factor = self._factors(self.contrast, n, rng, dtype)
            images = np.clip((images - mean_grey) * factor + mean_grey, 0, 1)
        if self.saturation > 0 and images.shape[1] > 1:
            grey = _grey(images)
            factor = self._factors(self.saturation, n, rng, dtype)
            images = np.clip((images - grey) * factor + grey, 0, 1)
        return images.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation})"
        )


def _bilinear_sample(images: np.ndarray, src_y: np.ndarray, src_x: np.ndarray) -> np.ndarray:
    """Sample each image at fractional source coordinates; outside the image reads as 0.

    Shape:
        images: (N, C, H, W); src_y, src_x: (N, H_out, W_out). Returns (N, C, H_out, W_out).
    """
    n, _, height, width = images.shape
    y0 = np.floor(src_y).astype(np.int64)
    x0 = np.floor(src_x).astype(np.int64)
    wy = (src_y - y0).astype(images.dtype)
    wx = (src_x - x0).astype(images.dtype)
    batch = np.arange(n)[:, None, None]  # (N, 1, 1)
    out = np.zeros((n, src_y.shape[1], src_y.shape[2], images.shape[1]), dtype=images.dtype)
    for dy, dx, weight in (
        (0, 0, (1 - wy) * (1 - wx)),
        (0, 1, (1 - wy) * wx),
        (1, 0, wy * (1 - wx)),
        (1, 1, wy * wx),
    ):
        ys, xs = y0 + dy, x0 + dx
        inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        # Advanced indices on axes 0, 2, 3 around a slice: (N, H_out, W_out, C).
        corner = images[batch, :, np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)]
        out += corner * (weight * inside)[..., None]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)


class RandomAffine:
    """Rotate each image by an angle from ``degrees`` and scale it by a factor from ``scale``,
    about its centre, with bilinear sampling; uncovered pixels are 0.

    ``degrees`` is ``d`` (meaning ``(-d, d)``) or ``(min, max)``; positive angles turn the
    image counter-clockwise as displayed (rows downwards), as in torchvision. ``scale`` is
    ``(min, max)``; > 1 zooms in.

    Every output pixel ``p`` reads the source at ``R(-angle) (p - centre) / scale + centre``:
    the inverse map, so each output pixel gets exactly one value and no holes appear.
    """

    def __init__(
        self,
        degrees: float | tuple[float, float] = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        low, high = (-abs(degrees), abs(degrees)) if np.isscalar(degrees) else degrees
        if low > high:
            raise ValueError(
                f"RandomAffine: degrees must be (min, max) with min <= max, got {degrees}"
            )
        if scale[0] <= 0 or scale[0] > scale[1]:
            raise ValueError(
                f"RandomAffine: scale must be (min, max) with 0 < min <= max, got {scale}"
            )
        self.degrees = (float(low), float(high))
        self.scale = (float(scale[0]), float(scale[1]))

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shape: images (N, C, H, W) float -> same."""
        _check_batch(images, "RandomAffine")
        n, _, height, width = images.shape
        angle = np.deg2rad(rng.uniform(*self.degrees, size=n))[:, None, None]  # (N, 1, 1)
        zoom = rng.uniform(*self.scale, size=n)[:, None, None]
        centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
        out_y, out_x = np.meshgrid(
            np.arange(height) - centre_y, np.arange(width) - centre_x, indexing="ij"
        )  # (H, W) each, relative to the centre
        cos, sin = np.cos(angle), np.sin(angle)
        src_x = (cos * out_x - sin * out_y) / zoom + centre_x  # (N, H, W)
        src_y = (sin * out_x + cos * out_y) / zoom + centre_y
        return _bilinear_sample(images, src_y, src_x)

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, scale={self.scale})"


class Cutout:
    """Blank a ``size`` x ``size`` square (zeros) at a random centre in each image, with
    probability ``p``; a square near an edge is clipped (DeVries & Taylor, 2017)."""

    def __init__(self, size: int, p: float = 1.0) -> None:
        if size < 1:
            raise ValueError(f"Cutout: size must be >= 1, got {size}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Cutout: p must lie in [0, 1], got {p}")
        self.size = int(size)
        self.p = p

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shape: images (N, C, H, W) float -> same."""
        _check_batch(images, "Cutout")
        n, _, height, width = images.shape
        apply = rng.random(n) < self.p
        top = rng.integers(0, height, size=n) - self.size // 2  # (N,), may be negative
        left = rng.integers(0, width, size=n) - self.size // 2
        rows = np.arange(height)
        cols = np.arange(width)
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + self.size)  # (N, H)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + self.size)  # (N, W)
        blank = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]  # (N, H, W)
        return np.where(blank[:, None], images.dtype.type(0), images)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, p={self.p})"


def _check_mix_inputs(images: np.ndarray, targets: np.ndarray, who: str) -> None:
    _check_batch(images, who)
    if targets.ndim != 2 or targets.shape[0] != images.shape[0]:
        raise ValueError(
            f"{who} expects targets of shape (N, num_classes) with N = {images.shape[0]}, got "
            f"{targets.shape}; make them with one_hot(labels, num_classes)"
        )


class Mixup:
    """Blend each image and target with a partner from the same batch (Zhang et al., 2018):
    ``lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)`` once per batch.

    ``alpha <= 0`` turns it off (inputs returned unchanged).
    """

    def __init__(self, alpha: float = 0.0) -> None:
        self.alpha = float(alpha)

    def __call__(
        self, images: np.ndarray, targets: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shape: images (N, C, H, W) float, targets (N, K) -> same shapes and dtypes."""
        _check_mix_inputs(images, targets, "Mixup")
        if self.alpha <= 0:
            return images, targets
        lam = rng.beta(self.alpha, self.alpha)
        perm = rng.permutation(images.shape[0])
        mixed = lam * images + (1 - lam) * images[perm]
        soft = lam * targets + (1 - lam) * targets[perm]
        return mixed.astype(images.dtype, copy=False), soft.astype(targets.dtype, copy=False)

    def __repr__(self) -> str:
        return f"Mixup(alpha={self.alpha})"


class CutMix:
    """Paste a random box from a partner image into each image (Yun et al., 2019); targets mix
    in proportion to the pasted area.

    The box covers about ``1 - lam`` of the image with ``lam ~ Beta(alpha, alpha)`` once per
    batch; after clipping at the edges ``lam`` is recomputed from the exact box area so the
    targets match the pixels. ``alpha <= 0`` turns it off.
    """

    def __init__(self, alpha: float = 0.0) -> None:
        self.alpha = float(alpha)

    def __call__(
        self, images: np.ndarray, targets: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shape: images (N, C, H, W) float, targets (N, K) -> same shapes and dtypes."""
        _check_mix_inputs(images, targets, "CutMix")
        if self.alpha <= 0:
            return images, targets
        n, _, height, width = images.shape
        lam = rng.beta(self.alpha, self.alpha)
        perm = rng.permutation(n)
        cut = np.sqrt(1.0 - lam)
        box_h, box_w = int(round(height * cut)), int(round(width * cut))
        centre_y, centre_x = rng.integers(0, height), rng.integers(0, width)
        top, bottom = np.clip([centre_y - box_h // 2, centre_y + box_h - box_h // 2], 0, height)
        left, right = np.clip([centre_x - box_w // 2, centre_x + box_w - box_w // 2], 0, width)
        mixed = images.copy()
        mixed[:, :, top:bottom, left:right] = images[perm, :, top:bottom, left:right]
        kept = 1.0 - (bottom - top) * (right - left) / (height * width)
        soft = kept * targets + (1 - kept) * targets[perm]
        return mixed, soft.astype(targets.dtype, copy=False)

    def __repr__(self) -> str:
        return f"CutMix(alpha={self.alpha})"


class MixupOrCutMix:
    """Per batch, apply Mixup or CutMix with equal probability (as timm does with both on).

    Args:
        mixup_alpha: ``alpha`` of Mixup's ``Beta(alpha, alpha)`` mixing weight, ``> 0``.
        cutmix_alpha: ``alpha`` of CutMix's ``Beta(alpha, alpha)`` area fraction, ``> 0``.
    """

    def __init__(self, mixup_alpha: float, cutmix_alpha: float) -> None:
        self.mixup = Mixup(mixup_alpha)
        self.cutmix = CutMix(cutmix_alpha)

    def __call__(
        self, images: np.ndarray, targets: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shape: images (N, C, H, W) float, targets (N, K) -> same shapes and dtypes."""
        mixer = self.mixup if rng.random() < 0.5 else self.cutmix
        return mixer(images, targets, rng)

    def __repr__(self) -> str:
        return f"MixupOrCutMix(mixup_alpha={self.mixup.alpha}, cutmix_alpha={self.cutmix.alpha})"


def build_transforms(
    flip: bool = False,
    crop_padding: int = 0,
    crop_padding_mode: str = "constant",
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    rotation_degrees: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    cutout_size: int = 0,
    cutout_p: float = 1.0,
) -> Compose:
    """Assemble the per-image augmentations a training config asks for; every one is off by
    default, so ``build_transforms()`` is the identity.

    The order is geometric first (affine, crop, flip), then colour, then Cutout last, so the
    blank square is not rotated or shifted off the image. A crop keeps the image size.

    Args:
        flip: random horizontal flips.
        crop_padding: pad by this many pixels, then crop back at a random offset (a translation); 0
            is off.
        crop_padding_mode: ``"constant"`` (zeros) or ``"reflect"``.
        brightness: :class:`ColorJitter` brightness strength; 0 is off.
        contrast: :class:`ColorJitter` contrast strength; 0 is off.
        saturation: :class:`ColorJitter` saturation strength; 0 is off.
        rotation_degrees: random rotation by up to this many degrees; 0 is off.
        scale: ``(low, high)`` range of the random scaling factor; ``(1, 1)`` is off.
        cutout_size: side of the :class:`Cutout` square; 0 is off.
        cutout_p: probability that an image gets the Cutout square.
    """
    transforms: list[Transform] = []
    if rotation_degrees > 0 or tuple(scale) != (1.0, 1.0):
        transforms.append(RandomAffine(rotation_degrees, scale))
    if crop_padding > 0:
        transforms.append(RandomCrop(None, crop_padding, crop_padding_mode))
    if flip:
        transforms.append(RandomHorizontalFlip())
    if brightness > 0 or contrast > 0 or saturation > 0:
        transforms.append(ColorJitter(brightness, contrast, saturation))
    if cutout_size > 0:
        transforms.append(Cutout(cutout_size, cutout_p))
    return Compose(transforms)


def build_mixer(mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> Mixer | None:
    """The batch mixer a training config asks for: None when both are off, one of them, or
    :class:`MixupOrCutMix` when both are on.

    Args:
        mixup_alpha: Mixup's ``Beta(alpha, alpha)`` parameter; 0 is off.
        cutmix_alpha: CutMix's ``Beta(alpha, alpha)`` parameter; 0 is off.
    """
    if mixup_alpha > 0 and cutmix_alpha > 0:
        return MixupOrCutMix(mixup_alpha, cutmix_alpha)
    if mixup_alpha > 0:
        return Mixup(mixup_alpha)
    if cutmix_alpha > 0:
        return CutMix(cutmix_alpha)
    return None
