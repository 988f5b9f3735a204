"""Weight averaging during training: an exponential moving average (EMA) and Lookahead.

Both keep a second copy of a model's weights, one array per parameter (and, by default, per
floating-point buffer such as batch-norm running statistics), keyed by the model's dotted names
(``"0.weight"``, ``"1.running_mean"``):

* :class:`ExponentialMovingAverage` only *reads* the model: ``update()`` after each optimizer
  step moves the average towards the current weights, and ``averaged_weights()`` swaps the
  average in for evaluation and swaps the trained weights back afterwards.
* :class:`Lookahead` *writes* the model: every ``k`` steps the slow copy moves towards the fast
  (trained) weights and the fast weights are reset to it (Zhang et al., 2019; airbench's
  variant, whose ``alpha`` follows :func:`lookahead_alpha`).

Frozen parameters (``requires_grad = False``) are never written: their copy simply follows their
current value, so an average taken while a layer was frozen is that layer's value.

Both have ``state_dict()``/``load_state_dict()`` in the optimizers' format
(``{"hyperparameters": {...JSON...}, "buffers": {name: array}}``) for an exact resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from scratchcnn.layers.base import Layer

__all__ = ["ExponentialMovingAverage", "Lookahead", "lookahead_alpha"]


def _live_weights(model: Layer, include_buffers: bool) -> list[tuple[str, np.ndarray, bool]]:
    """``(name, array, frozen)`` for each parameter (and floating buffer) of ``model``, now.

    The arrays are the model's own, so writing into them changes the model. They are looked up
    on every call because ``load_state_dict`` may have replaced them since.
    """
    weights = [(name, p.data, not p.requires_grad) for name, p in model.named_parameters()]
    if include_buffers:
        weights += [
            (name, buf, False)
            for name, buf in model.named_buffers()
            if np.issubdtype(buf.dtype, np.floating)
        ]
    return weights


class _WeightCopy:
    """A copy of a model's weights by name, with the shared save/load and checks."""

    _kind = ""

    def __init__(self, model: Layer, include_buffers: bool) -> None:
        if not isinstance(include_buffers, bool):
            raise TypeError(f"include_buffers must be a bool, got {include_buffers!r}")
        self.model = model
        self.include_buffers = include_buffers
        self.copies: dict[str, np.ndarray] = {
            name: array.copy() for name, array, _ in _live_weights(model, include_buffers)
        }
        if not self.copies:
            raise ValueError(f"{self._kind} got a model without parameters")

    def _pairs(self) -> list[tuple[str, np.ndarray, np.ndarray, bool]]:
        """``(name, copy, live array, frozen)``, checking that the model still matches."""
        live = _live_weights(self.model, self.include_buffers)
        names = [name for name, _, _ in live]
        if names != list(self.copies):
            raise ValueError(
                f"{self._kind}: the model's weights are now {names}, but the copy was made for "
                f"{list(self.copies)}"
            )
        pairs = []
        for name, array, frozen in live:
            copy = self.copies[name]
            if copy.shape != array.shape:
                raise ValueError(
                    f"{self._kind}: {name} has shape {array.shape}, the copy {copy.shape}"
                )
            if copy.dtype != array.dtype:  # the model was cast (astype): follow it
                copy = self.copies[name] = copy.astype(array.dtype)
            pairs.append((name, copy, array, frozen))
        return pairs

    def _hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"hyperparameters": {...}, "buffers": {name: copy of the averaged array}}``."""
        return {
            "hyperparameters": {"kind": self._kind, **self._hyperparameters()},
            "buffers": {name: copy.copy() for name, copy in self.copies.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` saved; names and shapes must match the model's.

        Arrays are copied and cast to the model's dtypes. Everything is validated first.
        """
        if set(state) != {"hyperparameters", "buffers"}:
            raise ValueError(
                f"{self._kind} state dict must have keys {{'buffers', 'hyperparameters'}}, "
                f"got {sorted(state)}"
            )
        hyper = dict(state["hyperparameters"])
        kind = hyper.pop("kind", None)
        if kind != self._kind:
            raise ValueError(f"state dict is for {kind!r}, cannot load it into {self._kind}")
        expected = set(self._hyperparameters())
        if set(hyper) != expected:
            raise ValueError(
                f"{self._kind} state dict hyperparameters must be {sorted(expected)}, "
                f"got {sorted(hyper)}"
            )
        live = {name: array for name, array, _ in _live_weights(self.model, self.include_buffers)}
        saved = state["buffers"]
        if set(saved) != set(live):
            raise ValueError(
                f"{self._kind} state dict has weights {sorted(saved)}, the model has {sorted(live)}"
            )
        copies = {}
        for name, array in live.items():
            value = np.asarray(saved[name])
            if value.shape != array.shape:
                raise ValueError(
                    f"{self._kind} state dict: {name} has shape {value.shape}, expected "
                    f"{array.shape}"
                )
            copies[name] = np.array(value, dtype=array.dtype, copy=True)
        self._set_hyperparameters(hyper)  # validates before it assigns
        self.copies = copies


class ExponentialMovingAverage(_WeightCopy):
    """An exponential moving average of a model's weights, for evaluation (Polyak averaging).

    The average starts as a copy of the weights at construction, ``a_0 = w_0``; each
    ``update()``, called after an optimizer step, computes::

        a_t = decay * a_{t-1} + (1 - decay) * w_t

    so ``a_t`` weighs the weights of the last ``1 / (1 - decay)`` steps or so. This is
    ``torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
    use_buffers=include_buffers)`` after one first ``update_parameters`` at construction.
    Batch-norm running statistics are averaged too unless ``include_buffers=False`` (then
    ``averaged_weights`` uses the model's current statistics). A frozen parameter's average is
    its current value.

    Usage::

        ema = ExponentialMovingAverage(model, decay=0.999)
        for batch in ...:
            ...; optimizer.step(); ema.update()
        with ema.averaged_weights():
            result = evaluate(model, ...)   # with the averaged weights
        # the trained weights are back here

    Args:
        model: the model whose weights are averaged.
        decay: in ``[0, 1)``; 0 makes the average the current weights.
        include_buffers: also average floating-point buffers (batch-norm statistics).

    Shape: ``copies[name]`` has the shape and dtype of the model's parameter or buffer ``name``.
    """

    _kind = "ExponentialMovingAverage"

    def __init__(self, model: Layer, decay: float, include_buffers: bool = True) -> None:
        super().__init__(model, include_buffers)
        self.num_updates = 0
        self._set_hyperparameters({"decay": decay, "num_updates": 0})

    def update(self) -> None:
        """Move the average towards the model's current weights (after an optimizer step)."""
        decay = self.decay
        for _, average, current, frozen in self._pairs():
            if frozen:
                average[...] = current
            else:
                average *= decay
                average += (1.0 - decay) * current
        self.num_updates += 1

    @contextmanager
    def averaged_weights(self) -> Iterator[Layer]:
        """Put the averaged weights into the model for the block; restore the trained ones after.

        The trained weights come back even if the block raises. Yields the model.
        """
        pairs = self._pairs()
        trained = [current.copy() for _, _, current, _ in pairs]
        for _, average, current, _ in pairs:
            current[...] = average
        try:
            yield self.model
        finally:
            for (_, _, current, _), saved in zip(pairs, trained, strict=True):
                current[...] = saved

    def copy_to_model(self) -> None:
        """Overwrite the model's weights with the average for good (e.g. before saving it)."""
        for _, average, current, _ in self._pairs():
            current[...] = average

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "include_buffers": self.include_buffers,
            "num_updates": self.num_updates,
        }

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        decay = float(hyper["decay"])
        if not (math.isfinite(decay) and 0.0 <= decay < 1.0):
            raise ValueError(f"ExponentialMovingAverage: decay must be in [0, 1), got {decay}")
        num_updates = hyper["num_updates"]
        if isinstance(num_updates, bool) or not isinstance(num_updates, int) or num_updates < 0:
            raise ValueError(f"num_updates must be an int >= 0, got {num_updates!r}")
        if hyper.get("include_buffers", self.include_buffers) != self.include_buffers:
            raise ValueError(
                f"the state dict was saved with include_buffers={hyper['include_buffers']}, "
                f"this average has include_buffers={self.include_buffers}"
            )
        self.decay = decay
        self.num_updates = num_updates

    def __repr__(self) -> str:
        return (
            f"ExponentialMovingAverage(decay={self.decay}, include_buffers="
            f"{self.include_buffers}, weights={len(self.copies)}, updates={self.num_updates})"
        )


class Lookahead(_WeightCopy):
    """Lookahead (Zhang et al., 2019) over a model's weights, as airbench uses it.

    The model's weights are the *fast* weights ``w`` that the optimizer trains; this object
    keeps *slow* weights ``s``, a copy taken at construction. ``step(alpha)``, called after each
    optimizer step, counts steps, and on every ``k``-th it synchronises::

        s = s + alpha * (w - s)        (the slow weights move towards the fast ones)
        w = s                          (the fast weights restart from there)

    ``alpha = 1`` makes lookahead a no-op, ``alpha = 0`` throws the last ``k`` steps away.
    airbench lets ``alpha`` fall from 1 to about 0.23 over training (:func:`lookahead_alpha`)
    and ends with ``sync(0.0)``, so that the final weights are the slow ones. Batch-norm
    running statistics take part unless ``include_buffers=False``. A frozen parameter is not
    reset; its slow copy follows its value. The optimizer's momentum buffers are not touched.

    Args:
        model: the model whose weights are the fast weights.
        k: synchronise every ``k`` steps, ``>= 1``.
        include_buffers: also treat floating-point buffers (batch-norm statistics).

    Shape: ``copies[name]`` (the slow weights) matches the model's parameter or buffer ``name``.
    """

    _kind = "Lookahead"

    def __init__(self, model: Layer, k: int = 5, include_buffers: bool = True) -> None:
        super().__init__(model, include_buffers)
        self._set_hyperparameters({"k": k, "step": 0})

    def step(self, alpha: float) -> bool:
        """Count one optimizer step; on every ``k``-th, ``sync(alpha)``. Returns whether it did."""
        alpha = self._check_alpha(alpha)
        self.step_count += 1
        if self.step_count % self.k == 0:
            self.sync(alpha)
            return True
        return False

    def sync(self, alpha: float) -> None:
        """``s = s + alpha * (w - s); w = s`` now, for every weight but frozen ones."""
        alpha = self._check_alpha(alpha)
        for _, slow, fast, frozen in self._pairs():
            if frozen:
                slow[...] = fast
                continue
            slow += alpha * (fast - slow)
            fast[...] = slow

    @staticmethod
    def _check_alpha(alpha: float) -> float:
        alpha = float(alpha)
        if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
            raise ValueError(f"Lookahead: alpha must be in [0, 1], got {alpha}")
        return alpha

    def _hyperparameters(self) -> dict[str, Any]:
        return {"k": self.k, "include_buffers": self.include_buffers, "step": self.step_count}

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        k, step = hyper["k"], hyper["step"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"Lookahead: k must be an int >= 1, got {k!r}")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"Lookahead: step must be an int >= 0, got {step!r}")
        if hyper.get("include_buffers", self.include_buffers) != self.include_buffers:
            raise ValueError(
                f"the state dict was saved with include_buffers={hyper['include_buffers']}, "
                f"this Lookahead has include_buffers={self.include_buffers}"
            )
        self.k = k
        self.step_count = step

    def __repr__(self) -> str:
        return (
            f"Lookahead(k={self.k}, include_buffers={self.include_buffers}, "
            f"weights={len(self.copies)}, step={self.step_count})"
        )


def lookahead_alpha(
    step: int, total_steps: int, final_decay: float = 0.95**5, power: float = 3.0
) -> float:
    """airbench's Lookahead schedule: ``alpha = 1 - final_decay * (step / total_steps) ** power``.

    Early in training ``alpha`` is about 1 (the slow weights simply follow the fast ones); it
    falls to ``1 - final_decay`` at the end, where the slow weights average the fast ones most.
    airbench's ``final_decay = 0.95 ** 5`` is a per-step decay of 0.95 over ``k = 5`` steps.
    ``step`` is the number of optimizer steps taken; past ``total_steps`` it stays at the end
    value.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not (math.isfinite(final_decay) and 0.0 <= final_decay <= 1.0):
        raise ValueError(f"final_decay must be in [0, 1], got {final_decay}")
    if not (math.isfinite(power) and power > 0.0):
        raise ValueError(f"power must be a finite number > 0, got {power}")
    progress = min(step / total_steps, 1.0)
    return 1.0 - final_decay * progress**power
