# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   scratchcnn:
#     needs_data: cifar10
# ---

# %% [markdown]
# # 4. Seeing inside a trained CNN
#
# The seed CNN trained for 30 epochs with the default recipe (79% test accuracy) is committed
# as `models/seed_cnn_cifar10.safetensors`. What has it learned? This notebook looks from the
# weights outwards: the filters, the activation maps of one image, then three answers to
# "which pixels made this decision?" (Grad-CAM, occlusion, saliency), and finally the test
# images that excite each channel most. The functions are in `scratchcnn.analysis.interpret`,
# the pictures in `scratchcnn.viz`.
#
# It needs the CIFAR-10 copy at `../shared/datasets/cifar10-jpeg.zip` for its test images
# (the test suite skips it without). `SCRATCHCNN_NOTEBOOK_QUICK=1` in the environment uses
# fewer test images for the top-activation search (the test suite's setting).

# %%
import os
from pathlib import Path

import numpy as np

from scratchcnn import viz
from scratchcnn.analysis import interpret
from scratchcnn.report import load_checkpoint, load_test_images
from scratchcnn.tools.gradcheck import numerical_gradient, relative_error

QUICK = os.environ.get("SCRATCHCNN_NOTEBOOK_QUICK") == "1"  # the test suite's small sizes
SEARCH_IMAGES = 500 if QUICK else 5_000  # test images searched for top activations

# The repository root: the folder above the notebook, or the working directory itself.
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file())
DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.zip"
assert DATA.is_file(), f"this notebook needs the CIFAR-10 copy at {DATA}"

# %% [markdown]
# ## The model and its test images
#
# A model file carries its architecture, weights, class names and the normaliser fitted on
# its training images: `load_checkpoint` checks all of it and rebuilds the model in
# evaluation mode.

# %%
loaded = load_checkpoint(ROOT / "models" / "seed_cnn_cifar10.safetensors")
model, normalizer, class_names = loaded.model, loaded.normalizer, loaded.class_names
model.summary((3, 32, 32))
print("layer names:", interpret.layer_names(model))
images, labels, _ = load_test_images(loaded, data=str(DATA), max_images=SEARCH_IMAGES, seed=0)
x_all = normalizer(images).astype(np.float32)  # (N, C, H, W), as the model was trained
predictions = model.forward(x_all).argmax(axis=1)
print(f"{len(images)} test images, accuracy {np.mean(predictions == labels):.3f}")
assert np.mean(predictions == labels) > 0.7  # the committed model: 79% on the full test set

# %% [markdown]
# ## The filters
#
# The 32 first-layer filters are 3x3x3, so each can be drawn as a tiny RGB image (scaled so
# that grey is zero). Trained first layers find the same things in every CNN: oriented edges,
# colour blobs and colour-opponent pairs. The second layer's filters have 32 input channels;
# the second picture shows a sample of them, one row per filter and one column per input
# channel.

# %%
figure = viz.plot_filters(model, show=True)
figure = viz.plot_filters2(model, show=True)

# %% [markdown]
# ## Activation maps
#
# One image through every convolution (after its ReLU) and every pooling layer. The first
# layer's maps still look like the image, filtered; after two poolings each map is 8x8 and
# responds to larger, more abstract patterns. Dark tiles are channels that stay at zero for
# this image.

# %%
index = int(np.flatnonzero((predictions == labels) & (labels == class_names.index("cat")))[0])
figure = viz.plot_activations(
    model, images[index], normalizer, title=f"test image {index}: cat", show=True
)
maps = interpret.feature_maps(model, x_all[index : index + 1])
for label, activation in maps:
    print(f"{label:<14} {activation.shape}  {np.mean(activation == 0):.0%} of the values are zero")

# %% [markdown]
# ## Which pixels decided? Grad-CAM, occlusion, saliency
#
# - **Grad-CAM** weighs each channel of the last convolution's output by the mean gradient of
#   the class logit over that channel, sums, keeps the positive part and upsamples: a coarse
#   (8x8) map of where the evidence for the class lies.
# - **Occlusion** hides an 8x8 patch at every position and records how much the class
#   probability drops: slow (one forward pass per position) but it needs no gradient.
# - **Saliency** is the gradient of the class logit with respect to the input pixels: fine but
#   noisy.

# %%
correct = predictions == labels
shown_classes = ["airplane", "automobile", "bird", "cat", "horse", "ship"]
chosen = np.array(
    [np.flatnonzero(correct & (labels == class_names.index(c)))[0] for c in shown_classes]
)
x = x_all[chosen]
cams = interpret.grad_cam(model, x)  # layer None: the last convolution, after its ReLU
saliency = interpret.saliency(model, x)
occlusion = np.stack(
    [interpret.occlusion(model, x[k : k + 1], patch_size=8, stride=4) for k in range(len(x))]
)
titles = [class_names[labels[k]] for k in chosen]
figure = viz.plot_heatmaps(
    images[chosen],
    {"Grad-CAM": cams, "occlusion": occlusion, "saliency": saliency},
    titles=titles,
    show=True,
)
assert cams.shape == saliency.shape == occlusion.shape == (len(chosen), 32, 32)
assert np.allclose(cams.max(axis=(1, 2)), 1.0) and cams.min() >= 0.0

# %% [markdown]
# Each map can be checked against its definition. Saliency is built on the input gradient:
# compare it with finite differences of the class logit on a float64 copy of the model. One
# trap: photos have flat regions (a white sky, a saturated background) where neighbouring
# windows are identical, so a max pool sees ties, and a finite difference that breaks a tie
# measures neither side's slope. Faint noise moves the image off those kinks, as
# `gradcheck` does with its inputs; the gradient there is the same almost everywhere.
# Occlusion with a patch as large as the image has one position, so its map is the drop from
# the image's probability to that of an all-zero (dataset-mean) image, everywhere.

# %%
model64 = load_checkpoint(ROOT / "models" / "seed_cnn_cifar10.safetensors").model.astype(np.float64)
image64 = x[:1].astype(np.float64) + 1e-3 * np.random.default_rng(0).standard_normal(x[:1].shape)
target = int(model64.forward(image64).argmax())
analytic = interpret.input_gradient(model64, image64, class_index=target)
pixels = np.random.default_rng(0).choice(image64.size, 20, replace=False)
numeric = numerical_gradient(
    lambda: float(model64.forward(image64)[0, target]), image64, indices=pixels
)
error = relative_error(analytic.reshape(-1)[pixels], numeric)
print(f"input gradient against finite differences: relative error {error:.1e}")
assert error < 1e-6


def probabilities(batch):
    logits = model.forward(batch).astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


whole = interpret.occlusion(model, x[:1], class_index=target, patch_size=32, stride=32)
expected_drop = probabilities(x[:1])[0, target] - probabilities(np.zeros_like(x[:1]))[0, target]
assert np.allclose(whole, expected_drop, atol=1e-6)
print(f"hiding the whole image costs the class {expected_drop:.3f} of probability")

# %% [markdown]
# ## The images that excite each channel most
#
# For each channel of the second convolution (after its ReLU), the test images whose strongest
# response in that channel is highest. Where the filters and maps above are hard to name, these
# often are: a channel for horizon lines, one for green textures, one for wheels.

# %%
top, scores = interpret.top_activating_images(
    model, images, normalizer, layer="relu2", num_images=8
)
figure = viz.plot_top_activations(images, top, "relu2", filters=range(8), show=True)
assert np.all(np.diff(scores, axis=1) <= 0)  # best first
layer_index = interpret.layer_names(model).index("relu2")
relu2 = interpret.layer_outputs(model, x_all[top[0, :1]])[layer_index][1]  # (1, 64, 16, 16)
assert np.isclose(relu2[0, 0].max(), scores[0, 0], rtol=1e-5)  # the score is the map's maximum

# %% [markdown]
# Next: [NumPy against PyTorch](05_numpy_vs_pytorch.py): the same model and weights in both
# libraries.
