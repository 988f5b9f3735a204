"""The learning-rate range test (Smith 2017; popularised by fastai): sweep lr up, watch the loss.

The test trains for a few steps while the learning rate grows exponentially from ``start_lr`` to
``end_lr``. The loss first barely moves (lr too small), then falls quickly, then blows up (lr
too large). A good learning rate sits where the loss falls fastest, before its minimum
(:func:`suggest_lr`, the rule fastai and pytorch-lr-finder use).

The test changes the model's weights and the optimizer's buffers. Restoring them afterwards is
the caller's job: save the model's and optimizer's ``state_dict()`` before, load them after.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scratchcnn.optim.optimizers import Optimizer

__all__ = ["LRFinderResult", "lr_range_test", "suggest_lr"]


@dataclass(frozen=True)
class LRFinderResult:
    """What the range test saw, one entry per step taken.

    Attributes:
        lrs: the learning rate of each step, increasing.
        losses: the raw loss returned by ``step_fn`` at each step.
        smoothed: the bias-corrected exponential moving average of ``losses``.
        suggested_lr: the lr :func:`suggest_lr` picks from ``smoothed``.
        suggestion_rule: how it was picked, in words (for logs and plots).

    Shape: ``lrs``, ``losses`` and ``smoothed`` are all ``(steps_taken,)``.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggested_lr: float
    suggestion_rule: str = ""


def suggest_lr(
    lrs: np.ndarray, smoothed: np.ndarray, skip_start: int | None = None
) -> tuple[float, str]:
    """Steepest descent before the minimum: where the smoothed loss falls fastest per factor
    of lr, looking only between the first ``skip_start`` steps and the loss minimum.

    The first steps are skipped because the moving average is still settling there (its
    slope is noise), and everything after the minimum is the blow-up, never a good choice.
    ``skip_start`` defaults to a tenth of the steps (at least 1). When fewer than three steps
    lie in that window, the suggestion is the lr at the minimum divided by 10, and the rule
    says so.

    Returns ``(lr, rule)``; ``rule`` says in words how the lr was chosen.

    Shape: ``lrs (T,)`` increasing, ``smoothed (T,)``.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    count = len(lrs)
    lowest = int(np.argmin(smoothed))
    skip = max(1, count // 10) if skip_start is None else skip_start
    window = np.arange(min(skip, lowest), lowest + 1)
    if len(window) < 3:
        return (
            float(lrs[lowest] / 10),
            f"the loss was lowest at lr {lrs[lowest]:.3g} (step {lowest + 1} of {count}), too "
            "early to measure a slope; suggested a tenth of that",
        )
    slope = np.gradient(smoothed[window], np.log(lrs[window]))  # d loss / d log(lr)
    best = int(window[np.argmin(slope)])
    return (
        float(lrs[best]),
        f"steepest descent of the smoothed loss between steps {window[0] + 1} and {lowest + 1} "
        f"(its minimum, at lr {lrs[lowest]:.3g}): {slope.min():.3g} per e-fold of lr",
    )


def lr_range_test(
    step_fn: Callable[[], float],
    optimizer: Optimizer,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    smooth: float = 0.98,
    diverge_factor: float = 4.0,
) -> LRFinderResult:
    """Run the learning-rate range test and suggest a learning rate.

    At step ``i`` the learning rate is ``start_lr * (end_lr / start_lr) ** (i / (num_steps-1))``.
    Each step sets ``optimizer.lr``, calls ``step_fn()`` (one forward and backward pass on the
    next batch, returning the loss; layers overwrite the gradients, so no ``zero_grad`` is
    needed), then ``optimizer.step()``. The loss is smoothed with a bias-corrected exponential
    moving average ``avg = smooth * avg + (1 - smooth) * loss; smoothed = avg / (1 - smooth**k)``.

    The test stops early, without stepping, when the loss is not finite (that step is not
    recorded) or when the smoothed loss exceeds ``diverge_factor`` times the best smoothed loss
    so far (that step is recorded).

    The suggestion (:func:`suggest_lr`) is the learning rate where ``d smoothed / d log(lr)``
    is most negative before the smoothed loss reaches its minimum, skipping the first tenth of
    the steps: where the loss falls fastest per factor of lr. It is a starting point.

    The model's weights and the optimizer's state are left as the test made them; restoring
    them (from ``state_dict()`` copies taken beforehand) is the caller's job. ``optimizer.lr`` is
    set back to its original value.

    Args:
        step_fn: performs one forward/backward pass on a fresh batch and returns the loss.
        optimizer: the optimizer over the model's parameters.
        start_lr: the first learning rate, ``> 0``.
        end_lr: the last learning rate, ``> start_lr``.
        num_steps: the most steps to take, ``>= 2``.
        smooth: EMA factor for the loss, in ``[0, 1)``; 0 means no smoothing.
        diverge_factor: stop once the smoothed loss exceeds this multiple of the best, ``> 1``.

    Returns:
        An :class:`LRFinderResult`.

    Raises:
        RuntimeError: if fewer than two finite losses were recorded (no slope to read).
    """
    if not (math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"start_lr must be a finite number > 0, got {start_lr}")
    if not (math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(f"end_lr must be finite and > start_lr={start_lr}, got {end_lr}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")
    if not (math.isfinite(smooth) and 0.0 <= smooth < 1.0):
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    if not (math.isfinite(diverge_factor) and diverge_factor > 1.0):
        raise ValueError(f"diverge_factor must be a finite number > 1, got {diverge_factor}")

    schedule = np.geomspace(start_lr, end_lr, num_steps)  # (num_steps,)
    original_lr = optimizer.lr
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg = 0.0
    best = math.inf
    try:
        for i, lr in enumerate(schedule):
            optimizer.lr = float(lr)
            loss = float(step_fn())
            if not math.isfinite(loss):
                break
            avg = smooth * avg + (1.0 - smooth) * loss
            smooth_loss = avg / (1.0 - smooth ** (i + 1))
            lrs.append(float(lr))
            losses.append(loss)
            smoothed.append(smooth_loss)
            if smooth_loss > diverge_factor * best:
                break
            best = min(best, smooth_loss)
            optimizer.step()
    finally:
        optimizer.lr = original_lr

    if len(lrs) < 2:
        raise RuntimeError(
            f"lr_range_test recorded {len(lrs)} finite loss(es); need at least 2. "
            f"Lower start_lr (got {start_lr}) or check step_fn"
        )
    lrs_arr = np.asarray(lrs)
    smoothed_arr = np.asarray(smoothed)
    suggested, rule = suggest_lr(lrs_arr, smoothed_arr)
    return LRFinderResult(
        lrs=lrs_arr,
        losses=np.asarray(losses),
        smoothed=smoothed_arr,
        suggested_lr=suggested,
        suggestion_rule=rule,
    )
