"""The public API is documented: every module on the site's API pages, every class and function
it exports, and every public method of those classes has a docstring that opens with a summary
sentence and names every argument.

The modules are read from ``docs/api/*.md`` (the ``::: module`` lines mkdocstrings renders), so a
module added to the site is checked too. A module's public objects are its ``__all__``, or, where
it has none, the public names defined in it. A dataclass field counts as documented when the
docstring names it or a comment sits on its line or right above it (the field's own
documentation).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def documented_modules() -> list[str]:
    """Every module an API page renders, in page order."""
    modules = []
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        for match in re.finditer(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.M):
            if match.group(1) not in modules:
                modules.append(match.group(1))
    return modules


def public_objects(module_name: str) -> list[tuple[str, object]]:
    """The classes and functions ``module_name`` offers, by their qualified names."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module_name
        ]
    objects = []
    for name in names:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            objects.append((f"{module_name}.{name}", value))
    return objects


def summary_problem(doc: str | None) -> str | None:
    """Why ``doc`` does not open with a summary sentence, or None when it does."""
    if not doc or not doc.strip():
        return "no docstring"
    first_paragraph = inspect.cleandoc(doc).split("\n\n")[0].strip()
    if not first_paragraph.endswith((".", ":")):
        return f"the summary {first_paragraph!r} is not a sentence (no closing period)"
    return None


def commented_fields(cls: type) -> set[str]:
    """Dataclass fields with a comment on their line of the class body, or right above it."""
    try:
        source = inspect.getsource(cls)
    except OSError:  # pragma: no cover - source is always there for the package
        return set()
    same_line = re.findall(r"^\s+(\w+)\s*:[^\n#]*#", source, re.M)
    line_above = re.findall(r"^\s+#[^\n]*\n\s+(\w+)\s*:", source, re.M)
    return set(same_line) | set(line_above)


def undocumented_arguments(obj: object, doc: str) -> list[str]:
    """Arguments of a function (or a class's constructor) that its docstring does not name."""
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            fields = [
                field.name
                for field in dataclasses.fields(obj)
                if field.init and not field.name.startswith("_")
            ]
            commented = commented_fields(obj)
            return [name for name in fields if name not in commented and not _names(doc, name)]
        if obj.__init__ is object.__init__:
            return []
        target = obj.__init__
        doc = doc + "\n" + (target.__doc__ or "")
    else:
        target = obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    missing = []
    for name, parameter in signature.parameters.items():
        if name in ("self", "cls") or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            continue
        if not _names(doc, name):
            missing.append(name)
    return missing


def _names(doc: str, name: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}\b", doc) is not None


def inherited_doc(cls: type, name: str) -> str | None:
    """The docstring of ``cls.name``, or of the method it overrides (as ``inspect.getdoc``)."""
    for klass in cls.__mro__:
        attribute = vars(klass).get(name)
        if attribute is None:
            continue
        function = attribute.fget if isinstance(attribute, property) else attribute
        function = getattr(function, "__func__", function)
        if getattr(function, "__doc__", None):
            return function.__doc__
    return None


def public_methods(cls: type) -> list[str]:
    """Methods and properties the class itself defines, not starting with ``_``."""
    return [
        name
        for name, attribute in vars(cls).items()
        if not name.startswith("_")
        and (
            inspect.isfunction(attribute)
            or isinstance(attribute, (property, classmethod, staticmethod))
        )
    ]


MODULES = documented_modules()


def test_the_api_pages_cover_the_public_packages() -> None:
    required = {
        "scratchcnn",
        "scratchcnn.layers",
        "scratchcnn.backend",
        "scratchcnn.fast",
        "scratchcnn.functional",
        "scratchcnn.models",
        "scratchcnn.optim",
        "scratchcnn.data",
        "scratchcnn.training",
        "scratchcnn.analysis.interpret",
        "scratchcnn.interop.bridge",
        "scratchcnn.tools.gradcheck",
        "scratchcnn.viz",
        "scratchcnn.report",
        "scratchcnn.studies",
        "scratchcnn.serialization",
        "scratchcnn.errors",
    }
    assert required <= set(MODULES), f"no API page renders {sorted(required - set(MODULES))}"


@pytest.mark.parametrize("module_name", MODULES)
def test_public_objects_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    problems = []
    if summary_problem(module.__doc__):
        problems.append(f"module {module_name}: {summary_problem(module.__doc__)}")
    for name, obj in public_objects(module_name):
        problem = summary_problem(obj.__doc__)
        if problem:
            problems.append(f"{name}: {problem}")
            continue
        missing = undocumented_arguments(obj, obj.__doc__)
        if missing:
            problems.append(f"{name}: the docstring does not name the argument(s) {missing}")
        if inspect.isclass(obj):
            for method in public_methods(obj):
                problem = summary_problem(inherited_doc(obj, method))
                if problem:
                    problems.append(f"{name}.{method}: {problem}")
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_are_for() -> None:
    """The helpers above flag a missing summary, an unnamed argument and an undocumented field."""

    def undocumented(x):
        pass

    def no_sentence(x):
        """a fragment without a period"""

    def unnamed(x, rng):
        """Uses ``x`` only."""

    @dataclasses.dataclass
    class Fields:
        """Holds ``a``."""

        a: int
        b: int
        c: int  # documented by its comment
        # documented by the comment above it
        d: int

    assert summary_problem(undocumented.__doc__) == "no docstring"
    assert "not a sentence" in summary_problem(no_sentence.__doc__)
    assert undocumented_arguments(unnamed, unnamed.__doc__) == ["rng"]
    assert undocumented_arguments(Fields, Fields.__doc__) == ["b"]
