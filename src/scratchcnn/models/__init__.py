"""The model zoo, and the architecture <-> JSON config mapping that checkpoints use.

Every builder in :data:`MODELS` is called the same way::

    MODELS[name](num_classes=10, in_channels=3, image_size=32, rng=None, dtype=np.float32,
                 width=1.0, **options)

``width`` multiplies every layer's channel count; ``options`` are the model's own keyword
arguments (e.g. ``vgg(kernel_size=5, pool="avg")``), each checked with a clear error.
:func:`create_model` does the same by name and checks the name and the option names first.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from scratchcnn.layers.base import Layer
from scratchcnn.models.airbench import airbench
from scratchcnn.models.config import (
    ModelConfigError,
    build_model,
    check_model_fits,
    load_model_config,
    model_config,
)
from scratchcnn.models.dilated import dilated
from scratchcnn.models.inception import inception
from scratchcnn.models.resnet import cifar_resnet, resnet9
from scratchcnn.models.seed_cnn import seed_cnn
from scratchcnn.models.transfer import TransferReport, load_matching
from scratchcnn.models.vgg import vgg

MODELS: dict[str, Callable[..., Layer]] = {
    "seed_cnn": seed_cnn,
    "vgg": vgg,
    "resnet8": partial(cifar_resnet, depth=8),
    "resnet20": partial(cifar_resnet, depth=20),
    "resnet32": partial(cifar_resnet, depth=32),
    "resnet9": resnet9,
    "airbench": airbench,
    "inception": inception,
    "dilated": dilated,
}

MODEL_DESCRIPTIONS: dict[str, str] = {
    "seed_cnn": "the write-up's CNN: 2 conv + max-pool blocks, 2 linear layers",
    "vgg": "VGG-style: 3 blocks of 2 conv-BN-ReLU, max-pool, dropout",
    "resnet8": "CIFAR ResNet (He et al. 2016), 3 stages of 1 basic block",
    "resnet20": "CIFAR ResNet (He et al. 2016), 3 stages of 3 basic blocks",
    "resnet32": "CIFAR ResNet (He et al. 2016), 3 stages of 5 basic blocks",
    "resnet9": "DAWNBench ResNet-9: 64 to 512 channels, 2 residual blocks",
    "airbench": "airbench: whitening conv, 3 conv-pool-BN-GELU groups",
    "inception": "small GoogLeNet: 3 Inception modules (1x1/3x3/5x5/pool)",
    "dilated": "dilated 3x3 convs (1, 2, 4, 8), no pooling before the head",
}


def create_model(name: str, **kwargs: Any) -> Layer:
    """``MODELS[name](**kwargs)``, after checking the name and the argument names.

    Raises ``ValueError`` listing the valid model names, or the model's valid arguments.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    builder = MODELS[name]
    valid = list(inspect.signature(builder).parameters)
    for key in kwargs:
        if key not in valid:
            raise ValueError(
                f"{name}: unknown argument {key!r}; valid arguments: {', '.join(valid)}"
            )
    return builder(**kwargs)


__all__ = [
    "MODELS",
    "MODEL_DESCRIPTIONS",
    "ModelConfigError",
    "TransferReport",
    "airbench",
    "build_model",
    "check_model_fits",
    "cifar_resnet",
    "create_model",
    "dilated",
    "inception",
    "load_matching",
    "load_model_config",
    "model_config",
    "resnet9",
    "seed_cnn",
    "vgg",
]
