"""examples/transfer_digits.py: the digits folder it writes, and one tiny run of each method."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "transfer_digits.py"
pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("transfer_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_folder_holds_every_digit_split_stratified(example, tmp_path):
    from sklearn.datasets import load_digits

    folder = example.write_digits_folder(tmp_path / "digits")
    counts = {
        split: {d.name: len(list(d.iterdir())) for d in (folder / split).iterdir()}
        for split in ("train", "test")
    }
    assert sorted(counts["test"]) == [str(d) for d in range(10)]
    assert sum(counts["test"].values()) == example.TEST_SIZE
    assert sum(counts["train"].values()) + example.TEST_SIZE == 1797
    assert min(counts["test"].values()) >= 48  # stratified: about 50 of each digit
    first = next((folder / "test" / "0").iterdir())
    image = Image.open(first)
    assert (image.size, image.mode) == ((32, 32), "RGB")
    digit = load_digits().images[int(first.stem)]  # the file name is the digit's index
    small = np.asarray(image.convert("L").resize((8, 8), Image.BILINEAR), dtype=float)
    assert np.corrcoef(small.ravel(), digit.ravel())[0, 1] > 0.9  # the same picture


def test_each_method_trains_and_the_record_says_so(example, tmp_path, capsys):
    out = tmp_path / "transfer.json"
    args = ["--train-images", "30", "--epochs", "1", "--seeds", "1", "--out", str(out)]
    assert example.main(args) == 0
    record = json.loads(out.read_text())
    assert [r["method"] for r in record["runs"]] == list(example.METHODS)
    assert all(0 <= r["test_accuracy"] <= 1 for r in record["runs"])
    assert record["command"] == "python examples/transfer_digits.py " + " ".join(args)
    assert "frozen convs" in capsys.readouterr().out
