"""Measure training and inference speed, per layer, and (optionally) against PyTorch.

A training step is forward + cross-entropy + backward + one SGD update; inference is a forward
in evaluation mode. Everything is timed after warm-up. With ``vs_torch``, the identical model
is built in PyTorch with the same weights and batch and timed in the same process, the
implementations alternating in rounds so that machine noise hits all of them alike; PyTorch runs
in both NCHW and channels-last memory formats and the ratio is taken against its faster one.
The machine's float32 matrix-multiply peak (NumPy's BLAS on a large square product) is measured
in the same run, so every GFLOP/s figure can be read as a share of what this CPU can do.

The engine never imports PyTorch; only this measuring code does, and only when asked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scratchcnn.backend import current_backend, use_backend
from scratchcnn.layers import Sequential, fuse, skip_untrained_input_gradient
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import MODELS
from scratchcnn.tools.environment import machine_info


@dataclass
class BenchConfig:
    """What to measure; each default says why."""

    model: str = "seed_cnn"  # the model the speed issue is about
    batch: int = 64  # the training batch size the targets are stated at
    dtype: str = "float32"  # training precision; float64 is for gradient checks
    precision: str = "float32"  # "mixed": float16 kept for backward; PyTorch in bfloat16 autocast
    steps: int = 10  # timed steps per implementation per round
    warmup: int = 3  # untimed steps first: Numba loading, BLAS threads, allocator
    rounds: int = 5  # alternation rounds; ratios are medians over rounds
    backend: str = "fast"  # scratchcnn backend: "fast" or "reference"
    vs_torch: bool = False  # also time PyTorch (needs torch installed)
    torch_threads: int | None = None  # None: PyTorch's default (all cores), as the issue asks
    seed: int = 0  # weights and the random batch
    lr: float = 0.01  # SGD learning rate (only so that the update does real work)
    peak_size: int = 2048  # side of the square matmul that measures the BLAS peak


@dataclass
class LayerTiming:
    """One row of the per-layer table (milliseconds per batch)."""

    name: str  # "index description" of the unit, "loss (cross-entropy)" or "SGD update"
    forward_ms: float  # mean forward milliseconds per batch over the timed steps
    backward_ms: float  # mean backward milliseconds per batch
    share: float  # (forward + backward) / whole training step


@dataclass
class BenchResult:
    """Everything a report prints; times are median seconds per batch.

    ``config`` is what was measured and ``machine`` where (:func:`machine_info`); ``peak_gflops``
    is NumPy's float32 matmul peak in the same run; ``train_s`` and ``infer_s`` are scratchcnn's
    seconds per batch for a training step and for inference, ``torch_infer_s`` PyTorch's by memory
    format; ``layers`` is the per-layer profile; ``infer_ratio`` is scratchcnn's inference images/s
    over PyTorch's faster format.
    """

    config: BenchConfig
    machine: dict[str, str]
    peak_gflops: float
    forward_flops: int  # per batch
    train_s: float
    infer_s: float
    layers: list[LayerTiming]
    torch_train_s: dict[str, float] = field(default_factory=dict)  # by memory format
    torch_infer_s: dict[str, float] = field(default_factory=dict)
    train_ratio: float | None = None  # scratchcnn images/s over PyTorch's (faster format)
    infer_ratio: float | None = None

    @property
    def train_flops(self) -> int:
        """Training counted as 3x forward (forward, input gradient, weight gradient)."""
        return 3 * self.forward_flops


def matmul_peak_gflops(size: int = 2048, dtype: str = "float32", repeats: int = 3) -> float:
    """Best GFLOP/s of NumPy's BLAS on a ``size x size`` square product (``2 n^3`` FLOPs).

    Args:
        size: the side of the square matrices.
        dtype: ``"float32"`` or ``"float64"``.
        repeats: products timed; the best counts.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    a @ b  # warm-up: threads started, pages touched
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn: Callable[[], object], calls: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def build_model(config: BenchConfig) -> tuple[Layer, np.ndarray, np.ndarray]:
    """The model and one random CIFAR-shaped batch with labels.

    The first trained convolution skips its input gradient, as in training: nothing consumes it
    (PyTorch does not compute it either, since the input does not require a gradient).

    Args:
        config: the model name, batch size and dtype to build.

    Shape: ``x (batch, 3, 32, 32)``, ``y (batch,)``.
    """
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; valid models: {', '.join(MODELS)}")
    if config.batch < 1:
        raise ValueError(f"batch must be >= 1, got {config.batch}")
    rng = np.random.default_rng(config.seed)
    dtype = np.dtype(config.dtype).type
    model = MODELS[config.model](rng=rng, dtype=dtype)
    skip_untrained_input_gradient(model)
    x = rng.standard_normal((config.batch, 3, 32, 32)).astype(dtype)
    y = rng.integers(0, 10, config.batch)
    return model, x, y


def _scratch_steps(model: Layer, x: np.ndarray, y: np.ndarray, lr: float):
    """A training step and an inference step of ``model``, fused as the trainer runs it."""
    from scratchcnn.optim import SGD

    loss_fn = CrossEntropyLoss()
    optimizer = SGD(model.parameters(), lr=lr)
    fused = fuse(model)

    def train_step() -> None:
        loss_fn(fused.forward(x, training=True), y)
        fused.backward(loss_fn.backward())
        optimizer.step()

    def infer_step() -> None:
        fused.forward(x, training=False)

    return train_step, infer_step, loss_fn, optimizer


def _run_units(model: Layer) -> list[Layer]:
    """The units a forward pass runs one after another, nested Sequentials opened."""
    units = []
    for unit in model.units():
        units.extend(
            _run_units(unit) if isinstance(unit, Sequential) and unit is not model else [unit]
        )
    return units


def layer_profile(
    model: Layer, x: np.ndarray, y: np.ndarray, steps: int, lr: float
) -> list[LayerTiming]:
    """Forward and backward milliseconds of each unit the fused model runs (``fuse(model)``'s
    layers, nested Sequentials opened: exactly what a training step runs), plus loss and SGD
    update.

    Shares are of the sum of all rows, i.e. of one whole training step.

    Args:
        model: the model (it is fused first).
        x: one batch.
        y: its labels.
        steps: timed steps; each row is the median.
        lr: the SGD learning rate of the update row.
    """
    from scratchcnn.optim import SGD

    layers = _run_units(fuse(model))
    names = [f"{i} {layer.describe()}" for i, layer in enumerate(layers)]
    forward = np.zeros(len(layers))
    backward = np.zeros(len(layers))
    loss_time = update_time = 0.0
    loss_fn = CrossEntropyLoss()
    optimizer = SGD(model.parameters(), lr=lr)
    with current_backend().compute_scope():
        for _ in range(steps):
            out = x
            for i, layer in enumerate(layers):
                start = time.perf_counter()
                out = layer.forward(out, training=True)
                forward[i] += time.perf_counter() - start
            start = time.perf_counter()
            loss_fn(out, y)
            grad = loss_fn.backward()
            loss_time += time.perf_counter() - start
            for i in reversed(range(len(layers))):
                start = time.perf_counter()
                grad = layers[i].backward(grad)
                backward[i] += time.perf_counter() - start
            update_time += _seconds(optimizer.step)
    total = forward.sum() + backward.sum() + loss_time + update_time
    rows = [
        LayerTiming(name, 1e3 * f / steps, 1e3 * b / steps, (f + b) / total)
        for name, f, b in zip(names, forward, backward, strict=True)
    ]
    rows.append(
        LayerTiming("loss (cross-entropy)", 1e3 * loss_time / steps, 0.0, loss_time / total)
    )
    rows.append(LayerTiming("SGD update", 1e3 * update_time / steps, 0.0, update_time / total))
    return rows


def _torch_steps(model: Layer, x: np.ndarray, y: np.ndarray, config: BenchConfig):
    """Training and inference closures for PyTorch, by memory format."""
    import torch

    from scratchcnn.interop.bridge import to_torch

    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    mixed = config.precision == "mixed"  # PyTorch's mixed precision on CPU: bfloat16 autocast

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed)

    steps = {}
    for fmt, memory_format in (
        ("NCHW", torch.contiguous_format),
        ("channels_last", torch.channels_last),
    ):
        net = to_torch(model).train().to(memory_format=memory_format)
        inputs = torch.from_numpy(x).contiguous(memory_format=memory_format)
        labels = torch.from_numpy(y)
        optimizer = torch.optim.SGD(net.parameters(), lr=config.lr)

        def train_step(net=net, inputs=inputs, labels=labels, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = torch.nn.functional.cross_entropy(net(inputs), labels)
            loss.backward()
            optimizer.step()

        def infer_step(net=net, inputs=inputs) -> None:
            with torch.inference_mode(), autocast():
                net(inputs)

        steps[fmt] = (train_step, infer_step)
    return steps


def run_benchmark(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchResult:
    """Time everything ``config`` asks for and return the numbers; progress goes to ``log``."""
    log = log or (lambda message: None)
    from scratchcnn.fast import keep_freed_memory

    keep_freed_memory()  # as the trainer does: the steps measured are the steps trained
    if config.precision not in ("float32", "mixed"):
        raise ValueError(f"precision must be 'float32' or 'mixed', got {config.precision!r}")
    if config.precision == "mixed" and config.dtype != "float32":
        raise ValueError(f"mixed precision needs dtype float32, got {config.dtype!r}")
    with contextlib.ExitStack() as scope:
        backend = scope.enter_context(use_backend(config.backend))
        scope.enter_context(backend.compute_scope())
        if config.precision == "mixed":
            scope.enter_context(backend.mixed_precision_scope())
        model, x, y = build_model(config)
        train_step, infer_step, _, _ = _scratch_steps(model, x, y, config.lr)
        candidates: dict[str, tuple[Callable, Callable]] = {"scratchcnn": (train_step, infer_step)}
        if config.vs_torch:
            log("building the PyTorch twin ...")
            for fmt, pair in _torch_steps(model, x, y, config).items():
                candidates[f"torch {fmt}"] = pair
        log("warming up ...")
        for train, infer in candidates.values():
            for _ in range(config.warmup):
                train()
                infer()
        log("measuring the matmul peak ...")
        peak = matmul_peak_gflops(config.peak_size, config.dtype)
        train_times: dict[str, list[float]] = {name: [] for name in candidates}
        infer_times: dict[str, list[float]] = {name: [] for name in candidates}
        names = list(candidates)
        for round_index in range(config.rounds):
            log(f"round {round_index + 1}/{config.rounds} ...")
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                train_times[name].append(_seconds(candidates[name][0], config.steps))
            for name in order:
                infer_times[name].append(_seconds(candidates[name][1], config.steps))
        log("profiling layers ...")
        layers = layer_profile(model, x, y, config.steps, config.lr)
        result = BenchResult(
            config=config,
            machine=machine_info(),
            peak_gflops=peak,
            forward_flops=model.flops(x.shape),
            train_s=float(np.median(train_times["scratchcnn"])),
            infer_s=float(np.median(infer_times["scratchcnn"])),
            layers=layers,
        )
    if config.vs_torch:
        for fmt in ("NCHW", "channels_last"):
            result.torch_train_s[fmt] = float(np.median(train_times[f"torch {fmt}"]))
            result.torch_infer_s[fmt] = float(np.median(infer_times[f"torch {fmt}"]))
        result.train_ratio = _median_ratio(train_times, result.torch_train_s)
        result.infer_ratio = _median_ratio(infer_times, result.torch_infer_s)
    return result


def _median_ratio(times: dict[str, list[float]], torch_medians: dict[str, float]) -> float:
    """Median over rounds of PyTorch time / scratchcnn time, against PyTorch's faster format."""
    faster = min(torch_medians, key=torch_medians.get)
    ours = np.array(times["scratchcnn"])
    theirs = np.array(times[f"torch {faster}"])
    return float(np.median(theirs / ours))


def format_report(result: BenchResult) -> str:
    """The report as text: machine, throughput table, ratios, per-layer profile.

    Args:
        result: :func:`run_benchmark`'s result.
    """
    cfg = result.config
    lines = [
        f"scratchcnn bench: model {cfg.model}, batch {cfg.batch}, {cfg.dtype}"
        f"{', mixed precision' if cfg.precision == 'mixed' else ''}, backend {cfg.backend}, "
        f"{cfg.steps} steps x {cfg.rounds} rounds (medians)",
        "",
        "Machine",
    ]
    lines += [f"  {key:<6} {value}" for key, value in result.machine.items()]
    if cfg.backend == "fast":
        from scratchcnn.fast import current_settings
        from scratchcnn.fast.runtime import kernels as load_kernels

        settings = current_settings()
        numba = load_kernels(settings) is not None
        kernels = "Numba kernels" if numba else "NumPy kernels"
        blas = "default" if settings.blas_threads is None else str(settings.blas_threads)
        lines.append(
            f"  fast   {kernels}, {settings.workers} workers, BLAS threads inside the model: {blas}"
        )
        if settings.winograd and numba:
            tiles = "F(4x4, 3x3) and F(2x2, 3x3)" if settings.winograd_tile == 4 else "F(2x2, 3x3)"
            lines.append(f"         Winograd {tiles} for 3x3 stride-1 convolutions")
        else:
            lines.append("         Winograd off: 3x3 convolutions on im2col")
    if cfg.torch_threads is not None:
        lines.append(f"  torch threads set to {cfg.torch_threads} for this run")
    lines += [
        f"  peak   {result.peak_gflops:.1f} GFLOP/s "
        f"({cfg.dtype} {cfg.peak_size}^2 matmul, NumPy BLAS)",
        "",
        f"{'':<24}{'train img/s':>12}{'GFLOP/s':>9}{'% peak':>8}"
        f"{'infer img/s':>13}{'GFLOP/s':>9}{'% peak':>8}",
    ]

    def row(name: str, train_s: float, infer_s: float) -> str:
        train_gflops = result.train_flops / train_s / 1e9
        infer_gflops = result.forward_flops / infer_s / 1e9
        return (
            f"{name:<24}{cfg.batch / train_s:>12.0f}{train_gflops:>9.1f}"
            f"{100 * train_gflops / result.peak_gflops:>7.1f}%"
            f"{cfg.batch / infer_s:>13.0f}{infer_gflops:>9.1f}"
            f"{100 * infer_gflops / result.peak_gflops:>7.1f}%"
        )

    lines.append(row(f"scratchcnn ({cfg.backend})", result.train_s, result.infer_s))
    for fmt in result.torch_train_s:
        lines.append(row(f"PyTorch {fmt}", result.torch_train_s[fmt], result.torch_infer_s[fmt]))
    if result.train_ratio is not None:
        lines += [
            "",
            f"scratchcnn / PyTorch (faster format), images/s, median over rounds: "
            f"training {result.train_ratio:.2f}x, inference {result.infer_ratio:.2f}x",
        ]
    lines += [
        "",
        f"FLOPs per batch: forward {result.forward_flops / 1e9:.3f} G, "
        f"training step {result.train_flops / 1e9:.3f} G (3x forward)",
        "",
        "Per-layer profile of one training step (ms per batch)",
    ]
    width = max(24, *(len(timing.name) + 2 for timing in result.layers))
    lines.append(f"  {'layer':<{width}}{'forward':>9}{'backward':>10}{'share':>8}")
    for timing in result.layers:
        lines.append(
            f"  {timing.name:<{width}}{timing.forward_ms:>9.2f}{timing.backward_ms:>10.2f}"
            f"{100 * timing.share:>7.1f}%"
        )
    return "\n".join(lines)
