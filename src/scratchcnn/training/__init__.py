"""Training: the configuration, the run setup, the loop, checkpoints and evaluation."""

from scratchcnn.training.config import RECIPES, TrainConfig, load_toml, resolve_config
from scratchcnn.training.evaluate import Evaluation, evaluate, predict_proba
from scratchcnn.training.setup import RunSetup, TrainingData, build_run, find_lr, prepare_data
from scratchcnn.training.trainer import TrainingDiverged, TrainingResult, train

__all__ = [
    "RECIPES",
    "Evaluation",
    "RunSetup",
    "TrainConfig",
    "TrainingData",
    "TrainingDiverged",
    "TrainingResult",
    "build_run",
    "evaluate",
    "find_lr",
    "load_toml",
    "predict_proba",
    "prepare_data",
    "resolve_config",
    "train",
]
