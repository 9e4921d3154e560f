"""The demo's "Next:" hint names the notebooks where they are: pip does not
install notebooks/, so outside a checkout it says where they come from."""

import shutil
from pathlib import Path

from ottolytics.tools.demo import _notebooks_hint, run_demo

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "failure_investigation.ipynb"


def test_in_a_checkout_the_hint_opens_the_notebook(monkeypatch):
    assert NOTEBOOK.is_file()
    monkeypatch.chdir(ROOT)
    assert _notebooks_hint("data/sample", "x.db") == \
        "jupyter lab notebooks/failure_investigation.ipynb"


def test_from_elsewhere_the_hint_finds_the_checkout_of_the_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _notebooks_hint(str(ROOT / "data" / "sample"), "x.db") == f"jupyter lab {NOTEBOOK}"


def test_outside_a_checkout_the_demo_says_where_the_notebooks_are(tmp_path, capsys,
                                                                   monkeypatch):
    sample = tmp_path / "copy" / "sample"
    shutil.copytree(ROOT / "data" / "sample", sample, symlinks=True)
    monkeypatch.chdir(tmp_path)
    assert run_demo(sample=str(sample)) == 0
    out = capsys.readouterr().out
    assert "jupyter lab" not in out
    db = tmp_path / "demo-output" / "home" / "ottolytics.db"
    assert "the notebooks are not installed with the package" in out
    assert "notebooks/ of ottolytics's source" in out
    assert f'STORE = "{db}"' in out and db.is_file()
