"""Layers: each computes its own forward and backward pass."""

from scratchcnn.layers.activation import GELU, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from scratchcnn.layers.base import Layer
from scratchcnn.layers.container import Residual, Sequential
from scratchcnn.layers.conv import Conv2d
from scratchcnn.layers.dropout import Dropout
from scratchcnn.layers.fused import (
    BatchNormActivation,
    ConvReLUMaxPool,
    ConvReLUMaxPoolChain,
    Fused,
    ReLUMaxPool,
    fuse,
    unfuse,
)
from scratchcnn.layers.linear import Linear
from scratchcnn.layers.norm import BatchNorm1d, BatchNorm2d
from scratchcnn.layers.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNormActivation",
    "Conv2d",
    "ConvReLUMaxPool",
    "ConvReLUMaxPoolChain",
    "Dropout",
    "Flatten",
    "Fused",
    "GELU",
    "GlobalAvgPool2d",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "ReLUMaxPool",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "fuse",
    "unfuse",
]
