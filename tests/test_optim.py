"""Optimizers: hand-computed steps, PyTorch references, exact resume, dtypes and bad arguments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scratchcnn.optim import SGD, Adam, AdamW, Optimizer, ParamGroup, RMSprop, build_optimizer
from scratchcnn.parameter import Parameter


def make_param(values: list[float], dtype: type = np.float64) -> Parameter:
    return Parameter(np.array(values, dtype=dtype), name="w")


def step_with(opt: Optimizer, param: Parameter, grad: list[float]) -> None:
    param.grad[...] = grad
    opt.step()


# --- a fixed quadratic problem whose gradient sequence both libraries receive ------------------


class Quadratic:
    """``L(W, b) = 0.5 * ||H^(1/2) (vec W - c)||^2 + 0.5 * k * ||b - d||^2`` with SPD ``H``.

    Shape: ``W`` is ``(3, 4)``, ``b`` is ``(4,)``.
    """

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        q = rng.standard_normal((12, 12))
        self.hessian = q @ q.T / 12 + 0.5 * np.eye(12)  # (12, 12), well conditioned
        self.center = rng.standard_normal(12)
        self.bias_center = rng.standard_normal(4)
        self.init_weight = rng.standard_normal((3, 4))
        self.init_bias = rng.standard_normal(4)

    def params(self, dtype: type = np.float64) -> list[Parameter]:
        return [
            Parameter(self.init_weight.astype(dtype), name="weight"),
            Parameter(self.init_bias.astype(dtype), name="bias"),
        ]

    def grads(self, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = weight.reshape(-1) - self.center  # (12,)
        grad_w = (self.hessian @ diff).reshape(weight.shape)  # (3, 4)
        grad_b = 3.0 * (bias - self.bias_center)
        return grad_w.astype(weight.dtype), grad_b.astype(bias.dtype)

    def set_grads(self, params: list[Parameter]) -> None:
        grad_w, grad_b = self.grads(params[0].data, params[1].data)
        params[0].grad[...] = grad_w
        params[1].grad[...] = grad_b


OPTIMIZER_CASES = [
    ("sgd-plain", SGD, {"lr": 0.05}),
    ("sgd-momentum", SGD, {"lr": 0.05, "momentum": 0.9}),
    ("sgd-dampening", SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("sgd-nesterov", SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("sgd-weight-decay", SGD, {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.1}),
    ("adam", Adam, {"lr": 0.05}),
    ("adam-weight-decay", Adam, {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    ("adamw", AdamW, {"lr": 0.05, "weight_decay": 0.1}),
    ("rmsprop", RMSprop, {"lr": 0.01}),
    ("rmsprop-momentum", RMSprop, {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.05}),
    ("rmsprop-centered", RMSprop, {"lr": 0.01, "centered": True, "alpha": 0.9}),
    ("rmsprop-centered-momentum", RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
]
CASE_IDS = [case[0] for case in OPTIMIZER_CASES]


# --- one or two steps against hand arithmetic ---------------------------------------------------


def test_sgd_plain_one_step_by_hand() -> None:
    p = make_param([1.0, -2.0])
    step_with(SGD([p], lr=0.1), p, [0.5, 0.25])
    # w - lr * g = [1 - 0.05, -2 - 0.025]
    np.testing.assert_allclose(p.data, [0.95, -2.025], rtol=0, atol=1e-15)


def test_sgd_momentum_weight_decay_two_steps_by_hand() -> None:
    p = make_param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    step_with(opt, p, [0.5, 0.25])
    # g' = g + 0.1 w = [0.6, 0.05]; buffer starts as g' ; w = [1 - 0.06, -2 - 0.005]
    np.testing.assert_allclose(p.data, [0.94, -2.005], atol=1e-15)
    step_with(opt, p, [0.5, 0.25])
    # g' = [0.5 + 0.094, 0.25 - 0.2005] = [0.594, 0.0495]
    # b = 0.9 * [0.6, 0.05] + g' = [1.134, 0.0945]; w = [0.94 - 0.1134, -2.005 - 0.00945]
    np.testing.assert_allclose(p.data, [0.8266, -2.01445], atol=1e-14)
    np.testing.assert_allclose(opt.state_dict()["buffers"]["momentum.0"], [1.134, 0.0945])


def test_sgd_nesterov_two_steps_by_hand() -> None:
    p = make_param([1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    step_with(opt, p, [1.0])
    # b = 1; d = g + 0.9 b = 1.9; w = 1 - 0.19
    np.testing.assert_allclose(p.data, [0.81], atol=1e-15)
    step_with(opt, p, [1.0])
    # b = 0.9 + 1 = 1.9; d = 1 + 0.9 * 1.9 = 2.71; w = 0.81 - 0.271
    np.testing.assert_allclose(p.data, [0.539], atol=1e-15)


def test_adam_two_steps_by_hand() -> None:
    p = make_param([1.0, -2.0])
    opt = Adam([p], lr=0.1)
    step_with(opt, p, [0.5, -0.25])
    # m = 0.1 g, v = 0.001 g^2; m_hat = g, v_hat = g^2: the first step is lr * g / (|g| + eps)
    np.testing.assert_allclose(p.data, [1.0 - 0.1, -2.0 + 0.1], atol=1e-8)
    step_with(opt, p, [0.25, -0.25])
    # m = 0.9 * 0.05 + 0.1 * 0.25 = 0.07            (first entry)
    # v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225
    # step = 0.1 * (0.07 / 0.19) / sqrt(0.00031225 / 0.001999)
    step1 = 0.1 * (0.07 / 0.19) / math.sqrt(0.00031225 / 0.001999)
    # second entry: m = 0.9 * -0.025 + 0.1 * -0.25 = -0.0475; v as above for 0.0625, 0.0625
    v2 = 0.999 * 0.0000625 + 0.001 * 0.0625
    step2 = 0.1 * (-0.0475 / 0.19) / math.sqrt(v2 / 0.001999)
    np.testing.assert_allclose(p.data, [0.9 - step1, -1.9 - step2], atol=1e-8)
    assert step1 == pytest.approx(0.093218, abs=1e-6)


def test_adamw_one_step_by_hand() -> None:
    p = make_param([1.0, -2.0])
    step_with(AdamW([p], lr=0.1, weight_decay=0.5), p, [0.5, -0.25])
    # decay first: w * (1 - 0.1 * 0.5) = [0.95, -1.9]; then the Adam step lr * sign(g)
    np.testing.assert_allclose(p.data, [0.85, -1.8], atol=1e-8)


def test_adam_l2_differs_from_adamw_decoupled() -> None:
    p_adam, p_adamw = make_param([1.0, -2.0]), make_param([1.0, -2.0])
    step_with(Adam([p_adam], lr=0.1, weight_decay=0.5), p_adam, [0.5, -0.25])
    # Adam: g' = g + 0.5 w = [1.0, -1.25]; the first step is still lr * sign(g')
    np.testing.assert_allclose(p_adam.data, [0.9, -1.9], atol=1e-8)
    step_with(AdamW([p_adamw], lr=0.1, weight_decay=0.5), p_adamw, [0.5, -0.25])
    assert not np.allclose(p_adam.data, p_adamw.data)


def test_rmsprop_plain_and_momentum_by_hand() -> None:
    p = make_param([1.0, -2.0])
    opt = RMSprop([p], lr=0.01, momentum=0.9, eps=0.0)
    step_with(opt, p, [0.5, -0.25])
    # s = 0.01 g^2; g / sqrt(s) = 10 sign(g); b = 10 sign(g); w -= 0.01 * b
    np.testing.assert_allclose(p.data, [0.9, -1.9], atol=1e-14)
    step_with(opt, p, [0.5, -0.25])
    # s = 0.99 * 0.01 g^2 + 0.01 g^2 = 0.0199 g^2; b = 0.9 * 10 + 1 / sqrt(0.0199)
    b = 9.0 + 1.0 / math.sqrt(0.0199)
    np.testing.assert_allclose(p.data, [0.9 - 0.01 * b, -1.9 + 0.01 * b], atol=1e-14)


def test_rmsprop_centered_by_hand() -> None:
    p = make_param([1.0, -2.0])
    step_with(RMSprop([p], lr=0.01, centered=True, eps=0.0), p, [0.5, -0.25])
    # s = 0.01 g^2, a = 0.01 g; s - a^2 = 0.0099 g^2; step = 0.01 * sign(g) / sqrt(0.0099)
    step = 0.01 / math.sqrt(0.0099)
    np.testing.assert_allclose(p.data, [1.0 - step, -2.0 + step], atol=1e-14)


def test_lr_can_be_changed_between_steps() -> None:
    p = make_param([1.0])
    opt = SGD([p], lr=0.1)
    step_with(opt, p, [1.0])
    opt.lr = 0.5
    step_with(opt, p, [1.0])
    # 1 - 0.1 - 0.5
    np.testing.assert_allclose(p.data, [0.4], atol=1e-15)
    assert opt.step_count == 2


def test_step_does_not_modify_grad() -> None:
    p = make_param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    step_with(opt, p, [0.5, 0.25])
    np.testing.assert_array_equal(p.grad, [0.5, 0.25])


def test_update_is_in_place() -> None:
    p = make_param([1.0, -2.0])
    data = p.data
    for cls, kwargs in [(SGD, {"lr": 0.1}), (Adam, {}), (AdamW, {}), (RMSprop, {})]:
        step_with(cls([p], **kwargs), p, [0.5, 0.25])
        assert p.data is data


def test_zero_grad() -> None:
    p = make_param([1.0, -2.0])
    p.grad[...] = 3.0
    SGD([p], lr=0.1).zero_grad()
    np.testing.assert_array_equal(p.grad, [0.0, 0.0])


# --- against torch.optim for 20 steps ----------------------------------------------------------


TORCH_CLASSES = {
    SGD: "SGD",
    Adam: "Adam",
    AdamW: "AdamW",
    RMSprop: "RMSprop",
}


@pytest.mark.parametrize(("case", "cls", "kwargs"), OPTIMIZER_CASES, ids=CASE_IDS)
def test_matches_torch_for_20_steps(case: str, cls: type[Optimizer], kwargs: dict) -> None:
    torch = pytest.importorskip("torch")
    problem = Quadratic(seed=1)
    params = problem.params()
    opt = cls(params, **kwargs)
    torch_params = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    torch_opt = getattr(torch.optim, TORCH_CLASSES[cls])(torch_params, **kwargs)
    for _ in range(20):
        # Gradients from the numpy weights go to both, so only the update rules can differ.
        problem.set_grads(params)
        for p, tp in zip(params, torch_params, strict=True):
            tp.grad = torch.from_numpy(p.grad.copy())
        opt.step()
        torch_opt.step()
    for p, tp in zip(params, torch_params, strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=0, atol=1e-6)
    # and the trajectory really moved
    assert not np.allclose(params[0].data, problem.init_weight, atol=1e-3)


# --- state dict: exact resume -------------------------------------------------------------------


def run_steps(opt: Optimizer, params: list[Parameter], problem: Quadratic, n: int) -> None:
    for _ in range(n):
        problem.set_grads(params)
        opt.step()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("case", "cls", "kwargs"), OPTIMIZER_CASES, ids=CASE_IDS)
def test_state_dict_resume_is_exact(
    case: str, cls: type[Optimizer], kwargs: dict, dtype: type
) -> None:
    problem = Quadratic(seed=2)
    straight = problem.params(dtype)
    straight_opt = cls(straight, **kwargs)
    run_steps(straight_opt, straight, problem, 20)

    first = problem.params(dtype)
    first_opt = cls(first, **kwargs)
    run_steps(first_opt, first, problem, 10)
    state = first_opt.state_dict()
    # the trainer stores hyperparameters as JSON: the round trip must not change anything
    state = {
        "hyperparameters": json.loads(json.dumps(state["hyperparameters"])),
        "buffers": {k: v.copy() for k, v in state["buffers"].items()},
    }
    saved_weights = [p.data.copy() for p in first]
    run_steps(first_opt, first, problem, 3)  # keeps running: the saved state must be a copy

    resumed = [Parameter(w.copy(), name=p.name) for w, p in zip(saved_weights, first, strict=True)]
    resumed_opt = cls(resumed, lr=0.123)  # other hyperparameters come from the state dict
    resumed_opt.load_state_dict(state)
    assert resumed_opt.step_count == 10
    assert resumed_opt.lr == kwargs["lr"]
    run_steps(resumed_opt, resumed, problem, 10)

    for p, q in zip(straight, resumed, strict=True):
        assert p.data.dtype == dtype
        np.testing.assert_array_equal(p.data, q.data)


def test_state_dict_format() -> None:
    params = Quadratic().params()
    opt = Adam(params, lr=0.01)
    assert opt.state_dict()["buffers"] == {}  # nothing created before the first step
    opt.step()
    state = opt.state_dict()
    assert set(state["buffers"]) == {"exp_avg.0", "exp_avg.1", "exp_avg_sq.0", "exp_avg_sq.1"}
    assert state["buffers"]["exp_avg.0"].shape == (3, 4)
    hyper = state["hyperparameters"]
    assert hyper["step"] == 1 and isinstance(hyper["step"], int)
    assert hyper["lr"] == 0.01 and hyper["optimizer"] == "Adam"
    assert hyper["param_steps"] == [1, 1]
    assert hyper["param_groups"] == [{"num_params": 2, "lr_scale": 1.0, "weight_decay": None}]
    json.dumps(hyper)


def test_load_state_dict_rejects_mismatches() -> None:
    params = Quadratic().params()
    sgd = SGD(params, lr=0.1, momentum=0.9)
    sgd.step()
    state = sgd.state_dict()
    with pytest.raises(ValueError, match="'SGD'"):
        Adam(params).load_state_dict(state)
    bad_shape = {**state, "buffers": {"momentum.0": np.zeros((4, 3))}}
    with pytest.raises(ValueError, match=r"shape \(4, 3\), expected \(3, 4\)"):
        SGD(params, lr=0.1).load_state_dict(bad_shape)
    bad_key = {**state, "buffers": {"velocity.0": np.zeros((3, 4))}}
    with pytest.raises(ValueError, match="'velocity.0'"):
        SGD(params, lr=0.1).load_state_dict(bad_key)
    bad_index = {**state, "buffers": {"momentum.7": np.zeros((3, 4))}}
    with pytest.raises(ValueError, match="parameter 7"):
        SGD(params, lr=0.1).load_state_dict(bad_index)
    bad_hyper = {**state, "hyperparameters": {**state["hyperparameters"], "momentum": -1.0}}
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\), got -1.0"):
        SGD(params, lr=0.1).load_state_dict(bad_hyper)


# --- dtypes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "cls", "kwargs"), OPTIMIZER_CASES, ids=CASE_IDS)
def test_float32_stays_float32(case: str, cls: type[Optimizer], kwargs: dict) -> None:
    problem = Quadratic()
    params = problem.params(np.float32)
    opt = cls(params, **kwargs)
    run_steps(opt, params, problem, 3)
    for p in params:
        assert p.data.dtype == np.float32
    for buf in opt.state_dict()["buffers"].values():
        assert buf.dtype == np.float32
    # float32 follows the float64 trajectory closely
    reference = problem.params(np.float64)
    run_steps(cls(reference, **kwargs), reference, problem, 3)
    for p, q in zip(params, reference, strict=True):
        np.testing.assert_allclose(p.data, q.data, atol=1e-4)


# --- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (SGD, {"lr": -1.0}, "lr must be >= 0.0, got -1.0"),
        (SGD, {"lr": float("nan")}, "lr must be a finite number, got nan"),
        (SGD, {"lr": 0.1, "momentum": -0.1}, r"momentum must be in \[0, 1\), got -0.1"),
        (SGD, {"lr": 0.1, "momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        (SGD, {"lr": 0.1, "weight_decay": -0.5}, "weight_decay must be >= 0.0, got -0.5"),
        (SGD, {"lr": 0.1, "dampening": 2.0}, r"dampening must be in \[0, 1\], got 2.0"),
        (SGD, {"lr": 0.1, "nesterov": True}, "nesterov requires momentum > 0"),
        (
            SGD,
            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "dampening": 0.1},
            "dampening=0.1",
        ),
        (Adam, {"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\), got 1.0"),
        (Adam, {"betas": (-0.1, 0.999)}, r"betas\[0\] must be in \[0, 1\), got -0.1"),
        (Adam, {"betas": (0.9,)}, r"betas must be a pair \(beta1, beta2\), got \(0.9,\)"),
        (Adam, {"eps": -1e-8}, "eps must be >= 0.0, got -1e-08"),
        (AdamW, {"weight_decay": -0.01}, "weight_decay must be >= 0.0, got -0.01"),
        (RMSprop, {"alpha": 1.5}, r"alpha must be in \[0, 1\), got 1.5"),
        (RMSprop, {"momentum": -0.5}, r"momentum must be in \[0, 1\), got -0.5"),
    ],
)
def test_bad_hyperparameters_raise_with_value(
    cls: type[Optimizer], kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        cls([make_param([1.0])], **kwargs)


def test_lr_setter_validates() -> None:
    opt = SGD([make_param([1.0])], lr=0.1)
    opt.lr = 0.0  # allowed: schedules may end at zero
    with pytest.raises(ValueError, match="lr must be >= 0.0, got -0.5"):
        opt.lr = -0.5


def test_bad_parameter_lists() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    p = make_param([1.0])
    with pytest.raises(ValueError, match="twice"):
        SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="expected Parameter objects, got ndarray"):
        SGD([np.zeros(3)], lr=0.1)  # type: ignore[list-item]


def test_grad_shape_mismatch_is_reported() -> None:
    p = make_param([1.0, 2.0])
    p.grad = np.zeros(3)
    with pytest.raises(ValueError, match=r"data shape \(2,\) but grad shape \(3,\)"):
        SGD([p], lr=0.1).step()


def test_accepts_a_generator_of_parameters() -> None:
    params = Quadratic().params()
    opt = SGD((p for p in params), lr=0.1)
    assert len(opt.params) == 2


# --- the factory ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"), [("sgd", SGD), ("adam", Adam), ("AdamW", AdamW), ("rmsprop", RMSprop)]
)
def test_build_optimizer_names(name: str, cls: type[Optimizer]) -> None:
    opt = build_optimizer(name, [make_param([1.0])], lr=0.01)
    assert type(opt) is cls
    assert opt.lr == 0.01


def test_build_optimizer_passes_hyperparameters() -> None:
    sgd = build_optimizer(
        "sgd", [make_param([1.0])], lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    assert isinstance(sgd, SGD)
    assert (sgd.momentum, sgd.weight_decay, sgd.nesterov) == (0.9, 5e-4, True)
    adamw = build_optimizer("adamw", [make_param([1.0])], lr=0.1)
    assert isinstance(adamw, AdamW) and adamw.weight_decay == 1e-2
    rms = build_optimizer("rmsprop", [make_param([1.0])], lr=0.1, momentum=0.5, alpha=0.9)
    assert isinstance(rms, RMSprop) and (rms.momentum, rms.alpha) == (0.5, 0.9)


def test_build_optimizer_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown optimizer 'lamb'.*'sgd', 'adam'"):
        build_optimizer("lamb", [make_param([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="adam uses betas, not momentum; got momentum=0.9"):
        build_optimizer("adam", [make_param([1.0])], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov applies only to 'sgd'"):
        build_optimizer("rmsprop", [make_param([1.0])], lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="lr must be >= 0.0, got -1.0"):
        build_optimizer("sgd", [make_param([1.0])], lr=-1)


# --- parameter groups --------------------------------------------------------------------------


def test_param_groups_one_step_by_hand() -> None:
    w, b = make_param([1.0, -2.0]), make_param([0.5])
    opt = SGD(
        [ParamGroup([w], lr_scale=10.0, weight_decay=0.5), ParamGroup([b])],
        lr=0.01,
        weight_decay=0.1,
    )
    w.grad[...] = [0.2, 0.4]
    b.grad[...] = [1.0]
    opt.step()
    # w: lr 0.1, g + 0.5 w = [0.7, -0.6] -> [1 - 0.07, -2 + 0.06]
    np.testing.assert_allclose(w.data, [0.93, -1.94], atol=1e-15)
    # b: lr 0.01, the optimizer's decay 0.1: g + 0.1 b = 1.05 -> 0.5 - 0.0105
    np.testing.assert_allclose(b.data, [0.4895], atol=1e-15)


def torch_group_dicts(torch_params: list, kwargs: dict, groups: list[dict]) -> list[dict]:
    """torch's parameter groups for ours: the lr scaled by lr_scale, weight_decay if given."""
    out = []
    for tp, group in zip(torch_params, groups, strict=True):
        entry = {"params": [tp], "lr": kwargs["lr"] * group.get("lr_scale", 1.0)}
        if group.get("weight_decay") is not None:
            entry["weight_decay"] = group["weight_decay"]
        out.append(entry)
    return out


GROUP_SETTINGS = [{"lr_scale": 2.0, "weight_decay": 0.2}, {"lr_scale": 0.5}]


@pytest.mark.parametrize(("case", "cls", "kwargs"), OPTIMIZER_CASES, ids=CASE_IDS)
def test_param_groups_under_a_schedule_match_torch_for_20_steps(
    case: str, cls: type[Optimizer], kwargs: dict
) -> None:
    torch = pytest.importorskip("torch")
    problem = Quadratic(seed=3)
    params = problem.params()
    opt = cls([ParamGroup([p], **g) for p, g in zip(params, GROUP_SETTINGS, strict=True)], **kwargs)
    torch_params = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    torch_opt = getattr(torch.optim, TORCH_CLASSES[cls])(
        torch_group_dicts(torch_params, kwargs, GROUP_SETTINGS),
        **{k: v for k, v in kwargs.items() if k != "lr"},
    )

    def factor(step: int) -> float:  # a linear decay that LambdaLR applies to every group
        return 1.0 - step / 40

    scheduler = torch.optim.lr_scheduler.LambdaLR(torch_opt, factor)
    for step in range(20):
        opt.lr = kwargs["lr"] * factor(step)
        problem.set_grads(params)
        for p, tp in zip(params, torch_params, strict=True):
            tp.grad = torch.from_numpy(p.grad.copy())
        opt.step()
        torch_opt.step()
        scheduler.step()
    for p, tp in zip(params, torch_params, strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=0, atol=1e-6)
    # the groups mattered: one shared setting gives another trajectory
    plain = problem.params()
    plain_opt = cls(plain, **kwargs)
    for step in range(20):
        plain_opt.lr = kwargs["lr"] * factor(step)
        problem.set_grads(plain)
        plain_opt.step()
    assert not np.allclose(plain[0].data, params[0].data, atol=1e-4)


# --- frozen parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "cls", "kwargs"), OPTIMIZER_CASES, ids=CASE_IDS)
def test_frozen_parameter_is_never_touched(case: str, cls: type[Optimizer], kwargs: dict) -> None:
    problem = Quadratic(seed=4)
    params = problem.params()
    params[1].requires_grad = False
    before = params[1].data.copy()
    opt = cls(params, **{**kwargs, "weight_decay": 0.3})
    run_steps(opt, params, problem, 5)  # the frozen bias gets a (non-zero) gradient all along
    np.testing.assert_array_equal(params[1].data, before)  # no update and no decay
    assert not any(key.endswith(".1") for key in opt.state_dict()["buffers"])  # no state
    assert opt.param_steps == [5, 0] and opt.step_count == 5
    assert not np.allclose(params[0].data, problem.init_weight)  # the other one trained


@pytest.mark.parametrize(("case", "cls", "kwargs"), OPTIMIZER_CASES, ids=CASE_IDS)
def test_freezing_and_unfreezing_matches_torch_for_20_steps(
    case: str, cls: type[Optimizer], kwargs: dict
) -> None:
    """torch skips a parameter whose grad is None and keeps its state (and its own step count,
    which Adam's bias correction uses); a frozen parameter here must behave the same."""
    torch = pytest.importorskip("torch")
    problem = Quadratic(seed=5)
    params = problem.params()
    opt = cls(params, **kwargs)
    torch_params = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    torch_opt = getattr(torch.optim, TORCH_CLASSES[cls])(torch_params, **kwargs)
    for step in range(20):
        frozen = [step < 4, 6 <= step < 13]  # the weight starts frozen; the bias pauses
        for p, is_frozen in zip(params, frozen, strict=True):
            p.requires_grad = not is_frozen
        problem.set_grads(params)
        for p, tp, is_frozen in zip(params, torch_params, frozen, strict=True):
            tp.grad = None if is_frozen else torch.from_numpy(p.grad.copy())
        opt.step()
        torch_opt.step()
    for p, tp in zip(params, torch_params, strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=0, atol=1e-6)
    assert opt.param_steps == [16, 13]


# --- resume with groups and frozen parameters, and old states ----------------------------------


@pytest.mark.parametrize(("case", "cls", "kwargs"), OPTIMIZER_CASES, ids=CASE_IDS)
def test_state_dict_resume_with_groups_and_frozen_is_exact(
    case: str, cls: type[Optimizer], kwargs: dict
) -> None:
    problem = Quadratic(seed=6)

    def build(params: list[Parameter], lr_scale: float = 2.0) -> Optimizer:
        return cls(
            [ParamGroup([params[0]], lr_scale=lr_scale, weight_decay=0.1), ParamGroup([params[1]])],
            **kwargs,
        )

    straight = problem.params()
    straight_opt = build(straight)
    first = problem.params()
    first_opt = build(first)
    for opt, params in ((straight_opt, straight), (first_opt, first)):
        params[1].requires_grad = False
        run_steps(opt, params, problem, 4)
        params[1].requires_grad = True
        run_steps(opt, params, problem, 4)
    state = first_opt.state_dict()
    state = {
        "hyperparameters": json.loads(json.dumps(state["hyperparameters"])),
        "buffers": {k: v.copy() for k, v in state["buffers"].items()},
    }
    resumed = [Parameter(p.data.copy(), name=p.name) for p in first]
    resumed_opt = build(resumed, lr_scale=5.0)  # the group settings come from the state
    resumed_opt.load_state_dict(state)
    assert resumed_opt.param_groups[0].lr_scale == 2.0
    assert resumed_opt.param_steps == [8, 4]
    run_steps(resumed_opt, resumed, problem, 6)
    run_steps(straight_opt, straight, problem, 6)
    for p, q in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_state_saved_before_param_groups_still_loads() -> None:
    """Checkpoints written before groups existed have neither param_groups nor param_steps."""
    problem = Quadratic(seed=7)
    straight = problem.params()
    straight_opt = Adam(straight, lr=0.05)
    run_steps(straight_opt, straight, problem, 6)
    first = problem.params()
    first_opt = Adam(first, lr=0.05)
    run_steps(first_opt, first, problem, 3)
    state = first_opt.state_dict()
    old_hyper = {
        k: v
        for k, v in state["hyperparameters"].items()
        if k not in ("param_groups", "param_steps")
    }
    old = {"hyperparameters": old_hyper, "buffers": state["buffers"]}
    resumed = [Parameter(p.data.copy(), name=p.name) for p in first]
    resumed_opt = Adam(resumed, lr=1.0)
    resumed_opt.load_state_dict(old)
    assert resumed_opt.param_steps == [3, 3]
    run_steps(resumed_opt, resumed, problem, 3)
    for p, q in zip(straight, resumed, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    grouped = Adam([ParamGroup([resumed[0]]), ParamGroup([resumed[1]])], lr=1.0)
    with pytest.raises(
        ValueError, match=r"groups of sizes \[2\], but Adam was built with .*\[1, 1\]"
    ):
        grouped.load_state_dict(old)


def test_load_state_dict_changes_nothing_when_it_fails() -> None:
    params = Quadratic().params()
    sgd = SGD(params, lr=0.1, momentum=0.9)
    sgd.step()
    state = sgd.state_dict()
    fresh = SGD(params, lr=0.5, momentum=0.5)
    bad = {**state, "hyperparameters": {**state["hyperparameters"], "momentum": 2.0}}
    with pytest.raises(ValueError, match="momentum must be in"):
        fresh.load_state_dict(bad)
    assert (fresh.lr, fresh.momentum, fresh.step_count) == (0.5, 0.5, 0)
    bad_steps = {**state, "hyperparameters": {**state["hyperparameters"], "param_steps": [1, 9]}}
    with pytest.raises(ValueError, match=r"param_steps must be 2 ints in \[0, step=1\]"):
        fresh.load_state_dict(bad_steps)
    assert fresh.state_dict()["buffers"] == {}


def test_param_group_errors() -> None:
    w, b = make_param([1.0]), make_param([2.0])
    with pytest.raises(TypeError, match="got a dict at position 0; write ParamGroup"):
        SGD([{"params": [w], "lr_scale": 2.0}], lr=0.1)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="a mix of both"):
        SGD([ParamGroup([w]), b], lr=0.1)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="lr_scale must be >= 0.0, got -1.0"):
        ParamGroup([w], lr_scale=-1.0)
    with pytest.raises(ValueError, match="group weight_decay must be >= 0.0, got -0.1"):
        ParamGroup([w], weight_decay=-0.1)
    with pytest.raises(ValueError, match="position 1.*twice"):
        SGD([ParamGroup([w]), ParamGroup([w])], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([ParamGroup([]), ParamGroup([])], lr=0.1)
    opt = SGD([ParamGroup([]), ParamGroup([w, b], lr_scale=3.0)], lr=0.1)  # an empty group is fine
    assert opt.params == [w, b]
    assert "groups=[(params=0, lr_scale=1.0, weight_decay=None), (params=2, lr_scale=3.0" in repr(
        opt
    )


def test_build_optimizer_accepts_groups() -> None:
    w, b = make_param([1.0]), make_param([2.0])
    opt = build_optimizer(
        "sgd",
        [ParamGroup([w], lr_scale=4.0), ParamGroup([b])],
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.01,
    )
    assert [g.lr_scale for g in opt.param_groups] == [4.0, 1.0]
    assert opt.weight_decay == 0.01


def test_airbench_optimizer_setup_matches_torch_for_100_steps() -> None:
    """airbench's optimizer as it builds it in torch: Nesterov SGD, momentum 0.85, batch-norm
    biases at 64 times the lr with the same lr * weight_decay, under its triangle schedule
    (100 steps: its peak, at int(0.23 * steps), is then where PiecewiseLinearLR puts it)."""
    torch = pytest.importorskip("torch")
    from scratchcnn.optim import PiecewiseLinearLR

    lr, wd, total = 0.004, 0.001, 100
    problem = Quadratic(seed=8)
    weight, bias = problem.params()
    opt = SGD(
        [
            ParamGroup([bias], lr_scale=64.0, weight_decay=wd / (64.0 * lr)),
            ParamGroup([weight], weight_decay=wd / lr),
        ],
        lr=lr,
        momentum=0.85,
        nesterov=True,
    )
    schedule = PiecewiseLinearLR(lr, total)
    torch_weight, torch_bias = (
        torch.tensor(p.data.copy(), requires_grad=True) for p in (weight, bias)
    )
    torch_opt = torch.optim.SGD(
        [
            {"params": [torch_bias], "lr": 64.0 * lr, "weight_decay": wd / (64.0 * lr)},
            {"params": [torch_weight], "lr": lr, "weight_decay": wd / lr},
        ],
        momentum=0.85,
        nesterov=True,
    )

    def triangle(step: int) -> float:  # airbench's get_lr with its 0.23 peak and 0.07 end
        warmup = int(total * 0.23)
        if step < warmup:
            return 0.2 + 0.8 * step / warmup
        return 1.0 - 0.93 * (step - warmup) / (total - warmup)

    scheduler = torch.optim.lr_scheduler.LambdaLR(torch_opt, triangle)
    for step in range(total):
        opt.lr = schedule(step)
        problem.set_grads([weight, bias])
        torch_weight.grad = torch.from_numpy(weight.grad.copy())
        torch_bias.grad = torch.from_numpy(bias.grad.copy())
        opt.step()
        torch_opt.step()
        scheduler.step()
    np.testing.assert_allclose(weight.data, torch_weight.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(bias.data, torch_bias.detach().numpy(), rtol=0, atol=1e-10)
    assert not np.allclose(bias.data, problem.init_bias, atol=0.1)
