"""scratchcnn: a convolutional neural network library written from scratch in NumPy."""

from scratchcnn import fast  # registers the "fast" backend
from scratchcnn._version import __version__
from scratchcnn.backend import get_backend, set_backend, use_backend
from scratchcnn.layers import (
    GELU,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    ChannelPad,
    Concat,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Scale,
    Sequential,
    Sigmoid,
    Tanh,
    fuse,
    unfuse,
)
from scratchcnn.losses import CrossEntropyLoss, log_softmax, softmax
from scratchcnn.models import build_model, model_config, seed_cnn
from scratchcnn.parameter import Parameter
from scratchcnn.serialization import load_model, save_model

__all__ = [
    "GELU",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "ChannelPad",
    "Concat",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Parameter",
    "ReLU",
    "Residual",
    "Scale",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "__version__",
    "build_model",
    "fast",
    "fuse",
    "get_backend",
    "load_model",
    "log_softmax",
    "model_config",
    "seed_cnn",
    "save_model",
    "set_backend",
    "softmax",
    "unfuse",
    "use_backend",
]
