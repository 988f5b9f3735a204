"""Gradient checking: compare every hand-written backward pass with centred finite differences.

This module is part of the library, not only of its tests: if you write a custom layer, run
:func:`check_layer` on it before trusting its ``backward``.

How a check works (CS231n style):

1. The layer is cast to float64, so that the finite-difference truncation error
   (``O(eps^2)``) and the rounding error (``O(1e-16 / eps)``) both sit far below the threshold.
2. A scalar objective is built from the output, ``L = sum(out * R)`` with a fixed random ``R``
   (so every output element contributes with a different weight), or a real loss for
   :func:`check_model`.
3. ``backward(R)`` gives the analytic gradients; ``(L(v + eps) - L(v - eps)) / (2 eps)`` for
   every entry ``v`` of the input and of each parameter gives the numerical ones.
4. The two are compared with a norm-wise :func:`relative_error`.

Piecewise-linear layers (ReLU, LeakyReLU, MaxPool2d) have kinks where the derivative jumps; a
centred difference that straddles one measures neither side's slope. Inputs are therefore drawn
away from kinks (every kinked layer's ``kink_distance`` of its actual input above a margin),
and as a second guard every finite difference checks that no kinked layer changed its
"activation pattern" (the ReLU sign mask, the max-pool winners) between ``v - eps`` and
``v + eps``; the rare entries where one did are left out of the comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scratchcnn import functional as F
from scratchcnn import layers as L
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss

__all__ = [
    "CheckResult",
    "all_passed",
    "builtin_checks",
    "check_layer",
    "check_model",
    "format_results",
    "numerical_gradient",
    "relative_error",
]

KINK_MARGIN = 1e-3  # far above any change an eps = 1e-6 perturbation can cause
MAX_DRAWS = 20  # redraws of the input before falling back to the best draw seen


def numerical_gradient(
    f: Callable[[], float],
    array: np.ndarray,
    eps: float = 1e-6,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """Centred differences ``(f(a + eps) - f(a - eps)) / (2 eps)``, one entry at a time.

    ``array`` is perturbed in place (and restored exactly), so ``f`` must read it, e.g. a
    closure over the input or over a parameter's ``data``. With ``indices`` (flat positions),
    only those entries are differentiated and a 1-D array of their derivatives is returned.

    Shape: ``array`` any shape -> same shape (or ``(len(indices),)`` with ``indices``).
    """
    positions = range(array.size) if indices is None else indices
    grads = np.zeros(array.shape if indices is None else len(indices), dtype=np.float64)
    for k, flat_index in enumerate(positions):
        index = np.unravel_index(int(flat_index), array.shape)
        original = array[index]
        array[index] = original + eps
        f_plus = f()
        array[index] = original - eps
        f_minus = f()
        array[index] = original
        value = (f_plus - f_minus) / (2 * eps)
        if indices is None:
            grads[index] = value
        else:
            grads[k] = value
    return grads


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Norm-wise relative error ``||a - n|| / max(||a||, ||n||, tiny)`` (2-norms).

    Norm-wise rather than element-wise: an element-wise ratio ``|a - n| / max(|a|, |n|)``
    blows up on entries whose true gradient is (nearly) zero, where both numbers are pure
    rounding noise, and would fail correct code. The norm-wise error weighs each entry's
    mismatch by the size of the whole gradient. Two zero gradients give 0.

    Shape: ``analytic`` and ``numeric`` share any shape -> scalar.
    """
    a = np.asarray(analytic, dtype=np.float64).ravel()
    n = np.asarray(numeric, dtype=np.float64).ravel()
    if a.shape != n.shape:
        raise ValueError(f"relative_error: shapes differ, {a.shape} vs {n.shape}")
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(n)), np.finfo(np.float64).tiny)
    return float(np.linalg.norm(a - n) / scale)


# --- tracing: run a network layer by layer to see what each kinked layer receives -------------


def _traced_forward(
    layer: Layer, x: np.ndarray, training: bool, seen: list[tuple[Layer, np.ndarray]]
) -> np.ndarray:
    """``layer.forward(x, training)``, recording ``(kinked layer, its input)`` pairs in ``seen``.

    Sequential, Residual, Concat and fused layers are walked child by child so that each kinked
    layer inside them is paired with its actual input; any other layer (a custom container too)
    runs as a leaf.
    """
    if isinstance(layer, (L.Sequential, L.Fused)):
        for _, child in layer.named_children():
            x = _traced_forward(child, x, training, seen)
        return x
    if isinstance(layer, L.Concat):
        outputs = [_traced_forward(branch, x, training, seen) for branch in layer.branches]
        return np.concatenate(outputs, axis=1)
    if isinstance(layer, L.Residual):
        out = _traced_forward(layer.block, x, training, seen)
        skip = x if layer.shortcut is None else _traced_forward(layer.shortcut, x, training, seen)
        return out + skip
    if hasattr(layer, "kink_distance"):
        seen.append((layer, x))
    return layer.forward(x, training)


def _pattern(layer: Layer, x: np.ndarray) -> np.ndarray | None:
    """Which linear piece a kinked layer is on: ReLU signs, or the max-pool winners.

    ``None`` for a custom kinked layer; those rely on the input-drawing margin alone.
    """
    if isinstance(layer, (L.ReLU, L.LeakyReLU)):
        return x > 0
    if isinstance(layer, L.MaxPool2d):
        return F.max_pool2d_forward(x, layer.kernel_size, layer.stride, layer.pad)[1]
    if isinstance(layer, L.GlobalMaxPool2d):
        return x.reshape(*x.shape[:2], -1).argmax(axis=-1)
    return None


def _min_kink_distance(seen: list[tuple[Layer, np.ndarray]]) -> float:
    return min((float(layer.kink_distance(x)) for layer, x in seen), default=float("inf"))


def _reseed(layer: Layer, seed: int) -> None:
    """Give every random layer (Dropout) a fresh generator with a fixed seed.

    Called before every forward of a check, so each evaluation draws the same dropout mask.
    """
    for k, module in enumerate(layer.modules()):
        if isinstance(getattr(module, "rng", None), np.random.Generator):
            module.rng = np.random.default_rng(seed + k)


@dataclass
class _Objective:
    """A scalar function of the network output: its value and its gradient w.r.t. the output."""

    value: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]


def _draw_input(
    layer: Layer, shape: tuple[int, ...], rng: np.random.Generator, training: bool, seed: int
) -> np.ndarray:
    """A standard-normal input whose kinked layers all see inputs at least the margin from a kink.

    Redraws up to ``MAX_DRAWS`` times, then tries a random permutation of evenly spaced values
    (it keeps every pair of entries, and every entry and zero, apart). Whole networks with a
    ReLU before a max-pool never pass (windows of ReLU zeros tie exactly); the best draw is used
    and the per-entry pattern check in :func:`_compare` guards the finite differences.
    """
    best, best_distance = None, -1.0
    candidates = [lambda: rng.standard_normal(shape) for _ in range(MAX_DRAWS)]
    size = int(np.prod(shape))
    spaced = np.linspace(-1.0, 1.0, size + (size % 2 == 1))  # even count: 0 is never a value
    candidates.append(lambda: rng.permutation(spaced)[:size].reshape(shape))
    for draw in candidates:
        x = draw()
        seen: list[tuple[Layer, np.ndarray]] = []
        _reseed(layer, seed)
        _traced_forward(layer, x, training, seen)
        distance = _min_kink_distance(seen)
        if distance > KINK_MARGIN:
            return x
        if distance > best_distance:
            best, best_distance = x, distance
    return best


def _subset(size: int, max_entries: int | None, rng: np.random.Generator) -> np.ndarray | None:
    if max_entries is None or size <= max_entries:
        return None
    return np.sort(rng.choice(size, max_entries, replace=False))


def _compare(
    layer: Layer,
    x: np.ndarray,
    objective: _Objective,
    training: bool,
    eps: float,
    max_entries: int | None,
    rng: np.random.Generator,
    seed: int,
) -> dict[str, float]:
    """Analytic against numerical gradients for the input and every parameter of ``layer``."""
    # Analytic: the layer's own forward and backward (recording() keeps caches in eval mode).
    _reseed(layer, seed)
    with layer.recording():
        out = layer.forward(x, training)
        base_value = objective.value(out)
        grad_input = layer.backward(objective.grad(out))
    analytic = {"input": np.array(grad_input, dtype=np.float64)}
    targets = {"input": x}
    for name, param in layer.named_parameters():
        analytic[name] = param.grad.astype(np.float64)
        targets[name] = param.data

    seen: list[tuple[Layer, np.ndarray]] = []
    _reseed(layer, seed)
    traced_value = objective.value(_traced_forward(layer, x, training, seen))
    if not np.isclose(traced_value, base_value, rtol=1e-12, atol=1e-12):
        raise RuntimeError(
            f"gradcheck: two forwards of {type(layer).__name__} on the same input disagree "
            f"({base_value} vs {traced_value}); is the layer random without a reseedable `rng`?"
        )
    base_pattern = [_pattern(kinked, inp) for kinked, inp in seen]
    crossed: list[bool] = []  # one flag per evaluation: did a kinked layer change its piece?

    def evaluate() -> float:
        seen_now: list[tuple[Layer, np.ndarray]] = []
        _reseed(layer, seed)
        value = objective.value(_traced_forward(layer, x, training, seen_now))
        crossed.append(
            any(
                before is not None and not np.array_equal(_pattern(kinked, inp), before)
                for (kinked, inp), before in zip(seen_now, base_pattern, strict=True)
            )
        )
        return value

    errors = {}
    for name, array in targets.items():
        indices = _subset(array.size, max_entries, rng)
        positions = np.arange(array.size) if indices is None else indices
        crossed.clear()
        numeric = numerical_gradient(evaluate, array, eps, positions)
        # numerical_gradient evaluates f twice per entry, at +eps then at -eps.
        keep = ~np.array(crossed, dtype=bool).reshape(-1, 2).any(axis=1)
        if keep.sum() < len(positions) / 2:
            raise RuntimeError(
                f"gradcheck: {len(positions) - keep.sum()} of {len(positions)} finite differences "
                f"for {name!r} crossed a kink; use a smaller eps or a different input"
            )
        errors[name] = relative_error(analytic[name].ravel()[positions][keep], numeric[keep])
    return errors


def check_layer(
    layer: Layer,
    input_shape: tuple[int, ...],
    rng: np.random.Generator,
    eps: float = 1e-6,
    training: bool = True,
    max_entries: int | None = None,
) -> dict[str, float]:
    """Relative errors between ``layer.backward`` and finite differences of ``sum(out * R)``.

    The layer is cast to float64 in place (``layer.astype(np.float64)``); its buffers (batch-norm
    running statistics, which every training-mode forward updates) are restored afterwards.
    Random layers are re-seeded before every forward so that each evaluation uses the same mask.
    ``training=False`` checks the evaluation-mode function (under ``recording()``).
    ``max_entries`` differentiates only a random subset of that many entries per tensor.

    Args:
        layer: the layer to check (cast to float64 in place).
        input_shape: the input's shape, batch axis included.
        rng: draws the input, the output weights ``R`` and the checked entries.
        eps: the finite-difference step.
        training: check the training-mode function (else evaluation mode).
        max_entries: differentiate at most this many random entries per tensor; ``None``: all.

    Shape: ``input_shape`` includes the batch axis, e.g. ``(2, 3, 8, 8)``.
    Returns ``{"input": err, "weight": err, "bias": err, ...}`` with PyTorch-style names.
    """
    layer.astype(np.float64)
    saved = layer.state_dict()
    seed = int(rng.integers(2**31))
    x = _draw_input(layer, tuple(input_shape), rng, training, seed)
    _reseed(layer, seed)
    out_shape = layer.forward(x, training).shape
    weights = rng.standard_normal(out_shape)  # R: every output weighted differently
    objective = _Objective(value=lambda out: float(np.sum(out * weights)), grad=lambda out: weights)
    try:
        return _compare(layer, x, objective, training, eps, max_entries, rng, seed)
    finally:
        layer.load_state_dict(saved)


def check_model(
    model: Layer,
    loss: CrossEntropyLoss,
    input_shape: tuple[int, ...],
    labels: np.ndarray,
    rng: np.random.Generator,
    eps: float = 1e-6,
    training: bool = True,
    max_entries: int | None = None,
) -> dict[str, float]:
    """Relative errors between a model's backward from ``loss`` and finite differences of it.

    Like :func:`check_layer` but the objective is ``loss.forward(model(x), labels)`` and the
    analytic pass starts from ``loss.backward()``. An empty ``Sequential()`` checks the loss
    alone (its ``"input"`` gradient is the gradient with respect to the logits).

    Args:
        model: the model to check (cast to float64 in place).
        loss: the loss whose gradient starts the backward pass.
        input_shape: the input's shape, batch axis included.
        labels: integer labels or soft targets for the batch.
        rng: draws the input and the checked entries.
        eps: the finite-difference step.
        training: check the training-mode function (else evaluation mode).
        max_entries: differentiate at most this many random entries per tensor; ``None``: all.

    Shape: ``input_shape`` includes the batch axis; ``labels (N,)`` ints or ``(N, K)``.
    Returns ``{"input": err, "0.weight": err, ...}`` keyed by dotted parameter names.
    """
    model.astype(np.float64)
    saved = model.state_dict()
    seed = int(rng.integers(2**31))
    x = _draw_input(model, tuple(input_shape), rng, training, seed)
    target = labels if np.issubdtype(labels.dtype, np.integer) else labels.astype(np.float64)

    def value(out: np.ndarray) -> float:
        return loss.forward(out, target)

    def grad(out: np.ndarray) -> np.ndarray:
        return loss.backward()

    try:
        return _compare(model, x, _Objective(value, grad), training, eps, max_entries, rng, seed)
    finally:
        model.load_state_dict(saved)


# --- the built-in suite ------------------------------------------------------------------------


@dataclass
class CheckResult:
    """One tensor's gradient check: which check, which tensor, and its relative error.

    ``name`` names the check (the layer or model), ``tensor`` the checked tensor (``"input"`` or a
    parameter's name).
    """

    name: str
    tensor: str
    error: float


def _randomize_batchnorm(bn: L.BatchNorm1d | L.BatchNorm2d, rng: np.random.Generator):
    """Non-trivial scale, shift and running statistics, so a wrong term cannot hide."""
    c = bn.num_features
    bn.weight.data = rng.uniform(0.5, 1.5, c)
    bn.bias.data = rng.standard_normal(c)
    bn.running_mean = rng.standard_normal(c)
    bn.running_var = rng.uniform(0.5, 2.0, c)
    bn.weight.grad = np.zeros(c)
    bn.bias.grad = np.zeros(c)
    return bn


def builtin_checks(rng: np.random.Generator | None = None) -> list[CheckResult]:
    """Gradient-check every built-in layer, container, the loss and the seed CNN.

    Takes a few seconds; the seed CNN (545k parameters) is checked on a random subset of at
    most 100 entries per tensor.

    Args:
        rng: draws the inputs and weights; ``None``: a generator seeded with 0.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    f64 = np.float64

    def conv(*args, **kwargs) -> L.Conv2d:
        layer = L.Conv2d(*args, rng=rng, dtype=f64, **kwargs)
        if layer.bias is not None:
            layer.bias.data = rng.standard_normal(layer.out_channels)
        return layer

    def bn2d(c: int) -> L.BatchNorm2d:
        return _randomize_batchnorm(L.BatchNorm2d(c, dtype=f64), rng)

    def bn1d(c: int) -> L.BatchNorm1d:
        return _randomize_batchnorm(L.BatchNorm1d(c, dtype=f64), rng)

    image = (2, 3, 7, 6)  # H != W and odd sizes catch transposed or off-by-one indexing
    layer_cases: list[tuple[str, Layer, tuple[int, ...], bool]] = [
        ("Conv2d k3 s1 p0", conv(3, 4, 3), image, True),
        ("Conv2d k3 s1 p=same", conv(3, 4, 3, padding="same"), image, True),
        ("Conv2d k3 p=valid", conv(3, 4, 3, padding="valid"), image, True),
        ("Conv2d k(2,4) p=same (asymmetric)", conv(3, 2, (2, 4), padding="same"), image, True),
        ("Conv2d k3 s2 p1", conv(3, 4, 3, stride=2, padding=1), image, True),
        (
            "Conv2d k(3,2) s(2,1) p(1,2)",
            conv(3, 2, (3, 2), stride=(2, 1), padding=(1, 2)),
            image,
            True,
        ),
        ("Conv2d k3 d2 p2", conv(3, 2, 3, dilation=2, padding=2), image, True),
        ("Conv2d k3 d2 p=same", conv(3, 2, 3, dilation=2, padding="same"), image, True),
        ("Conv2d k1 no bias", conv(3, 4, 1, bias=False), image, True),
        ("Conv2d k3 s3 no bias", conv(3, 2, 3, stride=3, bias=False), image, True),
        ("MaxPool2d k2", L.MaxPool2d(2), (2, 2, 6, 6), True),
        ("MaxPool2d k3 s2 p1", L.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6), True),
        ("MaxPool2d k3 s1 p1", L.MaxPool2d(3, stride=1, padding=1), (1, 2, 5, 4), True),
        ("MaxPool2d k(2,3) s(1,2)", L.MaxPool2d((2, 3), stride=(1, 2)), (2, 2, 5, 7), True),
        ("AvgPool2d k2", L.AvgPool2d(2), (2, 2, 6, 6), True),
        ("AvgPool2d k3 s2 p1", L.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 6), True),
        ("AvgPool2d k(2,3) s1", L.AvgPool2d((2, 3), stride=1), (2, 2, 5, 7), True),
        ("GlobalAvgPool2d", L.GlobalAvgPool2d(), (2, 3, 4, 5), True),
        ("ReLU", L.ReLU(), (2, 3, 4, 4), True),
        ("LeakyReLU 0.1", L.LeakyReLU(0.1), (2, 3, 4, 4), True),
        ("GELU erf", L.GELU(), (2, 3, 4, 4), True),
        ("GELU tanh", L.GELU("tanh"), (2, 3, 4, 4), True),
        ("Tanh", L.Tanh(), (2, 3, 4, 4), True),
        ("Sigmoid", L.Sigmoid(), (2, 3, 4, 4), True),
        ("Flatten", L.Flatten(), (2, 3, 2, 3), True),
        ("Linear", L.Linear(7, 5, rng=rng, dtype=f64), (4, 7), True),
        ("Linear no bias", L.Linear(7, 5, bias=False, rng=rng, dtype=f64), (4, 7), True),
        ("Dropout p=0.3 train", L.Dropout(0.3, rng=rng), (4, 10), True),
        ("Dropout p=0.3 eval", L.Dropout(0.3, rng=rng), (4, 10), False),
        ("BatchNorm2d train", bn2d(3), (4, 3, 3, 2), True),
        ("BatchNorm2d eval", bn2d(3), (4, 3, 3, 2), False),
        ("BatchNorm1d train", bn1d(5), (6, 5), True),
        ("BatchNorm1d eval", bn1d(5), (6, 5), False),
        (
            "Sequential conv-bn-relu-pool-linear",
            L.Sequential(
                # No conv bias before a training-mode batch norm: the mean subtraction cancels
                # it, so its true gradient is zero and a relative error of noise means nothing.
                conv(3, 4, 3, padding=1, bias=False),
                bn2d(4),
                L.ReLU(),
                L.MaxPool2d(2),
                L.Flatten(),
                L.Dropout(0.2, rng=rng),
                L.Linear(4 * 3 * 3, 5, rng=rng, dtype=f64),
            ),
            (3, 3, 6, 6),
            True,
        ),
        (
            "Residual identity",
            L.Residual(L.Sequential(conv(3, 3, 3, padding="same"), L.Tanh())),
            (2, 3, 5, 4),
            True,
        ),
        (
            "Residual 1x1-conv shortcut",
            L.Residual(
                L.Sequential(
                    conv(3, 4, 3, stride=2, padding=1), L.ReLU(), conv(4, 4, 3, padding=1)
                ),
                shortcut=conv(3, 4, 1, stride=2),
            ),
            (2, 3, 6, 5),
            True,
        ),
        # The fused layers of ``fuse``: one backend call each, the same math as their parts.
        (
            "ConvReLUMaxPoolChain (fused)",
            L.fuse(
                L.Sequential(
                    conv(3, 8, 3, padding=1),
                    L.ReLU(),
                    L.MaxPool2d(2),
                    conv(8, 4, 3, padding=1),
                    L.ReLU(),
                    L.MaxPool2d(2),
                )  # fmt: skip
            ),
            (2, 3, 8, 8),
            True,
        ),
        (
            "BatchNormActivation (fused) train",
            L.fuse(L.Sequential(bn2d(3), L.GELU())),
            (4, 3, 3, 2),
            True,
        ),
        (
            "BatchNormActivation (fused) eval",
            L.fuse(L.Sequential(bn1d(5), L.ReLU())),
            (6, 5),
            False,
        ),
        (
            "ReLUMaxPool (fused)",
            L.fuse(L.Sequential(L.ReLU(), L.MaxPool2d(3, stride=2, padding=1))),
            (2, 3, 7, 6),
            True,
        ),
    ]
    results = []
    for name, layer, shape, training in layer_cases:
        errors = check_layer(layer, shape, rng, training=bool(training))
        results.extend(CheckResult(name, tensor, err) for tensor, err in errors.items())

    soft = rng.dirichlet(np.ones(5), size=4)  # rows of probabilities, as mixup produces
    labels = rng.integers(0, 5, size=4)
    loss_cases = [
        ("CrossEntropyLoss int labels", CrossEntropyLoss(), labels),
        ("CrossEntropyLoss soft targets", CrossEntropyLoss(), soft),
        ("CrossEntropyLoss label_smoothing=0.1", CrossEntropyLoss(label_smoothing=0.1), labels),
        ("CrossEntropyLoss soft + smoothing", CrossEntropyLoss(label_smoothing=0.2), soft),
    ]
    for name, loss, target in loss_cases:
        errors = check_model(L.Sequential(), loss, (4, 5), target, rng)
        results.append(CheckResult(name, "logits", errors["input"]))

    from scratchcnn.models import seed_cnn

    model = seed_cnn(rng=rng, dtype=f64)
    for _, param in model.named_parameters():
        if param.data.ndim == 1:  # non-zero biases, so a bias bug shows in the outputs
            param.data = 0.1 * rng.standard_normal(param.shape)
            param.grad = np.zeros_like(param.data)
    errors = check_model(
        model, CrossEntropyLoss(), (2, 3, 32, 32), rng.integers(0, 10, 2), rng, max_entries=100
    )
    results.extend(CheckResult("seed_cnn + CrossEntropyLoss", t, e) for t, e in errors.items())
    return results


def all_passed(results: list[CheckResult], threshold: float = 1e-6) -> bool:
    """True when every relative error is below ``threshold`` (a NaN error fails).

    Args:
        results: :func:`builtin_checks`' results.
        threshold: the largest relative error that passes.
    """
    return all(r.error < threshold for r in results)


def format_results(results: list[CheckResult], threshold: float = 1e-6) -> str:
    """A plain-text table: check, tensor, relative error, PASS/FAIL, and a one-line verdict.

    Args:
        results: :func:`builtin_checks`' results.
        threshold: the largest relative error that passes.
    """
    header = ("check", "tensor", "relative error", "result")
    rows = [header] + [
        (r.name, r.tensor, f"{r.error:.2e}", "PASS" if r.error < threshold else "FAIL")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    failed = sum(r.error >= threshold or np.isnan(r.error) for r in results)
    verdict = (
        f"all {len(results)} gradients within {threshold:g}"
        if failed == 0
        else f"{failed} of {len(results)} gradients FAILED (threshold {threshold:g})"
    )
    return "\n".join([*lines, verdict])
