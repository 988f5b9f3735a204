"""``scratchcnn predict``: the top classes of a saved model for image files and folders."""

from __future__ import annotations

import argparse

# Image files that a folder argument contributes (searched recursively).
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from scratchcnn.cli._common import add_checkpoint_arguments, add_tta_argument, positive_int

    parser = subparsers.add_parser(
        "predict",
        help="top classes with probabilities for image files and folders",
        description="Classify image files (PNG, JPEG, ...) and every image in the given folders "
        "(recursively) with a saved model. Images of another size than the model's input are "
        "resized (bilinear) first, and the output says so. Prints a table, or JSON or CSV.",
    )
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, or folders to search for images"
    )
    add_checkpoint_arguments(parser, image_size=True)
    add_tta_argument(parser)
    parser.add_argument(
        "--top-k",
        "--top",
        dest="top_k",
        type=positive_int,
        default=3,
        metavar="K",
        help="how many classes to show per image (default: 3)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per forward pass (default: 256)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the predictions as JSON")
    output.add_argument(
        "--csv", action="store_true", help="print the predictions as CSV: image,rank,class,..."
    )
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from scratchcnn.cli._common import load_for_command, tta_level
    from scratchcnn.data import read_image_file
    from scratchcnn.errors import ConfigError
    from scratchcnn.training import predict_proba

    if args.normalization == "fit":
        raise ConfigError(
            "--normalization fit needs training images; predict takes MEAN/STD or none"
        )
    files = collect_images(args.images)
    loaded = load_for_command(args)
    loaded.require("image_shape", "normalization", "class_names")  # all that is missing, at once
    height, width, channels = loaded.image_shape
    class_names = loaded.class_names
    top = min(args.top_k, len(class_names))
    images = np.empty((len(files), height, width, channels), dtype=np.uint8)
    resized: list[tuple[int, int] | None] = []
    for index, path in enumerate(files):
        images[index], original = read_image_file(path, (height, width), channels)
        resized.append(original)
    probs = predict_proba(
        loaded.model,
        images,
        loaded.normalizer,
        args.batch_size,
        dtype=loaded.dtype.type,
        tta=tta_level(args, loaded),
    )
    ranked = [
        [(class_names[k], float(p[k])) for k in np.argsort(-p, kind="stable")[:top]] for p in probs
    ]
    if args.json:
        _print_json(files, ranked, resized)
    elif args.csv:
        _print_csv(files, ranked, resized)
    else:
        _print_table(files, ranked, resized, (width, height))
    return 0


def collect_images(arguments: list[str]) -> list:
    """The files named, plus every image file under the folders named (sorted, recursive)."""
    from pathlib import Path

    from scratchcnn.errors import DataError

    files = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
            )
            if not found:
                raise DataError(f"{path}: no image files ({', '.join(EXTENSIONS)}) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such image file or folder")
    return files


def _print_table(files, ranked, resized, size) -> None:
    width = max(len("image"), *(len(str(f)) for f in files))
    names = max(len(name) for row in ranked for name, _ in row)
    header = "  ".join(f"{f'top-{i + 1}':<{names}}  prob " for i in range(len(ranked[0])))
    print(f"{'image':<{width}}  {header}".rstrip())
    for path, row, original in zip(files, ranked, resized, strict=True):
        cells = "  ".join(f"{name:<{names}}  {p:.3f}" for name, p in row)
        note = ""
        if original is not None:
            note = f"  (resized from {original[0]}x{original[1]} to {size[0]}x{size[1]})"
        print(f"{str(path):<{width}}  {cells}{note}")


def _print_json(files, ranked, resized) -> None:
    import json

    records = [
        {
            "image": str(path),
            "predictions": [{"class": name, "probability": p} for name, p in row],
            "resized_from": None if original is None else list(original),
        }
        for path, row, original in zip(files, ranked, resized, strict=True)
    ]
    print(json.dumps(records, indent=2))


def _print_csv(files, ranked, resized) -> None:
    import csv
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["image", "rank", "class", "probability", "resized_from"])
    for path, row, original in zip(files, ranked, resized, strict=True):
        source = "" if original is None else f"{original[0]}x{original[1]}"
        for rank, (name, p) in enumerate(row, start=1):
            writer.writerow([str(path), rank, name, f"{p:.6f}", source])
