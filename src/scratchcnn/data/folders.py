"""Reader for image folders: ``train/<class>/*`` and ``test/<class>/*``, as a directory or a zip.

Class ids are the class folder names in sorted order (for CIFAR-10's folder names that is the
official label order). PNG and JPEG files are decoded with Pillow. Images are RGB, except that
a dataset whose every image is greyscale (Pillow mode ``L``, ``1``, ``I`` or ``I;16``) loads as
one channel, so a greyscale dataset does not triple in memory.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from .dataset import DataError, Dataset

__all__ = ["IMAGE_EXTENSIONS", "read_image_file", "read_image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_SPLITS = ("train", "test")
_GREY_MODES = ("L", "1", "I", "I;16")


def _list_entries(names: list[str], source: Path) -> dict[str, list[tuple[str, str]]]:
    """Group relative POSIX paths into ``{split: [(class_name, path), ...]}``.

    A path counts when it ends in ``<split>/<class>/<file>`` with an image extension; all such
    paths must share one prefix (a zip often wraps everything in a top folder).
    """
    entries: dict[str, list[tuple[str, str]]] = {split: [] for split in _SPLITS}
    prefixes = set()
    for name in names:
        parts = PurePosixPath(name).parts
        if len(parts) < 3 or parts[-3] not in _SPLITS:
            continue
        if "__MACOSX" in parts or parts[-1].startswith("."):
            continue  # macOS zip metadata and hidden files are not images
        if not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            continue
        prefixes.add(parts[:-3])
        entries[parts[-3]].append((parts[-2], name))
    if len(prefixes) > 1:
        shown = sorted("/".join(p) or "." for p in prefixes)
        raise DataError(f"{source}: found train/test folders under several roots: {shown}")
    if not entries["train"] or not entries["test"]:
        raise DataError(
            f"{source}: expected images under train/<class>/ and test/<class>/ (PNG or JPEG), "
            f"found {len(entries['train'])} train and {len(entries['test'])} test images"
        )
    for split in _SPLITS:
        entries[split].sort(key=lambda item: item[1])
    return entries


def read_image_folder(
    source: str | os.PathLike[str],
    image_size: tuple[int, int] | None = None,
    progress: bool = True,
    name: str | None = None,
) -> Dataset:
    """Decode an image-folder dataset from a directory or a ``.zip``.

    Args:
        source: directory or zip holding ``train/<class>/*`` and ``test/<class>/*``.
        image_size: ``(height, width)`` to resize every image to (bilinear); None requires all
            images to share the first image's size.
        progress: show a tqdm progress bar while decoding.
        name: dataset name; defaults to the source's file or folder name without suffix.

    Shape:
        Returns images (N, H, W, 3) uint8, or (N, H, W, 1) when every image is greyscale.

    Raises:
        DataError: layout problems, an undecodable file, or an image of another size than the
            first one (the file is named) when ``image_size`` is None.
    """
    source = Path(source)
    if name is None:
        name = source.stem if source.is_file() else source.name
    if source.is_dir():
        names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
        entries = _list_entries(names, source)
        return _decode_all(
            entries, lambda path: (source / path).read_bytes(), source, image_size, progress, name
        )
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(
            f"{source}: not a readable zip file (truncated or corrupt?): {error}"
        ) from error
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        entries = _list_entries(names, source)
        return _decode_all(entries, archive.read, source, image_size, progress, name)


def _decode_all(
    entries: dict[str, list[tuple[str, str]]],
    read_bytes: Callable[[str], bytes],
    source: Path,
    image_size: tuple[int, int] | None,
    progress: bool,
    name: str,
) -> Dataset:
    class_names = sorted({class_name for class_name, _ in entries["train"]})
    class_ids = {class_name: index for index, class_name in enumerate(class_names)}
    unknown = sorted({c for c, _ in entries["test"]} - class_ids.keys())
    if unknown:
        raise DataError(f"{source}: test classes {unknown} have no train folder")
    if image_size is not None:
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise DataError(f"image_size must be (height, width) >= 1, got {image_size}")
    total = len(entries["train"]) + len(entries["test"])
    reference: tuple[str, int, int] | None = None  # (file, height, width) sizes must match
    all_grey = True
    decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tqdm(total=total, desc=f"decoding {source.name}", unit="img", disable=not progress) as bar:
        for split in _SPLITS:
            labels = np.array([class_ids[c] for c, _ in entries[split]], dtype=np.int64)
            images: np.ndarray | None = None
            for index, (_, path) in enumerate(entries[split]):
                try:
                    with Image.open(io.BytesIO(read_bytes(path))) as image:
                        grey = image.mode in _GREY_MODES
                        image = image.convert("L" if grey else "RGB")
                        if image_size is not None and image.size != (width, height):
                            image = image.resize((width, height), Image.Resampling.BILINEAR)
                        pixels = np.asarray(image)
                except (OSError, ValueError, zipfile.BadZipFile) as error:
                    raise DataError(f"{source}: cannot decode {path}: {error}") from error
                if reference is None:
                    reference = (path, pixels.shape[0], pixels.shape[1])
                elif pixels.shape[:2] != reference[1:]:
                    raise DataError(
                        f"{source}: image {path} is {pixels.shape[0]}x{pixels.shape[1]} "
                        f"(height x width), expected {reference[1]}x{reference[2]} like "
                        f"{reference[0]}; pass image_size=(height, width) to resize all images"
                    )
                if images is None:
                    # Filled in place: a list of 60,000 small arrays then np.stack would
                    # briefly hold the dataset twice.
                    images = np.empty((len(entries[split]), *reference[1:], 3), dtype=np.uint8)
                # A greyscale image fills all three channels; they collapse to one at the end
                # if every image turns out greyscale.
                images[index] = pixels[..., None] if grey else pixels
                all_grey = all_grey and grey
                bar.update(1)
            assert images is not None  # _list_entries guarantees a non-empty split
            decoded[split] = (images, labels)
    (train_images, train_labels), (test_images, test_labels) = decoded["train"], decoded["test"]
    if all_grey:
        train_images = np.ascontiguousarray(train_images[..., :1])
        test_images = np.ascontiguousarray(test_images[..., :1])
    return Dataset(train_images, train_labels, test_images, test_labels, class_names, name)


def read_image_file(
    path: str | os.PathLike[str], size: tuple[int, int], channels: int
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Decode one image file as a model's input, resized (bilinear) to ``size`` if needed.

    Returns the pixels and, if it was resized, the original ``(width, height)``. Pillow's
    decompression-bomb warning is an error here: a file that claims billions of pixels is
    refused instead of filling memory.

    Args:
        path: the image file (any format Pillow reads).
        size: ``(height, width)`` the model expects.
        channels: 1 (greyscale) or 3 (RGB), the model's input channels.

    Shape: returns ``(height, width, channels)`` uint8, ``channels`` 1 (grey) or 3 (RGB).

    Raises:
        DataError: the file is missing, not an image, truncated, or a decompression bomb.
    """
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image = image.convert("RGB" if channels == 3 else "L")
                original = None
                if image.size != (width, height):
                    original = image.size
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8).reshape(height, width, channels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(
            f"cannot read image {path}: refused as a decompression bomb: {error}"
        ) from error
    except (OSError, ValueError) as error:  # UnidentifiedImageError is an OSError
        raise DataError(f"cannot read image {path}: {error}") from error
    return pixels, original
