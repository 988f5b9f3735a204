"""First-order optimizers with PyTorch's exact update rules: SGD, Adam, AdamW, RMSprop.

Every optimizer holds a list of :class:`~scratchcnn.parameter.Parameter` objects, reads each
``p.grad`` and updates ``p.data`` in place, in the parameter's own dtype. Per-parameter state
(momentum and moment estimates) lives in named buffer lists indexed by the parameter's position,
so ``state_dict()`` can flatten it to ``{"exp_avg.0": array, ...}`` for safetensors + JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from scratchcnn.parameter import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "build_optimizer", "OPTIMIZER_NAMES"]


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


class Optimizer:
    """Base class: holds the parameters, the learning rate, the step count and the buffers.

    Subclasses list their per-parameter buffer names in ``_buffer_names`` and implement
    ``_update(index, param, lr)``. A buffer slot is ``None`` until the first step that needs it.

    Args:
        params: the parameters to optimize, e.g. ``model.parameters()``; consumed once.
        lr: learning rate, ``>= 0``. A trainer may reassign ``optimizer.lr`` every step.

    Shape: each buffer has the shape and dtype of its parameter.
    """

    _buffer_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        seen: set[int] = set()
        for index, param in enumerate(self.params):
            if not isinstance(param, Parameter):
                raise TypeError(
                    f"{type(self).__name__} expected Parameter objects, got "
                    f"{type(param).__name__} at position {index}"
                )
            if id(param) in seen:
                raise ValueError(
                    f"{type(self).__name__} got parameter {param.name!r} (position {index}) "
                    "twice; it would be updated twice per step"
                )
            seen.add(id(param))
        self.lr = lr
        self.step_count = 0
        self._buffers: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self._buffer_names
        }

    # --- learning rate ------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate used by the next ``step()``."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        # Zero is allowed: a cosine schedule may end there.
        self._lr = _check_at_least("lr", value, 0.0)

    # --- the step -----------------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (layers overwrite grads, so rarely needed)."""
        for param in self.params:
            param.zero_grad()

    def step(self) -> None:
        """Apply one update to every parameter from its current ``grad``."""
        self.step_count += 1
        lr = self._lr
        for index, param in enumerate(self.params):
            if param.grad.shape != param.data.shape:
                raise ValueError(
                    f"{type(self).__name__}: parameter {param.name!r} (position {index}) has "
                    f"data shape {param.data.shape} but grad shape {param.grad.shape}"
                )
            self._update(index, param, lr)

    def _update(self, index: int, param: Parameter, lr: float) -> None:
        raise NotImplementedError

    def _l2_grad(self, param: Parameter) -> np.ndarray:
        """``p.grad + weight_decay * w`` (L2 decay folded into the gradient, as torch does), a
        new array: ``p.grad`` itself is never touched. For optimizers with ``weight_decay``."""
        if self.weight_decay != 0.0:
            return param.grad + self.weight_decay * param.data
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

        Returns ``{"hyperparameters": {...}, "buffers": {...}}``: hyperparameters are JSON-able
        scalars including ``"optimizer"`` (the class name), ``"lr"`` and ``"step"``; buffers map
        ``"<buffer>.<param index>"`` (e.g. ``"exp_avg.0"``) to copies of the state arrays.
        Buffers not yet created (before the first step) are absent.
        """
        hyper: dict[str, Any] = {"optimizer": type(self).__name__}
        hyper.update(self.hyperparameters())
        hyper["lr"] = self._lr
        hyper["step"] = self.step_count
        buffers: dict[str, np.ndarray] = {}
        for name, slots in self._buffers.items():
            for index, buf in enumerate(slots):
                if buf is not None:
                    buffers[f"{name}.{index}"] = buf.copy()
        return {"hyperparameters": hyper, "buffers": buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore hyperparameters, step count and buffers saved by ``state_dict()``.

        The optimizer must have been built over the same parameters, in the same order. Arrays
        are copied and cast to each parameter's dtype.
        """
        if set(state) != {"hyperparameters", "buffers"}:
            raise ValueError(
                f"state dict must have keys {{'buffers', 'hyperparameters'}}, got {sorted(state)}"
            )
        hyper = dict(state["hyperparameters"])
        kind = hyper.pop("optimizer", None)
        if kind != type(self).__name__:
            raise ValueError(
                f"state dict is for optimizer {kind!r}, cannot load it into {type(self).__name__}"
            )
        expected = set(self.hyperparameters()) | {"lr", "step"}
        if set(hyper) != expected:
            raise ValueError(
                f"{type(self).__name__} state dict hyperparameters must be {sorted(expected)}, "
                f"got {sorted(hyper)}"
            )
        step = hyper.pop("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"state dict step must be an int >= 0, got {step!r}")

        new_buffers: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self._buffer_names
        }
        for key, array in state["buffers"].items():
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

        self._set_hyperparameters(hyper)  # validates like the constructor does
        self.step_count = step
        self._buffers = new_buffers

    def _set_hyperparameters(self, hyper: dict[str, Any]) -> None:
        """Re-run the constructor's validation on saved hyperparameters and adopt them."""
        self.lr = hyper["lr"]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        sep = ", " if args else ""
        return f"{type(self).__name__}(lr={self._lr!r}{sep}{args}, params={len(self.params)})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    PyTorch's rule, with ``g = grad + weight_decay * w``::

        b = g                                            (first step)
        b = momentum * b + (1 - dampening) * g           (later steps)
        d = g + momentum * b if nesterov else b          (d = g when momentum == 0)
        w = w - lr * d

    Args:
        params: parameters to optimize.
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
        params: Iterable[Parameter],
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
        self.lr = hyper["lr"]
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

    def _update(self, index: int, param: Parameter, lr: float) -> None:
        grad = self._l2_grad(param)
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
        params: parameters to optimize.
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
        params: Iterable[Parameter],
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
        self.lr = hyper["lr"]
        betas = tuple(hyper["betas"])  # JSON turns the tuple into a list
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {hyper['betas']!r}")
        self.betas = (
            _check_unit_interval("betas[0]", betas[0]),
            _check_unit_interval("betas[1]", betas[1]),
        )
        self.eps = _check_at_least("eps", hyper["eps"], 0.0)
        self.weight_decay = _check_at_least("weight_decay", hyper["weight_decay"], 0.0)

    def hyperparameters(self) -> dict[str, Any]:
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _decay(self, param: Parameter, lr: float) -> np.ndarray:
        """Adam's L2 decay: fold ``weight_decay * w`` into the gradient."""
        return self._l2_grad(param)

    def _update(self, index: int, param: Parameter, lr: float) -> None:
        grad = self._decay(param, lr)
        beta1, beta2 = self.betas
        exp_avg = self._buffer("exp_avg", index)
        exp_avg_sq = self._buffer("exp_avg_sq", index)
        exp_avg *= beta1
        exp_avg += (1.0 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * (grad * grad)

        t = self.step_count
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

    Args: as :class:`Adam`, but ``weight_decay`` defaults to ``1e-2`` and is decoupled.

    Shape: buffers ``exp_avg.<i>`` and ``exp_avg_sq.<i>`` match parameter ``i``.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _decay(self, param: Parameter, lr: float) -> np.ndarray:
        if self.weight_decay != 0.0:
            param.data *= 1.0 - lr * self.weight_decay
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
        params: parameters to optimize.
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
        params: Iterable[Parameter],
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
        self.lr = hyper["lr"]
        self.alpha = _check_unit_interval("alpha", hyper["alpha"])
        self.eps = _check_at_least("eps", hyper["eps"], 0.0)
        self.momentum = _check_unit_interval("momentum", hyper["momentum"])
        self.weight_decay = _check_at_least("weight_decay", hyper["weight_decay"], 0.0)
        centered = hyper["centered"]
        if not isinstance(centered, bool):
            raise TypeError(f"centered must be a bool, got {centered!r}")
        self.centered = centered

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "centered": self.centered,
        }

    def _update(self, index: int, param: Parameter, lr: float) -> None:
        grad = self._l2_grad(param)
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
    params: Iterable[Parameter],
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
    ``alpha`` is rmsprop-only.
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
