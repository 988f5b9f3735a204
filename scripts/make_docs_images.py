"""Write the README's figures from a training run into docs/images/.

    python scripts/make_docs_images.py runs/default [--checkpoint PATH] [--data SPEC]
        [--max-images N] [--out docs/images]

Writes filters.png (first-layer filters), filters2.png (second-layer sample), activations.png
(one test image through conv1, pool1, conv2, pool2), training_curves.png, confusion_matrix.png,
gradcam.png (Grad-CAM, occlusion and saliency for a few test images) and, when the run has
them, gradient_flow.png. Prints test accuracy so the README text can quote it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from scratchcnn import viz
from scratchcnn.analysis import interpret, metrics
from scratchcnn.report import load_checkpoint, load_test_images, run_checkpoint
from scratchcnn.training.evaluate import predict_proba


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="training run folder (metrics.jsonl, best.safetensors)")
    parser.add_argument("--checkpoint", help="model file (default: RUN_DIR/best.safetensors)")
    parser.add_argument("--data", help="test data (default: the model's training data)")
    parser.add_argument("--cache-dir", help="dataset cache")
    parser.add_argument("--max-images", type=int, help="classify a random subset of N images")
    parser.add_argument("--out", default="docs/images", help="output folder (default: docs/images)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Path(args.run_dir)
    loaded = load_checkpoint(args.checkpoint or run_checkpoint(run))
    model, names = loaded.model, loaded.class_names
    images, labels, spec = load_test_images(loaded, args.data, args.cache_dir, args.max_images)
    probs = predict_proba(model, images, loaded.normalizer, dtype=loaded.dtype.type)
    predictions = probs.argmax(axis=1)
    written = []

    def save(name: str, draw) -> None:
        draw(out / name)
        written.append(out / name)

    save("filters.png", lambda p: viz.plot_filters(model, path=p))
    save("filters2.png", lambda p: viz.plot_filters2(model, path=p))
    # A correctly classified, confidently predicted image makes the clearest activation maps.
    right = np.flatnonzero(predictions == labels)
    first = int(right[np.argmax(probs[right, predictions[right]])]) if right.size else 0
    title = f"a test {names[labels[first]]} ({probs[first, predictions[first]]:.0%} confident)"
    save("activations.png",
         lambda p: viz.plot_activations(model, images[first], loaded.normalizer, title=title,
                                        path=p))  # fmt: skip
    if (run / "metrics.jsonl").is_file():
        save("training_curves.png", lambda p: viz.plot_training_curves(run, path=p))
    if viz.read_grad_norms(run):
        save("gradient_flow.png", lambda p: viz.plot_gradient_flow(run, path=p))
    matrix = metrics.confusion_matrix(labels, predictions, len(names))
    save("confusion_matrix.png", lambda p: viz.plot_confusion_matrix(matrix, names, path=p))

    chosen = np.random.default_rng(0).choice(len(labels), 6, replace=False)
    x = loaded.prepare(images[chosen])
    maps = {
        "Grad-CAM": interpret.grad_cam(model, x),
        "occlusion": np.stack([interpret.occlusion(model, x[i : i + 1]) for i in range(len(x))]),
        "saliency": interpret.saliency(model, x),
    }
    titles = [f"{names[labels[i]]} -> {names[predictions[i]]}" for i in chosen]
    save("gradcam.png", lambda p: viz.plot_heatmaps(images[chosen], maps, titles, path=p))

    accuracy = metrics.classification_scores(labels, predictions, len(names)).accuracy
    print(f"test accuracy {accuracy:.4f} on {len(labels):,} images of {spec}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
