"""Transfer learning: start a model from the tensors of another model's checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scratchcnn.layers.base import Layer


@dataclass
class TransferReport:
    """What :func:`load_matching` did with each tensor."""

    loaded: list[str] = field(default_factory=list)  # model tensors now holding checkpoint values
    skipped: dict[str, str] = field(default_factory=dict)  # checkpoint tensor -> why not loaded
    initialised: list[str] = field(default_factory=list)  # model tensors that kept fresh values

    def format(self) -> str:
        """A few lines for a training log: counts, then every skipped and new tensor."""
        lines = [
            f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)}, "
            f"newly initialised {len(self.initialised)}"
        ]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"  newly initialised {name}" for name in self.initialised]
        return "\n".join(lines)


def load_matching(
    model: Layer, state: dict[str, np.ndarray], source: str = "checkpoint"
) -> TransferReport:
    """Copy into ``model`` every tensor of ``state`` whose name and shape match; report the rest.

    Parameters and buffers (batch-norm running statistics) alike; values are cast to the
    model's dtype. A tensor is skipped when the model has no tensor of that name, or one of
    another shape, which is how a classifier head for a different number of classes stays
    freshly initialised. ``requires_grad`` flags are left as they are. Raises ``ValueError``
    when no tensor matches (the wrong checkpoint for this architecture), before changing
    anything. ``source`` names the state in that error.

    Shape: each ``state[name]`` must equal the model's ``state_dict()[name]`` shape to load.
    """
    current = model.state_dict()
    report = TransferReport()
    matching = {}
    for name, value in state.items():
        if name not in current:
            report.skipped[name] = "not in the model"
        elif tuple(value.shape) != current[name].shape:
            report.skipped[name] = (
                f"shape {tuple(value.shape)} in the {source}, {current[name].shape} in the model"
            )
        else:
            matching[name] = value
    if not matching:
        raise ValueError(
            f"no tensor of the {source} matches the model by name and shape; the {source} has "
            f"{_some(state)}, the model has {_some(current)}"
        )
    model.load_state_dict(matching, strict=False)
    report.loaded = [name for name in current if name in matching]
    report.initialised = [name for name in current if name not in matching]
    return report


def _some(state: dict[str, np.ndarray], limit: int = 6) -> str:
    """``'0.weight' (32, 3, 3, 3), ... (24 tensors)``: enough to see the two do not fit."""
    shown = ", ".join(f"{name!r} {tuple(v.shape)}" for name, v in list(state.items())[:limit])
    return f"{shown}{', ...' if len(state) > limit else ''} ({len(state)} tensors)"
