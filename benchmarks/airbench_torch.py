"""airbench93's recipe in PyTorch, on the same CIFAR-10 copy: what the recipe itself reaches here.

``scratchcnn train --recipe fast`` adapts airbench93 (KellerJordan/cifar10-airbench,
``airbench/lib_airbench93.py``) to this library. This script is an independent PyTorch
implementation of that recipe as airbench states it (batch 1024, its decoupled lr and weight
decay, BN-bias lr x 64, patch-whitening of the first conv, dirac init, Lookahead every 5
steps, alternating flips, reflect translations, label smoothing, TTA), run on the data
scratchcnn loads (``prepare_data``: the JPEG copy, normalised with its own statistics). It
separates the two questions "is our recipe the reference one?" and "what does that recipe
reach on this data?"::

    python benchmarks/airbench_torch.py --data ../shared/datasets/cifar10-jpeg.zip \\
        --output benchmarks/results/airbench_torch.json

``--widths 64,256,256`` trains airbench94's network instead (airbench94 is airbench93's
hyperparameters on those widths for 9.9 epochs), e.g. for 10 epochs with ``--epochs 10``; the
JSON records the widths.

It needs torch (``pip install torch==2.13.0``) and runs on the CPU, two threads.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from scratchcnn.serialization import atomic_write_text
from scratchcnn.training import TrainConfig
from scratchcnn.training.setup import prepare_data

BATCH = 1024
EPOCHS = 11
LR = 11.5  # per 1024 examples, decoupled from momentum (airbench's units)
MOMENTUM = 0.85
WEIGHT_DECAY = 0.0153  # per 1024 examples, decoupled from lr
BIAS_SCALER = 64.0
LABEL_SMOOTHING = 0.2
WHITEN_BIAS_EPOCHS = 3
WIDTHS = (64, 128, 128)
BN_MOMENTUM = 0.4  # PyTorch's convention (airbench writes 0.6 for the kept share)
LOGIT_SCALE = 1 / 9


def build(torch, nn, widths=WIDTHS):
    """The airbench93 network (airbench94's with ``widths`` 64/256/256); returns it and its
    whitening conv."""

    class Scale(nn.Module):
        def forward(self, x):
            return x * LOGIT_SCALE

    def conv(c_in, c_out, kernel=3, padding="same", bias=False):
        layer = nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=bias)
        if bias:
            layer.bias.data.zero_()
        nn.init.dirac_(layer.weight.data[: min(c_in, c_out)])  # identity on the first filters
        return layer

    def norm(c):
        layer = nn.BatchNorm2d(c, eps=1e-12, momentum=BN_MOMENTUM)
        layer.weight.requires_grad = False
        return layer

    def group(c_in, c_out):
        return nn.Sequential(
            conv(c_in, c_out), nn.MaxPool2d(2), norm(c_out), nn.GELU(),
            conv(c_out, c_out), norm(c_out), nn.GELU(),
        )  # fmt: skip

    whiten = conv(3, 24, kernel=2, padding=0, bias=True)
    net = nn.Sequential(
        whiten,
        nn.GELU(),
        group(24, widths[0]),
        group(widths[0], widths[1]),
        group(widths[1], widths[2]),
        nn.MaxPool2d(3),
        nn.Flatten(),
        nn.Linear(widths[2], 10, bias=False),
        Scale(),
    )
    whiten.weight.requires_grad = False
    return net.to(memory_format=torch.channels_last), whiten


def whiten_(torch, layer, images, eps=5e-4):
    """Eigenvectors of the uncentred 2x2-patch second moment, scaled, and their negatives."""
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, 31, 31, 2, 2)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    moment = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(moment)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.reshape(12, 3, 2, 2).float()
    layer.weight.data[:] = torch.cat([filters, -filters])


def _widths(text: str) -> tuple[int, int, int]:
    """``--widths``: three positive channel counts, comma-separated."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3 or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"expected three positive channel counts such as 64,256,256, got {text!r}"
        )
    return widths


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.nn.functional as F
    from torch import nn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/cifar10-jpeg.zip")
    parser.add_argument("--epochs", type=float, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--widths",
        type=_widths,
        default=WIDTHS,
        help="the three groups' channels, e.g. 64,256,256 for airbench94's network "
        "(default: airbench93's 64,128,128)",
    )
    parser.add_argument("--output", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    data = prepare_data(TrainConfig(data=args.data, val_size=0, progress=False))
    train_x = torch.from_numpy(data.normalizer(data.train_images))  # (N, 3, 32, 32) float32
    train_y = torch.from_numpy(data.train_labels)
    test_x = torch.from_numpy(data.normalizer(data.test_images))
    test_y = torch.from_numpy(data.test_labels)

    net, whiten = build(torch, nn, args.widths)
    whiten_(torch, whiten, train_x[:5000])

    # airbench's units -> PyTorch SGD on the summed loss
    kilostep_scale = 1024 * (1 + 1 / (1 - MOMENTUM))
    lr = LR / kilostep_scale
    wd = WEIGHT_DECAY * BATCH / kilostep_scale
    norm_biases = [p for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in [m.bias]]
    others = [
        p for p in net.parameters() if p.requires_grad and all(p is not b for b in norm_biases)
    ]
    optimizer = torch.optim.SGD(
        [
            {
                "params": norm_biases,
                "lr": lr * BIAS_SCALER,
                "weight_decay": wd / (lr * BIAS_SCALER),
            },
            {"params": others, "lr": lr, "weight_decay": wd / lr},
        ],
        momentum=MOMENTUM,
        nesterov=True,
    )
    steps_per_epoch = len(train_x) // BATCH  # the last partial batch is dropped
    total_steps = math.ceil(steps_per_epoch * args.epochs)
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    def lr_factor(step):
        warmup = int(total_steps * 0.23)
        if step < warmup:
            return 0.2 + 0.8 * step / warmup
        return 1.0 + (0.07 - 1.0) * (step - warmup) / (total_steps - warmup)

    slow = {k: v.clone() for k, v in net.state_dict().items()}

    def lookahead(decay):
        for key, value in net.state_dict().items():
            if value.dtype.is_floating_point:
                slow[key].lerp_(value, 1 - decay)
                value.copy_(slow[key])

    padded = F.pad(train_x, (2, 2, 2, 2), mode="reflect")
    flipped_half = torch.rand(len(train_x)) < 0.5  # epoch 0's flips; odd epochs flip all
    step = 0
    for epoch in range(math.ceil(args.epochs)):
        whiten.bias.requires_grad = epoch < WHITEN_BIAS_EPOCHS
        flip = flipped_half ^ (epoch % 2 == 1)
        shifts = torch.randint(0, 5, (len(train_x), 2))
        images = torch.empty_like(train_x)
        for dy in range(5):
            for dx in range(5):
                chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                images[chosen] = padded[chosen, :, dy : dy + 32, dx : dx + 32]
        images[flip] = images[flip].flip(-1)
        order = torch.randperm(len(train_x))
        net.train()
        epoch_start = time.perf_counter()
        for i in range(steps_per_epoch):
            idx = order[i * BATCH : (i + 1) * BATCH]
            x = images[idx].contiguous(memory_format=torch.channels_last)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * lr_factor(step)
            loss = F.cross_entropy(
                net(x), train_y[idx], label_smoothing=LABEL_SMOOTHING, reduction="sum"
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 5 == 0:
                lookahead(0.95**5 * (step / total_steps) ** 3)
            if step >= total_steps:
                lookahead(1.0)
                break
        print(
            f"epoch {epoch + 1}: loss {loss.item() / BATCH:.4f}, "
            f"{time.perf_counter() - epoch_start:.0f} s",
            flush=True,
        )

    net.eval()
    with torch.no_grad():

        def logits(x, level):
            mirrored = 0.5 * net(x) + 0.5 * net(x.flip(-1))
            if level < 2:
                return net(x) if level == 0 else mirrored
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            shifted = [padded[:, :, :32, :32], padded[:, :, 2:, 2:]]
            moved = torch.stack([0.5 * net(s) + 0.5 * net(s.flip(-1)) for s in shifted]).mean(0)
            return 0.5 * mirrored + 0.5 * moved

        accuracy = {}
        for level in (0, 2):
            predictions = torch.cat(
                [
                    logits(x.contiguous(memory_format=torch.channels_last), level)
                    for x in test_x.split(1000)
                ]
            ).argmax(1)
            accuracy[level] = (predictions == test_y).float().mean().item()
    seconds = time.perf_counter() - start
    print(f"test accuracy {accuracy[0]:.4f}, with TTA level 2 {accuracy[2]:.4f}; {seconds:.0f} s")
    if args.output:
        record = {
            "command": " ".join(["python benchmarks/airbench_torch.py", *sys.argv[1:]])
            if argv is None
            else " ".join(["python benchmarks/airbench_torch.py", *argv]),
            "torch": torch.__version__,
            "threads": args.threads,
            "epochs": args.epochs,
            "seed": args.seed,
            "widths": list(args.widths),
            "test_accuracy": accuracy[0],
            "test_accuracy_tta2": accuracy[2],
            "seconds": seconds,
        }
        atomic_write_text(args.output, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
