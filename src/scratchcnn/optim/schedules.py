"""Learning-rate schedules as pure functions of the optimizer step count.

A schedule is a small frozen dataclass; ``schedule(step)`` gives the learning rate for the
0-based optimizer step ``step`` (the one about to be taken), so resuming needs only the step
count, never any schedule state. Step 0 matches a freshly built PyTorch scheduler and step ``k``
matches it after ``k`` calls to ``scheduler.step()``.

A trainer uses it as::

    optimizer.lr = schedule(optimizer.step_count)
    optimizer.step()

``to_dict()`` gives a JSON-able ``{"name": ..., <fields>}`` and ``schedule_from_dict`` rebuilds
it, so the schedule can be stored next to a checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Schedule",
    "ConstantLR",
    "StepLR",
    "ExponentialLR",
    "CosineLR",
    "OneCycleLR",
    "PiecewiseLinearLR",
    "build_schedule",
    "schedule_from_dict",
    "SCHEDULE_NAMES",
]


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


@dataclass(frozen=True)
class Schedule:
    """Base class: ``__call__(step) -> lr``, plus ``to_dict``/``from_dict`` for JSON."""

    name: ClassVar[str] = ""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description: ``{"name": <schedule name>, <field>: <value>, ...}``."""
        return {"name": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> Schedule:
        """Rebuild a schedule from ``to_dict()`` output (any schedule class works as entry)."""
        return schedule_from_dict(config)


@dataclass(frozen=True)
class ConstantLR(Schedule):
    """The same learning rate at every step.

    Args:
        lr: the learning rate.
    """

    name: ClassVar[str] = "constant"
    lr: float

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)

    def __call__(self, step: int) -> float:
        _check_step(step)
        return float(self.lr)


@dataclass(frozen=True)
class StepLR(Schedule):
    """``lr * gamma ** (step // step_size)``: decay by ``gamma`` every ``step_size`` steps."""

    name: ClassVar[str] = "step"
    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)
        _check_positive_int("step_size", self.step_size)
        _check_positive("gamma", self.gamma)

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.lr * self.gamma ** (step // self.step_size)


@dataclass(frozen=True)
class ExponentialLR(Schedule):
    """``lr * gamma ** step``: decay by ``gamma`` every step."""

    name: ClassVar[str] = "exponential"
    lr: float
    gamma: float

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)
        _check_positive("gamma", self.gamma)

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.lr * self.gamma**step


@dataclass(frozen=True)
class CosineLR(Schedule):
    """Linear warm-up to ``lr``, then half a cosine from ``lr`` down to ``min_lr``.

    Warm-up (``step < warmup_steps``): ``lr * (step + 1) / warmup_steps``, so the first step
    uses ``lr / warmup_steps`` (small but not a wasted zero) and step ``warmup_steps - 1`` uses
    ``lr``. Then, with ``t = step - warmup_steps`` and ``T = total_steps - warmup_steps``::

        min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2

    which is PyTorch's ``CosineAnnealingLR(T_max=T, eta_min=min_lr)``: it reaches ``min_lr`` at
    step ``total_steps`` (one past the last step of a run), so no step trains with ``lr = 0``.
    Steps past ``total_steps`` stay at ``min_lr``.
    """

    name: ClassVar[str] = "cosine"
    lr: float
    total_steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)
        _check_positive_int("total_steps", self.total_steps)
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or not 0 <= self.warmup_steps < self.total_steps
        ):
            raise ValueError(
                f"warmup_steps must be an int in [0, total_steps={self.total_steps}), "
                f"got {self.warmup_steps!r}"
            )
        if not (math.isfinite(self.min_lr) and 0.0 <= self.min_lr <= self.lr):
            raise ValueError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")

    def __call__(self, step: int) -> float:
        _check_step(step)
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2


@dataclass(frozen=True)
class OneCycleLR(Schedule):
    """Smith's one-cycle policy in PyTorch's two-phase cosine form (``three_phase=False``).

    With ``initial = max_lr / div_factor`` and ``final = initial / final_div_factor``, and the
    cosine interpolation ``cos_anneal(a, b, pct) = b + (a - b) * (1 + cos(pi * pct)) / 2``:

    * steps ``0 .. pct_start * total_steps - 1``: ``cos_anneal(initial, max_lr, pct)``;
    * then up to step ``total_steps - 1``: ``cos_anneal(max_lr, final, pct)``,

    where ``pct`` is the fraction of the phase done. This equals
    ``torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos")``'s learning rate. Steps past
    ``total_steps - 1`` hold ``final`` (PyTorch raises there instead).
    """

    name: ClassVar[str] = "onecycle"
    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        _check_positive("max_lr", self.max_lr)
        _check_positive_int("total_steps", self.total_steps)
        if not (math.isfinite(self.pct_start) and 0.0 < self.pct_start < 1.0):
            raise ValueError(f"pct_start must be in (0, 1), got {self.pct_start}")
        _check_positive("div_factor", self.div_factor)
        _check_positive("final_div_factor", self.final_div_factor)

    @staticmethod
    def _cos_anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def __call__(self, step: int) -> float:
        _check_step(step)
        initial_lr = self.max_lr / self.div_factor
        final_lr = initial_lr / self.final_div_factor
        warm_end = float(self.pct_start * self.total_steps) - 1  # as torch: a float step
        last = self.total_steps - 1
        if step <= warm_end:
            # warm_end > 0 here unless the warm-up phase is a single step (pct = 0 then).
            pct = step / warm_end if warm_end > 0 else 0.0
            return self._cos_anneal(initial_lr, self.max_lr, pct)
        span = last - warm_end
        pct = min(1.0, (step - warm_end) / span) if span > 0 else 1.0
        return self._cos_anneal(self.max_lr, final_lr, pct)


# airbench's triangle: from 0.2 * lr up to lr at 23% of training, then down to 0.07 * lr.
AIRBENCH_KNOTS: tuple[tuple[float, float], ...] = ((0.0, 0.2), (0.23, 1.0), (1.0, 0.07))


@dataclass(frozen=True)
class PiecewiseLinearLR(Schedule):
    """``lr`` times a piecewise-linear function of the fraction of training done.

    ``knots`` are ``(fraction, factor)`` pairs, fractions strictly increasing in ``[0, 1]``.
    At step ``s`` the fraction done is ``p = s / total_steps`` and, between the knots
    ``(p_i, f_i)`` and ``(p_{i+1}, f_{i+1})`` around it::

        lr(s) = lr * (f_i + (f_{i+1} - f_i) * (p - p_i) / (p_{i+1} - p_i))

    Before the first knot the factor is ``f_0``, after the last it is the last factor. The
    knots are fractions, not steps, so the same schedule fits any run length; a knot at epoch
    ``e`` (fractional epochs are fine) is at ``e * steps_per_epoch / total_steps``, which
    :meth:`from_epochs` computes. The default is airbench's triangle, ``((0, 0.2), (0.23, 1),
    (1, 0.07))``; airbench puts its peak at the whole step ``int(0.23 * total_steps)``, here it
    is at the exact fraction (the same when ``0.23 * total_steps`` is whole).
    """

    name: ClassVar[str] = "piecewise"
    lr: float
    total_steps: int
    knots: tuple[tuple[float, float], ...] = AIRBENCH_KNOTS

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)
        _check_positive_int("total_steps", self.total_steps)
        try:
            knots = tuple((float(fraction), float(factor)) for fraction, factor in self.knots)
        except (TypeError, ValueError):
            raise ValueError(
                f"knots must be (fraction, factor) pairs of numbers, got {self.knots!r}"
            ) from None
        fractions = [fraction for fraction, _ in knots]
        if len(knots) < 2:
            raise ValueError(f"knots must hold at least two (fraction, factor) pairs, got {knots}")
        in_range = all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in fractions)
        if not in_range or np.any(np.diff(fractions) <= 0):
            raise ValueError(
                f"knot fractions must increase strictly within [0, 1], got {fractions}"
            )
        factors = [factor for _, factor in knots]
        if not all(math.isfinite(f) and f >= 0.0 for f in factors):
            raise ValueError(f"knot factors must be finite numbers >= 0, got {factors}")
        object.__setattr__(self, "knots", knots)  # JSON gives lists back: keep tuples

    @classmethod
    def from_epochs(
        cls,
        lr: float,
        steps_per_epoch: int,
        epochs: float,
        knots: tuple[tuple[float, float], ...],
    ) -> PiecewiseLinearLR:
        """The schedule for ``ceil(epochs * steps_per_epoch)`` steps with knots given as
        ``(epoch, factor)`` pairs; epochs may be fractional (``(2.5, 1.0)``: mid-epoch 3)."""
        _check_positive_int("steps_per_epoch", steps_per_epoch)
        _check_positive("epochs", epochs)
        total_steps = math.ceil(epochs * steps_per_epoch)
        return cls(
            lr,
            total_steps,
            tuple((epoch * steps_per_epoch / total_steps, factor) for epoch, factor in knots),
        )

    def __call__(self, step: int) -> float:
        _check_step(step)
        progress = step / self.total_steps
        fractions = [fraction for fraction, _ in self.knots]
        factors = [factor for _, factor in self.knots]
        return self.lr * float(np.interp(progress, fractions, factors))


_SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls
    for cls in (ConstantLR, StepLR, ExponentialLR, CosineLR, OneCycleLR, PiecewiseLinearLR)
}
SCHEDULE_NAMES: tuple[str, ...] = tuple(_SCHEDULES)


def schedule_from_dict(config: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from ``Schedule.to_dict()`` output (validating every field).

    Args:
        config: the dictionary, with its ``"name"`` and the schedule's fields.
    """
    fields = dict(config)
    name = fields.pop("name", None)
    if name not in _SCHEDULES:
        raise ValueError(f"unknown schedule name {name!r}; valid names are {list(SCHEDULE_NAMES)}")
    cls = _SCHEDULES[name]
    expected = {f.name for f in dataclasses.fields(cls)}
    unknown = set(fields) - expected
    if unknown:
        raise ValueError(
            f"schedule {name!r} takes fields {sorted(expected)}, got unknown {sorted(unknown)}"
        )
    return cls(**fields)


def build_schedule(
    name: str,
    lr: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    step_size: int | None = None,
    gamma: float | None = None,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    knots: tuple[tuple[float, float], ...] = AIRBENCH_KNOTS,
) -> Schedule:
    """Build a schedule by name (for the CLI); ``lr`` is the peak (``max_lr`` for onecycle).

    Names: ``"constant"``, ``"step"``, ``"exponential"``, ``"cosine"``, ``"onecycle"``,
    ``"piecewise"`` (``knots`` as fractions of training; airbench's triangle by default).
    Defaults when left as ``None``: for ``"step"``, ``step_size = max(1, total_steps // 3)``
    and ``gamma = 0.1`` (two tenfold drops over the run); for ``"exponential"``,
    ``gamma = 0.01 ** (1 / total_steps)`` (a hundredfold decay over the run).
    Arguments that the named schedule does not use are ignored.

    Args:
        name: the schedule, one of :data:`SCHEDULE_NAMES`.
        lr: the peak learning rate.
        total_steps: the number of optimizer steps in the run.
        warmup_steps: steps of linear warm-up from 0 to ``lr`` (cosine).
        min_lr: the learning rate the cosine decays to.
        step_size: steps between drops (step).
        gamma: the factor per drop (step) or per step (exponential).
        pct_start: the fraction of the run spent rising (onecycle).
        div_factor: onecycle starts at ``lr / div_factor``.
        final_div_factor: onecycle ends at ``lr / (div_factor * final_div_factor)``.
        knots: ``(fraction of training, fraction of lr)`` points joined by straight lines
            (piecewise).
    """
    key = name.lower()
    if key not in _SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid names are {list(SCHEDULE_NAMES)}")
    _check_positive_int("total_steps", total_steps)
    if key == "constant":
        return ConstantLR(lr)
    if key == "step":
        return StepLR(
            lr,
            step_size=max(1, total_steps // 3) if step_size is None else step_size,
            gamma=0.1 if gamma is None else gamma,
        )
    if key == "exponential":
        return ExponentialLR(lr, gamma=0.01 ** (1.0 / total_steps) if gamma is None else gamma)
    if key == "cosine":
        return CosineLR(lr, total_steps, warmup_steps=warmup_steps, min_lr=min_lr)
    if key == "piecewise":
        return PiecewiseLinearLR(lr, total_steps, knots)
    return OneCycleLR(
        lr,
        total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )
