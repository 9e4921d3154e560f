"""``ottolytics.open()`` and ``History``: the run history as pandas frames, via DuckDB.

    h = ottolytics.open(since="30d", project="web")
    h.tasks()                      # one row per task attempt
    h.success_rate(by="task", freq="W")
    h.sql("SELECT task, count(*) FROM tasks GROUP BY task")

Filters (``since``, ``until``, ``project``, ``task``, ``status``) are pushed into
the SQL that SQLite runs, so a narrow question reads few rows. Several stores
(one per host, say) read as one. Timestamps are tz-aware UTC, durations are
float seconds (``duration_s``), statuses are categoricals in a fixed order.
"""

import os
from collections.abc import Sequence
from datetime import date

import pandas as pd
import pyarrow as pa

from ottolytics.analyze import duck
from ottolytics.store.migrations import RUN_STATUSES, TASK_STATUSES
from ottolytics.core.paths import db_path, run_dir_sql, stored_path_sql
from ottolytics.core import timeutil

# The store's columns the read path uses, with their DuckDB types.
SOURCE_TYPES = {
    "runs": {"id": "BIGINT", "uid": "VARCHAR", "project_id": "BIGINT", "status": "VARCHAR",
             "started_at": "DOUBLE", "finished_at": "DOUBLE", "args": "VARCHAR",
             "ottofile": "VARCHAR", "user": "VARCHAR", "host": "VARCHAR", "cwd": "VARCHAR",
             "run_dir": "VARCHAR", "size_bytes": "BIGINT", "source": "VARCHAR",
             "source_ref": "VARCHAR", "derived": "VARCHAR"},
    "projects": {"id": "BIGINT", "name": "VARCHAR"},
    "tasks": {"id": "BIGINT", "run_id": "BIGINT", "name": "VARCHAR", "attempt": "BIGINT",
              "status": "VARCHAR", "started_at": "DOUBLE", "finished_at": "DOUBLE",
              "exit_code": "BIGINT", "signal": "BIGINT", "cpu_user_s": "DOUBLE",
              "cpu_system_s": "DOUBLE", "peak_rss_bytes": "BIGINT", "script_hash": "VARCHAR",
              "script_path": "VARCHAR", "stdout_path": "VARCHAR", "stderr_path": "VARCHAR",
              "derived": "VARCHAR", "status_logged": "BIGINT"},
    "task_stderr": {"task_id": "BIGINT", "tail": "VARCHAR"},
    "task_deps": {"task_id": "BIGINT", "depends_on": "VARCHAR"},
    "status_log": {"run_id": "BIGINT", "task_id": "BIGINT", "from_status": "VARCHAR",
                   "to_status": "VARCHAR", "at": "DOUBLE", "reason": "VARCHAR"},
    "run_params": {"run_id": "BIGINT", "key": "VARCHAR", "value": "VARCHAR"},
    "log_fragments": {"run_id": "BIGINT", "task_id": "BIGINT", "stream": "VARCHAR",
                      "seq": "BIGINT", "at": "DOUBLE", "data": "VARCHAR"},
    "disk_samples": {"at": "DOUBLE", "project": "VARCHAR", "runs": "BIGINT",
                     "run_bytes": "BIGINT", "cache_bytes": "BIGINT",
                     "orphan_cache_bytes": "BIGINT", "other_bytes": "BIGINT"},
}

RUN_COLUMNS = ["run_id", "project", "status", "started_at", "finished_at", "duration_s",
               "host", "user", "cwd", "ottofile", "args", "run_dir", "size_bytes", "source",
               "source_ref", "derived"]
TASK_COLUMNS = ["run_id", "project", "host", "task", "attempt", "status", "started_at",
                "finished_at", "duration_s", "exit_code", "signal", "cpu_user_s", "cpu_system_s",
                "peak_rss_bytes", "script_hash", "script_path", "stdout_path", "stderr_path",
                "derived", "run_started_at"]
TRANSITION_COLUMNS = ["run_id", "task", "attempt", "from_status", "to_status", "at", "reason"]


def open(db: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None, *,
         since: str | float | date | None = None,
         until: str | float | date | None = None,
         project: str | list[str] | None = None, task: str | list[str] | None = None,
         status: str | list[str] | None = None,
         home: str | os.PathLike[str] | None = None) -> "History":
    """Open a run history: one store, several read as one, or a Parquet dataset.

    The filters apply to everything the History returns, and are pushed down to
    SQLite, so a narrow question reads few rows.

    Parameters
    ----------
    db : str, path, or a list or tuple of them, optional
        A store file, a list of store files (one per host, say), or a Parquet
        dataset directory written by ``to_parquet``. Default: ``$OTTOLYTICS_DB``,
        else ``$OTTO_HOME/ottolytics.db``.
    since, until : str, number, date or datetime, optional
        A duration back from now (``"30d"``, ``"12h"``), a date or datetime, or unix
        seconds. ``until`` is exclusive.
    project, task, status : str or list of str, optional
        Keep only these. ``task`` keeps the tasks of that name and, in ``runs()``
        and what is built on runs, the runs that ran such a task.
    home : str or path, optional
        The directory a store's relative paths resolve against (default: the
        store's directory).

    Returns
    -------
    History
        Close it with ``close()``, or use it as a context manager.

    Example
    -------
    >>> h = ottolytics.open(since="30d", project="api")
    >>> h.success_rate(by="task", freq="W").tail(3)
    >>> with ottolytics.open(status="failed") as failed:
    ...     print(len(failed.tasks()))
    """
    if db is not None and not isinstance(db, (list, tuple)) and os.path.isdir(str(db)):
        from ottolytics.export.parquet import ParquetHistory
        return ParquetHistory(db, since=since, until=until, project=project, task=task,
                              status=status)
    if isinstance(db, (list, tuple)):
        paths = [str(p) for p in db]
    else:
        paths = [db_path(db)]
    return History(paths, since=since, until=until, project=project, task=task, status=status,
                   home=home)


def to_unix(value, now=None):
    """Unix seconds from any form of a point in time: timeutil.to_unix, the one reader."""
    return timeutil.to_unix(value, now)


AT_X = 'x."at"'  # "at" is a keyword in DuckDB
AT_L = 'l."at"'


def _listify(value):
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _ts(expr):
    """Unix seconds -> TIMESTAMPTZ; exported to Arrow as timestamp[us, UTC] (the
    session's TimeZone is UTC), so pandas gets tz-aware columns without a copy."""
    return f"to_timestamp({expr})"


def _path_expr(column, run_dir, home):
    """A stored path made absolute: see the README's 'Where things live'. Built by
    paths.stored_path_sql, the SQL twin of paths.task_path_from_stored."""
    return stored_path_sql(column, run_dir, home)


def _run_dir_expr(run_dir, home):
    return run_dir_sql(run_dir, home)


class _Unchanged:
    """with_filters' default: the filter stays as it is."""

    def __repr__(self):
        return "<unchanged>"


_SAME = _Unchanged()


class History:
    """The run history of one or more stores, with filters applied to everything.

    ``ottolytics.open()`` makes one. Its methods return pandas frames: the frames
    (``runs``, ``tasks``, ``transitions``, ``params``, ``logs``), the analytics
    (``success_rate``, ``flaky``, ``regressions`` ...), ``sql`` and the exports
    (``to_parquet``, ``weekly_report``). The examples of its methods use
    ``h = ottolytics.open()``.
    """

    def __init__(self, paths, *, since=None, until=None, project=None, task=None, status=None,
                 home=None, run=None, _share=None):
        self.paths = [os.path.abspath(str(p)) for p in paths]
        if _share is not None:  # a with_filters view: same stores, same connection
            self.stores, self.con, self.homes = _share.stores, _share.con, _share.homes
            self._shared = True
            self.filters = {"since": to_unix(since), "until": to_unix(until),
                            "project": _listify(project), "task": _listify(task),
                            "status": _listify(status), "run": _listify(run)}
            return
        self._shared = False
        self.stores = duck.Stores(self.paths)
        self.homes = [os.path.abspath(home) if home else os.path.dirname(p) for p in self.paths]
        self.filters = {"since": to_unix(since), "until": to_unix(until),
                        "project": _listify(project), "task": _listify(task),
                        "status": _listify(status), "run": _listify(run)}
        self.con = duck.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        if len(self.paths) > 1:
            # DuckDB 1.5.5's join reordering confuses same-named tables of two attached
            # SQLite stores inside one UNION ALL and reads the first store twice. Our
            # queries are written in a good join order already, so it is turned off.
            self.con.execute("SET disabled_optimizers = 'join_order'")
        enum = lambda values: ", ".join(duck.sqlite_literal(v) for v in values)  # noqa: E731
        self.con.execute(f"CREATE TYPE run_status AS ENUM ({enum(RUN_STATUSES)})")
        self.con.execute(f"CREATE TYPE task_status AS ENUM ({enum(TASK_STATUSES)})")

    def close(self) -> None:
        """Close the stores and the DuckDB connection (a ``with_filters`` view
        shares them: closing it leaves them open for its parent).

        Returns
        -------
        None

        Example
        -------
        >>> one = ottolytics.open()
        >>> one.close()
        """
        if not self._shared:
            self.stores.close()
            self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        shown = {k: v for k, v in self.filters.items() if v is not None}
        return f"History({self.paths!r}, {shown})"

    def with_filters(self, *, since: str | float | date | None | _Unchanged = _SAME,
                     until: str | float | date | None | _Unchanged = _SAME,
                     project: str | list[str] | None | _Unchanged = _SAME,
                     task: str | list[str] | None | _Unchanged = _SAME,
                     status: str | list[str] | None | _Unchanged = _SAME,
                     run: str | list[str] | None | _Unchanged = _SAME) -> "History":
        """A History over the same stores (and connection) with some filters changed.

        Parameters
        ----------
        since, until, project, task, status : optional
            As for ``ottolytics.open``; None removes that filter, and a filter not
            given stays as it is.
        run : str or list of str, optional
            Keep only these run ids.

        Returns
        -------
        History
            A view: closing it leaves the parent's stores open.

        Example
        -------
        >>> failed_api = h.with_filters(project=["api"], status="failed")
        >>> failed_api.runs().head()
        """
        given = {"since": since, "until": until, "project": project, "task": task,
                 "status": status, "run": run}
        f = dict(self.filters, **{k: v for k, v in given.items() if v is not _SAME})
        return type(self)._derived(self, f)

    @classmethod
    def _derived(cls, parent, f):
        return cls(parent.paths, **f, _share=parent)

    # -- reading one store: a typed scan, or a filtered query run by SQLite ----

    def _run_where(self, f):
        """Clauses on runs, in SQLite's SQL (they use its runs indexes)."""
        clauses = []
        if f["since"] is not None:
            clauses.append(f"started_at >= {duck.sqlite_literal(f['since'])}")
        if f["until"] is not None:
            clauses.append(f"started_at < {duck.sqlite_literal(f['until'])}")
        if f["project"]:
            names = ", ".join(duck.sqlite_literal(p) for p in f["project"])
            clauses.append(f"project_id IN (SELECT id FROM projects WHERE name IN ({names}))")
        if f.get("run"):
            clauses.append("uid IN (" + ", ".join(map(duck.sqlite_literal, f["run"])) + ")")
        return clauses

    def _status_clause(self, f):
        return "status IN (" + ", ".join(map(duck.sqlite_literal, f["status"])) + ")"

    def _runs_where(self, f, with_status=True):
        clauses = self._run_where(f)
        if f["task"]:  # runs that ran such a task
            names = ", ".join(map(duck.sqlite_literal, f["task"]))
            clauses.append(f"id IN (SELECT run_id FROM tasks WHERE name IN ({names}))")
        if with_status and f["status"]:
            clauses.append(self._status_clause(f))
        return clauses

    def _tasks_where(self, f, with_status=True):
        clauses = []
        run_clauses = self._run_where(f)
        if run_clauses:
            clauses.append("run_id IN (SELECT id FROM runs WHERE " + " AND ".join(run_clauses)
                           + ")")
        if f["task"]:
            clauses.append("name IN (" + ", ".join(map(duck.sqlite_literal, f["task"])) + ")")
        if with_status and f["status"]:
            clauses.append(self._status_clause(f))
        return clauses

    def _rel(self, alias, table, clauses=(), columns=None):
        """One store's *table* as a typed DuckDB relation.

        Without clauses: DuckDB scans the table (typed, fast for whole tables).
        With clauses: SQLite runs the WHERE itself through sqlite_query, using
        its indexes, so only matching rows cross over (sqlite_query returns text,
        hence the casts, and the *columns* list: text costs ~3 µs a value)."""
        columns = {c: t for c, t in SOURCE_TYPES[table].items()
                   if columns is None or c in columns}
        if not clauses:
            source = f"{alias}.{table}"
        else:
            sql = (f"SELECT {', '.join(f'{chr(34)}{c}{chr(34)}' for c in columns)} FROM {table} WHERE "
                   + " AND ".join(f"({c})" for c in clauses))
            source = f"sqlite_query({duck.sqlite_literal(alias)}, {duck.sqlite_literal(sql)})"
        casts = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in columns.items())
        return f"(SELECT {casts} FROM {source})"

    def _sqlite_tasks_ids(self, f, with_status=True):
        """SQLite SQL selecting the ids of the tasks the filters keep."""
        clauses = self._tasks_where(f, with_status)
        return "SELECT id FROM tasks" + (" WHERE " + " AND ".join(clauses) if clauses else "")

    # -- DuckDB relations over all stores -----------------------------------

    def runs_sql(self, aliases, f=None, status=True):
        f = f or self.filters
        parts = []
        for alias, home in zip(aliases, self.homes):
            parts.append(
                f"SELECT r.uid AS run_id, p.name AS project, "
                f"CAST(r.status AS run_status) AS status, {_ts('r.started_at')} AS started_at, "
                f"{_ts('r.finished_at')} AS finished_at, "
                f"r.finished_at - r.started_at AS duration_s, r.host, r.user, r.cwd, r.ottofile, "
                f"r.args, {_run_dir_expr('r.run_dir', home)} AS run_dir, r.size_bytes, r.source, "
                f"r.source_ref, r.derived "
                f"FROM {self._rel(alias, 'runs', self._runs_where(f, status))} r "
                f"JOIN {self._rel(alias, 'projects')} p ON p.id = r.project_id")
        return " UNION ALL ".join(parts)

    def tasks_sql(self, aliases, f=None, status=True, with_tail=False, with_deps=False,
                  internal=False):
        """Tasks of all stores; with_tail adds stderr_tail (kept out of the hot table),
        with_deps the list of names each task depends on, internal the store's own
        keys (_store, _tid, _logged) for joining other tables without a rescan."""
        f = f or self.filters
        parts = []
        for i, (alias, home) in enumerate(zip(aliases, self.homes)):
            rd = "r.run_dir"
            tail_col = tail_join = ""
            if internal:
                tail_col += f", {i} AS _store, t.id AS _tid, t.status_logged AS _logged"
            if with_deps:  # grouped by the integer task id inside the store, then joined
                deps = (f"SELECT task_id, list(depends_on ORDER BY depends_on) AS depends_on "
                        f"FROM {self._rel(alias, 'task_deps', self._ids_clause(f, status=status))} "
                        f"GROUP BY task_id")
                tail_col += ", dp.depends_on"
                tail_join += f" LEFT JOIN ({deps}) dp ON dp.task_id = t.id"
            if with_tail:
                tail_col += ", s.tail AS stderr_tail"
                tail_join += (f" LEFT JOIN {self._rel(alias, 'task_stderr', self._ids_clause(f, status=status))}"  # noqa: E501
                             " s ON s.task_id = t.id")
            parts.append(
                f"SELECT r.uid AS run_id, p.name AS project, r.host, t.name AS task, t.attempt, "
                f"CAST(t.status AS task_status) AS status, {_ts('t.started_at')} AS started_at, "
                f"{_ts('t.finished_at')} AS finished_at, "
                f"t.finished_at - t.started_at AS duration_s, t.exit_code, t.signal, "
                f"t.cpu_user_s, t.cpu_system_s, t.peak_rss_bytes, t.script_hash, "
                f"{_path_expr('t.script_path', rd, home)} AS script_path, "
                f"{_path_expr('t.stdout_path', rd, home)} AS stdout_path, "
                f"{_path_expr('t.stderr_path', rd, home)} AS stderr_path, t.derived, "
                f"{_ts('r.started_at')} AS run_started_at{tail_col} "
                f"FROM {self._rel(alias, 'tasks', self._tasks_where(f, status))} t "
                f"JOIN {self._rel(alias, 'runs', self._runs_where(f, with_status=False))} r "
                f"ON r.id = t.run_id "
                f"JOIN {self._rel(alias, 'projects')} p ON p.id = r.project_id{tail_join}")
        return " UNION ALL ".join(parts)

    def _by_run(self, f):
        run_clauses = self._run_where(f)
        return ["run_id IN (SELECT id FROM runs WHERE " + " AND ".join(run_clauses) + ")"] \
            if run_clauses else []

    def facts_sql(self, aliases, need=()):
        """Lean task rows for aggregations: task, status, started_at (a TIMESTAMP),
        duration_s, attempt and run_key (unique across stores), plus project,
        host or run_id (the uid) only when *need* names them, since those take
        joins."""
        f = self.filters
        parts = []
        for i, alias in enumerate(aliases):
            cols = (f"t.name AS task, t.status, t.attempt, {_ts('t.started_at')} AS started_at, "
                    f"t.started_at AS started_s, "
                    f"t.finished_at - t.started_at AS duration_s, t.script_hash, "
                    f"{i} * 1099511627776 + t.run_id AS run_key")
            joins = ""
            if {"project", "host", "run_id", "run_started_at"} & set(need):
                wanted = [c for c in ("uid", "host", "started_at") if
                          {"uid": "run_id", "started_at": "run_started_at"}.get(c, c) in need]
                joins = (f" JOIN {self._rel(alias, 'runs', self._runs_where(f, False), ['id', 'project_id'] + wanted)} r "  # noqa: E501
                         f"ON r.id = t.run_id")
                cols += "".join({"uid": ", r.uid AS run_id", "host": ", r.host",
                                 "started_at": f", {_ts('r.started_at')} AS run_started_at"}[c]
                                for c in wanted)
                if "project" in need:
                    joins += f" JOIN {self._rel(alias, 'projects')} p ON p.id = r.project_id"
                    cols += ", p.name AS project"
            lean = ("run_id", "name", "status", "attempt", "started_at", "finished_at",
                    "script_hash")
            parts.append(f"SELECT {cols} FROM "
                         f"{self._rel(alias, 'tasks', self._tasks_where(f), lean)} t{joins}")
        return " UNION ALL ".join(parts)

    def transitions_sql(self, aliases, f=None):
        """Every status change, built in DuckDB from typed scans of tasks and
        status_log exactly as the store's ``transitions`` view builds it. The view
        itself is not read: DuckDB's sqlite scanner parses views with DuckDB's
        parser (which rejects its ``at`` alias), and having SQLite evaluate it
        would send every value back as text."""
        f = f or self.filters
        parts = []
        for alias in aliases:
            t = self._rel(alias, "tasks", self._by_run(f))
            r = self._rel(alias, "runs", self._runs_where(f, with_status=False))
            log = self._rel(alias, "status_log", self._by_run(f))
            parts.append(
                f"SELECT r.uid AS run_id, t.name AS task, t.attempt, "
                f"CAST(NULL AS VARCHAR) AS from_status, 'running' AS to_status, "
                f"{_ts('t.started_at')} AS \"at\", CAST(NULL AS VARCHAR) AS reason "
                f"FROM {t} t JOIN {r} r ON r.id = t.run_id WHERE t.status_logged = 0 "
                f"UNION ALL "
                f"SELECT r.uid, t.name, t.attempt, 'running', t.status, {_ts('t.finished_at')}, "
                f"NULL FROM {t} t JOIN {r} r ON r.id = t.run_id "
                f"WHERE t.status_logged = 0 AND t.status NOT IN ('pending', 'running') "
                f"UNION ALL "
                f"SELECT r.uid, t.name, t.attempt, x.from_status, x.to_status, "
                f"{_ts(AT_X)}, x.reason FROM {log} x JOIN {r} r ON r.id = x.run_id "
                f"LEFT JOIN {t} t ON t.id = x.task_id")
        return " UNION ALL ".join(parts)

    def _ids_clause(self, f, column="task_id", status=True):
        """Restrict a relation to the kept tasks in SQLite, or not at all when the
        filters keep everything (then a typed scan is much faster)."""
        if not self._tasks_where(f, status):
            return []
        return [f"{column} IN ({self._sqlite_tasks_ids(f, status)})"]

    def deps_sql(self, aliases, f=None):
        """(run_id, task, attempt, depends_on) for the tasks the filters keep."""
        f = f or self.filters
        return " UNION ALL ".join(
            f"SELECT r.uid AS run_id, t.name AS task, t.attempt, d.depends_on "
            f"FROM {self._rel(al, 'task_deps', self._ids_clause(f))} d "
            f"JOIN {self._rel(al, 'tasks', self._ids_clause(f, 'id'))} t ON t.id = d.task_id "
            f"JOIN {self._rel(al, 'runs', self._runs_where(f, False))} r ON r.id = t.run_id"
            for al in aliases)

    def logs_sql(self, aliases, f=None):
        """(run_id, task, attempt, stream, seq, at, text) of the stored log fragments."""
        f = f or self.filters
        return " UNION ALL ".join(
            f"SELECT r.uid AS run_id, t.name AS task, t.attempt, l.stream, l.seq, "
            f"{_ts(AT_L)} AS \"at\", l.data AS text "
            f"FROM {self._rel(al, 'log_fragments', self._by_run(f))} l "
            f"JOIN {self._rel(al, 'runs', self._runs_where(f, False))} r ON r.id = l.run_id "
            f"LEFT JOIN {self._rel(al, 'tasks', self._by_run(f))} t ON t.id = l.task_id"
            for al in aliases)

    def log_paths_sql(self, aliases, f=None):
        """The tasks with a stored log path, with what the read rule needs: run_id,
        task, attempt, started_at, source, and the raw stored run_dir,
        stdout_path and stderr_path, plus store_index (the store's index, for its home)."""
        f = f or self.filters
        parts = []
        for i, alias in enumerate(aliases):
            tasks = self._rel(alias, "tasks", self._tasks_where(f) + [
                "(stdout_path IS NOT NULL OR stderr_path IS NOT NULL)"],
                ["id", "run_id", "name", "attempt", "started_at", "stdout_path", "stderr_path"])
            runs = self._rel(alias, "runs", self._runs_where(f, with_status=False),
                             ["id", "uid", "source", "run_dir", "started_at"])
            parts.append(
                f"SELECT r.uid AS run_id, t.name AS task, t.attempt, "
                f"{_ts('t.started_at')} AS started_at, r.source, r.run_dir AS run_dir_stored, "
                f"t.stdout_path AS stdout_stored, t.stderr_path AS stderr_stored, "
                f"{i} AS store_index "
                f"FROM {tasks} t JOIN {runs} r ON r.id = t.run_id")
        return " UNION ALL ".join(parts)

    def tails_sql(self, aliases, f=None):
        """(run_id, task, attempt, started_at, tail) of the stored stderr tails."""
        f = f or self.filters
        return " UNION ALL ".join(
            f"SELECT r.uid AS run_id, t.name AS task, t.attempt, "
            f"{_ts('t.started_at')} AS started_at, s.tail "
            f"FROM {self._rel(al, 'task_stderr', self._ids_clause(f, status=False))} s "
            f"JOIN {self._rel(al, 'tasks', self._ids_clause(f, 'id', status=False), ['id', 'run_id', 'name', 'attempt', 'started_at'])} t "  # noqa: E501
            f"ON t.id = s.task_id "
            f"JOIN {self._rel(al, 'runs', self._runs_where(f, False), ['id', 'uid', 'started_at'])} r "  # noqa: E501
            f"ON r.id = t.run_id"
            for al in aliases)

    def resolve(self, ref: str | int) -> str:
        """The run id that *ref* names; the same resolver as ``ottolytics info``
        and the MCP tools.

        Parameters
        ----------
        ref : str or int
            A run id, a unique prefix of one (at least runinfo.MIN_PREFIX
            characters), otto's unix timestamp, or ``"latest"`` (the newest run
            this History's filters keep; ids and prefixes are looked up whatever
            the time and status filters, as the run methods read a run whole).

        Returns
        -------
        str
            The run id. A ref that names nothing or several runs raises
            ``runinfo.RunNotFound`` (a ``KeyError``) with a one-line message.

        Example
        -------
        >>> h.resolve("latest")
        """
        from ottolytics.manage.runinfo import _FETCHED, choose, ref_clause, ref_order
        ref = str(ref).strip()
        f = self.filters if ref == "latest" else dict(self.filters, since=None, until=None,
                                                      status=None, run=None)
        clause = ref_clause(ref)

        def build(aliases):
            parts = []
            for al in aliases:
                base = self._runs_where(f)
                where = " WHERE " + " AND ".join(base) if base else ""
                if clause is None:
                    pick = f"started_at = (SELECT max(started_at) FROM runs{where})"
                else:
                    pick = (f"id IN (SELECT id FROM runs WHERE {' AND '.join(base + [clause])} "
                            f"ORDER BY {ref_order(ref)} LIMIT {_FETCHED})")
                rel = self._rel(al, "runs", base + [pick], ["uid", "started_at", "source"])
                parts.append(f"SELECT uid, started_at, source FROM {rel}")
            return " UNION ALL ".join(parts)
        if isinstance(self.stores, duck.Stores):
            rows = self.query(build)
        else:  # a Parquet dataset: the same candidates, chosen by DuckDB
            lit = duck.sqlite_literal(ref)
            cond = "true" if clause is None else (
                f"run_id = {lit} OR starts_with(run_id, {lit})"
                + (f" OR (epoch(started_at) >= {int(ref)} AND epoch(started_at) < "
                   f"{int(ref) + 1})" if ref.isdigit() and len(ref) <= 12 else ""))
            rows = self.query(lambda a: f"SELECT run_id, epoch(started_at), source FROM "
                                        f"({self.runs_sql(a, f)}) WHERE {cond} "
                                        f"ORDER BY started_at DESC LIMIT "
                                        f"{1 if clause is None else 10 * _FETCHED}")
        return choose(ref, rows.itertuples(index=False, name=None),
                      where=", ".join(self.paths) + (" (with its filters)" if any(
                          v is not None for v in f.values()) else ""))

    def params_long_sql(self, aliases, f=None):
        f = f or self.filters
        parts = []
        for alias in aliases:
            parts.append(
                f"SELECT r.uid AS run_id, x.key, x.value "
                f"FROM {self._rel(alias, 'run_params', self._by_run(f))} x "
                f"JOIN {self._rel(alias, 'runs', self._runs_where(f, with_status=False))} r "
                f"ON r.id = x.run_id")
        return " UNION ALL ".join(parts)

    # -- running queries ------------------------------------------------------

    def query(self, build_sql):
        """Run SQL built from the attached aliases; return a pandas frame."""
        return self.stores.query(self.con, build_sql, lambda result: _to_pandas(result))

    def query_arrow(self, build_sql):
        """The same, as an Arrow table (for writing files without pandas)."""
        return self.stores.query(self.con, build_sql, _arrow)

    def sql(self, query: str) -> pd.DataFrame:
        """Run DuckDB SQL over the views runs, tasks, transitions and params.

        The views have the frames' columns and types (params is long: run_id,
        key, value), all with this History's filters.

        Parameters
        ----------
        query : str
            DuckDB SQL.

        Returns
        -------
        pandas.DataFrame
            Its result.

        Example
        -------
        >>> h.sql("SELECT task, quantile_cont(duration_s, 0.95) AS p95_s FROM tasks "
        ...       "WHERE status = 'success' GROUP BY task ORDER BY p95_s DESC LIMIT 3")
        """
        def build(aliases):
            for name, body in (("runs", self.runs_sql(aliases)),
                               ("tasks", self.tasks_sql(aliases)),
                               ("transitions", self.transitions_sql(aliases)),
                               ("params", self.params_long_sql(aliases))):
                self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body}")
            return query
        return self.query(build)

    # -- frames -----------------------------------------------------------------

    def runs(self, params: bool = False) -> pd.DataFrame:
        """One row per run, newest first.

        Parameters
        ----------
        params : bool, default False
            Add each run parameter as a ``params.<key>`` column (MLflow's layout),
            pivoted inside DuckDB, so a param never multiplies rows.

        Returns
        -------
        pandas.DataFrame
            run_id, project, status, started_at, finished_at, duration_s and the
            other run columns of the column contract (docs/python-api.md, Frames).

        Example
        -------
        >>> h.runs().head(3)
        >>> h.runs(params=True).filter(like="params.").columns
        """
        df = self.query(lambda a: f"SELECT * FROM ({self.runs_sql(a)}) ORDER BY started_at DESC")
        df = df[RUN_COLUMNS]
        if params:
            wide = self.params()
            wide.columns = ["run_id"] + [f"params.{c}" for c in wide.columns[1:]]
            df = df.merge(wide, on="run_id", how="left")
        return df

    def tasks(self) -> pd.DataFrame:
        """One row per task attempt, in no particular order (sorting a million
        rows in DuckDB would double the load; ``sort_values`` is cheap).

        Returns
        -------
        pandas.DataFrame
            run_id, project, host, task, attempt, status, started_at, finished_at,
            duration_s, exit_code, signal and the other task columns of the column
            contract (docs/python-api.md, Frames).

        Example
        -------
        >>> t = h.tasks()
        >>> t[t["status"] == "failed"].groupby("task").size()
        """
        return self.query(lambda a: f"SELECT * FROM ({self.tasks_sql(a)})")

    def transitions(self) -> pd.DataFrame:
        """Every status change of the runs and tasks (task is empty for the run's
        own), in no particular order.

        Returns
        -------
        pandas.DataFrame
            run_id, task, attempt, from_status, to_status, at, reason.

        Example
        -------
        >>> h.transitions().query("to_status == 'interrupted'").head()
        """
        df = self.query(lambda a: f"SELECT * FROM ({self.transitions_sql(a)})")
        return df[TRANSITION_COLUMNS]

    def params(self) -> pd.DataFrame:
        """Wide: one row per run that has params, one column per param key.

        Pivoted inside DuckDB from (run_id, key, value), one value per cell, so
        unlike a join of params onto runs it can never multiply rows.

        Returns
        -------
        pandas.DataFrame
            run_id, then one text column per param key (empty where a run lacks it).

        Example
        -------
        >>> h.params().head()
        """
        keys = self.query(lambda a: f"SELECT DISTINCT key FROM ({self.params_long_sql(a)}) "
                                    "ORDER BY key")["key"].tolist()
        if not keys:
            return pd.DataFrame({"run_id": pd.Series([], dtype="str")})
        cols = ", ".join(f"max(value) FILTER (WHERE key = {duck.sqlite_literal(k)}) AS "
                         f'"{k.replace(chr(34), chr(34) * 2)}"' for k in keys)
        return self.query(lambda a: f"SELECT run_id, {cols} FROM ({self.params_long_sql(a)}) "
                                    "GROUP BY run_id ORDER BY run_id")

    def weekly_report(self, week: str | None = None) -> pd.DataFrame:
        """The weekly report: one row per project and task for an ISO week.

        Parameters
        ----------
        week : str, optional
            An ISO week such as ``"2026-W47"``; default: the last complete week
            in local time.

        Returns
        -------
        pandas.DataFrame
            The columns of ``ottolytics report weekly`` (docs/exports.md): week,
            week_start, week_end, project, task, runs, successes, failures, skips,
            success_rate, p50_s, p95_s, the previous week's figures and the
            changes, flaky_score and the top failure.

        Example
        -------
        >>> h.weekly_report("2026-W46")[["project", "task", "runs", "success_rate"]]
        """
        from ottolytics.export.report import weekly_report
        return weekly_report(self, week)

    def to_parquet(self, directory: str | os.PathLike[str]) -> dict:
        """Write this history as a partitioned Parquet dataset; only the partitions
        that changed are rewritten. ``ottolytics.open(directory)`` reads it back.

        Parameters
        ----------
        directory : str or path
            The dataset's directory (created if missing).

        Returns
        -------
        dict
            What it wrote: ``written`` and ``unchanged`` (partitions), ``rows``
            (per table) and ``snapshot`` (its name).

        Example
        -------
        >>> h.to_parquet("/tmp/ottolytics-parquet")
        >>> ottolytics.open("/tmp/ottolytics-parquet").runs().head()
        """
        from ottolytics.export.parquet import export
        return export(self, directory)

    def logs(self, run: str, task: str | None = None) -> pd.DataFrame:
        """A run's output, task by task: the lines of its stdout/stderr files where
        the read rule allows them, else its stored log fragments, else its stored
        stderr tail. Files the rule refuses are in ``df.attrs["refused"]``.

        Parameters
        ----------
        run : str
            A run id, a unique prefix of one, otto's timestamp, or ``"latest"``.
        task : str, optional
            Only this task's output.

        Returns
        -------
        pandas.DataFrame
            task, attempt, stream, seq, at, text, source (``file``, ``fragments``
            or ``stderr tail``).

        Example
        -------
        >>> h.logs("latest").head()
        """
        from ottolytics.analyze.analytics import run_logs
        return run_logs(self, run, task)

    # analytics live in analytics.py; these delegate so a notebook sees one object.

    def success_rate(self, by: str | list[str] | tuple[str, ...] = ("project", "task"),
                     freq: str | None = "W") -> pd.DataFrame:
        """Success rate per group and period.

        Grouped by task it counts task attempts (``runs`` counts a task's first
        attempts); otherwise whole runs. ``rate`` = successes / (successes +
        failures): skipped and interrupted ones count in neither.

        Parameters
        ----------
        by : str or list of str, default ("project", "task")
            Any of project, task, host, status, run_id.
        freq : str or None, default "W"
            A pandas alias: ``D``, ``W`` (Monday to Sunday), ``W-FRI`` (weeks ending
            on Friday), ``MS``/``ME``, ``h`` ...; the ``period`` column is the
            bucket's start. None: no period. See ottolytics.analyze.freq.

        Returns
        -------
        pandas.DataFrame
            period, the *by* columns, runs, total, successes, failures, skips,
            interrupted, rate.

        Example
        -------
        >>> h.success_rate(by="task", freq="W").tail()
        >>> h.success_rate(by="project", freq=None)
        """
        from ottolytics.analyze.analytics import success_rate
        return success_rate(self, by, freq)

    def duration_stats(self, by: str | list[str] | tuple[str, ...] = ("project", "task")
                       ) -> pd.DataFrame:
        """Statistics of finished durations (success or failed), per group.

        Parameters
        ----------
        by : str or list of str, default ("project", "task")
            Any of project, task, host, status, run_id; without task, whole runs.

        Returns
        -------
        pandas.DataFrame
            The *by* columns, count, mean, p50, p90, p95, max (seconds).

        Example
        -------
        >>> h.duration_stats(by="task").sort_values("p95", ascending=False).head()
        """
        from ottolytics.analyze.analytics import duration_stats
        return duration_stats(self, by)

    def duration_trend(self, task: str | list[str], freq: str | None = "D",
                       project: str | list[str] | None = None) -> pd.DataFrame:
        """Quantiles of a task's successful durations per period and project.

        A task name can exist in several projects (``build`` usually does); each
        project gets its own rows, so their durations are never mixed.

        Parameters
        ----------
        task : str or list of str
            The task (or tasks).
        freq : str, default "D"
            A pandas alias (``D``, ``W``, ``MS`` ...), as in ``success_rate``;
            None means ``D`` here.
        project : str or list of str, optional
            Only these projects.

        Returns
        -------
        pandas.DataFrame
            period, project, count, p25, p50, p75, p95 (seconds).

        Example
        -------
        >>> h.duration_trend("build", freq="W", project="api").tail()
        """
        from ottolytics.analyze.analytics import duration_trend
        return duration_trend(self, task, freq, project)

    def flaky(self, window: int = 20) -> pd.DataFrame:
        """Tasks ranked by how flaky they are over their last *window* runs, most
        flaky first; tasks that never failed in the window are left out.

        ``flip_rate`` is success/failure changes from run to run / (runs - 1);
        ``retry_passes`` counts runs where an attempt failed and a later one
        passed; ``mixed_hashes`` counts script hashes (the same code) that both
        passed and failed; ``score`` is the mean of flip_rate, retry_passes / runs
        and mixed_hashes / hashes.

        Parameters
        ----------
        window : int, default 20
            How many of each task's latest runs to look at: 2 to 100,000, else
            ValueError.

        Returns
        -------
        pandas.DataFrame
            project, task, runs (in the window), failed_runs, flips, flip_rate,
            retry_passes, mixed_hashes, hashes, since (the window's first run's
            start), score.

        Example
        -------
        >>> h.flaky(window=20).head(3)
        """
        from ottolytics.analyze.analytics import flaky
        return flaky(self, window)

    def failures(self, since: str | float | date | None = None) -> pd.DataFrame:
        """Failed task attempts, newest first, with what is known of why.

        Parameters
        ----------
        since : str, number, date or datetime, optional
            Only failures from then on (``"7d"``, ``"2026-11-01"``, unix seconds),
            on top of the History's own filters.

        Returns
        -------
        pandas.DataFrame
            run_id, project, host, task, attempt, started_at, finished_at,
            duration_s, exit_code, signal, signature (of the normalized stderr
            tail), message (its last line), stderr_tail, stdout_path, stderr_path,
            script_hash.

        Example
        -------
        >>> h.failures(since="30d")[["task", "exit_code", "message"]].head()
        """
        from ottolytics.analyze.analytics import failures
        return failures(self, since)

    def failure_groups(self, since: str | float | date | None = None) -> pd.DataFrame:
        """Each distinct failure (by signature), most frequent first.

        Failures that kept no stderr are grouped by task and exit code (or
        signal), with a message such as ``exit code 3, no stderr kept``.

        Parameters
        ----------
        since : str, number, date or datetime, optional
            Only failures from then on, as in ``failures``.

        Returns
        -------
        pandas.DataFrame
            signature, count, tasks, projects, first_seen, last_seen, message,
            last_run_id, exit_codes.

        Example
        -------
        >>> h.failure_groups(since="2026-11-01")[["count", "tasks", "message"]].head(3)
        """
        from ottolytics.analyze.analytics import failure_groups
        return failure_groups(self, since)

    def regressions(self, task: str | list[str] | None = None, *, window: int = 12,
                    min_ratio: float = 1.25, max_p: float = 1e-4,
                    max_points: int = 500) -> pd.DataFrame:
        """Change points in each task's successful durations, strongest first.

        A sliding two-window test: at every point of a task's series, the
        *window* durations before it are compared with the *window* from it on
        by a Mann-Whitney U test (robust to outliers and skew). A point is a
        change when p < *max_p* and the medians differ by at least *min_ratio*
        either way; of overlapping candidates the strongest is kept.

        Parameters
        ----------
        task : str or list of str, optional
            Only these tasks (default: every task).
        window : int, default 12
            Durations on each side of a point: 2 to max_points // 2, else ValueError.
        min_ratio : float, default 1.25
            The least change of the median, either way (at least 1).
        max_p : float, default 1e-4
            The largest p-value that counts as a change.
        max_points : int, default 500
            How many of each task's latest successful durations are tested.

        Returns
        -------
        pandas.DataFrame
            project, task, run_id and changed_at (where it changed),
            median_before, median_after, ratio, direction, p_value, z (the test's
            statistic).

        Example
        -------
        >>> h.regressions("build", window=12, min_ratio=1.25).head(3)
        """
        from ottolytics.analyze.analytics import regressions
        return regressions(self, task, window=window, min_ratio=min_ratio, max_p=max_p,
                           max_points=max_points)

    def critical_path(self, run: str) -> pd.DataFrame:
        """The chain of dependent tasks that bounds a run's wall time, first to last.

        It walks back from the task that finished last, each time to the
        dependency that finished last (the one it had to wait for).

        Parameters
        ----------
        run : str
            A run id, a unique prefix of one, otto's timestamp, or ``"latest"``.

        Returns
        -------
        pandas.DataFrame
            run_id, task, attempt, status, started_at, finished_at, duration_s,
            waited_s (the gap after the dependency ended).

        Example
        -------
        >>> h.critical_path("latest")
        """
        from ottolytics.analyze.analytics import critical_path
        return critical_path(self, run)

    def compare(self, run_a: str, run_b: str) -> pd.DataFrame:
        """Two runs side by side, task by task.

        Parameters
        ----------
        run_a, run_b : str
            Run ids, unique prefixes, otto's timestamps, or ``"latest"``.

        Returns
        -------
        pandas.DataFrame
            task, status_a, duration_s_a, status_b, duration_s_b, delta_s (b - a),
            ratio (b / a), status_changed.

        Example
        -------
        >>> h.compare(h.failures()["run_id"].iloc[0], "latest")
        """
        from ottolytics.analyze.analytics import compare
        return compare(self, run_a, run_b)

    def disk_usage(self) -> pd.DataFrame:
        """Disk used per project, largest first: sizes recorded at run end, and the
        run directories and otto's script cache measured now.

        Returns
        -------
        pandas.DataFrame
            project, runs, recorded_bytes, runs_on_disk, run_bytes, cache_bytes,
            largest_run_id, largest_run_bytes, oldest_run, newest_run.

        Example
        -------
        >>> h.disk_usage()[["project", "runs", "run_bytes"]]
        """
        from ottolytics.analyze.analytics import disk_usage
        return disk_usage(self)

    def largest_runs(self, n: int = 10) -> pd.DataFrame:
        """The runs whose recorded size is largest, largest first.

        Parameters
        ----------
        n : int, default 10
            How many.

        Returns
        -------
        pandas.DataFrame
            run_id, project, started_at, status, size_bytes, run_dir.

        Example
        -------
        >>> h.largest_runs(n=3)
        """
        from ottolytics.analyze.analytics import largest_runs
        return largest_runs(self, n)

    def disk_growth(self, freq: str | None = "D") -> pd.DataFrame:
        """Bytes of run directories added per period and the running total, per
        project, from the sizes recorded at run end.

        Parameters
        ----------
        freq : str, default "D"
            A pandas alias (``D``, ``W``, ``MS`` ...), as in ``success_rate``;
            None means ``D`` here.

        Returns
        -------
        pandas.DataFrame
            period, project, added_bytes, total_bytes.

        Example
        -------
        >>> h.disk_growth(freq="W").tail(3)
        """
        from ottolytics.analyze.analytics import disk_growth
        return disk_growth(self, freq)

    def disk_samples_sql(self, aliases):
        """What ``ottolytics usage`` measured, per scan and project (time filters apply)."""
        f = self.filters
        where = [f"\"at\" >= {float(f['since'])}"] if f["since"] is not None else []
        where += [f"\"at\" < {float(f['until'])}"] if f["until"] is not None else []
        if f["project"]:
            where.append("project IN (" + ", ".join(map(duck.sqlite_literal, f["project"]))
                         + ")")
        return " UNION ALL ".join(
            f"SELECT to_timestamp(\"at\") AS measured_at, project, runs, run_bytes, "
            f"cache_bytes, orphan_cache_bytes, other_bytes, "
            f"run_bytes + cache_bytes + other_bytes AS total_bytes "
            f"FROM {self._rel(alias, 'disk_samples')}"
            + (" WHERE " + " AND ".join(where) if where else "") for alias in aliases)

    def disk_samples(self) -> pd.DataFrame:
        """Disk usage over time as ``ottolytics usage`` measured it, oldest first
        (time and project filters apply).

        Returns
        -------
        pandas.DataFrame
            One row per scan and project: measured_at, project, runs, run_bytes,
            cache_bytes, orphan_cache_bytes, other_bytes, total_bytes.

        Example
        -------
        >>> h.disk_samples().tail()
        """
        return self.query(lambda a: f"SELECT * FROM ({self.disk_samples_sql(a)}) "
                                    "ORDER BY measured_at, project")

    def grep(self, pattern: str, since: str | float | date | None = None,
             task: str | list[str] | None = None, project: str | list[str] | None = None,
             max_matches: int = 10_000) -> pd.DataFrame:
        """Lines matching a regular expression in the logs, newest task first.

        Each task's log files are read (in parallel, by the read rule), else its
        stored log fragments, else its stored stderr tail, where a failure's
        ImportError usually is. Refused files are in ``df.attrs["refused"]``.

        Parameters
        ----------
        pattern : str
            A regular expression (Python's ``re``).
        since : str, number, date or datetime, optional
            Only tasks from then on, on top of the History's filters.
        task, project : str or list of str, optional
            Only these tasks, these projects.
        max_matches : int, default 10000
            Stop after this many lines.

        Returns
        -------
        pandas.DataFrame
            run_id, task, attempt, stream, path (the file, or empty), line (in the
            file, the joined fragments or the tail), text, source (``file``,
            ``fragments``, ``stderr tail``).

        Example
        -------
        >>> h.grep("ImportError", project="etl", max_matches=2)[["run_id", "task", "text"]]
        """
        from ottolytics.analyze.analytics import grep
        return grep(self, pattern, since=since, task=task, project=project,
                    max_matches=max_matches)


_NULLABLE_INTS = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype()}


def _arrow(result):
    return result.to_arrow_table() if hasattr(result, "to_arrow_table") \
        else result.fetch_arrow_table()


def _to_pandas(result):
    table = _arrow(result)
    # split_blocks/self_destruct: no consolidating copy of a large table.
    df = table.to_pandas(types_mapper=_NULLABLE_INTS.get, split_blocks=True, self_destruct=True)
    for column in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[column]) and df[column].dt.tz is None:
            df[column] = df[column].dt.tz_localize("UTC")
    return df
