"""The errors scratchcnn raises for bad input: one base class, one subclass per kind of input.

Each message names the file or setting, what was expected and what was found, so that the
command line can show it as ``scratchcnn: error: <message>`` without a traceback (``--debug``
shows one). A bug inside the library is not one of these: it keeps its own type and traceback.

The configuration and checkpoint errors are also ``ValueError``s, as PyTorch raises for bad
arguments, so code that caught ``ValueError`` before keeps working.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "ScratchCNNError"]


class ScratchCNNError(Exception):
    """Base class of every error scratchcnn raises because of what it was given."""


class ConfigError(ScratchCNNError, ValueError):
    """A training setting has the wrong type, an unknown name or a value out of range."""


class CheckpointError(ScratchCNNError, ValueError):
    """A model file or training checkpoint is missing, damaged, tampered with or incomplete."""


class DataError(ScratchCNNError):
    """A dataset file is missing, malformed, truncated or of an unexpected layout."""
