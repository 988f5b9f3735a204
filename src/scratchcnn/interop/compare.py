"""scratchcnn and PyTorch side by side: one architecture, one start, one batch order, two engines.

:func:`compare_frameworks` builds the model in scratchcnn, copies its initial weights into a
hand-written PyTorch model (:func:`torch_seed_cnn`, or
:func:`scratchcnn.interop.bridge.to_torch` for other architectures), and trains both with SGD on
exactly the same batches in the same order: every batch is made once, by scratchcnn's
:func:`~scratchcnn.training.trainer.make_batch` with augmentation off, and fed to both. Each
step records both losses and batch accuracies; each epoch records both validation metrics and
the seconds each framework spent training. :func:`write_report` turns the result into a figure,
a markdown table and a JSON of the curves.

In float64 the two loss curves agree to rounding. In float32 the same math summed in different
orders agrees to 1e-7..1e-5 relative until a near-tie (a max-pool window, a ReLU input at zero)
is decided differently, after which the runs are two equally good SGD trajectories. A model with
dropout draws different masks in each framework, so its curves agree only statistically.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import io
import json
import math
import time
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.data import transforms as T
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.models import MODELS
from scratchcnn.optim import build_optimizer, build_schedule
from scratchcnn.training.config import TrainConfig
from scratchcnn.training.evaluate import evaluate
from scratchcnn.training.trainer import TrainingData, make_batch, prepare_data

FRAMEWORKS = ("scratchcnn", "torch")


@dataclass
class ComparisonResult:
    """Per-step and per-epoch curves of both frameworks, and the lines of code behind each.

    ``steps[i]`` holds ``step``, ``epoch`` and ``<framework>_loss`` / ``<framework>_accuracy``
    (training batch, before the update); ``epochs[j]`` holds, per framework, ``train_loss``,
    ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``train_seconds`` and ``eval_seconds``.
    """

    config: dict[str, Any]
    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    lines_of_code: dict[str, dict[str, int]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def loss_curve(self, framework: str) -> np.ndarray:
        """Shape: ``(steps,)``."""
        return np.array([s[f"{framework}_loss"] for s in self.steps])


# --- the scratchcnn side ----------------------------------------------------------------------
def scratchcnn_train_step(model, optimizer, loss_fn, x: np.ndarray, y: np.ndarray):
    """One SGD step on a batch; returns the batch's mean loss and its number of correct answers.

    Shape: ``x (B, C, H, W)``, ``y (B,)``.
    """
    logits = model.forward(x, training=True)
    loss = loss_fn.forward(logits, y)
    model.backward(loss_fn.backward())
    optimizer.step()
    return loss, int((logits.argmax(axis=1) == y).sum())


# --- the PyTorch side, written the way a PyTorch user would --------------------------------------
def torch_seed_cnn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32):
    """The seed CNN (:func:`scratchcnn.models.seed_cnn`) written directly in PyTorch.

    Shape: ``(N, in_channels, image_size, image_size) -> (N, num_classes)`` logits.
    """
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (image_size // 4) ** 2, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def torch_train_step(model, optimizer, loss_fn, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """One SGD step on a batch; returns the batch's mean loss and its number of correct answers.

    Shape: ``x (B, C, H, W)``, ``y (B,)``.
    """
    import torch

    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer.zero_grad()
    logits = model(inputs)
    loss = loss_fn(logits, targets)
    loss.backward()
    optimizer.step()
    return loss.item(), int((logits.argmax(dim=1) == targets).sum())


def torch_evaluate(
    model, images: np.ndarray, labels: np.ndarray, normalizer, batch_size: int, dtype=np.float32
):
    """Mean cross-entropy and accuracy over uint8 NHWC ``images``, in evaluation mode."""
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalizer(np.asarray(images[start : start + batch_size])).astype(dtype)
            x = torch.from_numpy(x)  # (B, C, H, W) in the model's dtype
            y = torch.from_numpy(np.asarray(labels[start : start + batch_size], dtype=np.int64))
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == y).sum())
    model.train()
    return loss_sum / len(labels), correct / len(labels)


# --- the comparison ---------------------------------------------------------------------------
def _torch_model_for(config: TrainConfig, model: Layer, data: TrainingData):
    """The torch model with ``model``'s weights: hand-written for seed_cnn, bridged otherwise."""
    import torch

    from scratchcnn.interop.bridge import scratchcnn_state_to_torch, to_torch

    if config.model != "seed_cnn":
        return to_torch(model).train()
    height, _, channels = data.train_images.shape[1:]
    module = torch_seed_cnn(len(data.class_names), channels, height)
    module = module.to(dtype=getattr(torch, config.dtype))  # "float32" or "float64"
    module.load_state_dict(scratchcnn_state_to_torch(model.state_dict()))  # strict: same names
    return module.train()


def compare_frameworks(
    config: TrainConfig,
    steps: int | None = None,
    epochs: int | None = None,
    data: TrainingData | None = None,
    log=print,
) -> ComparisonResult:
    """Train ``config.model`` in scratchcnn and in PyTorch in lockstep and record both.

    ``epochs`` (default ``config.epochs``) bounds the run; ``steps`` stops it earlier, after that
    many optimizer steps (validation then runs at the stopping point). Only SGD is compared
    (momentum, Nesterov, weight decay, label smoothing and the lr schedule all carry over);
    augmentation and mixing are off, so both frameworks see identical batches. ``log`` gets one
    line per epoch (``None`` for silence).
    """
    import torch

    if config.optimizer.lower() != "sgd":
        raise ValueError(
            f"compare_frameworks compares SGD only, got optimizer {config.optimizer!r}"
        )
    data = data if data is not None else prepare_data(config)
    dtype = np.dtype(config.dtype)
    epochs = epochs if epochs is not None else config.epochs
    steps_per_epoch = math.ceil(len(data.train_labels) / config.batch_size)
    total_steps = (
        steps_per_epoch * epochs if steps is None else min(steps, steps_per_epoch * epochs)
    )
    if total_steps < 1:
        raise ValueError(f"nothing to train: steps={steps}, epochs={epochs}")

    # One initial model, copied into torch: both start from the same weights.
    height, _, channels = data.train_images.shape[1:]
    model = MODELS[config.model](
        num_classes=len(data.class_names),
        in_channels=channels,
        image_size=height,
        rng=np.random.default_rng([config.seed, 0]),
        dtype=dtype.type,
    )
    model.train()
    module = _torch_model_for(config, model, data)

    optimizer = build_optimizer(
        "sgd",
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    torch_optimizer = torch.optim.SGD(
        module.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    schedule = build_schedule(
        config.schedule,
        config.lr,
        total_steps=steps_per_epoch * epochs,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
    )
    loss_fn = CrossEntropyLoss(config.label_smoothing)
    torch_loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    no_augmentation = T.Compose([])
    shuffle_rng = np.random.default_rng([config.seed, 1])
    unused_rng = np.random.default_rng([config.seed, 2])  # make_batch's; nothing random runs

    result = ComparisonResult(config=config.to_dict() | {"steps": steps, "epochs": epochs})
    result.environment = {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy_version": np.__version__,
        "train_images": len(data.train_labels),
        "val_images": len(data.val_labels),
        "steps_per_epoch": steps_per_epoch,
    }
    step = 0
    for epoch in range(epochs):
        order = shuffle_rng.permutation(len(data.train_labels))
        sums = {fw: {"loss": 0.0, "correct": 0, "seconds": 0.0} for fw in FRAMEWORKS}
        seen = 0
        for batch in range(steps_per_epoch):
            if step == total_steps:
                break
            indices = order[batch * config.batch_size : (batch + 1) * config.batch_size]
            x, y = make_batch(
                data, indices, no_augmentation, None, unused_rng, len(data.class_names), dtype
            )
            lr = schedule(step)

            started = time.perf_counter()
            optimizer.lr = lr
            loss, correct = scratchcnn_train_step(model, optimizer, loss_fn, x, y)
            sums["scratchcnn"]["seconds"] += time.perf_counter() - started

            started = time.perf_counter()
            for group in torch_optimizer.param_groups:
                group["lr"] = lr
            torch_loss, torch_correct = torch_train_step(
                module, torch_optimizer, torch_loss_fn, x, y
            )
            sums["torch"]["seconds"] += time.perf_counter() - started

            for fw, (value, hits) in zip(
                FRAMEWORKS, [(loss, correct), (torch_loss, torch_correct)], strict=True
            ):
                sums[fw]["loss"] += value * len(indices)
                sums[fw]["correct"] += hits
            seen += len(indices)
            step += 1
            result.steps.append(
                {
                    "step": step,
                    "epoch": epoch + 1,
                    "lr": lr,
                    "scratchcnn_loss": loss,
                    "torch_loss": torch_loss,
                    "scratchcnn_accuracy": correct / len(indices),
                    "torch_accuracy": torch_correct / len(indices),
                }
            )
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step, "images": seen}
        record.update(_validate(model, module, data, config, dtype))
        for fw in FRAMEWORKS:
            record[fw].update(
                train_loss=sums[fw]["loss"] / seen,
                train_accuracy=sums[fw]["correct"] / seen,
                train_seconds=sums[fw]["seconds"],
            )
        result.epochs.append(record)
        if log is not None:
            log(_epoch_line(record, epochs))
        if step == total_steps:
            break
    result.lines_of_code = lines_of_code(model)
    return result


def _validate(model, module, data: TrainingData, config: TrainConfig, dtype) -> dict[str, Any]:
    if len(data.val_labels) == 0:
        return {fw: {"val_loss": float("nan"), "val_accuracy": float("nan")} for fw in FRAMEWORKS}
    started = time.perf_counter()
    ours = evaluate(
        model, data.val_images, data.val_labels, data.normalizer, config.eval_batch_size, dtype.type
    )
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    theirs = torch_evaluate(
        module, data.val_images, data.val_labels, data.normalizer, config.eval_batch_size, dtype
    )
    theirs_seconds = time.perf_counter() - started
    return {
        "scratchcnn": {
            "val_loss": ours.loss,
            "val_accuracy": ours.accuracy,
            "eval_seconds": ours_seconds,
        },
        "torch": {"val_loss": theirs[0], "val_accuracy": theirs[1], "eval_seconds": theirs_seconds},
    }


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for fw in FRAMEWORKS:
        r = record[fw]
        parts.append(
            f"{fw}: loss {r['train_loss']:.4f} val_acc {r['val_accuracy']:.4f} "
            f"{r['train_seconds']:.1f}s"
        )
    return "  ".join(parts)


# --- lines of code ----------------------------------------------------------------------------
def count_code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    source = inspect.cleandoc(source) if source.startswith((" ", "\t")) else source
    docstring_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docstring_lines.update(range(node.lineno, node.end_lineno + 1))
    skip = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
        tokenize.ENCODING,
    }
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            code_lines.update(range(token.start[0], token.end[0] + 1))
    return len(code_lines - docstring_lines)


def _engine_modules(model: Layer) -> list[str]:
    """The scratchcnn modules that training ``model`` runs: its layers' modules, the loss and
    the optimizer, and every scratchcnn module they import at module level, transitively."""
    pending = {type(layer).__module__ for layer in model.modules()}
    pending |= {CrossEntropyLoss.__module__, "scratchcnn.optim.optimizers"}
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name == "scratchcnn":
            continue
        seen.add(name)
        module = importlib.import_module(name)
        tree = ast.parse(inspect.getsource(module))
        package = name if Path(module.__file__).name == "__init__.py" else name.rpartition(".")[0]
        for node in tree.body:
            if isinstance(node, ast.Import):
                pending |= {a.name for a in node.names if a.name.startswith("scratchcnn")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                if not base.startswith("scratchcnn"):
                    continue
                pending.add(base)
                if not hasattr(importlib.import_module(base), "__path__"):
                    continue
                for alias in node.names:  # ``from scratchcnn import functional``
                    candidate = f"{base}.{alias.name}"
                    if importlib.util.find_spec(candidate) is not None:
                        pending.add(candidate)
    return sorted(seen)


def lines_of_code(model: Layer) -> dict[str, dict[str, int]]:
    """Code lines per implementation, split into model, training code and engine.

    scratchcnn's engine is every library module the model's training runs (layers, their
    functional math, the loss, the optimizer); PyTorch's engine is the torch library, not
    counted. The training code is each side's train-step function here plus its evaluation
    function; the model definitions are ``seed_cnn`` and :func:`torch_seed_cnn`. (Batch making is
    shared, so neither side counts it.)
    """
    from scratchcnn.models import seed_cnn

    engine = {
        name: count_code_lines(inspect.getsource(importlib.import_module(name)))
        for name in _engine_modules(model)
    }
    scratch_loop = count_code_lines(inspect.getsource(scratchcnn_train_step)) + count_code_lines(
        inspect.getsource(evaluate)
    )
    return {
        "scratchcnn": {
            "model": count_code_lines(inspect.getsource(seed_cnn)),
            "training": scratch_loop,
            "engine": sum(engine.values()),
            **{f"engine:{name}": lines for name, lines in engine.items()},
        },
        "torch": {
            "model": count_code_lines(inspect.getsource(torch_seed_cnn)),
            "training": count_code_lines(inspect.getsource(torch_train_step))
            + count_code_lines(inspect.getsource(torch_evaluate)),
            "engine": 0,
        },
    }


# --- the report -------------------------------------------------------------------------------
def markdown_table(result: ComparisonResult) -> str:
    """Time per epoch, final accuracy, loss agreement and lines of code, as a markdown table."""
    last = result.epochs[-1]
    env = result.environment
    rows = [
        "| | scratchcnn (NumPy) | PyTorch (CPU) |",
        "| --- | ---: | ---: |",
    ]
    for record in result.epochs:
        ours, theirs = (record[fw]["train_seconds"] for fw in FRAMEWORKS)
        rows.append(f"| epoch {record['epoch']}: train seconds | {ours:.1f} | {theirs:.1f} |")
    images = sum(record["images"] for record in result.epochs)
    for fw_rows in [
        (
            "training images / second",
            [
                images / max(sum(r[fw]["train_seconds"] for r in result.epochs), 1e-9)
                for fw in FRAMEWORKS
            ],
            "{:.0f}",
        ),
        ("final train loss", [last[fw]["train_loss"] for fw in FRAMEWORKS], "{:.4f}"),
        ("final train accuracy", [last[fw]["train_accuracy"] for fw in FRAMEWORKS], "{:.4f}"),
        ("final validation loss", [last[fw]["val_loss"] for fw in FRAMEWORKS], "{:.4f}"),
        ("final validation accuracy", [last[fw]["val_accuracy"] for fw in FRAMEWORKS], "{:.4f}"),
    ]:
        label, values, fmt = fw_rows
        rows.append(f"| {label} | {fmt.format(values[0])} | {fmt.format(values[1])} |")
    loc = result.lines_of_code
    for part, label in [
        ("model", "lines of code: model"),
        ("training", "lines of code: training step + evaluation"),
        ("engine", "lines of code: engine (layers, math, loss, optimizer)"),
    ]:
        torch_value = loc["torch"][part] if part != "engine" else "0 (the torch library)"
        rows.append(f"| {label} | {loc['scratchcnn'][part]} | {torch_value} |")
    ours, theirs = result.loss_curve("scratchcnn"), result.loss_curve("torch")
    relative = np.abs(ours - theirs) / np.abs(theirs)
    first = relative[:100]
    notes = [
        "",
        f"{len(result.steps)} steps of batch {result.config['batch_size']} on "
        f"{env['train_images']} training images, validation on {env['val_images']} images; "
        f"torch {env['torch_version']} with {env['torch_threads']} threads, "
        f"NumPy {env['numpy_version']}.",
        f"Per-step loss agreement: largest relative difference {first.max():.2e} over the first "
        f"{len(first)} steps, {relative.max():.2e} over all {len(relative)}.",
    ]
    return "\n".join(rows + notes) + "\n"


def plot_comparison(result: ComparisonResult, path: str | Path) -> Path:
    """Save a side-by-side figure of both frameworks' learning curves (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = np.array([s["step"] for s in result.steps])
    epochs = np.array([r["epoch"] for r in result.epochs])
    styles = {"scratchcnn": {"color": "tab:blue"}, "torch": {"color": "tab:orange", "ls": "--"}}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for fw in FRAMEWORKS:
        axes[0, 0].plot(steps, [s[f"{fw}_loss"] for s in result.steps], label=fw, **styles[fw])
        axes[1, 0].plot(steps, _smooth([s[f"{fw}_accuracy"] for s in result.steps]), **styles[fw])
        for key, ax in [("train_loss", axes[0, 1]), ("val_loss", axes[0, 1])]:
            marker = "o" if key == "val_loss" else "s"
            ax.plot(epochs, [r[fw][key] for r in result.epochs], marker=marker, **styles[fw])
        for key, ax in [("train_accuracy", axes[1, 1]), ("val_accuracy", axes[1, 1])]:
            marker = "o" if key == "val_accuracy" else "s"
            ax.plot(epochs, [r[fw][key] for r in result.epochs], marker=marker, **styles[fw])
    ours, theirs = result.loss_curve("scratchcnn"), result.loss_curve("torch")
    axes[0, 2].semilogy(steps, np.abs(ours - theirs) / np.abs(theirs) + 1e-12, color="tab:green")
    seconds = {fw: [r[fw]["train_seconds"] for r in result.epochs] for fw in FRAMEWORKS}
    width = 0.35
    for offset, fw in zip((-width / 2, width / 2), FRAMEWORKS, strict=True):
        axes[1, 2].bar(epochs + offset, seconds[fw], width, label=fw, color=styles[fw]["color"])
    titles = [
        ("training loss per step", "step", "loss"),
        ("loss per epoch (squares: train, circles: validation)", "epoch", "loss"),
        ("relative loss difference per step", "step", "|scratchcnn - torch| / torch"),
        ("training accuracy per step (moving average of 20)", "step", "accuracy"),
        ("accuracy per epoch (squares: train, circles: validation)", "epoch", "accuracy"),
        ("training seconds per epoch", "epoch", "seconds"),
    ]
    for ax, (title, xlabel, ylabel) in zip(axes.flat, titles, strict=True):
        if xlabel == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    axes[1, 2].legend()
    fig.suptitle("scratchcnn vs PyTorch: same model, same initial weights, same batches")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _smooth(values: list[float], window: int = 20) -> np.ndarray:
    values_array = np.asarray(values, dtype=np.float64)
    cumulative = np.cumsum(np.insert(values_array, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values_array) + 1), window)
    starts = np.arange(1, len(values_array) + 1) - counts
    return (cumulative[1:] - cumulative[starts]) / counts


def write_report(
    result: ComparisonResult, out_dir: str | Path, prefix: str = "compare"
) -> dict[str, Path]:
    """Write ``<prefix>.png`` (figure), ``<prefix>.md`` (table) and ``<prefix>.json`` (curves)."""
    from scratchcnn.serialization import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "figure": plot_comparison(result, out_dir / f"{prefix}.png"),
        "table": out_dir / f"{prefix}.md",
        "curves": out_dir / f"{prefix}.json",
    }
    atomic_write_text(paths["table"], markdown_table(result))
    atomic_write_text(paths["curves"], json.dumps(result.to_dict(), indent=1) + "\n")
    return paths
