"""Measure the curves of docs/theory/convergence.md with scratchcnn, and draw them.

    python scripts/theory_curves.py quadratic      # momentum on a quadratic (about a second)
    python scripts/theory_curves.py schedules      # the learning-rate schedules (no training)
    python scripts/theory_curves.py seed-run       # the committed 30-epoch run's records
    python scripts/theory_curves.py cifar --data ../shared/datasets/cifar10-jpeg.zip
                                                   # batch norm and warm-up, small CNN (minutes)

Each command writes NAME.json (every number drawn) and NAME.png into --out (default
docs/theory/figures). The cifar command trains a small CNN with and without batch norm, with
and without a one-epoch warm-up, at each peak learning rate of --lrs (8 runs by default), for 2
epochs on 3,200 CIFAR-10 training images (about 1.5 minutes on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from scratchcnn import layers as L
from scratchcnn.data import Normalizer, load_dataset
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.optim import SGD, ConstantLR, CosineLR, OneCycleLR, StepLR
from scratchcnn.parameter import Parameter
from scratchcnn.serialization import atomic_write_bytes, atomic_write_text
from scratchcnn.viz import figure_png, read_grad_norms, read_history

# The plotting plumbing of scratchcnn.viz (the only package that touches matplotlib); the
# comparisons drawn here have no public plot function there.
from scratchcnn.viz._common import new_figure

SEED_RUN = Path("models/seed_cnn_cifar10-run")


def save_png(fig: Any, path: Path) -> None:
    """Save ``fig`` as a 64-colour palette PNG: line plots look the same at a third of the size
    (the docs keep each figure under 100 KB)."""
    image = Image.open(io.BytesIO(figure_png(fig))).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=64).save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())


def write_record(out: Path, name: str, record: dict[str, Any]) -> None:
    """Write ``out/name.json`` atomically, with the command line that produced it."""
    record = {"command": "python scripts/theory_curves.py " + " ".join(sys.argv[1:]), **record}
    atomic_write_text(out / f"{name}.json", json.dumps(record, indent=1) + "\n")


# --- quadratic: gradient descent, heavy ball and Nesterov --------------------------------------


def quadratic(out: Path) -> None:
    """f(w) = (m w0^2 + L w1^2) / 2 with m = 1, L = 100: plain GD, heavy ball and Nesterov, each
    with the library's SGD and the step sizes the theory prescribes."""
    m, big_l = 1.0, 100.0
    kappa = big_l / m
    hessian = np.diag([m, big_l])
    rho = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    methods = {
        "gradient descent, lr = 2/(L+m)": {"lr": 2 / (big_l + m)},
        "heavy ball, lr = 4/(√L+√m)², μ = ρ²": {
            "lr": 4 / (math.sqrt(big_l) + math.sqrt(m)) ** 2,
            "momentum": rho**2,
        },
        "Nesterov, lr = 1/L, μ = ρ": {"lr": 1 / big_l, "momentum": rho, "nesterov": True},
    }
    steps = 120
    runs = {}
    for name, kwargs in methods.items():
        param = Parameter(np.array([1.0, 1.0]), "w")
        optimizer = SGD([param], **kwargs)
        path = [param.data.copy()]
        for _ in range(steps):
            param.grad[...] = hessian @ param.data  # the minimum is at 0
            optimizer.step()
            path.append(param.data.copy())
        runs[name] = {"hyperparameters": kwargs,
                      "error": np.linalg.norm(np.array(path), axis=1).tolist()}  # fmt: skip
    predicted = {"gradient descent": (kappa - 1) / (kappa + 1), "heavy ball": rho,
                 "Nesterov": 1 - 1 / math.sqrt(kappa)}  # fmt: skip
    write_record(out, "quadratic", {"m": m, "L": big_l, "predicted_rate": predicted, "runs": runs})

    fig = new_figure(5.5, 3.3)
    ax = fig.subplots()
    for (name, run), color in zip(runs.items(), ("tab:gray", "tab:blue", "tab:red"), strict=True):
        ax.semilogy(run["error"], color=color, lw=1.5, label=name)
    t = np.arange(1, steps + 1)
    ax.semilogy(t, math.sqrt(2) * predicted["gradient descent"] ** t, "k:", lw=1,
                label="(κ-1)/(κ+1) per step")  # fmt: skip
    ax.semilogy(t, math.sqrt(2) * t * rho**t, "k--", lw=1, label="t·ρ^t, ρ = (√κ-1)/(√κ+1)")
    ax.set_ylim(1e-10, 10)
    ax.set_xlabel("step")
    ax.set_ylabel("‖w − w*‖")
    ax.set_title("f(w) = (w₀² + 100 w₁²)/2 from w = (1, 1); κ = 100")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_png(fig, out / "quadratic.png")


# --- schedules ---------------------------------------------------------------------------------


def schedules(out: Path) -> None:
    """The learning rate at every step of a 1,000-step run under each schedule."""
    total, lr = 1000, 0.1
    chosen = {
        "constant": ConstantLR(lr),
        "step (÷10 every 400)": StepLR(lr, step_size=400, gamma=0.1),
        "cosine, 50 warm-up steps": CosineLR(lr, total, warmup_steps=50),
        "one-cycle (pct_start 0.3)": OneCycleLR(lr, total),
    }
    curves = {name: [schedule(t) for t in range(total)] for name, schedule in chosen.items()}
    write_record(out, "schedules", {"total_steps": total,
                                    "schedules": {k: s.to_dict() for k, s in chosen.items()},
                                    "lr": curves})  # fmt: skip
    fig = new_figure(5.5, 3.0)
    ax = fig.subplots()
    for name, values in curves.items():
        ax.plot(values, lw=1.6, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_png(fig, out / "schedules.png")


# --- the committed seed run --------------------------------------------------------------------


def seed_run(out: Path, run_dir: Path) -> None:
    """Loss, learning rate and gradient norms of the committed run, with the schedule's formula."""
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    history = read_history(run_dir)
    norms = read_grad_norms(run_dir)
    steps_per_epoch = history[0]["step"]
    total = steps_per_epoch * config["epochs"]
    warmup = round(config["warmup_epochs"] * steps_per_epoch)
    schedule = CosineLR(config["lr"], total, warmup_steps=warmup)
    # The record's "lr" is the rate of the epoch's last step, step index (epoch * S - 1).
    formula = [schedule(r["step"] - 1) for r in history]
    write_record(out, "seed_run", {"run": str(run_dir), "steps_per_epoch": steps_per_epoch,
                                   "warmup_steps": warmup, "total_steps": total,
                                   "recorded_lr": [r["lr"] for r in history],
                                   "formula_lr": formula})  # fmt: skip

    fig = new_figure(11.0, 3.1)
    ax_loss, ax_lr, ax_norm = fig.subplots(1, 3)
    epochs = [r["epoch"] for r in history]
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "-o", ms=2.5, label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], "-s", ms=2.5, label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("cross-entropy loss")
    ax_loss.legend(fontsize=7)
    step_axis = np.arange(total)
    ax_lr.plot(step_axis / steps_per_epoch, [schedule(int(t)) for t in step_axis], lw=1.2,
               label="CosineLR formula")  # fmt: skip
    ax_lr.plot(epochs, [r["lr"] for r in history], "o", ms=3, label="recorded (epoch end)")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_title(f"learning rate: {warmup}-step warm-up, cosine")
    ax_lr.legend(fontsize=7)
    for name in ("0.weight", "3.weight", "7.weight", "9.weight"):
        ax_norm.semilogy([r["epoch"] for r in norms], [r[name] for r in norms], lw=1.2, label=name)
    ax_norm.set_xlabel("epoch")
    ax_norm.set_title("mean gradient norm per step")
    ax_norm.legend(fontsize=7)
    for ax in (ax_loss, ax_lr, ax_norm):
        ax.grid(alpha=0.3)
    save_png(fig, out / "seed_run.png")


# --- CIFAR-10: batch norm and warm-up ----------------------------------------------------------


def small_cnn(batch_norm: bool, rng: np.random.Generator) -> L.Sequential:
    """conv 3->16, [BN], ReLU, pool, conv 16->32, [BN], ReLU, pool, linear 2048->10.

    Shape: ``(N, 3, 32, 32) -> (N, 10)``.
    """

    def block(c_in: int, c_out: int) -> list[L.Layer]:
        # A conv bias in front of a batch norm would be cancelled by its mean subtraction.
        conv = L.Conv2d(c_in, c_out, 3, padding="same", bias=not batch_norm, rng=rng)
        return [conv, *([L.BatchNorm2d(c_out)] if batch_norm else []), L.ReLU(), L.MaxPool2d(2)]

    return L.Sequential(*block(3, 16), *block(16, 32), L.Flatten(), L.Linear(2048, 10, rng=rng))


def train_one(
    batch_norm: bool,
    warmup_steps: int,
    lr: float,
    data: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train one small CNN with SGD + Nesterov and a (warm-up +) cosine schedule.

    Every run starts from the same initial weights (per architecture) and sees the batches in
    the same order. Records the loss, the learning rate and the global gradient norm per step,
    and the validation accuracy after each epoch; stops at the first non-finite loss.
    """
    model = small_cnn(batch_norm, np.random.default_rng(1))
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                    weight_decay=5e-4)  # fmt: skip
    n = len(data["train_labels"])
    steps_per_epoch = n // args.batch_size
    total = steps_per_epoch * args.epochs
    schedule = CosineLR(lr, total, warmup_steps=warmup_steps)
    loss_fn = CrossEntropyLoss()
    shuffle = np.random.default_rng(2)
    record: dict[str, Any] = {"batch_norm": batch_norm, "warmup_steps": warmup_steps,
                              "loss": [], "lr": [], "grad_norm": [], "val_accuracy": [],
                              "diverged_at_step": None}  # fmt: skip
    started = time.perf_counter()
    for _ in range(args.epochs):
        order = shuffle.permutation(n)
        for batch in range(steps_per_epoch):
            index = order[batch * args.batch_size : (batch + 1) * args.batch_size]
            optimizer.lr = schedule(optimizer.step_count)
            logits = model.forward(data["train_x"][index], training=True)
            loss = loss_fn.forward(logits, data["train_labels"][index])
            if not math.isfinite(loss):
                record["diverged_at_step"] = optimizer.step_count
                break
            model.backward(loss_fn.backward())
            norm = math.sqrt(sum(float(np.vdot(p.grad, p.grad)) for p in model.parameters()))
            optimizer.step()
            record["loss"].append(loss)
            record["lr"].append(optimizer.lr)
            record["grad_norm"].append(norm)
        if record["diverged_at_step"] is not None:
            break
        predictions = np.concatenate([
            model.forward(data["val_x"][i : i + 500]).argmax(axis=1)
            for i in range(0, len(data["val_labels"]), 500)
        ])  # fmt: skip
        record["val_accuracy"].append(float((predictions == data["val_labels"]).mean()))
    record["seconds"] = time.perf_counter() - started
    return record


def moving_average(values: list[float], window: int) -> np.ndarray:
    """Means of ``window`` consecutive values. Shape: ``(T,) -> (T - window + 1,)``."""
    return np.convolve(np.asarray(values), np.ones(window) / window, mode="valid")


def cifar(out: Path, args: argparse.Namespace) -> None:
    """With and without batch norm, with and without a one-epoch warm-up, at each peak rate."""
    dataset = load_dataset(args.data, cache_dir=args.cache_dir, progress=False)
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(dataset.train_labels))[: args.train_images + args.val_images]
    train_idx, val_idx = chosen[: args.train_images], chosen[args.train_images :]
    normalizer = Normalizer.fit(dataset.train_images[train_idx])
    data = {
        "train_x": normalizer(dataset.train_images[train_idx]),  # (N, 3, 32, 32) float32
        "train_labels": dataset.train_labels[train_idx],
        "val_x": normalizer(dataset.train_images[val_idx]),
        "val_labels": dataset.train_labels[val_idx],
    }
    steps_per_epoch = args.train_images // args.batch_size
    runs: dict[str, dict[str, Any]] = {}
    for lr in args.lrs:
        for batch_norm in (False, True):
            for warmup in (0, steps_per_epoch):
                name = (f"lr {lr}, {'BN' if batch_norm else 'no BN'}, "
                        f"{'warm-up' if warmup else 'no warm-up'}")  # fmt: skip
                runs[name] = {"peak_lr": lr, **train_one(batch_norm, warmup, lr, data, args)}
                accuracy = runs[name]["val_accuracy"][-1:] or ["diverged"]
                print(f"{name}: {runs[name]['seconds']:.0f} s, validation accuracy {accuracy}")
    settings = {k: getattr(args, k) for k in ("lrs", "epochs", "batch_size", "train_images",
                                              "val_images")}  # fmt: skip
    write_record(out, "bn_warmup", {"data": str(args.data), **settings, "runs": runs})

    draw_bn_warmup(json.loads((out / "bn_warmup.json").read_text(encoding="utf-8")), out)


def draw_bn_warmup(record: dict[str, Any], out: Path) -> None:
    """Loss and gradient norm per step of each cifar run, one column per peak learning rate."""
    runs, lrs = record["runs"], record["lrs"]
    steps_per_epoch = record["train_images"] // record["batch_size"]
    fig = new_figure(8.0, 4.8)
    axes = fig.subplots(2, len(lrs), sharex=True, squeeze=False)
    window = 5  # steps in the moving averages
    for column, lr in enumerate(lrs):
        ax_loss, ax_norm = axes[0, column], axes[1, column]
        for name, run in runs.items():
            if run["peak_lr"] != lr:
                continue
            label = name.split(", ", 1)[1]
            style = "-" if run["batch_norm"] else "--"
            color = "tab:blue" if run["warmup_steps"] else "tab:red"
            steps = np.arange(window - 1, len(run["loss"]))
            accuracy = f"{run['val_accuracy'][-1]:.0%}" if run["val_accuracy"] else "diverged"
            ax_loss.plot(steps, moving_average(run["loss"], window), style, color=color, lw=1.2,
                         label=f"{label}: {accuracy}")  # fmt: skip
            ax_norm.semilogy(steps, moving_average(run["grad_norm"], window), style, color=color,
                             lw=1.2)  # fmt: skip
        ax_loss.axvline(steps_per_epoch, color="0.6", lw=0.8)
        ax_loss.set_ylim(1.0, 6.0)
        ax_loss.set_title(f"peak lr {lr}: training loss ({window}-step mean)")
        ax_loss.legend(fontsize=7, title="validation accuracy", title_fontsize=7)
        ax_norm.set_title(f"global gradient norm ({window}-step mean)")
        ax_norm.set_xlabel("step (warm-up ends at the grey line)")
        for ax in (ax_loss, ax_norm):
            ax.grid(alpha=0.3)
    save_png(fig, out / "bn_warmup.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("quadratic", "schedules", "seed-run", "cifar"))
    parser.add_argument("--out", type=Path, default=Path("docs/theory/figures"))
    parser.add_argument("--run", type=Path, default=SEED_RUN, help="run folder for seed-run")
    parser.add_argument("--data", help="CIFAR-10 archive, folder or .zip (for cifar)")
    parser.add_argument("--cache-dir", help="dataset cache (default: scratchcnn's)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.03, 0.1],
                        help="peak learning rates (cifar)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--train-images", type=int, default=3200)
    parser.add_argument("--val-images", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.what == "cifar" and args.data is None:
        parser.error("cifar needs --data (e.g. ../shared/datasets/cifar10-jpeg.zip)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "quadratic":
        quadratic(args.out)
    elif args.what == "schedules":
        schedules(args.out)
    elif args.what == "seed-run":
        seed_run(args.out, args.run)
    else:
        cifar(args.out, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
