"""scratchcnn and PyTorch side by side: one architecture, one start, one batch order, two engines.

:func:`compare_frameworks` sets the run up as ``scratchcnn train`` does
(:func:`scratchcnn.training.setup.build_run`), copies the model's initial weights into a
hand-written PyTorch model (:func:`torch_seed_cnn`, or
:func:`scratchcnn.interop.bridge.to_torch` for other architectures), and trains both with SGD on
exactly the same batches in the same order: every batch is made once, by
:func:`scratchcnn.training.setup.make_batch` with augmentation off, and fed to both. Each step
records both losses and batch accuracies; each epoch records both validation metrics and the
seconds each framework spent training. :func:`write_report` turns the result into a figure
(:func:`scratchcnn.viz.comparison.plot_comparison`), a markdown table and a JSON of the curves.

In float64 the two loss curves agree to rounding. In float32 the same math summed in different
orders agrees to 1e-7..1e-5 relative until a near-tie (a max-pool window, a ReLU input at zero)
is decided differently, after which the runs are two equally good SGD trajectories. A model with
dropout draws different masks in each framework, so its curves agree only statistically.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import io
import json
import time
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scratchcnn.errors import ConfigError
from scratchcnn.layers.base import Layer
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.training.config import TrainConfig
from scratchcnn.training.evaluate import evaluate
from scratchcnn.training.setup import TrainingData, build_run, make_batch, prepare_data

FRAMEWORKS = ("scratchcnn", "torch")


@dataclass
class ComparisonResult:
    """Per-step and per-epoch curves of both frameworks, and the lines of code behind each.

    ``steps[i]`` holds ``step``, ``epoch`` and ``<framework>_loss`` / ``<framework>_accuracy``
    (training batch, before the update); ``epochs[j]`` holds, per framework, ``train_loss``,
    ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``train_seconds`` and ``eval_seconds``.
    """

    config: dict[str, Any]  # the compared run's TrainConfig
    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    lines_of_code: dict[str, dict[str, int]] = field(default_factory=dict)  # see lines_of_code()
    environment: dict[str, Any] = field(default_factory=dict)  # versions, threads, data sizes

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)

    def loss_curve(self, framework: str) -> np.ndarray:
        """Shape: ``(steps,)``."""
        return np.array([s[f"{framework}_loss"] for s in self.steps])


# --- the scratchcnn side ----------------------------------------------------------------------
def scratchcnn_train_step(model, optimizer, loss_fn, x: np.ndarray, y: np.ndarray):
    """One SGD step on a batch; returns the batch's mean loss and its number of correct answers.

    Args:
        model (Layer): the scratchcnn model.
        optimizer (Optimizer): its optimizer.
        loss_fn (CrossEntropyLoss): the loss.
        x: the normalised batch.
        y: its labels.

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


def torch_train_step(
    model, optimizer, loss_fn, x: np.ndarray, y: np.ndarray, mixed: bool = False
) -> tuple[float, int]:
    """One SGD step on a batch; returns the batch's mean loss and its number of correct answers.
    With ``mixed``, forward and loss run under ``torch.autocast("cpu", dtype=torch.bfloat16)``
    (PyTorch's mixed precision on CPU; the backward pass follows the forward's dtypes).

    Args:
        model (torch.nn.Module): the torch model.
        optimizer (torch.optim.Optimizer): its optimizer.
        loss_fn (torch.nn.Module): the loss.
        x: the normalised batch.
        y: its labels.
        mixed: run forward and loss under bfloat16 autocast.

    Shape: ``x (B, C, H, W)``, ``y (B,)``.
    """
    import torch

    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
        logits = model(inputs)
        loss = loss_fn(logits, targets)
    loss.backward()
    optimizer.step()
    return loss.item(), int((logits.argmax(dim=1) == targets).sum())


def torch_evaluate(
    model, images: np.ndarray, labels: np.ndarray, normalizer, batch_size: int, dtype=np.float32
):
    """Mean cross-entropy and accuracy over uint8 NHWC ``images``, in evaluation mode.

    Args:
        model (torch.nn.Module): the torch model.
        images: uint8 ``(N, H, W, C)`` images.
        labels: their classes.
        normalizer (Normalizer): the normalisation the model was trained with.
        batch_size: images per forward pass.
        dtype (type): the model's dtype.
    """
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
    precision: str = "float32",
) -> ComparisonResult:
    """Train ``config.model`` in scratchcnn and in PyTorch in lockstep and record both.

    The run is set up exactly as ``scratchcnn train`` sets it up
    (:func:`scratchcnn.training.setup.build_run`: model, optimizer, schedule, loss, seeded
    shuffling), with augmentation and mixing off so both frameworks see identical batches.
    ``epochs`` (default ``config.epochs``) sets the run's length, schedule included; ``steps``
    stops it earlier, after that many optimizer steps (validation then runs at the stopping
    point). Only SGD is compared (momentum, Nesterov, weight decay, label smoothing and the lr
    schedule all carry over). ``log`` gets one line per epoch (``None`` for silence).

    ``precision="mixed"`` trains each side in its mixed precision: scratchcnn keeps the
    activations saved for backward in float16 (``scratchcnn.fast.settings(storage="float16")``),
    PyTorch runs forward and loss under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

    Args:
        config: the training run to compare.
        steps: stop after this many optimizer steps; ``None``: run every epoch.
        epochs: the run's length; ``None``: ``config.epochs``.
        data: the prepared data; ``None`` loads ``config.data``.
        log (Callable[[str], None] | None): called with one line per epoch; ``None`` for silence.
        precision: ``"float32"`` or ``"mixed"`` (see above).
    """
    import contextlib

    import torch

    from scratchcnn import fast

    if precision not in ("float32", "mixed"):
        raise ConfigError(f"precision must be 'float32' or 'mixed', got {precision!r}")
    mixed = precision == "mixed"

    if config.optimizer != "sgd":
        raise ConfigError(
            f"compare_frameworks compares SGD only, got optimizer {config.optimizer!r}"
        )
    # The torch side is one SGD parameter group stepped plainly: refuse what it does not mirror.
    unmirrored = {
        "bn_bias_lr_scale": config.bn_bias_lr_scale,
        "lookahead": config.lookahead or None,
        "ema_decay": config.ema_decay,
        "whiten_bias_epochs": config.whiten_bias_epochs,
    }
    given = {name: value for name, value in unmirrored.items() if value is not None}
    if given:
        raise ConfigError(
            f"compare_frameworks does not mirror {sorted(given)} on the PyTorch side; got "
            f"{given}: drop them to compare"
        )
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    epochs = config.epochs
    data = data if data is not None else prepare_data(config)
    dtype = np.dtype(config.dtype)
    run = build_run(config, data, augment=False)
    model, optimizer, loss_fn, schedule = run.model, run.optimizer, run.loss_fn, run.schedule
    steps_per_epoch = run.steps_per_epoch
    total_steps = run.total_steps if steps is None else min(steps, run.total_steps)

    # One initial model, copied into torch: both start from the same weights.
    model.train()
    module = _torch_model_for(config, model, data)
    torch_optimizer = torch.optim.SGD(
        module.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    torch_loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    result = ComparisonResult(
        config=config.to_dict() | {"steps": steps, "epochs": epochs, "precision": precision}
    )
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
        sums = {fw: {"loss": 0.0, "correct": 0, "seconds": 0.0} for fw in FRAMEWORKS}
        seen = 0
        for images, labels in run.loader:
            if step == total_steps:
                break
            x, y = make_batch(images, labels, run, data.normalizer, len(data.class_names))
            lr = schedule(step)

            started = time.perf_counter()
            optimizer.lr = lr
            with fast.settings(storage="float16") if mixed else contextlib.nullcontext():
                loss, correct = scratchcnn_train_step(model, optimizer, loss_fn, x, y)
            sums["scratchcnn"]["seconds"] += time.perf_counter() - started

            started = time.perf_counter()
            for group in torch_optimizer.param_groups:
                group["lr"] = lr
            torch_loss, torch_correct = torch_train_step(
                module, torch_optimizer, torch_loss_fn, x, y, mixed
            )
            sums["torch"]["seconds"] += time.perf_counter() - started

            for fw, (value, hits) in zip(
                FRAMEWORKS, [(loss, correct), (torch_loss, torch_correct)], strict=True
            ):
                sums[fw]["loss"] += value * len(labels)
                sums[fw]["correct"] += hits
            seen += len(labels)
            step += 1
            result.steps.append(
                {
                    "step": step,
                    "epoch": epoch + 1,
                    "lr": lr,
                    "scratchcnn_loss": loss,
                    "torch_loss": torch_loss,
                    "scratchcnn_accuracy": correct / len(labels),
                    "torch_accuracy": torch_correct / len(labels),
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
    """Lines holding code: not blank, not only a comment, not part of a docstring.

    Args:
        source: Python source text.
    """
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
    """Time per epoch, final accuracy, loss agreement and lines of code, as a markdown table.

    Args:
        result: the comparison.
    """
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


def write_report(
    result: ComparisonResult, out_dir: str | Path, prefix: str = "compare"
) -> dict[str, Path]:
    """Write ``<prefix>.png`` (figure), ``<prefix>.md`` (table) and ``<prefix>.json`` (curves).

    Args:
        result: the comparison.
        out_dir: the folder to write into.
        prefix: the files' common name.
    """
    from scratchcnn.serialization import atomic_write_text
    from scratchcnn.viz.comparison import plot_comparison

    out_dir = Path(out_dir)
    paths = {
        "figure": out_dir / f"{prefix}.png",
        "table": out_dir / f"{prefix}.md",
        "curves": out_dir / f"{prefix}.json",
    }
    plot_comparison(result, path=paths["figure"])
    atomic_write_text(paths["table"], markdown_table(result))
    atomic_write_text(paths["curves"], json.dumps(result.to_dict(), indent=1) + "\n")
    return paths
