"""Dynamic loss scaling for mixed-precision training (what ``torch.amp.GradScaler`` does).

Gradients kept in a narrow floating-point format underflow to zero when they are small. Loss
scaling multiplies the loss (equivalently, the gradient of the loss with respect to the logits)
by a large factor ``S`` before the backward pass, so every gradient is ``S`` times larger while it
flows back, and divides the parameter gradients by ``S`` before the optimizer step. If ``S`` was
too large, some gradient overflows to ``inf`` or ``NaN``: that step is skipped and ``S`` halved.
After ``growth_interval`` steps in a row without overflow, ``S`` doubles again, so it stays near
the largest safe value.

In scratchcnn's mixed precision only the activations kept for backward are stored in float16
(``scratchcnn.fast.settings(storage="float16")``); the gradients themselves flow in float32, whose
range makes overflow and underflow rare. The scaler is there as the standard safety net, and the
trainer reports every step it skips.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from scratchcnn.parameter import Parameter


class DynamicLossScaler:
    """Scale the loss gradient up, check and unscale the parameter gradients, adapt the scale.

    Args:
        init_scale: the first scale ``S`` (PyTorch's default, 2**16).
        growth_factor: ``S`` is multiplied by this after ``growth_interval`` good steps.
        backoff_factor: ``S`` is multiplied by this after a step with non-finite gradients.
        growth_interval: good steps in a row before the scale grows.

    A step::

        grad = scaler.scale(loss_fn.backward())   # S * dL/dlogits
        model.backward(grad)
        if scaler.unscale(model.parameters()):    # grads / S; False if any is inf or NaN
            optimizer.step()
        scaler.update()                           # backs off after a skipped step, else may grow
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale}")
        if not growth_factor > 1:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor}")
        if not (isinstance(growth_interval, int) and growth_interval >= 1):
            raise ValueError(f"growth_interval must be an int >= 1, got {growth_interval!r}")
        self.scale_value = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.good_steps = 0  # finite steps in a row since the last change of scale
        self.skipped_steps = 0  # steps skipped in total
        self._found_inf: bool | None = None  # set by unscale, consumed by update

    def scale(self, grad: np.ndarray) -> np.ndarray:
        """The loss gradient times the current scale.

        Shape: any -> same.
        """
        return grad * grad.dtype.type(self.scale_value)

    def unscale(self, params: Iterable[Parameter]) -> bool:
        """Divide every trained parameter's gradient by the scale, in place; ``True`` when all of
        them are finite (the step may be taken), ``False`` otherwise (skip it)."""
        inverse = 1.0 / self.scale_value
        finite = True
        for param in params:
            if not param.requires_grad:
                continue
            param.grad *= param.grad.dtype.type(inverse)
            finite = finite and bool(np.isfinite(param.grad).all())
        self._found_inf = not finite
        return finite

    def update(self) -> None:
        """Adapt the scale after a step: back off if the last :meth:`unscale` found a non-finite
        gradient, grow after ``growth_interval`` finite steps in a row."""
        if self._found_inf is None:
            raise RuntimeError("DynamicLossScaler.update called before unscale")
        if self._found_inf:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
            self.skipped_steps += 1
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.good_steps = 0
        self._found_inf = None

    def state_dict(self) -> dict[str, float | int]:
        """Everything needed to resume exactly (JSON-able)."""
        return {
            "scale": self.scale_value,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "good_steps": self.good_steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        """Restore :meth:`state_dict`'s output (checked before anything changes)."""
        restored = DynamicLossScaler(
            float(state["scale"]),
            float(state["growth_factor"]),
            float(state["backoff_factor"]),
            int(state["growth_interval"]),
        )
        restored.good_steps = int(state["good_steps"])
        restored.skipped_steps = int(state["skipped_steps"])
        vars(self).update(vars(restored))
