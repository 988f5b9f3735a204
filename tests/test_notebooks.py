"""The tutorial notebooks run top to bottom, each in a fresh kernel with the repository root as
its working directory, with the small sizes of ``SCRATCHCNN_NOTEBOOK_QUICK=1``.

A cell that raises (an assertion of the notebook included) fails the test and names the cell.
Notebooks are kept as jupytext percent-format ``.py`` files; a notebook whose header metadata
says ``scratchcnn: {needs_data: cifar10}`` is skipped when the real CIFAR-10 copy
(``../shared/datasets/cifar10-jpeg.zip`` beside the checkout) is absent.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
CIFAR_ZIP = ROOT.parent / "shared/datasets/cifar10-jpeg.zip"
CELL_TIMEOUT_S = 300  # a cell of the quick sizes takes seconds; this only stops a hang


def needs(notebook: nbformat.NotebookNode) -> str | None:
    """The dataset a notebook declares it needs in its header, if any."""
    return notebook.metadata.get("scratchcnn", {}).get("needs_data")


def notebook_params() -> list:
    params = []
    for path in NOTEBOOKS:
        marks = []
        if needs(jupytext.read(path)) == "cifar10":
            # quick mode reads a few thousand images (seconds), so CI runs these too
            marks = [pytest.mark.skipif(not CIFAR_ZIP.is_file(), reason=f"needs {CIFAR_ZIP}")]
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_all_six_tutorials_are_collected() -> None:
    assert [path.stem[:2] for path in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRATCHCNN_NOTEBOOK_QUICK", "1")  # the kernel inherits the environment
    notebook = jupytext.read(path)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},  # the kernel's working directory
    )
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{err}", pytrace=False)


def test_a_failing_cell_fails_the_run() -> None:
    """The runner above really executes the cells: an assertion error in one is reported."""
    notebook = jupytext.reads(
        "# %%\nx = 1\n\n# %%\nassert x == 2, 'x is not 2'\n", fmt="py:percent"
    )
    client = NotebookClient(notebook, timeout=60, kernel_name="python3")
    with pytest.raises(CellExecutionError, match="x is not 2"):
        client.execute()
