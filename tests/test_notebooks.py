"""Every notebook runs top to bottom on the sample (nbclient + ipykernel); a cell
error fails the test. They are committed with outputs cleared, and running them
leaves data/sample as it was."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from test_demo import _digest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == {"failure_investigation", "weekly_report",
                                          "trends_and_disk"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_opening_with_the_store_line(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert code[0].source.startswith('STORE = "../data/sample/ottolytics.db"')
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code) // 2  # narrative


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, tmp_path):
    before = _digest(ROOT / "data" / "sample")
    nb = nbformat.read(path, as_version=4)
    # Run from a copy of notebooks/ so outputs (the weekly CSV) land in tmp_path.
    work = tmp_path / "notebooks"
    work.mkdir()
    (tmp_path / "data").symlink_to(ROOT / "data")
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 1, "the plots should render inline"
    assert _digest(ROOT / "data" / "sample") == before
