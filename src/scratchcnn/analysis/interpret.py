"""Looking inside a trained network with its own forward and backward passes.

Grad-CAM, occlusion sensitivity, input-gradient saliency, the images that most excite each
filter, activation statistics (mean activation, dead ReLUs) and receptive fields. The functions
work on a ``Sequential`` model layer by layer, naming its top-level layers ``conv1``, ``relu1``,
``pool1``, ... (see :func:`layer_names`); a layer may be chosen by that name or by its index.

Inputs ``x`` are normalised float batches ``(N, C, H, W)`` as the model sees them; functions that
scan a dataset take uint8 ``(N, H, W, C)`` images and the ``Normalizer``.

Backward passes here overwrite the parameters' ``.grad`` buffers; every function puts the old
gradients back before returning, so it is safe to call in the middle of training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from scratchcnn import layers as L
from scratchcnn.data import Normalizer
from scratchcnn.functional.loss import softmax
from scratchcnn.layers.base import Layer

__all__ = [
    "LayerActivationStats",
    "activation_stats",
    "feature_maps",
    "grad_cam",
    "input_gradient",
    "layer_names",
    "layer_outputs",
    "occlusion",
    "parameter_grad_norms",
    "receptive_fields",
    "resize_bilinear",
    "resolve_layer",
    "saliency",
    "top_activating_images",
]

# Short names for top-level layers, numbered per kind: conv1, relu1, pool1, conv2, ...
_KIND_NAMES: tuple[tuple[type[Layer], str], ...] = (
    (L.Conv2d, "conv"),
    (L.MaxPool2d, "pool"),
    (L.AvgPool2d, "pool"),
    (L.GlobalAvgPool2d, "gap"),
    (L.Linear, "fc"),
    (L.BatchNorm2d, "bn"),
    (L.BatchNorm1d, "bn"),
    (L.Dropout, "dropout"),
    (L.Flatten, "flatten"),
    (L.Residual, "block"),
)
_ACTIVATIONS = (L.ReLU, L.LeakyReLU, L.GELU, L.Tanh, L.Sigmoid)


# --- naming and walking the layers -----------------------------------------------------------
def _children(model: Layer) -> list[Layer]:
    if not isinstance(model, L.Sequential):
        raise TypeError(
            f"interpretation works layer by layer on a Sequential model, got {type(model).__name__}"
        )
    return list(model)


def layer_names(model: Layer) -> list[str]:
    """Names for the model's top-level layers: ``conv1, relu1, pool1, conv2, ...``."""
    counts: dict[str, int] = {}
    names = []
    for layer in _children(model):
        kind = next((n for cls, n in _KIND_NAMES if isinstance(layer, cls)), None)
        if kind is None:
            kind = type(layer).__name__.lower()
        counts[kind] = counts.get(kind, 0) + 1
        names.append(f"{kind}{counts[kind]}")
    return names


def resolve_layer(model: Layer, layer: int | str | None = None) -> int:
    """The index of a top-level layer given by index, by name (``"conv2"``) or, for ``None``,
    the last layer whose output still has spatial axes (where Grad-CAM is usually taken).

    Args:
        model: the model.
        layer: an index (negative counts from the end), a name such as ``"conv2"``, or ``None``.
    """
    children = _children(model)
    names = layer_names(model)
    if layer is None:
        spatial = [i for i, child in enumerate(children) if isinstance(child, L.Conv2d)]
        if not spatial:
            raise ValueError("the model has no Conv2d layer; name a layer explicitly")
        index = spatial[-1]
        # The activation right after the conv is what the next layer sees.
        if index + 1 < len(children) and isinstance(children[index + 1], _ACTIVATIONS):
            index += 1
        return index
    if isinstance(layer, str):
        if layer.lstrip("-").isdigit():
            layer = int(layer)
        elif layer in names:
            return names.index(layer)
        else:
            raise ValueError(f"no layer named {layer!r}; the layers are {names}")
    if not -len(children) <= layer < len(children):
        raise ValueError(f"layer index {layer} out of range for {len(children)} layers {names}")
    return layer % len(children)


def layer_outputs(model: Layer, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Every top-level layer's output for one evaluation-mode forward pass.

    Args:
        model: the model, in evaluation mode; its top-level layers are walked.
        x: the input batch, normalised.

    Shape: ``x (N, C, H, W)`` -> one ``(name, array)`` per layer, arrays with the batch axis.
    """
    outputs = []
    for name, layer in zip(layer_names(model), _children(model), strict=True):
        x = layer.forward(x, training=False)
        outputs.append((name, x))
    return outputs


def feature_maps(model: Layer, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The spatial feature maps of one image: each conv (after its activation) and each pool.

    A conv followed directly by an activation is shown after the activation, labelled
    ``"conv1 + relu1"``, because that is what the next layer sees.

    Args:
        model: the model, in evaluation mode; its top-level layers are walked.
        x: one normalised image.

    Shape: ``x (1, C, H, W)`` -> a list of ``(label, (channels, h, w))``.
    """
    children = _children(model)
    outputs = layer_outputs(model, x)
    maps = []
    for i, (name, out) in enumerate(outputs):
        if out.ndim != 4:
            continue
        layer = children[i]
        if isinstance(layer, _ACTIVATIONS) and i > 0 and isinstance(children[i - 1], L.Conv2d):
            maps.append((f"{outputs[i - 1][0]} + {name}", out[0]))
        elif isinstance(layer, L.Conv2d):
            followed = i + 1 < len(children) and isinstance(children[i + 1], _ACTIVATIONS)
            if not followed:
                maps.append((name, out[0]))
        elif isinstance(layer, (L.MaxPool2d, L.AvgPool2d)):
            maps.append((name, out[0]))
    return maps


@contextmanager
def _grads_preserved(model: Layer) -> Iterator[None]:
    """Put the parameters' gradients back after a backward pass done only to look inside, and
    make every conv compute its input gradient meanwhile (a trainer may switch that off for the
    first layer, whose input gradient training never needs but saliency does)."""
    saved = [(p, p.grad.copy()) for p in model.parameters()]
    convs = [m for m in model.modules() if isinstance(m, L.Conv2d)]
    needs = [getattr(m, "needs_input_grad", True) for m in convs]
    for conv in convs:
        conv.needs_input_grad = True
    try:
        yield
    finally:
        for param, grad in saved:
            param.grad = grad
        for conv, need in zip(convs, needs, strict=True):
            conv.needs_input_grad = need


def _class_indices(logits: np.ndarray, class_index: int | np.ndarray | None) -> np.ndarray:
    n, k = logits.shape
    if class_index is None:
        return logits.argmax(axis=1)
    classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (n,))
    if classes.min() < 0 or classes.max() >= k:
        raise ValueError(f"class_index must lie in [0, {k}), got {class_index}")
    return classes


def _backward_from_logits(
    model: Layer, x: np.ndarray, start: int, class_index: int | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward ``x``; backward from the chosen class's logit down to layer ``start``'s input.

    Only layers ``start, start+1, ...`` keep backward caches (``recording``), so nothing earlier
    is left holding a cache that no backward pass will consume.

    Returns ``(input of layer start, gradient of the class logit w.r.t. it, classes)``.
    Shape: ``x (N, C, H, W)``.
    """
    children = _children(model)
    with _grads_preserved(model), ExitStack() as stack:
        for layer in children[start:]:
            stack.enter_context(layer.recording())
        inner = x
        for layer in children[:start]:
            inner = layer.forward(inner, training=False)
        out = inner
        for layer in children[start:]:
            out = layer.forward(out, training=False)
        if out.ndim != 2:
            raise ValueError(f"the model must end in (N, K) logits, got shape {out.shape}")
        classes = _class_indices(out, class_index)
        grad = np.zeros_like(out)
        grad[np.arange(len(out)), classes] = 1.0  # d logit[class] / d logits
        for layer in reversed(children[start:]):
            grad = layer.backward(grad)
    return inner, grad, classes


# --- Grad-CAM, saliency, occlusion -----------------------------------------------------------
def grad_cam(
    model: Layer,
    x: np.ndarray,
    layer: int | str | None = None,
    class_index: int | np.ndarray | None = None,
    upsample: bool = True,
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

    With ``A`` the chosen layer's output and ``y`` the class logit:
    ``alpha_k = mean_{i,j} dy / dA_k[i, j]`` and ``cam = ReLU(sum_k alpha_k A_k)``, scaled so
    each image's maximum is 1 (an all-zero map stays zero) and, with ``upsample``, resized
    bilinearly to the input size. ``class_index`` None takes each image's predicted class.

    Args:
        model: the model, in evaluation mode; its top-level layers are walked.
        x: normalised images.
        layer: the layer whose output is weighed (index or name); ``None``: the last conv, after
            its activation.
        class_index: the class to explain, one for all or one per image; ``None``: each image's
            predicted class.
        upsample: resize the maps to the input size.

    Shape: ``x (N, C, H, W)`` -> ``(N, H, W)`` (or the layer's ``(N, h, w)`` without upsample).
    """
    index = resolve_layer(model, layer)
    # The gradient w.r.t. layer ``index``'s output is the gradient w.r.t. layer index+1's input.
    activation, grad, _ = _backward_from_logits(model, x, index + 1, class_index)
    if activation.ndim != 4:
        raise ValueError(
            f"Grad-CAM needs a layer with spatial output; {layer_names(model)[index]} gives "
            f"shape {activation.shape}"
        )
    weights = grad.mean(axis=(2, 3))  # (N, K channels)
    cam = np.maximum(np.einsum("nk,nkhw->nhw", weights, activation), 0.0)  # (N, h, w)
    if upsample:
        cam = resize_bilinear(cam, x.shape[2:])
    return _scale_to_unit(cam)


def input_gradient(
    model: Layer, x: np.ndarray, class_index: int | np.ndarray | None = None
) -> np.ndarray:
    """The gradient of the chosen class's logit with respect to the input image.

    Args:
        model: the model, in evaluation mode; its top-level layers are walked.
        x: normalised images.
        class_index: the logit to differentiate, one for all or one per image; ``None``: each
            image's predicted class.

    Shape: ``x (N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    _, grad, _ = _backward_from_logits(model, x, 0, class_index)
    return grad


def saliency(
    model: Layer, x: np.ndarray, class_index: int | np.ndarray | None = None
) -> np.ndarray:
    """Input-gradient saliency (Simonyan et al., 2014): ``max_c |d logit / d x[c, i, j]|``.

    Args:
        model: the model, in evaluation mode; its top-level layers are walked.
        x: normalised images.
        class_index: the logit to differentiate, one for all or one per image; ``None``: each
            image's predicted class.

    Shape: ``x (N, C, H, W)`` -> ``(N, H, W)``, each image scaled to a maximum of 1.
    """
    return _scale_to_unit(np.abs(input_gradient(model, x, class_index)).max(axis=1))


def occlusion(
    model: Layer,
    x: np.ndarray,
    class_index: int | None = None,
    patch_size: int = 8,
    stride: int = 4,
    fill: float = 0.0,
    batch_size: int = 128,
) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus, 2014): how much hiding each region costs.

    A ``patch_size`` square of value ``fill`` (0 is the dataset mean after normalisation) slides
    over the image in steps of ``stride``, the last position flush with the far edge; each
    occluded copy is classified, in batches of ``batch_size``. A pixel's value is the mean drop
    in the class's probability over the patches that covered it (negative where hiding helps).

    Args:
        model: the model, in evaluation mode; its top-level layers are walked.
        x: one normalised image.
        class_index: the class whose probability is watched; ``None``: the predicted class.
        patch_size: side of the square that hides part of the image.
        stride: the step between patch positions.
        fill: the value of the hidden pixels (0: the dataset mean after normalisation).
        batch_size: occluded copies per forward pass.

    Shape: ``x (1, C, H, W)`` or ``(C, H, W)`` -> ``(H, W)``.
    """
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"occlusion takes one image (1, C, H, W), got shape {x.shape}")
    _, _, height, width = x.shape
    if not 1 <= patch_size <= min(height, width):
        raise ValueError(f"patch_size must be in [1, {min(height, width)}], got {patch_size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    base = softmax(model.forward(x, training=False).astype(np.float64))[0]
    target = int(base.argmax()) if class_index is None else int(class_index)

    def starts(size: int) -> list[int]:
        positions = list(range(0, size - patch_size + 1, stride))
        if positions[-1] != size - patch_size:
            positions.append(size - patch_size)
        return positions

    patches = [(top, left) for top in starts(height) for left in starts(width)]
    drops = np.empty(len(patches))
    for first in range(0, len(patches), batch_size):
        chunk = patches[first : first + batch_size]
        batch = np.repeat(x, len(chunk), axis=0)  # (B, C, H, W)
        for b, (top, left) in enumerate(chunk):
            batch[b, :, top : top + patch_size, left : left + patch_size] = fill
        probs = softmax(model.forward(batch, training=False).astype(np.float64))
        drops[first : first + len(chunk)] = base[target] - probs[:, target]
    total = np.zeros((height, width))
    covered = np.zeros((height, width))
    for drop, (top, left) in zip(drops, patches, strict=True):
        total[top : top + patch_size, left : left + patch_size] += drop
        covered[top : top + patch_size, left : left + patch_size] += 1
    return total / covered


# --- filters and activations over a dataset --------------------------------------------------
def _batches(
    images: np.ndarray, normalizer: Normalizer, batch_size: int, dtype: np.dtype
) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start : start + batch_size])
        yield start, normalizer(chunk).astype(dtype, copy=False)


def _model_dtype(model: Layer) -> np.dtype:
    return next((p.dtype for p in model.parameters()), np.dtype(np.float32))


def top_activating_images(
    model: Layer,
    images: np.ndarray,
    normalizer: Normalizer,
    layer: int | str | None = None,
    num_images: int = 9,
    batch_size: int = 250,
) -> tuple[np.ndarray, np.ndarray]:
    """For each channel of a layer, the images whose strongest response in it is highest.

    A channel's response to an image is the maximum of its feature map (a 2-D layer's unit is
    its value). The forward pass stops at the layer.

    Args:
        model: the model, in evaluation mode; its top-level layers are walked.
        images: the images to search.
        normalizer: the normalisation the model was trained with.
        layer: index or name of the layer; ``None``: the last conv, after its activation.
        num_images: images kept per channel.
        batch_size: images per forward pass.

    Shape: ``images (N, H, W, C)`` uint8 -> ``indices (channels, num_images)`` into ``images``
    and ``scores (channels, num_images)``, best first.
    """
    index = resolve_layer(model, layer)
    children = _children(model)[: index + 1]
    responses = []
    for _, x in _batches(images, normalizer, batch_size, _model_dtype(model)):
        for child in children:
            x = child.forward(x, training=False)
        responses.append(x.max(axis=(2, 3)) if x.ndim == 4 else x)  # (B, channels)
    scores = np.concatenate(responses).T  # (channels, N)
    k = min(num_images, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@dataclass(frozen=True)
class LayerActivationStats:
    """Statistics of one activation layer's output over a set of images.

    ``dead_fraction``: units (channels of a feature map, features of a vector) that were never
    positive for any image at any position. ``zero_fraction``: all outputs that were <= 0.
    """

    name: str  # e.g. "relu1 (after conv1)"
    units: int
    mean_activation: float  # over images, positions and units
    zero_fraction: float
    dead_fraction: float


def activation_stats(
    model: Layer, images: np.ndarray, normalizer: Normalizer, batch_size: int = 250
) -> list[LayerActivationStats]:
    """Mean activation and dead-unit fraction of every activation layer (ReLU and friends).

    Args:
        model: the trained model.
        images: the images to run through it.
        normalizer: the normalisation the model was trained with.
        batch_size: images per forward pass.

    Shape: ``images (N, H, W, C)`` uint8.
    """
    children = _children(model)
    names = layer_names(model)
    watched = [i for i, child in enumerate(children) if isinstance(child, _ACTIVATIONS)]
    if not watched:
        return []
    sums = {i: 0.0 for i in watched}
    counts = {i: 0 for i in watched}
    zeros = {i: 0 for i in watched}
    alive: dict[int, np.ndarray] = {}
    for _, x in _batches(images, normalizer, batch_size, _model_dtype(model)):
        for i, child in enumerate(children[: watched[-1] + 1]):
            x = child.forward(x, training=False)
            if i not in sums:
                continue
            # (B, C, H, W) -> per-channel "ever positive"; (B, F) -> per-feature.
            axes = (0, 2, 3) if x.ndim == 4 else (0,)
            positive = (x > 0).any(axis=axes)
            alive[i] = positive if i not in alive else alive[i] | positive
            sums[i] += float(x.sum(dtype=np.float64))
            counts[i] += x.size
            zeros[i] += int((x <= 0).sum())
    stats = []
    for i in watched:
        label = names[i] + (f" (after {names[i - 1]})" if i > 0 else "")
        stats.append(
            LayerActivationStats(
                name=label,
                units=int(alive[i].size),
                mean_activation=sums[i] / counts[i],
                zero_fraction=zeros[i] / counts[i],
                dead_fraction=float(1.0 - alive[i].mean()),
            )
        )
    return stats


def receptive_fields(model: Layer, input_shape: tuple[int, ...]) -> list[tuple[str, int | None]]:
    """Each top-level layer's receptive field in input pixels (None after flatten).

    Args:
        model: the model.
        input_shape: the input's shape.

    Shape: ``input_shape`` is one example without the batch axis, e.g. ``(3, 32, 32)``.
    """
    from scratchcnn.layers.summary import summarize

    rows = summarize(model, tuple(input_shape), _model_dtype(model))
    return [(name, row.receptive_field) for name, row in zip(layer_names(model), rows, strict=True)]


def parameter_grad_norms(model: Layer) -> dict[str, float]:
    """The L2 norm of each parameter's current gradient, by parameter name (for grad_norms.jsonl).

    Record the per-step values and average them over an epoch to plot gradient flow.

    Args:
        model: a model after ``backward``.
    """
    return {
        name: float(np.sqrt(np.sum(param.grad.astype(np.float64) ** 2)))
        for name, param in model.named_parameters()
    }


# --- helpers ---------------------------------------------------------------------------------
def _scale_to_unit(maps: np.ndarray) -> np.ndarray:
    """Divide each map by its maximum absolute value (all-zero maps stay zero)."""
    maps = np.asarray(maps, dtype=np.float64)
    peak = np.abs(maps).reshape(len(maps), -1).max(axis=1)  # (N,)
    peak = np.where(peak > 0, peak, 1.0)
    return maps / peak[:, None, None]


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres (``align_corners=False``, as PyTorch/OpenCV).

    Args:
        maps: the maps to resize.
        size: ``(H, W)``, the new size.

    Shape: ``maps (N, h, w)`` -> ``(N, H, W)``.
    """
    maps = np.asarray(maps, dtype=np.float64)
    _, in_h, in_w = maps.shape
    out_h, out_w = size

    def coordinates(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
        src = np.clip(src, 0, in_size - 1)
        low = np.floor(src).astype(np.int64)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, src - low

    top, bottom, wy = coordinates(out_h, in_h)
    left, right, wx = coordinates(out_w, in_w)
    rows = maps[:, top] * (1 - wy)[None, :, None] + maps[:, bottom] * wy[None, :, None]  # (N,H,w)
    return rows[:, :, left] * (1 - wx) + rows[:, :, right] * wx
