"""Continue training a scratchcnn model in PyTorch with DistributedDataParallel.

A model designed and trained in scratchcnn moves to PyTorch with ``to_torch`` (same layers, same
weights), trains there on as many processes as you start (here CPU processes talking over the
gloo backend; on GPUs, the nccl backend and ``module.cuda(rank)`` are the only changes), and
comes back with ``from_torch`` as an ordinary scratchcnn checkpoint.

Run on one machine with two CPU processes::

    torchrun --standalone --nproc_per_node 2 examples/ddp_finetune.py \\
        --checkpoint models/seed_cnn_cifar10.safetensors \\
        --data ../shared/datasets/cifar10-jpeg.zip --subset 5000 --epochs 1 \\
        --out finetuned.safetensors

Each process trains on its own shard of the images (``DistributedSampler``); DDP averages the
gradients across processes after every backward pass, so all copies of the model stay equal.
The global batch is ``--batch-size`` times the number of processes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from scratchcnn.data import Normalizer, load_dataset
from scratchcnn.interop.bridge import from_torch, to_torch
from scratchcnn.serialization import load_checkpoint, save_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="scratchcnn model or checkpoint")
    parser.add_argument("--data", required=True, help="dataset name, archive, folder or .zip")
    parser.add_argument("--cache-dir", help="dataset cache folder")
    parser.add_argument("--subset", type=int, help="train on this many training images")
    parser.add_argument("--epochs", type=int, default=1, help="epochs (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="per process (default: 64)")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seed", type=int, default=0, help="subset choice and shuffling")
    parser.add_argument("--out", required=True, help="where to write the scratchcnn checkpoint")
    return parser.parse_args()


def load_images(args: argparse.Namespace, normalizer: Normalizer | None, rank: int):
    """Normalised training and test tensors. Rank 0 decodes (and caches) the data first."""
    if rank != 0:
        dist.barrier()  # wait until rank 0 has filled the dataset cache
    dataset = load_dataset(args.data, cache_dir=args.cache_dir, progress=False)
    if rank == 0:
        dist.barrier()
    train_images = np.asarray(dataset.train_images)
    train_labels = np.array(dataset.train_labels, dtype=np.int64)  # a writable copy for torch
    if args.subset is not None and args.subset < len(train_labels):
        chosen = np.sort(
            np.random.default_rng(args.seed).choice(len(train_labels), args.subset, False)
        )
        train_images, train_labels = train_images[chosen], train_labels[chosen]
    normalizer = normalizer if normalizer is not None else Normalizer.fit(train_images)
    train = TensorDataset(
        torch.from_numpy(normalizer(train_images)), torch.from_numpy(train_labels)
    )  # (N, C, H, W) float32, (N,) int64
    test_x = torch.from_numpy(normalizer(np.asarray(dataset.test_images)))
    test_y = torch.from_numpy(np.array(dataset.test_labels, dtype=np.int64))
    return train, (test_x, test_y), normalizer


def accuracy(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        correct = sum(
            int((module(x[i : i + 500]).argmax(dim=1) == y[i : i + 500]).sum())
            for i in range(0, len(y), 500)
        )
    module.train()
    return correct / max(len(y), 1)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")  # torchrun sets RANK, WORLD_SIZE and the rendezvous address
    rank, world = dist.get_rank(), dist.get_world_size()

    loaded = load_checkpoint(args.checkpoint)  # the one loader: every field checked
    known = loaded.known_fields()  # class names, normalisation, image shape, where recorded
    normalizer = Normalizer.from_dict(known["normalization"]) if "normalization" in known else None
    train, (test_x, test_y), normalizer = load_images(args, normalizer, rank)

    # scratchcnn -> torch: identical layers and weights; DDP keeps the copies in step.
    module = DistributedDataParallel(to_torch(loaded.model).train())
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)
    optimizer = torch.optim.SGD(module.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = torch.nn.CrossEntropyLoss()

    if rank == 0:
        before = accuracy(module.module, test_x, test_y)
        print(
            f"{world} processes, {len(train)} training images; test accuracy before: {before:.4f}"
        )
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)  # a different shuffle each epoch, the same on every process
        started = time.perf_counter()
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, images
        for x, y in loader:
            optimizer.zero_grad()
            logits = module(x)
            loss = loss_fn(logits, y)
            loss.backward()  # DDP all-reduces (averages) the gradients here
            optimizer.step()
            totals += torch.tensor([loss.item() * len(y), (logits.argmax(1) == y).sum(), len(y)])
        dist.all_reduce(totals)  # sum over processes
        if rank == 0:
            print(
                f"epoch {epoch + 1}/{args.epochs}: train loss {totals[0] / totals[2]:.4f}, "
                f"train accuracy {totals[1] / totals[2]:.4f}, "
                f"{time.perf_counter() - started:.1f}s"
            )

    if rank == 0:  # every copy is identical; one process writes the result
        after = accuracy(module.module, test_x, test_y)
        print(f"test accuracy after: {after:.4f}")
        finetuned = from_torch(module.module.eval())  # torch -> scratchcnn
        kept = known | {"normalization": normalizer.to_dict()}
        if "config" in loaded.metadata:
            kept["config"] = loaded.metadata["config"]
        save_model(
            finetuned,
            args.out,
            **kept,
            finetuned={"processes": world, "epochs": args.epochs, "test_accuracy": after},
        )
        print(f"wrote {args.out}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
