"""Weight averaging: the EMA against hand arithmetic and torch's AveragedModel, evaluation with
the averaged weights, Lookahead against hand arithmetic and an independent loop, frozen
parameters, and exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scratchcnn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, ReLU, Sequential
from scratchcnn.losses import CrossEntropyLoss
from scratchcnn.optim import SGD, ExponentialMovingAverage, Lookahead, lookahead_alpha


def small_model(seed: int = 0) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64),
        BatchNorm2d(3, dtype=np.float64),
        ReLU(),
        GlobalAvgPool2d(),
        Linear(3, 2, rng=rng, dtype=np.float64),
    )


def train_step(model: Sequential, optimizer: SGD, rng: np.random.Generator) -> None:
    """One SGD step on a random batch; also moves the batch-norm running statistics."""
    x = rng.standard_normal((4, 2, 5, 5))
    labels = rng.integers(0, 2, 4)
    loss = CrossEntropyLoss()
    loss.forward(model.forward(x, training=True), labels)
    model.backward(loss.backward())
    optimizer.step()


def json_state(state: dict) -> dict:
    """The state as a checkpoint stores it: hyperparameters through JSON, arrays copied."""
    return {
        "hyperparameters": json.loads(json.dumps(state["hyperparameters"])),
        "buffers": {k: np.array(v, copy=True) for k, v in state["buffers"].items()},
    }


# --- exponential moving average ----------------------------------------------------------------


def test_ema_by_hand() -> None:
    model = Sequential(Linear(2, 1, dtype=np.float64))
    weight, bias = model[0].weight, model[0].bias
    weight.data[...] = [[1.0, 2.0]]
    ema = ExponentialMovingAverage(model, decay=0.5)
    weight.data[...] = [[3.0, 2.0]]
    bias.data[...] = [4.0]
    ema.update()
    # a = 0.5 * a + 0.5 * w: [[2, 2]] and [2]
    np.testing.assert_array_equal(ema.copies["0.weight"], [[2.0, 2.0]])
    np.testing.assert_array_equal(ema.copies["0.bias"], [2.0])
    weight.data[...] = [[5.0, 0.0]]
    ema.update()
    np.testing.assert_array_equal(ema.copies["0.weight"], [[3.5, 1.0]])
    np.testing.assert_array_equal(ema.copies["0.bias"], [3.0])
    assert ema.num_updates == 2
    np.testing.assert_array_equal(weight.data, [[5.0, 0.0]])  # update only reads the model


@pytest.mark.parametrize("include_buffers", [True, False])
def test_ema_matches_torch_averaged_model_for_20_steps(include_buffers: bool) -> None:
    torch = pytest.importorskip("torch")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = small_model()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = ExponentialMovingAverage(model, decay=0.8, include_buffers=include_buffers)

    # A torch module holding the same tensors in the same order (parameters, then buffers).
    class Mirror(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.tensor(p.data)) for p in model.parameters()]
            )
            for index, (_, buf) in enumerate(model.named_buffers()):
                self.register_buffer(f"buffer{index}", torch.tensor(buf))

        def copy_from_model(self) -> None:
            with torch.no_grad():
                for tensor, p in zip(self.weights, model.parameters(), strict=True):
                    tensor.copy_(torch.from_numpy(p.data))
                for tensor, (_, buf) in zip(self.buffers(), model.named_buffers(), strict=True):
                    tensor.copy_(torch.from_numpy(buf))

    mirror = Mirror()
    averaged = AveragedModel(
        mirror, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=include_buffers
    )
    averaged.update_parameters(mirror)  # its first update copies: our a_0 = w_0
    rng = np.random.default_rng(1)
    for _ in range(20):
        train_step(model, optimizer, rng)
        ema.update()
        mirror.copy_from_model()
        averaged.update_parameters(mirror)

    theirs = [t.detach().numpy() for t in averaged.module.weights]
    if include_buffers:
        theirs += [t.numpy() for t in averaged.module.buffers()]
    ours = list(ema.copies.values())
    assert len(ours) == len(theirs) == (8 if include_buffers else 6)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # the average really differs from the trained weights
    assert not np.allclose(ema.copies["0.weight"], model[0].weight.data, atol=1e-4)


def test_averaged_weights_swaps_in_the_average_and_restores() -> None:
    model = small_model()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = ExponentialMovingAverage(model, decay=0.7)
    rng = np.random.default_rng(2)
    for _ in range(6):
        train_step(model, optimizer, rng)
        ema.update()
    trained = model.state_dict()
    averaged_model = small_model(seed=9)
    averaged_model.load_state_dict(ema.copies)
    x = rng.standard_normal((3, 2, 5, 5))
    with ema.averaged_weights() as inside:
        assert inside is model
        np.testing.assert_array_equal(model.forward(x), averaged_model.forward(x))
        np.testing.assert_array_equal(model[1].running_var, ema.copies["1.running_var"])
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, trained[name])
    assert not np.allclose(model.forward(x), averaged_model.forward(x))
    with pytest.raises(RuntimeError, match="inside"):
        with ema.averaged_weights():
            raise RuntimeError("inside")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, trained[name])  # restored after the error too
    ema.copy_to_model()
    np.testing.assert_array_equal(model.forward(x), averaged_model.forward(x))


def test_ema_without_buffers_keeps_the_current_statistics() -> None:
    model = small_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    ema = ExponentialMovingAverage(model, decay=0.9, include_buffers=False)
    rng = np.random.default_rng(3)
    for _ in range(3):
        train_step(model, optimizer, rng)
        ema.update()
    assert "1.running_mean" not in ema.copies
    current = model[1].running_mean.copy()
    with ema.averaged_weights():
        np.testing.assert_array_equal(model[1].running_mean, current)
        np.testing.assert_array_equal(model[0].weight.data, ema.copies["0.weight"])


def test_ema_of_a_frozen_parameter_is_its_value() -> None:
    model = small_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    ema = ExponentialMovingAverage(model, decay=0.9)
    conv_weight = model[0].weight
    conv_weight.requires_grad = False
    conv_weight.data[...] = 0.25  # e.g. set by an initialisation after the EMA was made
    rng = np.random.default_rng(4)
    for _ in range(3):
        train_step(model, optimizer, rng)
        ema.update()
    np.testing.assert_array_equal(ema.copies["0.weight"], 0.25)
    assert not np.allclose(ema.copies["4.weight"], model[4].weight.data)  # others average


def test_ema_resume_is_exact() -> None:
    def run(steps: int, model, optimizer, ema, rng) -> None:
        for _ in range(steps):
            train_step(model, optimizer, rng)
            ema.update()

    straight = small_model()
    straight_opt = SGD(straight.parameters(), lr=0.1, momentum=0.9)
    straight_ema = ExponentialMovingAverage(straight, decay=0.6)
    run(10, straight, straight_opt, straight_ema, np.random.default_rng(5))

    first = small_model()
    first_opt = SGD(first.parameters(), lr=0.1, momentum=0.9)
    first_ema = ExponentialMovingAverage(first, decay=0.6)
    rng = np.random.default_rng(5)
    run(4, first, first_opt, first_ema, rng)
    saved = (first.state_dict(), json_state(first_opt.state_dict()), first_ema.state_dict())
    saved = (saved[0], saved[1], json_state(saved[2]))

    resumed = small_model(seed=8)
    resumed.load_state_dict(saved[0])
    resumed_opt = SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    resumed_opt.load_state_dict(saved[1])
    resumed_ema = ExponentialMovingAverage(resumed, decay=0.1)  # the decay comes from the state
    resumed_ema.load_state_dict(saved[2])
    assert (resumed_ema.decay, resumed_ema.num_updates) == (0.6, 4)
    run(6, resumed, resumed_opt, resumed_ema, rng)
    for name, value in straight_ema.copies.items():
        np.testing.assert_array_equal(resumed_ema.copies[name], value)


def test_ema_errors() -> None:
    model = small_model()
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.0"):
        ExponentialMovingAverage(model, decay=1.0)
    with pytest.raises(ValueError, match="without parameters"):
        ExponentialMovingAverage(Sequential(ReLU()), decay=0.5)
    ema = ExponentialMovingAverage(model, decay=0.5)
    lookahead = Lookahead(model)
    with pytest.raises(ValueError, match="for 'Lookahead', cannot load it into Exponential"):
        ema.load_state_dict(lookahead.state_dict())
    other = ExponentialMovingAverage(small_model(), decay=0.5, include_buffers=False)
    with pytest.raises(ValueError, match="has weights .* the model has"):
        ema.load_state_dict(
            {**other.state_dict(), "hyperparameters": ema.state_dict()["hyperparameters"]}
        )
    with pytest.raises(ValueError, match="saved with include_buffers=False"):
        other_state = other.state_dict()
        ema.load_state_dict({**other_state, "buffers": ema.state_dict()["buffers"]})
    model[0] = Conv2d(2, 3, 1, dtype=np.float64)  # the model changed under the average
    with pytest.raises(ValueError, match=r"0.weight has shape \(3, 2, 1, 1\), the copy"):
        ema.update()


# --- lookahead ---------------------------------------------------------------------------------


def test_lookahead_by_hand() -> None:
    model = Sequential(Linear(1, 1, bias=False, dtype=np.float64))
    weight = model[0].weight
    weight.data[...] = 1.0
    lookahead = Lookahead(model, k=2)
    weight.data[...] = 3.0  # an optimizer step
    assert lookahead.step(alpha=0.5) is False  # step 1 of 2: nothing happens
    np.testing.assert_array_equal(weight.data, [[3.0]])
    weight.data[...] = 5.0
    assert lookahead.step(alpha=0.5) is True
    # slow = 1 + 0.5 * (5 - 1) = 3; fast reset to 3
    np.testing.assert_array_equal(lookahead.copies["0.weight"], [[3.0]])
    np.testing.assert_array_equal(weight.data, [[3.0]])
    weight.data[...] = 7.0
    lookahead.sync(alpha=0.0)  # airbench's last call: back to the slow weights
    np.testing.assert_array_equal(weight.data, [[3.0]])
    weight.data[...] = 7.0
    lookahead.sync(alpha=1.0)  # alpha 1: the slow weights jump to the fast ones
    np.testing.assert_array_equal(lookahead.copies["0.weight"], [[7.0]])


def test_lookahead_matches_an_independent_loop() -> None:
    """The same training with Lookahead, and with the slow weights kept by hand through the
    model's public state_dict/load_state_dict, airbench-style (decay = 1 - alpha)."""
    total, k = 23, 5
    model = small_model()
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    lookahead = Lookahead(model, k=k)
    rng = np.random.default_rng(6)
    synced = []
    for t in range(1, total + 1):
        train_step(model, optimizer, rng)
        synced.append(lookahead.step(lookahead_alpha(t, total)))
    lookahead.sync(0.0)
    assert synced.count(True) == total // k

    reference = small_model()
    reference_opt = SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    slow = reference.state_dict()
    rng = np.random.default_rng(6)
    for t in range(1, total + 1):
        train_step(reference, reference_opt, rng)
        if t % k == 0:
            decay = 0.95**5 * (t / total) ** 3
            fast = reference.state_dict()
            slow = {name: decay * slow[name] + (1 - decay) * fast[name] for name in slow}
            reference.load_state_dict(slow)
    reference.load_state_dict(slow)
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[name], value, rtol=1e-12, atol=1e-14)
    # and Lookahead changed the result
    plain = small_model()
    plain_opt = SGD(plain.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    rng = np.random.default_rng(6)
    for _ in range(total):
        train_step(plain, plain_opt, rng)
    assert not np.allclose(plain[0].weight.data, model[0].weight.data, atol=1e-6)


def test_lookahead_leaves_frozen_parameters_alone() -> None:
    model = small_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    lookahead = Lookahead(model, k=1)
    model[0].weight.requires_grad = False
    model[0].weight.data[...] = 0.5  # changed after the slow copy was taken
    rng = np.random.default_rng(7)
    train_step(model, optimizer, rng)
    lookahead.step(alpha=0.3)
    np.testing.assert_array_equal(model[0].weight.data, 0.5)  # not pulled towards the old copy
    np.testing.assert_array_equal(lookahead.copies["0.weight"], 0.5)


def test_lookahead_resume_is_exact() -> None:
    total = 12

    def run(start: int, stop: int, model, optimizer, lookahead, rng) -> None:
        for t in range(start, stop):
            train_step(model, optimizer, rng)
            lookahead.step(lookahead_alpha(t + 1, total))

    straight = small_model()
    straight_opt = SGD(straight.parameters(), lr=0.1, momentum=0.9)
    straight_la = Lookahead(straight, k=3)
    run(0, total, straight, straight_opt, straight_la, np.random.default_rng(8))

    first = small_model()
    first_opt = SGD(first.parameters(), lr=0.1, momentum=0.9)
    first_la = Lookahead(first, k=3)
    rng = np.random.default_rng(8)
    run(0, 7, first, first_opt, first_la, rng)  # stops between two synchronisations
    saved = (
        first.state_dict(),
        json_state(first_opt.state_dict()),
        json_state(first_la.state_dict()),
    )
    resumed = small_model(seed=3)
    resumed.load_state_dict(saved[0])
    resumed_opt = SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    resumed_opt.load_state_dict(saved[1])
    resumed_la = Lookahead(resumed, k=2)
    resumed_la.load_state_dict(saved[2])
    assert (resumed_la.k, resumed_la.step_count) == (3, 7)
    run(7, total, resumed, resumed_opt, resumed_la, rng)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value)


def test_lookahead_alpha_schedule() -> None:
    assert lookahead_alpha(0, 100) == 1.0
    assert lookahead_alpha(50, 100) == pytest.approx(1 - 0.95**5 / 8)
    assert lookahead_alpha(100, 100) == pytest.approx(1 - 0.95**5)
    assert lookahead_alpha(150, 100) == lookahead_alpha(100, 100)
    assert lookahead_alpha(30, 60, final_decay=0.5, power=1.0) == pytest.approx(0.75)


def test_lookahead_errors() -> None:
    model = small_model()
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        Lookahead(model, k=0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        Lookahead(model).step(1.5)
    with pytest.raises(ValueError, match="total_steps must be an int >= 1, got 0"):
        lookahead_alpha(3, 0)
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        lookahead_alpha(-1, 10)
    with pytest.raises(TypeError, match="include_buffers must be a bool"):
        Lookahead(model, include_buffers=1)  # type: ignore[arg-type]
