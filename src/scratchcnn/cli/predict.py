"""``scratchcnn predict``: the top classes of a saved model for each image file."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="top-3 classes with probabilities for image files",
        description="Classify image files (PNG, JPEG, ...) with a saved model. Images of another "
        "size than the model's input are resized (bilinear) first, and the output says so.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="model or checkpoint file (default: models/seed_cnn_cifar10.safetensors)",
    )
    parser.add_argument("--top", type=int, default=3, help="how many classes to show (default: 3)")
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from scratchcnn.cli._common import default_checkpoint, fail
    from scratchcnn.data import Normalizer
    from scratchcnn.serialization import load_model
    from scratchcnn.training import predict_proba

    path = args.checkpoint or default_checkpoint()
    try:
        model, meta = load_model(path)
    except (FileNotFoundError, ValueError) as err:
        return fail(str(err))
    height, width, channels = meta["image_shape"]
    class_names = meta["class_names"]
    normalizer = Normalizer.from_dict(meta["normalization"])
    top = max(1, min(args.top, len(class_names)))
    images, notes = [], []
    for image_path in args.images:
        try:
            with Image.open(image_path) as image:
                image = image.convert("RGB" if channels == 3 else "L")
                note = ""
                if image.size != (width, height):
                    note = f" (resized from {image.size[0]}x{image.size[1]} to {width}x{height})"
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8).reshape(height, width, channels)
        except (OSError, UnidentifiedImageError) as err:
            return fail(f"cannot read image {image_path}: {err}")
        images.append(pixels)
        notes.append(note)
    probs = predict_proba(
        model, np.stack(images), normalizer, dtype=np.dtype(meta.get("dtype", "float32")).type
    )
    for image_path, note, p in zip(args.images, notes, probs, strict=True):
        order = np.argsort(-p)[:top]
        ranked = ", ".join(f"{class_names[k]} {p[k]:.3f}" for k in order)
        print(f"{image_path}{note}: {ranked}")
    return 0
