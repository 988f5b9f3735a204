"""Training: the configuration, the loop, checkpoints and evaluation."""

from scratchcnn.training.config import RECIPES, TrainConfig, load_toml, resolve_config
from scratchcnn.training.evaluate import Evaluation, evaluate, predict_proba
from scratchcnn.training.trainer import (
    TrainingData,
    TrainingDiverged,
    TrainingResult,
    prepare_data,
    train,
)

__all__ = [
    "RECIPES",
    "Evaluation",
    "TrainConfig",
    "TrainingData",
    "TrainingDiverged",
    "TrainingResult",
    "evaluate",
    "load_toml",
    "predict_proba",
    "prepare_data",
    "resolve_config",
    "train",
]
