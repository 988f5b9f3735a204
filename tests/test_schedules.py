"""Learning-rate schedules: hand values, PyTorch's schedulers, JSON round trips, bad values."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from scratchcnn.optim import (
    SCHEDULE_NAMES,
    ConstantLR,
    CosineLR,
    ExponentialLR,
    OneCycleLR,
    PiecewiseLinearLR,
    Schedule,
    StepLR,
    build_schedule,
    schedule_from_dict,
)

STEPS_CHECKED = [0, 1, 2, 5, 9, 10, 29, 30, 31, 57, 98, 99]


def torch_lrs(make_scheduler: Callable, lr: float, num_steps: int) -> list[float]:
    """The lr torch uses at each of ``num_steps`` optimizer steps."""
    torch = pytest.importorskip("torch")
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=lr)
    scheduler = make_scheduler(torch.optim.lr_scheduler, optimizer)
    lrs = []
    for _ in range(num_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.zeros(1)
        optimizer.step()
        scheduler.step()
    return lrs


# --- hand values ---------------------------------------------------------------------------------


def test_constant() -> None:
    schedule = ConstantLR(0.1)
    assert [schedule(s) for s in (0, 1, 1000)] == [0.1, 0.1, 0.1]


def test_step_by_hand() -> None:
    schedule = StepLR(1.0, step_size=3, gamma=0.5)
    # steps 0-2: 1, steps 3-5: 0.5, step 6: 0.25
    assert [schedule(s) for s in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_exponential_by_hand() -> None:
    schedule = ExponentialLR(2.0, gamma=0.5)
    assert [schedule(s) for s in range(4)] == [2.0, 1.0, 0.5, 0.25]


def test_cosine_with_warmup_by_hand() -> None:
    schedule = CosineLR(1.0, total_steps=14, warmup_steps=4, min_lr=0.1)
    # warm-up: (step + 1) / 4
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # cosine over T = 10 steps: 0.1 + 0.9 * (1 + cos(pi * t / 10)) / 2
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5)  # t = 5: cos = 0
    assert schedule(13) == pytest.approx(0.1 + 0.45 * (1 + math.cos(0.9 * math.pi)))
    assert schedule(14) == pytest.approx(0.1)
    assert schedule(1000) == pytest.approx(0.1)
    values = [schedule(s) for s in range(4, 15)]
    assert np.all(np.diff(values) < 0)


def test_piecewise_linear_by_hand() -> None:
    schedule = PiecewiseLinearLR(2.0, total_steps=10, knots=((0.0, 0.5), (0.4, 1.0), (1.0, 0.0)))
    # step 2: p = 0.2, halfway from 0.5 to 1.0 -> 0.75; step 7: p = 0.7, halfway down -> 0.5
    expected = {0: 1.0, 2: 1.5, 4: 2.0, 7: 1.0, 9: 2.0 * (1.0 - 0.5 / 0.6), 10: 0.0, 12: 0.0}
    for step, lr in expected.items():
        assert schedule(step) == pytest.approx(lr, rel=1e-12, abs=1e-15), step
    late_start = PiecewiseLinearLR(1.0, total_steps=4, knots=((0.5, 0.3), (0.75, 0.9)))
    # constant before the first knot and after the last
    assert [late_start(s) for s in range(5)] == pytest.approx([0.3, 0.3, 0.3, 0.9, 0.9])


def test_piecewise_default_is_airbenchs_triangle() -> None:
    total = 100  # 0.23 * total is a whole step, where airbench puts its peak

    def airbench_factor(step: int) -> float:  # airbench's get_lr, written out by hand
        warmup = int(total * 0.23)
        if step < warmup:
            return 0.2 + 0.8 * step / warmup
        return 1.0 - 0.93 * (step - warmup) / (total - warmup)

    schedule = PiecewiseLinearLR(0.5, total)
    for step in range(total + 1):
        assert schedule(step) == pytest.approx(0.5 * airbench_factor(step), rel=1e-12)


def test_piecewise_from_fractional_epochs() -> None:
    # 2.5 epochs of 10 steps: 25 steps; up to the peak at epoch 0.5, down to 0 at epoch 2.5
    schedule = PiecewiseLinearLR.from_epochs(
        1.0, steps_per_epoch=10, epochs=2.5, knots=((0.0, 0.0), (0.5, 1.0), (2.5, 0.0))
    )
    assert schedule.total_steps == 25
    assert schedule(5) == pytest.approx(1.0)
    assert schedule(15) == pytest.approx(0.5)
    assert schedule(2) == pytest.approx(0.4)
    assert schedule(25) == 0.0


def test_onecycle_by_hand() -> None:
    schedule = OneCycleLR(1.0, total_steps=11, pct_start=0.5, div_factor=10, final_div_factor=100)
    # initial 0.1, final 0.001; warm-up ends at step 0.5 * 11 - 1 = 4.5
    assert schedule(0) == pytest.approx(0.1)
    # step 2: pct = 2 / 4.5; 1 + (0.1 - 1) / 2 * (cos(pi * pct) + 1)
    assert schedule(2) == pytest.approx(1.0 - 0.45 * (math.cos(math.pi * 2 / 4.5) + 1))
    # step 10 (the last): pct = 1, the final lr
    assert schedule(10) == pytest.approx(0.001)
    assert schedule(50) == pytest.approx(0.001)
    peak = max(range(11), key=schedule)
    assert peak in (4, 5)


# --- against torch -------------------------------------------------------------------------------


def test_step_matches_torch() -> None:
    expected = torch_lrs(lambda s, o: s.StepLR(o, step_size=30, gamma=0.3), 0.1, 100)
    schedule = StepLR(0.1, step_size=30, gamma=0.3)
    for step in STEPS_CHECKED:
        assert schedule(step) == pytest.approx(expected[step], rel=1e-12)


def test_exponential_matches_torch() -> None:
    expected = torch_lrs(lambda s, o: s.ExponentialLR(o, gamma=0.97), 0.1, 100)
    schedule = ExponentialLR(0.1, gamma=0.97)
    for step in STEPS_CHECKED:
        assert schedule(step) == pytest.approx(expected[step], rel=1e-12)


def test_cosine_without_warmup_matches_torch_cosine_annealing() -> None:
    expected = torch_lrs(lambda s, o: s.CosineAnnealingLR(o, T_max=100, eta_min=1e-3), 0.1, 100)
    schedule = CosineLR(0.1, total_steps=100, min_lr=1e-3)
    for step in STEPS_CHECKED:
        assert schedule(step) == pytest.approx(expected[step], rel=1e-10)


@pytest.mark.parametrize(
    ("total_steps", "pct_start", "div_factor", "final_div_factor"),
    [(100, 0.3, 25.0, 1e4), (100, 0.25, 10.0, 100.0), (37, 0.45, 5.0, 1e3)],
)
def test_onecycle_matches_torch(
    total_steps: int, pct_start: float, div_factor: float, final_div_factor: float
) -> None:
    expected = torch_lrs(
        lambda s, o: s.OneCycleLR(
            o,
            max_lr=0.5,
            total_steps=total_steps,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            anneal_strategy="cos",
            three_phase=False,
            cycle_momentum=False,
        ),
        0.5,
        total_steps,
    )
    schedule = OneCycleLR(0.5, total_steps, pct_start, div_factor, final_div_factor)
    for step in range(total_steps):
        assert schedule(step) == pytest.approx(expected[step], rel=1e-12)


# --- JSON round trip and the factory -------------------------------------------------------------


ALL_SCHEDULES = [
    ConstantLR(0.1),
    StepLR(0.1, step_size=5, gamma=0.5),
    ExponentialLR(0.1, gamma=0.9),
    CosineLR(0.1, total_steps=50, warmup_steps=5, min_lr=1e-4),
    OneCycleLR(0.1, total_steps=50, pct_start=0.2),
    PiecewiseLinearLR(0.1, total_steps=50, knots=((0.0, 0.1), (0.3, 1.0), (1.0, 0.0))),
]


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: s.name)
def test_json_round_trip(schedule: Schedule) -> None:
    config = json.loads(json.dumps(schedule.to_dict()))
    assert config["name"] == schedule.name
    rebuilt = Schedule.from_dict(config)
    assert rebuilt == schedule
    assert [rebuilt(s) for s in range(60)] == [schedule(s) for s in range(60)]


def test_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="unknown schedule name 'linear'"):
        schedule_from_dict({"name": "linear", "lr": 0.1})
    with pytest.raises(ValueError, match=r"got unknown \['gamma'\]"):
        schedule_from_dict({"name": "constant", "lr": 0.1, "gamma": 0.5})
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -0.1"):
        schedule_from_dict({"name": "constant", "lr": -0.1})


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("constant", ConstantLR),
        ("step", StepLR),
        ("exponential", ExponentialLR),
        ("cosine", CosineLR),
        ("onecycle", OneCycleLR),
    ],
)
def test_build_schedule_names(name: str, cls: type[Schedule]) -> None:
    schedule = build_schedule(name, lr=0.1, total_steps=90)
    assert type(schedule) is cls
    assert name in SCHEDULE_NAMES
    assert max(schedule(s) for s in range(90)) == pytest.approx(0.1)


def test_build_schedule_defaults_and_overrides() -> None:
    step = build_schedule("step", lr=1.0, total_steps=90)
    assert (step.step_size, step.gamma) == (30, 0.1)
    exponential = build_schedule("exponential", lr=1.0, total_steps=50)
    assert exponential(50) == pytest.approx(0.01)  # hundredfold over the run
    cosine = build_schedule("cosine", lr=1.0, total_steps=50, warmup_steps=5, min_lr=0.01)
    assert cosine == CosineLR(1.0, 50, warmup_steps=5, min_lr=0.01)
    onecycle = build_schedule("onecycle", lr=1.0, total_steps=50, pct_start=0.1, div_factor=5)
    assert onecycle(0) == pytest.approx(0.2)


def test_build_schedule_piecewise() -> None:
    default = build_schedule("piecewise", lr=1.0, total_steps=100, warmup_steps=5)
    assert default == PiecewiseLinearLR(1.0, 100)
    assert default(23) == 1.0 and default(0) == pytest.approx(0.2)
    custom = build_schedule("piecewise", lr=1.0, total_steps=10, knots=((0, 1), (1, 0)))
    assert custom(5) == pytest.approx(0.5)
    assert "piecewise" in SCHEDULE_NAMES


def test_build_schedule_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown schedule 'poly'.*'constant', 'step'"):
        build_schedule("poly", lr=0.1, total_steps=10)


# --- bad values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ConstantLR(0.0), "lr must be a finite number > 0, got 0.0"),
        (lambda: StepLR(0.1, step_size=0), "step_size must be an int >= 1, got 0"),
        (lambda: StepLR(0.1, step_size=2.5), "step_size must be an int >= 1, got 2.5"),
        (lambda: StepLR(0.1, step_size=3, gamma=-1.0), "gamma must be .* > 0, got -1.0"),
        (lambda: ExponentialLR(0.1, gamma=0.0), "gamma must be .* > 0, got 0.0"),
        (lambda: CosineLR(0.1, total_steps=0), "total_steps must be an int >= 1, got 0"),
        (
            lambda: CosineLR(0.1, total_steps=10, warmup_steps=10),
            r"warmup_steps must be an int in \[0, total_steps=10\), got 10",
        ),
        (
            lambda: CosineLR(0.1, total_steps=10, min_lr=0.2),
            r"min_lr must be in \[0, lr=0.1\], got 0.2",
        ),
        (lambda: OneCycleLR(-1.0, 10), "max_lr must be a finite number > 0, got -1.0"),
        (lambda: OneCycleLR(0.1, 10, pct_start=1.0), r"pct_start must be in \(0, 1\), got 1.0"),
        (lambda: OneCycleLR(0.1, 10, div_factor=0), "div_factor must be .* > 0, got 0"),
        (lambda: OneCycleLR(0.1, 10, final_div_factor=-2), "final_div_factor .* got -2"),
        (
            lambda: PiecewiseLinearLR(0.1, 10, knots=((0.0, 1.0),)),
            r"at least two \(fraction, factor\) pairs, got \(\(0.0, 1.0\),\)",
        ),
        (
            lambda: PiecewiseLinearLR(0.1, 10, knots=((0.0, 1.0), (0.5, 0.5), (0.5, 0.1))),
            r"fractions must increase strictly within \[0, 1\], got \[0.0, 0.5, 0.5\]",
        ),
        (
            lambda: PiecewiseLinearLR(0.1, 10, knots=((0.0, 1.0), (1.5, 0.5))),
            r"within \[0, 1\], got \[0.0, 1.5\]",
        ),
        (
            lambda: PiecewiseLinearLR(0.1, 10, knots=((0.0, 1.0), (1.0, -0.5))),
            r"factors must be finite numbers >= 0, got \[1.0, -0.5\]",
        ),
        (
            lambda: PiecewiseLinearLR(0.1, 10, knots=((0.0, 1.0, 2.0), (1.0, 0.5))),
            "knots must be .fraction, factor. pairs of numbers",
        ),
        (lambda: PiecewiseLinearLR(0.1, 0), "total_steps must be an int >= 1, got 0"),
    ],
)
def test_bad_values_raise_with_value(make: Callable[[], Schedule], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("schedule", ALL_SCHEDULES, ids=lambda s: s.name)
def test_negative_step_rejected(schedule: Schedule) -> None:
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        schedule(-1)


def test_schedule_drives_an_optimizer() -> None:
    from scratchcnn.optim import SGD
    from scratchcnn.parameter import Parameter

    param = Parameter(np.zeros(1))
    optimizer = SGD([param], lr=1.0)
    schedule = StepLR(1.0, step_size=2, gamma=0.5)
    for _ in range(4):
        optimizer.lr = schedule(optimizer.step_count)
        param.grad[...] = 1.0
        optimizer.step()
    # 1 + 1 + 0.5 + 0.5
    np.testing.assert_allclose(param.data, [-3.0])
