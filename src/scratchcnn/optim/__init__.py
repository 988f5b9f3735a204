"""Optimizers, learning-rate schedules, weight averaging (EMA, Lookahead), gradient clipping,
penalties and the lr range test."""

from scratchcnn.optim.averaging import ExponentialMovingAverage, Lookahead, lookahead_alpha
from scratchcnn.optim.clip import clip_grad_norm
from scratchcnn.optim.loss_scaling import DynamicLossScaler
from scratchcnn.optim.lr_finder import LRFinderResult, lr_range_test
from scratchcnn.optim.optimizers import (
    OPTIMIZER_NAMES,
    SGD,
    Adam,
    AdamW,
    Optimizer,
    ParamGroup,
    RMSprop,
    build_optimizer,
)
from scratchcnn.optim.regularization import l1_penalty, l2_penalty
from scratchcnn.optim.schedules import (
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

__all__ = [
    "DynamicLossScaler",
    "Optimizer",
    "ParamGroup",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "build_optimizer",
    "OPTIMIZER_NAMES",
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
    "ExponentialMovingAverage",
    "Lookahead",
    "lookahead_alpha",
    "clip_grad_norm",
    "l1_penalty",
    "l2_penalty",
    "lr_range_test",
    "LRFinderResult",
]
