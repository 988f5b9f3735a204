# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. NumPy against PyTorch
#
# scratchcnn keeps PyTorch's vocabulary and layouts on purpose: `Conv2d.weight` is
# `(out_channels, in_channels, KH, KW)`, parameters are named `0.weight`, `3.bias`, inputs are
# NCHW. So one model can live in both libraries with the same weights, and every number can be
# compared. `scratchcnn.interop.bridge.to_torch` builds the identical `torch.nn` module;
# `from_torch` goes the other way. In float64 the two must agree to rounding error: the loss,
# every gradient, the weights after an optimizer step. Then the same training step is timed in
# both (reported, never asserted: the numbers depend on the machine and what else runs on it).
#
# More on the bridge, ONNX export and the full side-by-side training comparison:
# [PyTorch bridge](../docs/bridge.md). Needs PyTorch (`pip install 'scratchcnn[torch]'`).
# `SCRATCHCNN_NOTEBOOK_QUICK=1` in the environment times fewer steps (the test suite's setting).

# %%
import os
import time

import numpy as np
import torch

import scratchcnn as sc
from scratchcnn.interop.bridge import from_torch, to_torch
from scratchcnn.optim import SGD

QUICK = os.environ.get("SCRATCHCNN_NOTEBOOK_QUICK") == "1"  # the test suite's small sizes
TIMED_STEPS = 2 if QUICK else 20  # training steps per timing round
BATCH = 32 if QUICK else 128

rng = np.random.default_rng(0)
_ = torch.manual_seed(0)

# %% [markdown]
# ## One model, two libraries
#
# The seed CNN in float64, copied into PyTorch. Both sides list the same parameter names and
# shapes.

# %%
model = sc.seed_cnn(num_classes=10, rng=rng).astype(np.float64)
model.train()
torch_model = to_torch(model)
print(torch_model)
ours = {name: p.data.shape for name, p in model.named_parameters()}
theirs = {name: tuple(p.shape) for name, p in torch_model.named_parameters()}
assert ours == theirs
for name, p in torch_model.named_parameters():
    assert p.dtype == torch.float64
    np.testing.assert_array_equal(p.detach().numpy(), dict(model.named_parameters())[name].data)

# %% [markdown]
# ## The same loss, the same gradients
#
# One batch of random images and labels through both: logits, cross-entropy loss, then the
# backward pass. scratchcnn's `backward` fills each `Parameter.grad`; PyTorch's autograd fills
# each `.grad`. In float64 the differences are rounding errors, around $10^{-15}$ relative.

# %%
x = rng.standard_normal((8, 3, 32, 32))  # (N, C, H, W), float64
labels = rng.integers(0, 10, size=8)
loss_fn = sc.CrossEntropyLoss()

logits = model.forward(x, training=True)
loss = loss_fn.forward(logits, labels)
model.backward(loss_fn.backward())

x_torch = torch.from_numpy(x)
logits_torch = torch_model(x_torch)
loss_torch = torch.nn.functional.cross_entropy(logits_torch, torch.from_numpy(labels))
loss_torch.backward()

print(f"loss: scratchcnn {loss:.15f}\n      PyTorch    {loss_torch.item():.15f}")
assert abs(loss - loss_torch.item()) < 1e-12
np.testing.assert_allclose(logits, logits_torch.detach().numpy(), rtol=1e-10, atol=1e-12)
worst = 0.0
for name, p in model.named_parameters():
    grad_torch = dict(torch_model.named_parameters())[name].grad.numpy()
    error = np.abs(p.grad - grad_torch).max() / max(np.abs(grad_torch).max(), 1e-300)
    worst = max(worst, error)
    print(f"{name:<10} grad {str(p.grad.shape):<16} max relative difference {error:.1e}")
assert worst < 1e-10

# %% [markdown]
# ## The same optimizer step
#
# SGD with Nesterov momentum and weight decay, as the default recipe trains, in both
# libraries. `scratchcnn.optim.SGD` follows PyTorch's update rule exactly, so three steps later
# the weights still agree.

# %%
optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
torch_optimizer = torch.optim.SGD(
    torch_model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
)
for _ in range(3):
    batch = rng.standard_normal((8, 3, 32, 32))
    targets = rng.integers(0, 10, size=8)
    loss_fn.forward(model.forward(batch, training=True), targets)
    model.backward(loss_fn.backward())  # overwrites every .grad: no zero_grad() needed
    optimizer.step()
    torch_optimizer.zero_grad()  # PyTorch adds to .grad, so it must be cleared first
    torch.nn.functional.cross_entropy(
        torch_model(torch.from_numpy(batch)), torch.from_numpy(targets)
    ).backward()
    torch_optimizer.step()
for name, p in torch_model.named_parameters():
    np.testing.assert_allclose(
        dict(model.named_parameters())[name].data, p.detach().numpy(), rtol=1e-9, atol=1e-12
    )
print("after three SGD steps every weight agrees")

# %% [markdown]
# And back: `from_torch` turns a `torch.nn` module built in PyTorch into a scratchcnn model.

# %%
torch_net = (
    torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 16 * 16, 10),
    )
    .double()
    .eval()
)
converted = from_torch(torch_net)
print(converted)
images = rng.standard_normal((4, 3, 32, 32))
np.testing.assert_allclose(
    converted.forward(images),
    torch_net(torch.from_numpy(images)).detach().numpy(),
    rtol=1e-10,
    atol=1e-12,
)

# %% [markdown]
# ## Timing side by side
#
# One training step (forward, loss, backward, SGD update) on a batch of float32 images, in
# scratchcnn's fast backend and in PyTorch (its default NCHW layout and thread count). The fast
# backend runs the model fused (`sc.fuse`, notebook 6), as the trainer does. Rounds alternate
# between the two so that background load hits both alike; the medians are printed. These
# numbers say something about this machine at this moment only: `scratchcnn bench --vs-torch`
# is the careful measurement, and `benchmarks/README.md` has its results.

# %%
model32 = sc.fuse(sc.seed_cnn(rng=rng))
torch32 = to_torch(sc.seed_cnn(rng=rng)).train()
images32 = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
targets32 = rng.integers(0, 10, size=BATCH)
sgd = SGD(model32.parameters(), lr=0.01, momentum=0.9)
torch_sgd = torch.optim.SGD(torch32.parameters(), lr=0.01, momentum=0.9)
images_torch, targets_torch = torch.from_numpy(images32), torch.from_numpy(targets32)


def scratchcnn_step():
    loss_fn.forward(model32.forward(images32, training=True), targets32)
    model32.backward(loss_fn.backward())
    sgd.step()


def torch_step():
    torch_sgd.zero_grad()
    torch.nn.functional.cross_entropy(torch32(images_torch), targets_torch).backward()
    torch_sgd.step()


times = {"scratchcnn (fast backend)": [], f"PyTorch {torch.__version__}": []}
scratchcnn_step(), torch_step()  # warm-up: kernels compile, buffers are allocated
for _ in range(3):
    for seconds, step in zip(times.values(), (scratchcnn_step, torch_step), strict=True):
        start = time.perf_counter()
        for _ in range(TIMED_STEPS):
            step()
        seconds.append((time.perf_counter() - start) / TIMED_STEPS)
for name, seconds in times.items():
    median = float(np.median(seconds))
    print(f"{name:<28} {median * 1e3:8.1f} ms per step   {BATCH / median:8.0f} images/s")
