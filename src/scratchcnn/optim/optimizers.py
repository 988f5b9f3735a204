"""First-order optimizers with PyTorch's exact update rules: SGD, Adam, AdamW, RMSprop.

Every optimizer holds a list of :class:`~scratchcnn.parameter.Parameter` objects, reads each
``p.grad`` and updates ``p.data`` in place, in the parameter's own dtype. Per-parameter state
(momentum and moment estimates) lives in named buffer lists indexed by the parameter's position,
so ``state_dict()`` can flatten it to ``{"exp_avg.0": array, ...}`` for safetensors + JSON.

Parameters can be split into :class:`ParamGroup` s, each with its own learning-rate multiplier
and weight decay (PyTorch's parameter groups). A parameter with ``requires_grad = False`` is
frozen: no optimizer ever updates it, decays it, or creates state for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scratchcnn.parameter import Parameter

__all__ = [
    "Optimizer",
    "ParamGroup",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "build_optimizer",
    "OPTIMIZER_NAMES",
]


def _check_finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def _check_at_least(name: str, value: float, low: float) -> float:
    value = _check_finite(name, value)
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_unit_interval(name: str, value: float) -> float:
    """Accept ``0 <= value < 1`` (decay rates: 1 would freeze the average forever)."""
    value = _check_finite(name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


@dataclass(frozen=True)
class ParamGroup:
    """Parameters that share a learning-rate multiplier and a weight decay.

    With ``lr`` the optimizer's learning rate (which a schedule may change every step), the
    parameters of this group are updated with::

        group lr           = lr * lr_scale
        group weight decay = optimizer.weight_decay if weight_decay is None else weight_decay

    exactly as a PyTorch parameter group ``{"params": ..., "lr": lr * lr_scale,
    "weight_decay": ...}`` under a ``LambdaLR`` that scales every group's lr together. For
    example airbench trains batch-norm biases 64 times faster than the other weights, with a
    weight decay that keeps ``lr * weight_decay`` the same for both::

        SGD([ParamGroup(bn_biases, lr_scale=64, weight_decay=wd / 64), ParamGroup(rest)],
            lr=lr, momentum=0.85, nesterov=True, weight_decay=wd)

    Args:
        params: the group's parameters; any iterable, stored as a tuple.
        lr_scale: multiplier of the optimizer's learning rate, ``>= 0``.
        weight_decay: this group's decay coefficient (``>= 0``), or ``None`` for the
            optimizer's own ``weight_decay``.
    """

    params: tuple[Parameter, ...]
    lr_scale: float = 1.0
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "lr_scale", _check_at_least("lr_scale", self.lr_scale, 0.0))
        if self.weight_decay is not None:
            decay = _check_at_least("group weight_decay", self.weight_decay, 0.0)
            object.__setattr__(self, "weight_decay", decay)


def _as_groups(params: Iterable[Parameter] | Iterable[ParamGroup], owner: str) -> list[ParamGroup]:
    """A plain parameter list becomes one default group; groups are kept as given."""
    items = list(params)
    for index, item in enumerate(items):
        if isinstance(item, dict):
            raise TypeError(
                f"{owner} takes parameter groups as ParamGroup objects, got a dict at position "
                f"{index}; write ParamGroup(params, lr_scale=..., weight_decay=...)"
            )
    is_group = [isinstance(item, ParamGroup) for item in items]
    if all(is_group) and items:
        return items  # type: ignore[return-value]
    if any(is_group):
        raise TypeError(
            f"{owner} expected either Parameter objects or ParamGroup objects, got a mix of both"
        )
    return [ParamGroup(items)]  # type: ignore[arg-type]


class Optimizer:
    """Base class: holds the parameter groups, the learning rate, the step count and the buffers.

    Subclasses list their per-parameter buffer names in ``_buffer_names`` and implement
    ``_update(index, param, lr, weight_decay)`` with the group's learning rate and weight decay.
    A buffer slot is ``None`` until the first step that updates its parameter.

    Args:
        params: the parameters to optimize, e.g. ``model.parameters()``, or a list of
            :class:`ParamGroup`; consumed once.
        lr: learning rate, ``>= 0``. A trainer may reassign ``optimizer.lr`` every step; each
            group uses ``lr * group.lr_scale``.

    ``step_count`` counts ``step()`` calls; ``param_steps[i]`` counts the steps that updated
    parameter ``i`` (fewer while it was frozen), which Adam's bias correction uses, as PyTorch's
    per-parameter ``state["step"]``.

    Shape: each buffer has the shape and dtype of its parameter.
    """

    _buffer_names: tuple[str, ...] = ()
    weight_decay: float = 0.0  # the default of groups without their own; subclasses set it

    def __init__(self, params: Iterable[Parameter] | Iterable[ParamGroup], lr: float) -> None:
        owner = type(self).__name__
        groups = _as_groups(params, owner)
        self.params: list[Parameter] = [param for group in groups for param in group.params]
        if not self.params:
            raise ValueError(f"{owner} got an empty parameter list")
        seen: set[int] = set()
        for index, param in enumerate(self.params):
            if not isinstance(param, Parameter):
                raise TypeError(
                    f"{owner} expected Parameter objects, got "
                    f"{type(param).__name__} at position {index}"
                )
            if id(param) in seen:
                raise ValueError(
                    f"{owner} got parameter {param.name!r} (position {index}) "
                    "twice; it would be updated twice per step"
                )
            seen.add(id(param))
        self.param_groups: list[ParamGroup] = groups
        self.lr = lr
        self.step_count = 0
        self.param_steps: list[int] = [0] * len(self.params)
        self._buffers: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self._buffer_names
        }

    # --- learning rate ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate used by the next ``step()`` (times each group's ``lr_scale``)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        # Zero is allowed: a cosine schedule may end there.
        self._lr = _check_at_least("lr", value, 0.0)

    def group_ranges(self) -> list[tuple[ParamGroup, range]]:
        """Each group with the positions of its parameters in ``self.params``."""
        ranges, start = [], 0
        for group in self.param_groups:
            ranges.append((group, range(start, start + len(group.params))))
            start += len(group.params)
        return ranges

    # --- the step -----------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (layers overwrite grads, so rarely needed)."""
        for param in self.params:
            param.zero_grad()

    def step(self) -> None:
        """Apply one update to every trainable parameter from its current ``grad``.

        Frozen parameters (``requires_grad = False``) are skipped entirely: no update, no
        weight decay, no new or changed buffer, and their ``param_steps`` does not advance.
        """
        for index, param in enumerate(self.params):  # check everything before changing anything
            if param.requires_grad and param.grad.shape != param.data.shape:
                raise ValueError(
                    f"{type(self).__name__}: parameter {param.name!r} (position {index}) has "
                    f"data shape {param.data.shape} but grad shape {param.grad.shape}"
                )
        self.step_count += 1
        for group, indices in self.group_ranges():
            lr = self._lr * group.lr_scale
            weight_decay = self.weight_decay if group.weight_decay is None else group.weight_decay
            for index in indices:
                param = self.params[index]
                if not param.requires_grad:
                    continue
                self.param_steps[index] += 1
                self._update(index, param, lr, weight_decay)

    def _update(self, index: int, param: Parameter, lr: float, weight_decay: float) -> None:
        raise NotImplementedError

    @staticmethod
    def _l2_grad(param: Parameter, weight_decay: float) -> np.ndarray:
        """``p.grad + weight_decay * w`` (L2 decay folded into the gradient, as torch does), a
        new array: ``p.grad`` itself is never touched."""
        if weight_decay != 0.0:
            return param.grad + weight_decay * param.data
        return param.grad

    def _buffer(self, name: str, index: int, init: np.ndarray | None = None) -> np.ndarray:
        """The buffer ``name`` of parameter ``index``, created from ``init`` (or zeros)."""
        buf = self._buffers[name][index]
        if buf is None:
            param = self.params[index]
            if init is None:
                buf = np.zeros_like(param.data)
            else:
                buf = np.array(init, dtype=param.data.dtype, copy=True)
            self._buffers[name][index] = buf
        return buf

    # --- saving and resuming ------------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's hyperparameters besides ``lr``, as JSON-able scalars."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-for-bit.

        Returns ``{"hyperparameters": {...}, "buffers": {...}}``. Hyperparameters are JSON-able:
        ``"optimizer"`` (the class name), the constructor's values, ``"lr"``, ``"step"``,
        ``"param_steps"`` (one count per parameter) and ``"param_groups"`` (one
        ``{"num_params", "lr_scale", "weight_decay"}`` per group, ``weight_decay`` ``None``
        for the optimizer's default). Buffers map ``"<buffer>.<param index>"`` (e.g.
        ``"exp_avg.0"``) to copies of the state arrays; buffers not yet created are absent.
        """
        hyper: dict[str, Any] = {"optimizer": type(self).__name__}
        hyper.update(self.hyperparameters())
        hyper["lr"] = self._lr
        hyper["step"] = self.step_count
        hyper["param_steps"] = list(self.param_steps)
        hyper["param_groups"] = [
            {
                "num_params": len(group.params),
                "lr_scale": group.lr_scale,
                "weight_decay": group.weight_decay,
            }
            for group in self.param_groups
        ]
        buffers: dict[str, np.ndarray] = {}
        for name, slots in self._buffers.items():
            for index, buf in enumerate(slots):
                if buf is not None:
                    buffers[f"{name}.{index}"] = buf.copy()
        return {"hyperparameters": hyper, "buffers": buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore hyperparameters, step counts, group settings and buffers from ``state_dict()``.

        The optimizer must have been built over the same parameters, in the same order and the
        same group sizes; each group's ``lr_scale`` and ``weight_decay`` come from the state, as
        PyTorch's do. Arrays are copied and cast to each parameter's dtype. A state saved before
        parameter groups existed (no ``"param_groups"`` or ``"param_steps"``) loads as one
        default group whose parameters were all updated at every step. Everything is validated
        before anything changes.
        """
        owner = type(self).__name__
        if set(state) != {"hyperparameters", "buffers"}:
            raise ValueError(
                f"state dict must have keys {{'buffers', 'hyperparameters'}}, got {sorted(state)}"
            )
        hyper = dict(state["hyperparameters"])
        kind = hyper.pop("optimizer", None)
        if kind != owner:
            raise ValueError(f"state dict is for optimizer {kind!r}, cannot load it into {owner}")
        required = set(self.hyperparameters()) | {"lr", "step"}
        optional = {"param_steps", "param_groups"}
        if not required <= set(hyper) <= required | optional:
            raise ValueError(
                f"{owner} state dict hyperparameters must be {sorted(required)} (plus optional "
                f"{sorted(optional)}), got {sorted(hyper)}"
            )
        step = hyper.pop("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state dict step must be an int >= 0, got {step!r}")
        param_steps = self._parse_param_steps(hyper.pop("param_steps", None), step)
        groups = self._parse_groups(hyper.pop("param_groups", None))
        new_buffers = self._parse_buffers(state["buffers"])

        self._set_hyperparameters(hyper)  # validates everything before it assigns
        self.step_count = step
        self.param_steps = param_steps
        self.param_groups = groups
        self._buffers = new_buffers

    def _parse_param_steps(self, saved: Any, step: int) -> list[int]:
        if saved is None:
            return [step] * len(self.params)
        if (
            not isinstance(saved, list)
            or len(saved) != len(self.params)
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= step for v in saved
            )
        ):
            raise ValueError(
                f"state dict param_steps must be {len(self.params)} ints in [0, step={step}], "
                f"got {saved!r}"
            )
        return list(saved)

    def _parse_groups(self, saved: Any) -> list[ParamGroup]:
        sizes = [len(group.params) for group in self.param_groups]
        if saved is None:
            saved = [{"num_params": len(self.params), "lr_scale": 1.0, "weight_decay": None}]
        keys = {"num_params", "lr_scale", "weight_decay"}
        if not isinstance(saved, list) or not all(
            isinstance(g, dict) and set(g) == keys for g in saved
        ):
            raise ValueError(
                f"state dict param_groups must be a list of {{{', '.join(sorted(keys))}}}, "
                f"got {saved!r}"
            )
        saved_sizes = [g["num_params"] for g in saved]
        if saved_sizes != sizes:
            raise ValueError(
                f"state dict has parameter groups of sizes {saved_sizes}, but "
                f"{type(self).__name__} was built with groups of sizes {sizes}"
            )
        return [
            ParamGroup(group.params, lr_scale=g["lr_scale"], weight_decay=g["weight_decay"])
            for group, g in zip(self.param_groups, saved, strict=True)
        ]

    def _parse_buffers(self, saved: dict[str, Any]) -> dict[str, list[np.ndarray | None]]:
        new_buffers: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self._buffer_names
        }
        for key, array in saved.items():
            name, _, index_text = key.rpartition(".")
            if name not in new_buffers or not index_text.isdigit():
                raise ValueError(
                    f"{type(self).__name__} buffer keys look like "
                    f"'<{'|'.join(self._buffer_names) or 'none'}>.<index>', got {key!r}"
                )
            index = int(index_text)
            if index >= len(self.params):
                raise ValueError(
                    f"buffer {key!r} refers to parameter {index}, but the optimizer has "
                    f"{len(self.params)} parameters"
                )
            param = self.params[index]
            array = np.asarray(array)
            if array.shape != param.data.shape:
                raise ValueError(
                    f"buffer {key!r} has shape {array.shape}, expected {param.data.shape} "
                    f"(parameter {param.name!r})"
                )
            new_buffers[name][index] = np.array(array, dtype=param.data.dtype, copy=True)
        return new_buffers

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        """Re-run the constructor's validation on saved hyperparameters and adopt them."""
        self.lr = hyper["lr"]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        sep = ", " if args else ""
        groups = ""
        first = self.param_groups[0]
        if len(self.param_groups) > 1 or first.lr_scale != 1.0 or first.weight_decay is not None:
            described = (
                f"(params={len(g.params)}, lr_scale={g.lr_scale}, weight_decay={g.weight_decay})"
                for g in self.param_groups
            )
            groups = f", groups=[{', '.join(described)}]"
        return (
            f"{type(self).__name__}(lr={self._lr!r}{sep}{args}, params={len(self.params)}{groups})"
        )


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    PyTorch's rule, with ``g = grad + weight_decay * w``::

        b = g                                            (first step)
        b = momentum * b + (1 - dampening) * g           (later steps)
        d = g + momentum * b if nesterov else b          (d = g when momentum == 0)
        w = w - lr * d

    Args:
        params: parameters to optimize, or a list of :class:`ParamGroup`.
        lr: learning rate, ``>= 0``.
        momentum: in ``[0, 1)``; 0 disables the buffer.
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        weight_decay: L2 coefficient added to the gradient, ``>= 0``.
        dampening: in ``[0, 1]``, scales the gradient's contribution to the buffer.

    Shape: buffer ``momentum.<i>`` matches parameter ``i``.
    """

    _buffer_names = ("momentum",)

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        dampening: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self._set_hyperparameters(
            {
                "lr": lr,
                "momentum": momentum,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
                "dampening": dampening,
            }
        )

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        lr = _check_at_least("lr", hyper["lr"], 0.0)
        momentum = _check_unit_interval("momentum", hyper["momentum"])
        weight_decay = _check_at_least("weight_decay", hyper["weight_decay"], 0.0)
        dampening = _check_finite("dampening", hyper["dampening"])
        if not 0.0 <= dampening <= 1.0:
            raise ValueError(f"dampening must be in [0, 1], got {dampening}")
        nesterov = hyper["nesterov"]
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError(
                "nesterov requires momentum > 0 and dampening == 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.dampening = dampening

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "dampening": self.dampening,
        }

    def _update(self, index: int, param: Parameter, lr: float, weight_decay: float) -> None:
        grad = self._l2_grad(param, weight_decay)
        if self.momentum != 0.0:
            first = self._buffers["momentum"][index] is None
            buf = self._buffer("momentum", index, init=grad)
            if not first:
                buf *= self.momentum
                buf += (1.0 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        param.data -= lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction and optional L2 weight decay, as in PyTorch.

    With ``g = grad + weight_decay * w`` and ``t`` the 1-based step::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        w = w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: parameters to optimize, or a list of :class:`ParamGroup`.
        lr: learning rate, ``>= 0``.
        betas: decay rates ``(beta1, beta2)``, each in ``[0, 1)``.
        eps: added to the denominator for stability, ``>= 0``.
        weight_decay: L2 coefficient added to the gradient, ``>= 0``. (For decoupled decay,
            use :class:`AdamW`.)

    Shape: buffers ``exp_avg.<i>`` and ``exp_avg_sq.<i>`` match parameter ``i``.
    """

    _buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self._set_hyperparameters(
            {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        lr = _check_at_least("lr", hyper["lr"], 0.0)
        betas = tuple(hyper["betas"])  # JSON turns the tuple into a list
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {hyper['betas']!r}")
        beta1 = _check_unit_interval("betas[0]", betas[0])
        beta2 = _check_unit_interval("betas[1]", betas[1])
        eps = _check_at_least("eps", hyper["eps"], 0.0)
        weight_decay = _check_at_least("weight_decay", hyper["weight_decay"], 0.0)
        self.lr = lr
        self.betas = (beta1, beta2)
        self.eps = eps
        self.weight_decay = weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _decay(self, param: Parameter, lr: float, weight_decay: float) -> np.ndarray:
        """Adam's L2 decay: fold ``weight_decay * w`` into the gradient."""
        return self._l2_grad(param, weight_decay)

    def _update(self, index: int, param: Parameter, lr: float, weight_decay: float) -> None:
        grad = self._decay(param, lr, weight_decay)
        beta1, beta2 = self.betas
        exp_avg = self._buffer("exp_avg", index)
        exp_avg_sq = self._buffer("exp_avg_sq", index)
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * (grad * grad)

        t = self.param_steps[index]  # this parameter's own count: it may have been frozen
        bias_correction1 = 1.0 - beta1**t
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**t)
        denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt
        denom += self.eps
        param.data -= (lr / bias_correction1) * (exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as in PyTorch.

    The weights shrink before the Adam step instead of the decay entering the moments::

        w = w * (1 - lr * weight_decay)
        (then the Adam update with the raw gradient)

    Args:
        params: parameters to optimize, or a list of :class:`ParamGroup`.
        lr: learning rate, ``>= 0``.
        betas: decay rates ``(beta1, beta2)``, each in ``[0, 1)``.
        eps: added to the denominator for stability, ``>= 0``.
        weight_decay: the decoupled decay rate, ``>= 0`` (``1e-2`` by default, as in PyTorch).

    Shape: buffers ``exp_avg.<i>`` and ``exp_avg_sq.<i>`` match parameter ``i``.
    """

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _decay(self, param: Parameter, lr: float, weight_decay: float) -> np.ndarray:
        if weight_decay != 0.0:
            param.data *= 1.0 - lr * weight_decay
        return param.grad


class RMSprop(Optimizer):
    """RMSprop (Hinton) with optional momentum, centering and L2 weight decay, as in PyTorch.

    With ``g = grad + weight_decay * w``::

        s = alpha * s + (1 - alpha) * g**2
        a = alpha * a + (1 - alpha) * g                  (centered only)
        d = sqrt(s - a**2) + eps if centered else sqrt(s) + eps
        b = momentum * b + g / d;  w = w - lr * b        (momentum > 0)
        w = w - lr * g / d                               (momentum == 0)

    Args:
        params: parameters to optimize, or a list of :class:`ParamGroup`.
        lr: learning rate, ``>= 0``.
        alpha: smoothing constant of the squared-gradient average, in ``[0, 1)``.
        eps: added to the denominator for stability, ``>= 0``.
        momentum: in ``[0, 1)``; 0 disables the momentum buffer.
        weight_decay: L2 coefficient added to the gradient, ``>= 0``.
        centered: normalise by the estimated variance instead of the raw second moment.

    Shape: buffers ``square_avg.<i>``, ``grad_avg.<i>``, ``momentum.<i>`` match parameter ``i``.
    """

    _buffer_names = ("square_avg", "grad_avg", "momentum")

    def __init__(
        self,
        params: Iterable[Parameter] | Iterable[ParamGroup],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self._set_hyperparameters(
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "momentum": momentum,
                "weight_decay": weight_decay,
                "centered": centered,
            }
        )

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        lr = _check_at_least("lr", hyper["lr"], 0.0)
        alpha = _check_unit_interval("alpha", hyper["alpha"])
        eps = _check_at_least("eps", hyper["eps"], 0.0)
        momentum = _check_unit_interval("momentum", hyper["momentum"])
        weight_decay = _check_at_least("weight_decay", hyper["weight_decay"], 0.0)
        centered = hyper["centered"]
        if not isinstance(centered, bool):
            raise TypeError(f"centered must be a bool, got {centered!r}")
        self.lr = lr
        self.alpha = alpha
        self.eps = eps
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.centered = centered

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "centered": self.centered,
        }

    def _update(self, index: int, param: Parameter, lr: float, weight_decay: float) -> None:
        grad = self._l2_grad(param, weight_decay)
        alpha = self.alpha
        square_avg = self._buffer("square_avg", index)
        square_avg *= alpha
        square_avg += (1.0 - alpha) * (grad * grad)
        if self.centered:
            grad_avg = self._buffer("grad_avg", index)
            grad_avg *= alpha
            grad_avg += (1.0 - alpha) * grad
            denom = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            denom = np.sqrt(square_avg)
        denom += self.eps
        if self.momentum > 0.0:
            buf = self._buffer("momentum", index)
            buf *= self.momentum
            buf += grad / denom
            param.data -= lr * buf
        else:
            param.data -= lr * (grad / denom)


OPTIMIZER_NAMES: tuple[str, ...] = ("sgd", "adam", "adamw", "rmsprop")


def build_optimizer(
    name: str,
    params: Iterable[Parameter] | Iterable[ParamGroup],
    lr: float,
    momentum: float = 0.0,
    weight_decay: float | None = None,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    alpha: float = 0.99,
) -> Optimizer:
    """Build an optimizer by name (for the CLI): ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``.

    ``momentum`` is used by sgd and rmsprop; adam and adamw take ``betas`` instead and reject a
    non-zero ``momentum`` rather than silently ignoring it. ``nesterov`` is sgd-only.
    ``weight_decay=None`` means each optimizer's default (``1e-2`` for adamw, else 0).
    ``alpha`` is rmsprop-only. ``params`` may be a list of :class:`ParamGroup`; groups without
    their own ``weight_decay`` use the one given here.

    Args:
        name: the optimizer, one of :data:`OPTIMIZER_NAMES`.
        params: the parameters, or a list of :class:`ParamGroup`.
        lr: the learning rate.
        momentum: sgd and rmsprop only.
        weight_decay: L2 (or, for adamw, decoupled) decay; ``None`` for the optimizer's default.
        nesterov: Nesterov momentum (sgd only).
        betas: adam and adamw's moment decays.
        eps: added to the denominator (adam, adamw, rmsprop).
        alpha: rmsprop's smoothing constant.
    """
    key = name.lower()
    if key not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {list(OPTIMIZER_NAMES)}")
    if nesterov and key != "sgd":
        raise ValueError(f"nesterov applies only to 'sgd', got optimizer {name!r}")
    if momentum != 0.0 and key in ("adam", "adamw"):
        raise ValueError(
            f"{key} uses betas, not momentum; got momentum={momentum} (set betas instead)"
        )
    if key == "sgd":
        return SGD(
            params,
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=0.0 if weight_decay is None else weight_decay,
        )
    if key == "adam":
        return Adam(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=0.0 if weight_decay is None else weight_decay,
        )
    if key == "adamw":
        return AdamW(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=1e-2 if weight_decay is None else weight_decay,
        )
    return RMSprop(
        params,
        lr=lr,
        alpha=alpha,
        eps=eps,
        momentum=momentum,
        weight_decay=0.0 if weight_decay is None else weight_decay,
    )
