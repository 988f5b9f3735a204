"""Peak memory of ``--recipe fast`` at a given batch size: a few training steps on CIFAR-10,
then the test with test-time augmentation, under ``/usr/bin/time -v``::

    /usr/bin/time -v python benchmarks/fast_recipe_memory.py --batch-size 512
    /usr/bin/time -v python benchmarks/fast_recipe_memory.py --batch-size 1024
    /usr/bin/time -v python benchmarks/fast_recipe_memory.py --batch-size 512 --precision mixed

The whole dataset is loaded as in a full run (its 184 MB of uint8 images count), the whitening
conv is initialised from 5,000 images, the run trains on ``4 x batch`` images (``2 x batch``
from 1024 on) for one epoch, and the TTA test runs on 1,000 test images (every test image goes
through the same batches, so more images cost time, not memory). Read "Maximum resident set
size". Speed under this script means nothing: the first steps include Numba's compilation.
"""

from __future__ import annotations

import argparse
import tempfile

from scratchcnn.training import resolve_config, train
from scratchcnn.training.setup import prepare_data

DATA = "../shared/datasets/cifar10-jpeg.zip"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--precision", choices=("float32", "mixed"), default="float32")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--cache-dir", default=None, help="dataset cache (default: the usual)")
    args = parser.parse_args(argv)
    batch = args.batch_size
    with tempfile.TemporaryDirectory() as run_dir:
        config = resolve_config(
            "fast",
            None,
            {
                "data": args.data,
                "cache_dir": args.cache_dir,
                "train_subset": (2 if batch >= 1024 else 4) * batch,
                "epochs": 1,
                "batch_size": batch,
                "precision": args.precision,
                "lr": 1.5 * batch / 1024,  # the recipe's rule (see training/config.py)
                "run_dir": run_dir,
                "name": f"batch{batch}",
                "progress": False,
            },
        )
        data = prepare_data(config)
        data.test_images, data.test_labels = data.test_images[:1000], data.test_labels[:1000]
        result = train(config, data=data)
    loss = result.history[-1]["train_loss"]
    print(
        f"batch {batch}, {args.precision}: one epoch of {config.train_subset} images, "
        f"train loss {loss:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
