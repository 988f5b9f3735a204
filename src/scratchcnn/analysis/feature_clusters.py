"""Feature-map clustering: which images a layer sees as alike.

Each image's feature maps at one layer are pooled into a vector (by default the mean of each
channel, so that two images with the same pattern in different places count as alike),
standardised per feature, and clustered with k-means (scikit-learn). Looking at the images of
each cluster, and at how the true classes spread over the clusters, shows what the layer has
learned to group: colours and textures early in the network, object parts and classes later.
A 2-D embedding of the same vectors (PCA, or t-SNE) draws the clusters on a plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchcnn.analysis import interpret
from scratchcnn.data import Normalizer
from scratchcnn.layers.base import Layer

__all__ = ["POOLINGS", "EMBEDDINGS", "FeatureClusters", "cluster_features", "layer_features"]

POOLINGS = ("avg", "max", "flatten")
EMBEDDINGS = ("pca", "tsne")


@dataclass(frozen=True)
class FeatureClusters:
    """k-means clusters of images by their feature maps at one layer, and a 2-D embedding."""

    layer: str  # e.g. "relu2 (after conv2)"
    pooling: str  # how each feature map became a vector: "avg", "max" or "flatten"
    features: np.ndarray  # (N, D) the standardised feature vectors that were clustered
    assignments: np.ndarray  # (N,) each image's cluster
    centers: np.ndarray  # (k, D) the cluster centres in feature space
    embedding: np.ndarray  # (N, 2)
    embedding_method: str  # "pca" or "tsne"

    @property
    def num_clusters(self) -> int:
        """The number of clusters, ``k``."""
        return len(self.centers)

    def members(self, cluster: int) -> np.ndarray:
        """Indices of a cluster's images, the closest to its centre first."""
        index = np.flatnonzero(self.assignments == cluster)
        distance = np.linalg.norm(self.features[index] - self.centers[cluster], axis=1)
        return index[np.argsort(distance, kind="stable")]

    def class_histogram(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """(k, K) how many images of each true class fell into each cluster."""
        histogram = np.zeros((self.num_clusters, num_classes), np.int64)
        np.add.at(histogram, (self.assignments, np.asarray(labels)), 1)
        return histogram

    def purity(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """(k,) the fraction of each cluster that is its most common class (NaN if empty)."""
        histogram = self.class_histogram(labels, num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return histogram.max(axis=1) / histogram.sum(axis=1)


def layer_features(
    model: Layer,
    images: np.ndarray,
    normalizer: Normalizer,
    layer: int | str | None = None,
    pooling: str = "avg",
    batch_size: int = 250,
) -> np.ndarray:
    """One feature vector per image from a layer's output (the forward pass stops there).

    ``avg``/``max`` pool each channel's map to one number; ``flatten`` keeps every position.
    A layer without spatial axes (after Flatten) gives its output as it is.

    Args:
        model: the trained model.
        images: the images.
        normalizer: the normalisation the model was trained with.
        layer: index or name of a top-level layer; ``None``: the last conv.
        pooling: ``"avg"``, ``"max"`` or ``"flatten"``.
        batch_size: images per forward pass.

    Shape: ``images (N, H, W, C)`` uint8 -> ``(N, channels)`` or ``(N, channels*h*w)``.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    index = interpret.resolve_layer(model, layer)
    children = list(model)[: index + 1]
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    vectors = []
    for start in range(0, len(images), batch_size):
        x = normalizer(np.asarray(images[start : start + batch_size])).astype(dtype, copy=False)
        for child in children:
            x = child.forward(x, training=False)
        if x.ndim == 4 and pooling == "avg":
            x = x.mean(axis=(2, 3))  # (B, C)
        elif x.ndim == 4 and pooling == "max":
            x = x.max(axis=(2, 3))
        vectors.append(x.reshape(len(x), -1).astype(np.float64))  # (B, D)
    return np.concatenate(vectors)


def cluster_features(
    model: Layer,
    images: np.ndarray,
    normalizer: Normalizer,
    layer: int | str | None = None,
    num_clusters: int = 10,
    pooling: str = "avg",
    embedding: str = "pca",
    rng: np.random.Generator | None = None,
) -> FeatureClusters:
    """Cluster images by their feature maps at ``layer`` (default: the last conv, after its
    activation) with k-means, and embed the feature vectors in 2-D.

    The vectors are standardised per feature (zero mean, unit variance over the images) so
    that no channel dominates the distances by its scale alone.

    Args:
        model: the trained model.
        images: the images to cluster.
        normalizer: the normalisation the model was trained with.
        layer: index or name (``"conv2"``) of a top-level layer; ``None``: the last conv.
        num_clusters: ``k`` of k-means.
        pooling: how a feature map becomes a vector, one of :data:`POOLINGS`.
        embedding: the 2-D embedding, one of :data:`EMBEDDINGS`.
        rng: seeds k-means and the embedding; ``None``: a generator seeded with 0.

    Shape: ``images (N, H, W, C)`` uint8.
    """
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {list(EMBEDDINGS)}, got {embedding!r}")
    if not 2 <= num_clusters <= len(images):
        raise ValueError(
            f"num_clusters must be in [2, number of images = {len(images)}], got {num_clusters}"
        )
    rng = rng if rng is not None else np.random.default_rng(0)
    index = interpret.resolve_layer(model, layer)
    features = layer_features(model, images, normalizer, index, pooling)
    features = StandardScaler().fit_transform(features)
    kmeans = KMeans(n_clusters=num_clusters, n_init=10, random_state=_seed(rng))
    assignments = kmeans.fit_predict(features)
    if embedding == "pca":
        from sklearn.decomposition import PCA

        plane = PCA(n_components=2, random_state=_seed(rng)).fit_transform(features)
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(1.0, (len(features) - 1) / 3)))
        plane = TSNE(2, perplexity=perplexity, init="pca", random_state=_seed(rng)).fit_transform(
            features
        )
    return FeatureClusters(
        layer=_describe(model, index),
        pooling=pooling,
        features=features,
        assignments=assignments.astype(np.int64),
        centers=kmeans.cluster_centers_,
        embedding=plane,
        embedding_method=embedding,
    )


def _seed(rng: np.random.Generator) -> int:
    """An integer seed for scikit-learn, drawn from the caller's generator."""
    return int(rng.integers(2**31 - 1))


def _describe(model: Layer, index: int) -> str:
    names = interpret.layer_names(model)
    if index > 0 and names[index - 1].startswith("conv") and not names[index].startswith("conv"):
        return f"{names[index]} (after {names[index - 1]})"
    return names[index]
