"""examples/ddp_finetune.py under torchrun: two CPU processes, DDP over gloo, on a tiny folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from scratchcnn.data import Normalizer, load_dataset  # noqa: E402
from scratchcnn.interop.bridge import from_torch, to_torch  # noqa: E402
from scratchcnn.models import seed_cnn  # noqa: E402
from scratchcnn.serialization import load_model, save_model  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ddp_finetune.py"


# What a C++ std::terminate prints when torch's gloo threads die at process exit.
TEARDOWN_ABORT = "terminate called without an active exception"


def tiny_image_folder(root: Path) -> Path:
    """Two classes of 8x8 images, dark and bright: ``train/<class>/*.png``, ``test/...``."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("test", 4)):
        for label, name in enumerate(("dark", "bright")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 120, (8, 8, 3)) + 120 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_ddp_finetune_with_two_processes(tmp_path):
    data = tiny_image_folder(tmp_path / "images")
    dataset = load_dataset(data, cache_dir=tmp_path / "cache", progress=False)
    model = seed_cnn(num_classes=2, image_size=8, rng=np.random.default_rng(0))
    checkpoint = tmp_path / "start.safetensors"
    normalization = Normalizer.fit(dataset.train_images).to_dict()
    save_model(
        model,
        checkpoint,
        class_names=dataset.class_names,
        normalization=normalization,
        image_shape=[8, 8, 3],
    )
    out = tmp_path / "finetuned.safetensors"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(SCRIPT), "--checkpoint", str(checkpoint)]
    command += ["--data", str(data), "--cache-dir", str(tmp_path / "cache"), "--subset", "24"]
    command += ["--epochs", "2", "--batch-size", "4", "--lr", "0.05", "--out", str(out)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr and "wrote" in done.stdout:
        # Once in about eight runs on the 2-core build machine, a process aborted in torch's
        # gloo teardown after all the work was done (model written). Not scratchcnn's code:
        # run once more, and everything below still has to hold.
        out.unlink(missing_ok=True)
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 processes, 24 training images" in done.stdout
    assert "epoch 2/2: train loss" in done.stdout

    finetuned, meta = load_model(out)
    assert meta["class_names"] == dataset.class_names
    assert meta["normalization"] == normalization
    assert meta["finetuned"]["processes"] == 2
    before, after = model.state_dict(), finetuned.state_dict()
    assert sorted(before) == sorted(after)
    assert not np.array_equal(before["0.weight"], after["0.weight"])  # it trained
    # and the saved model crosses the bridge both ways unchanged
    again = from_torch(to_torch(finetuned)).state_dict()
    assert all(np.array_equal(again[k], after[k]) for k in after)
