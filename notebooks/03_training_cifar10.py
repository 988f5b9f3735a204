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
# # 3. Training the seed CNN on CIFAR-10
#
# The seed CNN (two 3x3 convolutions with ReLU and max pooling, then two linear layers: 545k
# parameters) trained on a few thousand CIFAR-10 images for two epochs, with the project's
# default recipe (SGD with Nesterov momentum, cosine decay after a warm-up, flips and crops).
# Then we read what a run leaves behind: the curves, the confusion matrix and the mistakes.
#
# It needs the CIFAR-10 copy at `../shared/datasets/cifar10-jpeg.zip` beside the repository
# (the test suite skips this notebook without it). With the defaults below it takes well under a
# minute on two CPU cores; `SCRATCHCNN_NOTEBOOK_QUICK=1` in the environment trains on fewer
# images (the test suite's setting). The full recipe, 30 epochs on all 40,000 training images,
# reaches 79% test accuracy (see the README's Results); that is `scratchcnn train`.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np

import scratchcnn as sc
from scratchcnn import viz
from scratchcnn.analysis import metrics
from scratchcnn.training import TrainConfig, predict_proba, prepare_data, train

QUICK = os.environ.get("SCRATCHCNN_NOTEBOOK_QUICK") == "1"  # the test suite's small sizes
TRAIN_IMAGES = 2_000 if QUICK else 5_000  # a random subset of the 40,000 training images
VAL_IMAGES = 500 if QUICK else 1_000  # held out of the training set to choose the best epoch
EPOCHS = 2

# The repository root: the folder above the notebook, or the working directory itself.
ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file())
DATA = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.zip"
assert DATA.is_file(), f"this notebook needs the CIFAR-10 copy at {DATA}"

# %% [markdown]
# ## The data
#
# `prepare_data` loads the images (decoded once, then memory-mapped from a cache), holds out a
# stratified validation split, draws the training subset and fits the per-channel normaliser on
# the training images only. Images stay uint8 `(N, H, W, C)` until a batch is drawn.

# %%
run_parent = tempfile.TemporaryDirectory(prefix="scratchcnn-notebook-")
config = TrainConfig(
    data=str(DATA),
    train_subset=TRAIN_IMAGES,
    val_size=VAL_IMAGES,
    epochs=EPOCHS,
    batch_size=64,  # more steps per epoch than the default 128: a small set needs them
    run_dir=run_parent.name,
    name="seed-cnn-subset",
    progress=False,
)
data = prepare_data(config)
print(
    f"train {data.train_images.shape}, validation {data.val_images.shape}, "
    f"test {data.test_images.shape}"
)
print("classes:", ", ".join(data.class_names))
print("normaliser mean", np.round(data.normalizer.mean, 3), "std", np.round(data.normalizer.std, 3))
figure = viz.plot_samples(
    data.train_images,
    data.train_labels,
    data.class_names,
    per_class=8,
    rng=np.random.default_rng(0),
    show=True,
)

# %% [markdown]
# ## Training
#
# `train` runs the loop you can read in `scratchcnn/training/trainer.py`: per batch, augment,
# normalise, forward, cross-entropy, backward, one optimizer step; per epoch, evaluate on the
# validation split and keep the best model. At the end the best model is evaluated once on the
# 10,000 test images. Everything lands in a run folder (here a temporary one).

# %%
result = train(config, data=data)
for record in result.history:
    print(
        f"epoch {record['epoch']}: train loss {record['train_loss']:.3f}, "
        f"val loss {record['val_loss']:.3f}, val accuracy {record['val_accuracy']:.3f}"
    )
print("run folder:", sorted(path.name for path in result.run_dir.iterdir()))
print(f"test accuracy {result.test['test_accuracy']:.4f} (chance is 0.10)")
assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
assert result.test["test_accuracy"] > 0.25  # it learned: a quarter of the images right at least

# %% [markdown]
# ## Reading the curves
#
# Loss and accuracy on the training batches (measured while the weights still move, with
# augmentation on) and on the validation split (after each epoch), and the learning rate of
# every step. The learning rate warms up over the first epoch, then decays along a cosine: the
# large early steps explore, the small late ones settle. On so few epochs the two losses stay
# close; a training loss falling well below the validation loss is the sign of overfitting.

# %%
figure = viz.plot_training_curves(result.history, show=True)

# %% [markdown]
# ## The confusion matrix
#
# The best model, loaded back from its file, classifies the test set; row $i$, column $j$
# counts the images of class $i$ predicted as $j$ (normalised per row in the picture). The
# diagonal is per-class accuracy; the bright cells off the diagonal are the classes the model
# confuses, usually cat/dog and the vehicles among themselves.

# %%
model, metadata = sc.load_model(result.run_dir / "best.safetensors")
probabilities = predict_proba(model, data.test_images, data.normalizer)
predictions = probabilities.argmax(axis=1)
matrix = metrics.confusion_matrix(data.test_labels, predictions, len(data.class_names))
accuracy = np.trace(matrix) / matrix.sum()
assert abs(accuracy - result.test["test_accuracy"]) < 1e-9  # the same model, the same images
figure = viz.plot_confusion_matrix(matrix, data.class_names, show=True)

off_diagonal = matrix - np.diag(np.diag(matrix))
true_class, predicted_class = np.unravel_index(off_diagonal.argmax(), matrix.shape)
print(
    f"most frequent confusion: {data.class_names[true_class]} taken for "
    f"{data.class_names[predicted_class]} ({off_diagonal.max()} of "
    f"{matrix[true_class].sum()} test images)"
)
scores = metrics.classification_scores(data.test_labels, predictions, len(data.class_names))
for name, recall, precision in zip(data.class_names, scores.recall, scores.precision, strict=True):
    print(f"  {name:<11} recall {recall:.2f}  precision {precision:.2f}")

# %% [markdown]
# ## The mistakes
#
# The test images the model got wrong with the highest confidence: each title shows the true
# class and the prediction with its probability. They are worth a look: some are hard or
# mislabelled images, others show what the model relies on (a blue background makes a ship,
# green grass a deer or a frog).

# %%
worst = metrics.most_confident_mistakes(data.test_labels, probabilities, count=16)
assert np.all(predictions[worst] != data.test_labels[worst])
figure = viz.plot_misclassified(
    data.test_images,
    data.test_labels,
    probabilities,
    data.class_names,
    count=16,
    columns=8,
    show=True,
)

# %%
run_parent.cleanup()  # the run folder was only for this notebook

# %% [markdown]
# Next: [seeing inside](04_seeing_inside.py) the fully trained model: filters, activation maps,
# Grad-CAM, occlusion and saliency.
