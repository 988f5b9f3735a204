"""Transfer learning end to end: the committed CIFAR-10 model fine-tuned on handwritten digits.

scikit-learn ships 1,797 greyscale 8x8 digits (no download). This script writes them as an
image folder, ``train/<digit>/*.png`` and ``test/<digit>/*.png`` (a seeded, stratified split of
500 test images; each digit upscaled to 32x32 and stored as RGB, so the CIFAR-10 model's input
fits), then trains the seed CNN on a random subset of a few labelled training images in three
ways, with the same budget and seeds:

- ``scratch``: a fresh random initialisation;
- ``fine-tune``: ``--init-from models/seed_cnn_cifar10.safetensors`` (every tensor loads: the
  class count is 10 on both sides, so even the head starts from CIFAR-10's, and is re-learnt);
- ``frozen convs``: the same start, with both convolutions frozen (``--freeze 0 --freeze 3``):
  only the two linear layers train.

It prints one table (mean and spread of the test accuracy over the seeds, seconds per run) and
writes every run's numbers to ``--out`` as JSON::

    python examples/transfer_digits.py --out benchmarks/results/transfer_digits.json

Each run is the same as ``scratchcnn train --data FOLDER --val-size 0 --train-subset N
--epochs E --batch-size 32 --lr 0.02 [--init-from CHECKPOINT] [--freeze 0 --freeze 3]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scratchcnn.serialization import atomic_write_text
from scratchcnn.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models" / "seed_cnn_cifar10.safetensors"
TEST_SIZE = 500
METHODS = {
    "scratch": {},
    "fine-tune": {"init_from": str(CHECKPOINT)},
    "frozen convs": {"init_from": str(CHECKPOINT), "freeze": ("0", "3")},
}


def write_digits_folder(folder: Path, seed: int = 0) -> Path:
    """scikit-learn's digits as ``train/<digit>/*.png`` and ``test/<digit>/*.png``, 32x32 RGB.

    The split is stratified and seeded: ``TEST_SIZE`` test images, the rest for training.
    """
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8), 0..16 -> 0..255
    indices = np.arange(len(pixels))
    train_idx, test_idx = train_test_split(
        indices, test_size=TEST_SIZE, stratify=digits.target, random_state=seed
    )
    for split, chosen in (("train", train_idx), ("test", test_idx)):
        for i in chosen:
            target = folder / split / str(digits.target[i])
            target.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels[i], mode="L").resize((32, 32), Image.BILINEAR)
            image.convert("RGB").save(target / f"{i:04d}.png")
    return folder


def run_once(data: Path, run_dir: Path, method: str, images: int, epochs: int, seed: int):
    """One training run; returns its test accuracy and wall seconds."""
    config = TrainConfig(
        data=str(data),
        cache_dir=str(run_dir / "cache"),
        val_size=0,
        train_subset=images,
        epochs=epochs,
        batch_size=32,
        lr=0.02,
        seed=seed,
        run_dir=str(run_dir),
        name=f"{method.replace(' ', '-')}-{images}-{seed}",
        progress=False,
        **METHODS[method],
    )
    start = time.perf_counter()
    result = train(config)
    return {"test_accuracy": result.test["test_accuracy"], "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train-images",
        type=int,
        nargs="+",
        default=[50, 200, 1000],
        help="labelled training images (a random subset of the 1,297), one budget each",
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="runs per method and budget")
    parser.add_argument("--out", type=Path, default=None, help="write every run's numbers here")
    arguments = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(arguments)
    if not CHECKPOINT.is_file():
        parser.error(f"the committed CIFAR-10 model is missing: {CHECKPOINT}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_digits_folder(Path(tmp) / "digits")
        for images in args.train_images:
            for method in METHODS:
                for seed in range(args.seeds):
                    numbers = run_once(data, Path(tmp) / "runs", method, images, args.epochs, seed)
                    runs.append({"method": method, "train_images": images, "seed": seed, **numbers})
                    print(
                        f"{method:<13} {images:>5} images, seed {seed}: test accuracy "
                        f"{numbers['test_accuracy']:.4f} ({numbers['seconds']:.1f} s)",
                        flush=True,
                    )
    print()
    print(f"{'labelled images':<17}" + "".join(f"{m:>22}" for m in METHODS))
    for images in args.train_images:
        cells = []
        for method in METHODS:
            accuracies = [
                r["test_accuracy"]
                for r in runs
                if r["method"] == method and r["train_images"] == images
            ]
            spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
            cells.append(f"{100 * statistics.mean(accuracies):>15.1f}% ± {100 * spread:.1f}")
        print(f"{images:<17}" + "".join(f"{c:>22}" for c in cells))
    if args.out is not None:
        record = {
            "command": " ".join(["python examples/transfer_digits.py", *arguments]),
            "epochs": args.epochs,
            "test_images": TEST_SIZE,
            "checkpoint": str(CHECKPOINT.relative_to(ROOT)),
            "runs": runs,
        }
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
