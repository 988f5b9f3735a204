"""The HTML report (rendered in headless Chromium), the visualize command and TensorBoard logs."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from scratchcnn.cli import main  # noqa: E402
from scratchcnn.data import Normalizer  # noqa: E402
from scratchcnn.models import seed_cnn  # noqa: E402
from scratchcnn.serialization import save_model  # noqa: E402

CLASSES = ("blue", "green", "red")
SECTIONS = [
    "config", "architecture", "training", "gradient-flow", "lr-finder", "metrics", "confusion",
    "calibration", "roc", "mistakes", "samples", "filters", "activations", "interpretation",
    "top-activations", "filter-stats", "filter-ablation", "feature-clusters",
]  # fmt: skip
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def write_image_folder(root: Path, per_class: int = 8, size: int = 8) -> Path:
    """``root/{train,test}/<class>/*.png``; class k has colour channel ``2 - k`` brightened."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 120, (size, size, 3))
                pixels[..., 2 - label] += 100
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def make_run(root: Path, extras: bool = True) -> Path:
    """A run folder as the trainer leaves it, with an untrained seed_cnn for 8x8 images."""
    data = write_image_folder(root / "images")
    run = root / "run"
    run.mkdir()
    config = {"data": str(data), "cache_dir": str(root / "cache"), "epochs": 3}
    (run / "config.json").write_text(json.dumps(config))
    model = seed_cnn(num_classes=3, image_size=8, rng=np.random.default_rng(0))
    normalizer = Normalizer([0.4, 0.4, 0.4], [0.25, 0.25, 0.25])
    meta = {"class_names": list(CLASSES), "normalization": normalizer.to_dict(), "config": config}
    save_model(model, run / "best.safetensors", **meta, image_shape=[8, 8, 3])
    if not extras:
        return run
    history = [
        {"epoch": e, "train_loss": 1.1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.3 * e,
         "val_accuracy": 0.28 * e, "lr": 0.05 / e}
        for e in (1, 2, 3)
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    norms = [
        {"epoch": e, **{name: 1.0 / e for name, _ in model.named_parameters()}} for e in (1, 2)
    ]
    (run / "grad_norms.jsonl").write_text("".join(json.dumps(r) + "\n" for r in norms))
    lrs = np.geomspace(1e-4, 1, 20)
    lr_finder = {"lrs": lrs.tolist(), "losses": (1.1 - 0.1 * np.log10(lrs)).tolist(),
                 "suggested_lr": 0.01}  # fmt: skip
    (run / "lr_finder.json").write_text(json.dumps(lr_finder))
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run = make_run(tmp_path_factory.mktemp("report"))
    assert main(["report", str(run), "--max-images", "20"]) == 0
    return run / "report.html"


def sections_of(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.S))


# --- the report ------------------------------------------------------------------------------
def test_report_has_every_section_with_content(report: Path) -> None:
    page = report.read_text()
    sections = sections_of(page)
    assert list(sections) == SECTIONS
    for anchor, body in sections.items():
        assert re.search(r"<(img|table|pre)\b", body), f"section {anchor} has no content"
    assert "Test accuracy" in sections["metrics"] and "top-3" in sections["metrics"]
    assert "Expected calibration error" in sections["calibration"]
    assert "Total parameters" in sections["architecture"]
    assert all(name in sections["metrics"] for name in CLASSES)
    assert "accuracy with every filter" in sections["filter-ablation"]
    assert "mean cluster purity" in sections["feature-clusters"]


def test_report_is_self_contained_and_every_image_decodes(report: Path) -> None:
    page = report.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    # curves, gradient flow, lr finder, 2 confusion, reliability, ROC, mistakes, samples,
    # 2 filters, activations, heat maps, 2 top-activation grids, filter stats, 2 filter
    # ablation, feature clusters
    assert len(sources) == 19
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing fetched from elsewhere
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
            assert image.size[0] > 100 and image.size[1] > 100


def test_report_without_optional_files(tmp_path: Path) -> None:
    run = make_run(tmp_path, extras=False)
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(run), "--max-images", "9", "--out", str(out)]) == 0
    sections = sections_of(out.read_text())
    assert "gradient-flow" not in sections and "lr-finder" not in sections
    assert "No metrics.jsonl" in sections["training"]


def test_report_errors_are_short_messages(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "no best.safetensors or last.safetensors" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    # A copy of the page with a script that records, after load, whether each image decoded
    # and which sections are empty; --dump-dom prints the resulting DOM.
    probe = """<script>
    window.addEventListener("load", () => {
      const images = Array.from(document.images);
      const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
      const empty = Array.from(document.querySelectorAll("section")).filter(s =>
        s.querySelectorAll("img, table, pre").length === 0 || s.innerText.trim().length < 10
      ).map(s => s.id);
      const tall = Array.from(document.querySelectorAll("section")).filter(s =>
        s.getBoundingClientRect().height < 40).map(s => s.id);
      document.body.setAttribute("data-check", JSON.stringify(
        {images: images.length, broken: broken, empty: empty, flat: tall,
         sections: document.querySelectorAll("section").length}));
    });
    </script></body>"""
    page = tmp_path / "page.html"
    page.write_text(report.read_text().replace("</body>", probe))
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
        "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
    found = re.search(r"data-check=\"([^\"]+)\"", dom)
    assert found, f"the page's check script did not run; chromium printed: {dom[:500]!r}"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["sections"] == len(SECTIONS)
    assert check["images"] == 19 and check["broken"] == 0
    assert check["empty"] == [] and check["flat"] == []


# --- scratchcnn visualize --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("what", "extra"),
    [
        ("filters", []),
        ("filters2", []),
        ("activations", ["--index", "3"]),
        ("gradcam", ["--class", "red", "--layer", "conv1"]),
        ("occlusion", ["--class", "1"]),
        ("saliency", []),
        ("confusion", []),
        ("calibration", []),
        ("roc", []),
        ("curves", []),
        ("samples", []),
        ("misclassified", []),
        ("top-activations", ["--layer", "conv2"]),
        ("filter-stats", []),
        ("gradient-flow", []),
        ("lr-finder", []),
    ],
)
def test_visualize_writes_each_picture(report: Path, tmp_path: Path, what: str, extra) -> None:
    run = report.parent
    out = tmp_path / f"{what}.png"
    assert main(["visualize", what, "--run", str(run), "--out", str(out), *extra]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_visualize_an_image_file(report: Path, tmp_path: Path) -> None:
    picture = tmp_path / "photo.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(picture)
    out = tmp_path / "g.png"
    args = ["visualize", "gradcam", "--checkpoint", str(report.parent / "best.safetensors"),
            "--image", str(picture), "--out", str(out)]  # fmt: skip
    assert main(args) == 0 and out.is_file()


def test_visualize_explains_what_is_missing(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path, extras=False)
    assert main(["visualize", "gradient-flow", "--run", str(run)]) == 1
    assert "no gradient norms recorded" in capsys.readouterr().err
    assert main(["visualize", "curves"]) == 1
    assert "needs --run" in capsys.readouterr().err
    assert main(["visualize", "gradcam", "--run", str(run), "--class", "cow"]) == 1
    assert "unknown class 'cow'" in capsys.readouterr().err


# --- TensorBoard -----------------------------------------------------------------------------
def read_events(path: Path) -> list:
    """Parse a TFRecord event file: [length u64][crc u32][Event proto][crc u32] per record."""
    from tensorboardX.proto import event_pb2

    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[offset + 12 : offset + 12 + length])
        events.append(event)
        offset += 12 + length + 4
    return events


def test_tensorboard_logger_writes_scalars_histograms_and_filters(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from scratchcnn.training.tensorboard import TensorBoardLogger, filter_grid

    model = seed_cnn(num_classes=3, image_size=8, rng=np.random.default_rng(0))
    with TensorBoardLogger(tmp_path / "tb") as logger:
        for epoch in (1, 2):
            record = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.4 * epoch,
                      "lr": 0.1, "note": "text is skipped"}  # fmt: skip
            logger.log_epoch(record, model, epoch)
    (events_file,) = (tmp_path / "tb").iterdir()
    values = [(e.step, v) for e in read_events(events_file) for v in e.summary.value]
    scalars = {(step, v.tag): v.simple_value for step, v in values if v.HasField("simple_value")}
    assert scalars[(2, "loss/train")] == pytest.approx(0.5)
    assert scalars[(2, "accuracy/val")] == pytest.approx(0.8)
    assert (1, "lr") in scalars and not any("note" in tag for _, tag in scalars)
    histograms = {v.tag for _, v in values if v.HasField("histo")}
    names = [name for name, _ in model.named_parameters()]
    assert histograms == {f"{kind}/{n}" for kind in ("weights", "gradients") for n in names}
    images = [v for _, v in values if v.HasField("image")]
    assert len(images) == 2 and images[0].tag == "filters/conv1"
    grid = filter_grid(model[0].weight.data)
    assert (images[0].image.height, images[0].image.width) == grid.shape[1:]
    assert grid.shape == (3, 4 * 13 - 1, 8 * 13 - 1) and grid.min() == 0 and grid.max() == 1


def test_visualize_lr_finder_runs_the_range_test(tmp_path: Path) -> None:
    run = make_run(tmp_path, extras=False)
    out = tmp_path / "lr.png"
    args = ["visualize", "lr-finder", "--run", str(run), "--steps", "6", "--out", str(out)]
    assert main(args) == 0 and out.is_file()
    record = json.loads((run / "lr_finder.json").read_text())
    assert 2 <= len(record["lrs"]) <= 6 and record["lrs"][0] == pytest.approx(1e-5)
