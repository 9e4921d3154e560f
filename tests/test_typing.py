"""The public API is typed (py.typed, hints on open, History, Recorder and
AsyncRecorder): tests/typing_usage.py, which uses it as the docs show, passes
mypy, and misuse that the hints exist to catch is caught."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mypy(*args):
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def test_the_package_says_it_is_typed():
    assert (ROOT / "ottolytics" / "py.typed").is_file()
    assert 'ottolytics = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_the_documented_usage_type_checks():
    code, out = _mypy()
    assert code == 0, out


def test_misuse_is_caught(tmp_path):
    bad = tmp_path / "misuse.py"
    bad.write_text(textwrap.dedent("""\
        import ottolytics

        h = ottolytics.open("x.db")
        h.regressions("build", windw=12)
        h.success_rate(freq=7)
        h.flaky(window="20")
        rec = ottolytics.Recorder("x.db", max_run_age=[1])
        rec.run(project="web").task(3)
        ottolytics.AsyncRecorder("x.db", quiet=True)
        """))
    code, out = _mypy(str(bad))
    assert code == 1, out
    for line, expected in ((4, 'Unexpected keyword argument "windw"'),
                           (5, 'Argument "freq" to "success_rate" of "History" has '
                               'incompatible type "int"'),
                           (6, 'Argument "window" to "flaky" of "History" has '
                               'incompatible type "str"'),
                           (7, 'Argument "max_run_age" to "Recorder" has incompatible type'),
                           (8, 'Argument 1 to "task" of "Run" has incompatible type "int"'),
                           (9, 'Unexpected keyword argument "quiet" for "AsyncRecorder"')):
        assert f"misuse.py:{line}: error: {expected}" in out, out


def test_dir_shows_the_lazy_public_names_and_not_the_plumbing():
    import ottolytics
    names = dir(ottolytics)
    assert set(ottolytics.__all__) <= set(names)
    assert "TYPE_CHECKING" not in names
    assert all(getattr(ottolytics, n) is not None for n in ottolytics.__all__)


def test_star_imports_expose_no_sql_builders_or_connections():
    import ottolytics
    from ottolytics.analyze import history
    space: dict = {}
    exec("from ottolytics.analyze.history import *", space)
    exposed = set(space) - {"__builtins__"}
    assert exposed == {"History", "open"}
    assert exposed <= set(history.__all__) and ottolytics.History is space["History"]
    for module in ("analyze.analytics", "analyze.stats", "analyze.weekly", "analyze.freq",
                   "analyze.plots", "analyze.duck", "export.prometheus", "export.report",
                   "analyze.sources.base", "analyze.sources.parquet", "analyze.sources.sqlite",
                   "analyze.sources.types"):
        space = {}
        exec(f"from ottolytics.{module} import *", space)
        exposed = set(space) - {"__builtins__"}
        # only what the module itself defines, none of what it imports
        assert exposed, module
        assert not exposed & {"pd", "np", "duckdb", "os", "re", "sqlite3", "Any",
                              "TYPE_CHECKING", "SQL_VIEWS"}, module
