"""Stored paths resolve by one rule (core.paths' rule tables), compiled both to
the SQL the read engine runs and to the Python that info, the log readers and
the MCP server call: the two agree on every odd input, in DuckDB and in SQLite."""

import itertools
import os
import sqlite3

import duckdb
import pytest

from ottolytics.analyze.sources import sqlite as sqlite_source
from ottolytics.core import paths

STORED = [None, "", "a.log", "tasks/x/stdout.log", "/abs/f.log", "../x.log", "~/x.log",
          "./a", "a//b", "/", "//double", "dir/", "it's.log", "ünï cødé/l.log", "%_/x"]
RUN_DIRS = [None, "", "ottolytics/runs/a", "proj/123/", "/abs/run", "/abs/run/", "~/r",
            "../up", "/", ".", "o'neil/run"]
HOMES = ["/h", "/h/", "~/otto", None, "rel/home", "/with space/it's"]


@pytest.fixture(params=["OTTO_HOME set", "OTTO_HOME unset"])
def env(request, monkeypatch):
    monkeypatch.setenv("HOME", "/users/u")
    if request.param == "OTTO_HOME set":
        monkeypatch.setenv("OTTO_HOME", "/env/otto")
    else:
        monkeypatch.delenv("OTTO_HOME", raising=False)


def _rows():
    return list(itertools.product(STORED, RUN_DIRS))


def _duckdb(expr):
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, p VARCHAR, rd VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                    [(i, p, rd) for i, (p, rd) in enumerate(_rows())])
    return [v for _i, v in con.execute(f"SELECT i, {expr} FROM t ORDER BY i").fetchall()]


def _sqlite(expr):
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (i INTEGER, p TEXT, rd TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)",
                    [(i, p, rd) for i, (p, rd) in enumerate(_rows())])
    return [v for _i, v in con.execute(f"SELECT i, {expr} FROM t ORDER BY i").fetchall()]


@pytest.mark.parametrize("home", HOMES)
@pytest.mark.parametrize("engine", [_duckdb, _sqlite])
def test_task_paths_resolve_alike_in_sql_and_python(home, engine, env):
    want = [paths.task_path_from_stored(p, rd, home) for p, rd in _rows()]
    assert engine(paths.stored_path_sql("p", "rd", home)) == want
    assert engine(sqlite_source._path_expr("p", "rd", home)) == want


@pytest.mark.parametrize("home", HOMES)
@pytest.mark.parametrize("engine", [_duckdb, _sqlite])
def test_run_dirs_resolve_alike_in_sql_and_python(home, engine, env):
    want = [paths.from_stored(rd, home) for _p, rd in _rows()]
    assert engine(paths.run_dir_sql("rd", home)) == want
    assert engine(sqlite_source._run_dir_expr("rd", home)) == want


def test_the_rule_itself(env):
    home = "/h"
    assert paths.task_path_from_stored(None, "r", home) is None
    assert paths.task_path_from_stored("/a/b.log", "r", home) == "/a/b.log"
    assert paths.task_path_from_stored("x.log", None, home) == "/h/x.log"
    assert paths.task_path_from_stored("x.log", "", home) == "/h/x.log"
    assert paths.task_path_from_stored("x.log", "/run/", home) == "/run/x.log"
    assert paths.task_path_from_stored("x.log", "p/1", home) == "/h/p/1/x.log"
    assert paths.task_path_from_stored("x.log", "p/1", "~/o") == "/users/u/o/p/1/x.log"
    assert paths.from_stored("p/1") == os.path.join(paths.otto_home(), "p/1")


@pytest.mark.parametrize("path, tree, inside", [
    ("/a/b", "/a/b", True), ("/a/b/c", "/a/b", True), ("/a/b/c", "/a/b/", True),
    ("/a/bc", "/a/b", False), ("/a", "/a/b", False), ("/x/y", "/", True),
    ("/a/b/../c", "/a/b", False),
])
def test_one_containment_rule(path, tree, inside):
    assert paths.is_inside(path, tree) is inside
