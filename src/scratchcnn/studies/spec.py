"""A study file: a base training config and a search space over its fields, read from TOML.

A study file has three tables::

    [study]                      # how to search (every key optional)
    name = "lr-batch"            # default: the file name without .toml
    description = "..."
    recipe = "default"           # the named recipe the [train] table starts from
    num_samples = 8              # Ray Tune's num_samples: draws, or repeats of the grid
    max_concurrent = 2           # trials at once (default: as many as the CPUs allow)
    cpus_per_trial = 1           # CPUs (and compute threads) each trial gets
    scheduler = "asha"           # "fifo" (run every trial to the end) or "asha"
    search = "optuna"            # "random" (grid expanded, the rest drawn) or "optuna"
    grace_period = 1             # ASHA: epochs every trial gets before it can be stopped
    reduction_factor = 2         # ASHA: keep the best 1/reduction_factor at each rung
    search_seed = 0              # seeds the random draws and Optuna's sampler

    [train]                      # any TrainConfig field: the settings every trial shares
    epochs = 10

    [space]                      # the TrainConfig fields that vary, one way each
    lr = { loguniform = [1e-3, 0.3] }
    weight_decay = { uniform = [0.0, 1e-3] }
    batch_size = { choice = [64, 128, 256] }
    optimizer = { grid = ["sgd", "adam"] }

A name in [space] that is not a TrainConfig field sets several fields together: its values are
tables of settings (a "bundle"), each with an optional ``label`` naming it in the results::

    method = { grid = [
        { label = "sgd", optimizer = "sgd", momentum = 0.0, nesterov = false },
        { label = "adam", optimizer = "adam", nesterov = false, lr = 0.001 },
    ] }

Everything is checked when the file is read, before anything runs: unknown tables, keys and
fields, values of the wrong type, ranges that are empty or reach invalid settings (each end of a
range and each listed value must make a valid :class:`TrainConfig`), an empty search space.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchcnn.training.config import RECIPES, TrainConfig, resolve_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "KINDS",
    "SCHEDULERS",
    "SEARCHES",
    "SearchParameter",
    "Study",
    "load_study",
    "parse_override",
]

KINDS = ("grid", "choice", "uniform", "loguniform")
SCHEDULERS = ("fifo", "asha")
SEARCHES = ("random", "optuna")
# The sweep sets these itself for every trial: its run folder, and no progress bars from many
# processes at once (each trial prints one line per epoch instead).
RESERVED_FIELDS = ("run_dir", "name", "progress")
_TABLES = ("study", "train", "space")


@dataclass(frozen=True)
class SearchParameter:
    """One searched :class:`TrainConfig` field and how its values are chosen.

    ``grid`` runs every value (times ``num_samples``); ``choice`` draws one of the values;
    ``uniform`` and ``loguniform`` draw a float in ``[low, high]`` (log-uniform: uniform in the
    logarithm, for scale parameters such as the learning rate).
    """

    field: str  # a TrainConfig field, or a bundle's name
    kind: str  # one of KINDS
    values: tuple[Any, ...] = ()  # grid and choice: field values, or a bundle's labels
    low: float | None = None  # uniform and loguniform
    high: float | None = None
    bundles: tuple[dict[str, Any], ...] = ()  # a bundle's settings, one table per label

    @property
    def is_range(self) -> bool:
        """Whether values are drawn from ``[low, high]`` (uniform or loguniform)."""
        return self.kind in ("uniform", "loguniform")

    @property
    def is_bundle(self) -> bool:
        """Whether each value stands for a table of settings (a bundle)."""
        return bool(self.bundles)

    def settings(self, value: Any) -> dict[str, Any]:
        """The TrainConfig values this parameter's ``value`` stands for."""
        if not self.is_bundle:
            return {self.field: value}
        return {k: v for k, v in self.bundles[self.values.index(value)].items() if k != "label"}

    def to_toml_value(self) -> dict[str, list[Any]]:
        """The ``{kind = [...]}`` table this parameter was read from."""
        if self.is_bundle:
            return {self.kind: [dict(b) for b in self.bundles]}
        return {self.kind: [self.low, self.high] if self.is_range else list(self.values)}


@dataclass(frozen=True)
class Study:
    """A validated study: the base config every trial shares and the searched fields.

    Attributes: ``name`` and ``description`` identify the study; ``train`` holds every TrainConfig
    field (the recipe, then ``[train]``, then overrides; ``None`` where each trial's config derives
    the value, such as momentum from the optimizer); ``space`` holds the searched parameters. The
    search: ``num_samples`` (draws, or repeats of the grid), ``max_concurrent`` (trials at once;
    ``None``: as many as the CPUs allow), ``cpus_per_trial``, ``scheduler`` (``"fifo"`` or
    ``"asha"``), ``search`` (``"random"`` or ``"optuna"``), ``grace_period`` and
    ``reduction_factor`` (ASHA's), ``search_seed``. The keys of the study file's ``[study]`` table,
    above, have the same names.
    """

    name: str
    # every TrainConfig field: the recipe, then [train], then overrides; None where a field is
    # left for each trial's config to derive (momentum from the optimizer, say)
    train: dict[str, Any]
    space: tuple[SearchParameter, ...]
    description: str = ""
    num_samples: int = 1
    max_concurrent: int | None = None
    cpus_per_trial: int = 1
    scheduler: str = "fifo"
    search: str = "random"
    grace_period: int = 1
    reduction_factor: int = 2
    search_seed: int = 0
    source: str | None = None  # the file it was read from

    @property
    def metric(self) -> str:
        """The validation metric that ranks trials: the trainer's own ``monitor``."""
        return str(TrainConfig.from_dict(self.train).monitor)  # resolved if left unset

    @property
    def mode(self) -> str:
        """``"min"`` when the ranking metric is a loss, else ``"max"`` (Ray Tune's ``mode``)."""
        return "min" if self.metric == "val_loss" else "max"

    @property
    def parameter_names(self) -> list[str]:
        """The searched fields (or bundle names), in the order of the ``[space]`` table."""
        return [p.field for p in self.space]

    @property
    def max_epochs(self) -> int:
        """The most epochs any trial can run (ASHA's ``max_t``)."""
        epochs = [int(self.train["epochs"])]
        for p in self.space:
            if p.field == "epochs" or (p.is_bundle and any("epochs" in b for b in p.bundles)):
                epochs = [int(p.settings(v).get("epochs", epochs[0])) for v in p.values]
        return max(epochs)

    def trial_count(self) -> int:
        """How many trials the study runs: the grid's size times ``num_samples``."""
        grid = math.prod(len(p.values) for p in self.space if p.kind == "grid")
        return grid * self.num_samples

    def trial_config(self, params: dict[str, Any], run_dir: str | Path, name: str) -> TrainConfig:
        """The TrainConfig of one trial: the base, the trial's values (a bundle's label stands
        for its settings; a table value such as model options is merged into the base's), its
        own run folder."""
        values = dict(self.train)
        for parameter in self.space:
            if parameter.field in params:
                for key, value in parameter.settings(params[parameter.field]).items():
                    if isinstance(value, dict) and isinstance(values.get(key), dict):
                        value = {**values[key], **value}  # e.g. model options: add, not replace
                    values[key] = value
        values.update(run_dir=str(run_dir), name=name, progress=False)
        return TrainConfig.from_dict(values)

    def with_options(self, **options: Any) -> Study:
        """A copy with some [study] options replaced (``None`` values are ignored), re-checked."""
        chosen = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(chosen) - set(_STUDY_OPTIONS))
        if unknown:
            raise ValueError(f"unknown study options {unknown}; known: {sorted(_STUDY_OPTIONS)}")
        for key, value in chosen.items():
            _check_option(key, value, "option")
        study = dataclasses.replace(self, **chosen)
        _check_combination(study, "options")
        return study

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (``study.json`` in a study folder)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "options": {key: getattr(self, key) for key in _STUDY_OPTIONS},
            "train": dict(self.train),
            "space": {p.field: p.to_toml_value() for p in self.space},
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Study:
        """Rebuild a study from :meth:`to_dict`'s output, checking it as a file is checked."""
        where = values.get("source") or "study.json"
        space = _parse_space(values.get("space", {}), dict(values["train"]), where)
        study = cls(
            name=values["name"],
            train=dict(values["train"]),
            space=space,
            description=values.get("description", ""),
            source=values.get("source"),
            **values.get("options", {}),
        )
        _check_combination(study, where)
        return study


# [study] keys besides name and description, with their checks.
_STUDY_OPTIONS: dict[str, tuple[type, int | None]] = {
    "num_samples": (int, 1),
    "max_concurrent": (int, 1),
    "cpus_per_trial": (int, 1),
    "scheduler": (str, None),
    "search": (str, None),
    "grace_period": (int, 1),
    "reduction_factor": (int, 2),
    "search_seed": (int, 0),
}


def load_study(path: str | Path, overrides: dict[str, Any] | None = None) -> Study:
    """Read and check a study file; ``overrides`` replace [train] values (``--set``).

    Args:
        path: the study's TOML file.
        overrides: ``{field: value}`` replacing values of the ``[train]`` table.

    Raises:
        FileNotFoundError: no such file.
        ValueError: anything wrong in the file, naming the table, the key, what was expected
            and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no study file {path}")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from err
    where = str(path)
    unknown = sorted(set(document) - set(_TABLES))
    if unknown:
        raise ValueError(
            f"{where}: unknown top-level keys or tables {unknown}; a study file has the tables "
            f"{list(_TABLES)}"
        )
    for table in _TABLES:
        if table in document and not isinstance(document[table], dict):
            raise ValueError(f"{where}: [{table}] must be a table, got {document[table]!r}")

    options = dict(document.get("study", {}))
    name = options.pop("name", path.stem)
    description = options.pop("description", "")
    recipe = options.pop("recipe", "default")
    for key, value in (("name", name), ("description", description), ("recipe", recipe)):
        if not isinstance(value, str):
            raise ValueError(f"{where}: [study] {key} must be a string, got {value!r}")
    if not name or any(c in name for c in "/\\") or name in (".", ".."):
        raise ValueError(f"{where}: [study] name must be a plain folder name, got {name!r}")
    if recipe not in RECIPES:
        raise ValueError(
            f"{where}: [study] recipe must be one of {sorted(RECIPES)}, got {recipe!r}"
        )
    unknown = sorted(set(options) - set(_STUDY_OPTIONS))
    if unknown:
        known = sorted(["name", "description", "recipe", *_STUDY_OPTIONS])
        raise ValueError(f"{where}: unknown [study] keys {unknown}; known keys: {known}")
    for key, value in options.items():
        _check_option(key, value, f"{where}: [study]")

    file_train = dict(document.get("train", {}))
    _check_fields(file_train, f"{where}: [train]")
    overrides = dict(overrides or {})
    _check_fields(overrides, "--set")
    given = {**RECIPES[recipe], **file_train, **overrides}
    try:
        base = resolve_config(recipe, {**file_train, **overrides}).to_dict()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: [train] is not a valid training config: {err}") from err
    # Options a config derives from others when left unset (momentum from the optimizer, say)
    # stay unset in the base, so that each trial derives them from its own optimizer.
    for field in dataclasses.fields(TrainConfig):
        if field.default is None and field.name not in given:
            base[field.name] = None

    space = _parse_space(document.get("space", {}), base, where)
    study = Study(
        name=name,
        train=base,
        space=space,
        description=description,
        source=where,
        **options,
    )
    _check_combination(study, where)
    return study


def parse_override(text: str) -> tuple[str, Any]:
    """``"FIELD=VALUE"`` -> ``(field, value)``, VALUE read as a TOML value (``lr=0.1``,
    ``flip=false``, ``optimizer="adam"``), or as a plain string when it is not one
    (``data=../cifar10.zip``).

    Args:
        text: one ``--set`` argument.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set expects FIELD=VALUE, got {text!r}")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


# --- checks ----------------------------------------------------------------------------------
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a TOML value fits a TrainConfig field's type (an int is a valid float)."""
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin = typing.get_origin(hint)
    if origin is tuple:  # TOML has arrays, not tuples: TrainConfig takes lists for tuples
        return isinstance(value, (list, tuple))
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, hint)


def _check_fields(values: dict[str, Any], where: str) -> None:
    """Every key a TrainConfig field the user may set, every value of the field's type."""
    hints = _field_types()
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ValueError(f"{where}: unknown TrainConfig fields {unknown}; known: {sorted(hints)}")
    reserved = sorted(set(values) & set(RESERVED_FIELDS))
    if reserved:
        raise ValueError(
            f"{where}: {reserved} cannot be set in a study: the sweep gives each trial its own "
            "run folder (under --out) and turns progress bars off"
        )
    for key, value in values.items():
        if not _accepts(hints[key], value):
            raise ValueError(
                f"{where}: {key} must be {_type_name(hints[key])}, got {value!r} "
                f"({type(value).__name__})"
            )


def _check_option(key: str, value: Any, where: str) -> None:
    kind, minimum = _STUDY_OPTIONS[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where} {key} must be {kind.__name__}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where} {key} must be >= {minimum}, got {value}")
    if key == "scheduler" and value not in SCHEDULERS:
        raise ValueError(f"{where} scheduler must be one of {list(SCHEDULERS)}, got {value!r}")
    if key == "search" and value not in SEARCHES:
        raise ValueError(f"{where} search must be one of {list(SEARCHES)}, got {value!r}")


def _check_value(base: dict[str, Any], name: str, value: Any, where: str) -> None:
    """The base config with ``name = value`` must be a valid TrainConfig."""
    try:
        TrainConfig.from_dict({**base, name: value})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {name} = {value!r} is not a valid setting: {err}") from err


def _parse_space(space: dict[str, Any], base: dict[str, Any], where: str) -> tuple:
    if not space:
        raise ValueError(
            f"{where}: the search space is empty: add a [space] table with at least one field, "
            'e.g. lr = { loguniform = [0.001, 0.1] } or optimizer = { grid = ["sgd", "adam"] }'
        )
    hints = _field_types()
    parameters = []
    for name, spec in space.items():
        here = f"{where}: [space] {name}"
        if name not in hints and _is_bundle(spec):
            parameters.append(_parse_bundle(name, spec, base, here))
            continue
        if name not in hints:
            raise ValueError(
                f"{here}: unknown TrainConfig field (a name that is not a field takes a grid or "
                f"choice of tables of settings); known fields: {sorted(hints)}"
            )
        if name in RESERVED_FIELDS:
            raise ValueError(f"{here}: the sweep sets {name} itself; it cannot be searched")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise ValueError(
                f"{here}: expected one of {{ grid = [...] }}, {{ choice = [...] }}, "
                f"{{ uniform = [low, high] }}, {{ loguniform = [low, high] }}; got {spec!r}"
            )
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise ValueError(f"{here}: {kind} needs a non-empty list, got {values!r}")
        if kind in ("grid", "choice"):
            for value in values:
                if not _accepts(hints[name], value):
                    raise ValueError(
                        f"{here}: {kind} value {value!r} is not {_type_name(hints[name])}"
                    )
                _check_value(base, name, value, here)
            parameters.append(SearchParameter(name, kind, values=tuple(values)))
            continue
        if not _accepts(hints[name], 0.5):
            raise ValueError(
                f"{here}: {kind} draws real numbers, but {name} is {_type_name(hints[name])}; "
                f"use {{ choice = [...] }} or {{ grid = [...] }} instead"
            )
        numbers_ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if len(values) != 2 or not numbers_ok:
            raise ValueError(f"{here}: {kind} needs [low, high] (two numbers), got {values!r}")
        low, high = float(values[0]), float(values[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"{here}: {kind} needs finite low < high, got [{low}, {high}]")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"{here}: loguniform needs 0 < low < high, got [{low}, {high}]")
        for end in (low, high):
            _check_value(base, name, end, here)
        parameters.append(SearchParameter(name, kind, low=low, high=high))
    return tuple(parameters)


def _is_bundle(spec: Any) -> bool:
    if not isinstance(spec, dict) or len(spec) != 1:
        return False
    values = next(iter(spec.values()))
    return isinstance(values, list) and bool(values) and all(isinstance(v, dict) for v in values)


def _parse_bundle(name: str, spec: dict[str, Any], base: dict[str, Any], here: str):
    """A grid or choice of tables of settings, each labelled (its ``label`` or its settings)."""
    kind, tables = next(iter(spec.items()))
    if kind not in ("grid", "choice"):
        raise ValueError(f"{here}: a table of settings takes grid or choice, got {kind}")
    labels = []
    for table in tables:
        if not table:  # a labelled table of no settings is the base config ("reference")
            raise ValueError(
                f"{here}: the table {{}} sets no field and has no label; write "
                '{ label = "reference" } for the base settings'
            )
        label = table.get("label", ", ".join(f"{k}={v}" for k, v in table.items()))
        if not isinstance(label, str) or not label:
            raise ValueError(f"{here}: label must be a non-empty string, got {label!r}")
        settings = {k: v for k, v in table.items() if k != "label"}
        _check_fields(settings, here)
        try:
            TrainConfig.from_dict({**base, **settings})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{here}: {label!r} is not a valid setting: {err}") from err
        labels.append(label)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"{here}: labels must differ, got {duplicates} more than once")
    return SearchParameter(name, kind, values=tuple(labels), bundles=tuple(map(dict, tables)))


def _check_combination(study: Study, where: str) -> None:
    if study.search == "optuna":
        grid = [p.field for p in study.space if p.kind == "grid"]
        if grid:
            raise ValueError(
                f"{where}: search 'optuna' draws every value; {grid} use grid, which Optuna "
                "cannot search: make them { choice = [...] } or use search 'random'"
            )
    if study.scheduler == "asha" and study.grace_period > study.max_epochs:
        raise ValueError(
            f"{where}: ASHA's grace_period ({study.grace_period} epochs) exceeds the most epochs "
            f"a trial runs ({study.max_epochs})"
        )
