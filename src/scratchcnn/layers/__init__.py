"""Layers: each computes its own forward and backward pass."""

from scratchcnn.layers.activation import GELU, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from scratchcnn.layers.base import Layer
from scratchcnn.layers.channel_pad import ChannelPad
from scratchcnn.layers.concat import Concat
from scratchcnn.layers.container import Residual, Sequential, skip_untrained_input_gradient
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
from scratchcnn.layers.global_max_pool import GlobalMaxPool2d
from scratchcnn.layers.linear import Linear
from scratchcnn.layers.norm import BatchNorm1d, BatchNorm2d
from scratchcnn.layers.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from scratchcnn.layers.scale import Scale

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNormActivation",
    "ChannelPad",
    "Concat",
    "Conv2d",
    "ConvReLUMaxPool",
    "ConvReLUMaxPoolChain",
    "Dropout",
    "Flatten",
    "Fused",
    "GELU",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "Layer",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "ReLUMaxPool",
    "Residual",
    "Scale",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "fuse",
    "skip_untrained_input_gradient",
    "unfuse",
]
