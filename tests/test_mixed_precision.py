"""Mixed precision: float16 storage of what the backward pass keeps, and dynamic loss scaling."""

from __future__ import annotations

import numpy as np
import pytest

import scratchcnn as sc
from scratchcnn import fast
from scratchcnn.backend import use_backend
from scratchcnn.optim import DynamicLossScaler


def _airbench_like(rng):
    return sc.Sequential(
        sc.Conv2d(3, 8, 2, rng=rng),
        sc.GELU(),
        sc.Conv2d(8, 16, 3, padding="same", bias=False, rng=rng),
        sc.MaxPool2d(2),
        sc.BatchNorm2d(16),
        sc.GELU(),
        sc.Flatten(),
        sc.Linear(16 * 5 * 5, 4, rng=rng),
    )


def test_float16_storage_keeps_half_precision_copies_and_gives_close_gradients():
    rng = np.random.default_rng(0)
    model = _airbench_like(rng)
    fused = sc.fuse(model)
    x = rng.standard_normal((6, 3, 11, 11)).astype(np.float32)
    grad = rng.standard_normal((6, 4)).astype(np.float32)
    results = {}
    with use_backend("fast"):
        for storage in ("float32", "float16"):
            with fast.settings(storage=storage):
                out = fused.forward(x, training=True)
                kept = [unit._cache[1] for unit in fused.units() if getattr(unit, "_cache", None)]
                fused.backward(grad)
            results[storage] = (out, [p.grad.copy() for p in model.parameters()], kept)
    out32, grads32, _ = results["float32"]
    out16, grads16, kept16 = results["float16"]
    np.testing.assert_array_equal(out16, out32)  # the forward arithmetic is float32 either way
    conv_kept = kept16[2]  # Conv2d 8->16: its input, kept in float16
    assert conv_kept.x_nhwc.dtype == np.float16
    for got, want in zip(grads16, grads32, strict=True):
        # float16 keeps 11 significant bits: relative error ~1e-3 of the gradient's size
        np.testing.assert_allclose(got, want, rtol=0, atol=5e-3 * np.abs(want).max())
        assert got.dtype == np.float32


def test_storage_setting_is_validated():
    with pytest.raises(ValueError, match="storage must be one of"), fast.settings(storage="bf16"):
        pass


def test_loss_scaler_backs_off_on_overflow_and_grows_after_good_steps():
    param = sc.Parameter(np.zeros(3, np.float32), "w")
    scaler = DynamicLossScaler(init_scale=8.0, growth_interval=2)
    np.testing.assert_array_equal(scaler.scale(np.ones(2, np.float32)), [8.0, 8.0])
    steps = []
    for grad in ([8.0, 16.0, 0.0], [np.inf, 0, 0], [4.0, 4.0, 4.0], [1.0, 1.0, 1.0]):
        param.grad[...] = grad
        ok = scaler.unscale([param])
        steps.append((ok, scaler.scale_value, param.grad.tolist()))
        scaler.update()
    assert steps[0] == (True, 8.0, [1.0, 2.0, 0.0])  # gradients divided by the scale
    assert steps[1][0] is False and scaler.skipped_steps == 1
    assert steps[2][1] == 4.0  # halved after the overflow
    assert scaler.scale_value == 8.0  # doubled after two good steps in a row
    with pytest.raises(RuntimeError, match="update called before unscale"):
        scaler.update()


def test_loss_scaler_matches_torch_grad_scaler():
    """The same sequence of finite and infinite gradients gives PyTorch's sequence of scales."""
    torch = pytest.importorskip("torch")
    pattern = [True, True, False, True, True, True, False, False, True, True, True]
    ours = DynamicLossScaler(init_scale=1024.0, growth_interval=3)
    theirs = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([weight], lr=0.0)
    param = sc.Parameter(np.zeros(2, np.float32), "w")
    for finite in pattern:
        value = 1.0 if finite else float("inf")
        param.grad[...] = value
        ours.unscale([param])
        ours.update()
        theirs.scale(torch.tensor(1.0))  # as a training step would scale its loss
        weight.grad = torch.full((2,), value)
        theirs.step(optimizer)
        theirs.update()
        assert ours.scale_value == theirs.get_scale()


def test_loss_scaler_state_round_trips():
    scaler = DynamicLossScaler(init_scale=64.0, growth_interval=5)
    param = sc.Parameter(np.ones(1, np.float32), "w")
    for _ in range(3):
        scaler.unscale([param])
        scaler.update()
    copy = DynamicLossScaler()
    copy.load_state_dict(scaler.state_dict())
    assert copy.state_dict() == scaler.state_dict()
    with pytest.raises(ValueError, match="backoff_factor must be in"):
        copy.load_state_dict({**scaler.state_dict(), "backoff_factor": 2.0})
    assert copy.state_dict() == scaler.state_dict()  # unchanged after the refused load
