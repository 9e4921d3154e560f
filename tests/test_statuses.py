"""Statuses and their order are defined once, in store/statuses.py."""

import ast
import pathlib
import re
import sqlite3

import pytest

import ottolytics
from ottolytics.store import statuses
from ottolytics.store.statuses import RUN_STATUSES, TASK_STATUSES

PACKAGE = pathlib.Path(ottolytics.__file__).parent
KNOWN = set(RUN_STATUSES) | set(TASK_STATUSES)


def _status_lists(path):
    """(line, values) of every literal tuple, list or set of three or more statuses
    (a restated list or order; two, such as otto's own ``("failed", "skipped")``,
    are often another tool's vocabulary)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 3 and all(
                isinstance(e, ast.Constant) and e.value in KNOWN for e in node.elts):
            yield node.lineno, [e.value for e in node.elts]


def test_no_module_restates_a_list_of_statuses():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {values}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "statuses.py"
             for line, values in _status_lists(path)]
    assert not found, "use ottolytics.store.statuses instead of:\n" + "\n".join(found)


# A quoted SQL list of two or more statuses, as in "status IN ('success', 'failed')".
_SQL_LIST = re.compile(r"\(\s*'(?:{0})'(?:\s*,\s*'(?:{0})')+\s*\)".format(
    "|".join(sorted(KNOWN))))
# SQL that may keep its quoted list: schema v1's (a past schema version's SQL
# never changes; it is the SQL of UNFINISHED).
_SQL_FROZEN = {"store/migrations.py": ["('pending', 'running')"]}


def _sql_status_lists(path):
    return _SQL_LIST.findall(path.read_text(encoding="utf-8"))


def test_no_module_restates_a_list_of_statuses_in_sql():
    found = [f"{path.relative_to(PACKAGE.parent)}: {lists}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "statuses.py"
             for lists in [_sql_status_lists(path)]
             if lists and lists != _SQL_FROZEN.get(path.relative_to(PACKAGE).as_posix())]
    assert not found, ("build SQL lists with statuses.sql_in(statuses.OUTCOMES, ...) "
                       "instead of:\n" + "\n".join(found))
    assert _SQL_LIST.findall("status IN ('success','failed') OR x IN ( 'pending' , "
                             "'running' )") == ["('success','failed')",
                                                "( 'pending' , 'running' )"]
    assert not _SQL_LIST.findall("status IN ('success') AND name IN ('a', 'b')")
    frozen = _SQL_FROZEN["store/migrations.py"][0]
    assert frozen.replace(" ", "") == statuses.sql_in(statuses.UNFINISHED)


def test_the_schema_takes_exactly_these_statuses(tmp_path):
    from ottolytics.store.connection import Store
    Store.open(str(tmp_path / "s.db")).close()
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("INSERT INTO projects (id, name, created_at) VALUES (1, 'p', 0)")
    for status in RUN_STATUSES:
        conn.execute("INSERT INTO runs (uid, project_id, status, started_at) VALUES (?, 1, ?, 0)",
                     (f"r-{status}", status))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO runs (uid, project_id, status, started_at) "
                     "VALUES ('x', 1, 'pending', 0)")
    rid = conn.execute("SELECT id FROM runs LIMIT 1").fetchone()[0]
    for n, status in enumerate(TASK_STATUSES):
        conn.execute("INSERT INTO tasks (run_id, name, attempt, status) VALUES (?, ?, 1, ?)",
                     (rid, f"t{n}", status))
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO tasks (run_id, name, attempt, status) "
                     "VALUES (?, 'bad', 1, 'done')", (rid,))
    conn.close()


def test_the_derived_sets_are_subsets_in_order():
    assert statuses.RUN_END_STATUSES == ("success", "failed", "interrupted")
    assert set(statuses.OUTCOMES) <= set(RUN_STATUSES) & set(TASK_STATUSES)
    assert set(statuses.TERMINAL_TASK) <= set(TASK_STATUSES)
    assert sorted(statuses.TASK_COUNT_ORDER) == sorted(set(TASK_STATUSES) - {"pending"})
    assert statuses.sql_in(("a", "b")) == "('a','b')"


def test_frames_order_statuses_as_defined(db):
    from known_history import record
    from ottolytics import open as open_history
    record(db)
    with open_history(db) as h:
        assert tuple(h.runs()["status"].cat.categories) == RUN_STATUSES
        assert tuple(h.tasks()["status"].cat.categories) == TASK_STATUSES


@pytest.mark.parametrize("successes, failures", [(0, 0), (3, 1), (0, 2), (5, 0), (1, 2)])
def test_the_success_rate_has_one_definition_in_python_and_sql(successes, failures):
    import duckdb
    from ottolytics.analyze.analytics import success_rate_sql
    rows = ", ".join(["('success')"] * successes + ["('failed')"] * failures
                     + ["('skipped')", "('interrupted')", "('running')"])
    got = duckdb.sql(f"SELECT {success_rate_sql()} FROM (VALUES {rows}) v(status)").fetchone()[0]
    want = statuses.success_rate(successes, failures)
    assert got == pytest.approx(want) if want is not None else got is None
    assert want is None if successes + failures == 0 else want == successes / (
        successes + failures)
