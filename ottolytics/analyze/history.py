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


def open(db=None, *, since=None, until=None, project=None, task=None, status=None, home=None):
    """A History over one store, a list of stores, or a Parquet dataset directory
    written by ``to_parquet``; see History for the filters."""
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


class History:
    """The run history of one or more stores, with filters applied to everything."""

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

    def close(self):
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

    def with_filters(self, **changes):
        """A History over the same stores with some filters changed."""
        f = dict(self.filters, **changes)
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

    def resolve(self, ref):
        """The run id that *ref* names: a run id, a unique prefix of one (at least
        runinfo.MIN_PREFIX characters), otto's unix timestamp, or 'latest' (the
        newest run this History's filters keep; ids and prefixes are looked up
        whatever the time and status filters, as the run methods read a run
        whole). Raises runinfo.RunNotFound (a one-line message); the same
        resolver as ``ottolytics info`` and the MCP tools."""
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

    def sql(self, query):
        """Run DuckDB SQL over the views runs, tasks, transitions and params (long:
        run_id, key, value), all with this History's filters; returns a frame."""
        def build(aliases):
            for name, body in (("runs", self.runs_sql(aliases)),
                               ("tasks", self.tasks_sql(aliases)),
                               ("transitions", self.transitions_sql(aliases)),
                               ("params", self.params_long_sql(aliases))):
                self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body}")
            return query
        return self.query(build)

    # -- frames -----------------------------------------------------------------

    def runs(self, params=False):
        """One row per run, newest first. With params=True, each param as a
        ``params.<key>`` column (MLflow's layout), pivoted inside DuckDB."""
        df = self.query(lambda a: f"SELECT * FROM ({self.runs_sql(a)}) ORDER BY started_at DESC")
        df = df[RUN_COLUMNS]
        if params:
            wide = self.params()
            wide.columns = ["run_id"] + [f"params.{c}" for c in wide.columns[1:]]
            df = df.merge(wide, on="run_id", how="left")
        return df

    def tasks(self):
        """One row per task attempt, in no particular order (sorting a million
        rows in DuckDB would double the load; ``sort_values`` is cheap)."""
        return self.query(lambda a: f"SELECT * FROM ({self.tasks_sql(a)})")

    def transitions(self):
        """Every status change of the runs and tasks (task is empty for the run's
        own), in no particular order."""
        df = self.query(lambda a: f"SELECT * FROM ({self.transitions_sql(a)})")
        return df[TRANSITION_COLUMNS]

    def params(self):
        """Wide: one row per run that has params, one column per param key.

        Pivoted inside DuckDB from (run_id, key, value), one value per cell, so
        unlike a join of params onto runs it can never multiply rows."""
        keys = self.query(lambda a: f"SELECT DISTINCT key FROM ({self.params_long_sql(a)}) "
                                    "ORDER BY key")["key"].tolist()
        if not keys:
            return pd.DataFrame({"run_id": pd.Series([], dtype="str")})
        cols = ", ".join(f"max(value) FILTER (WHERE key = {duck.sqlite_literal(k)}) AS "
                         f'"{k.replace(chr(34), chr(34) * 2)}"' for k in keys)
        return self.query(lambda a: f"SELECT run_id, {cols} FROM ({self.params_long_sql(a)}) "
                                    "GROUP BY run_id ORDER BY run_id")

    def weekly_report(self, week=None):
        """One row per project and task for an ISO week ("2026-W47"; default: the last
        complete week in local time). See ``report`` for the columns."""
        from ottolytics.export.report import weekly_report
        return weekly_report(self, week)

    def to_parquet(self, directory):
        """Write this history as a partitioned Parquet dataset (see ``parquet``);
        returns {"written", "unchanged", "rows"}. Only changed partitions are rewritten."""
        from ottolytics.export.parquet import export
        return export(self, directory)

    def logs(self, run, task=None):
        """A run's output (*run*: an id, a unique prefix, otto's timestamp or 'latest'),
        task by task: the lines of its stdout/stderr files where the read rule allows
        them, else its stored log fragments, else its stored stderr tail. Columns:
        task, attempt, stream, seq, at, text, source. See analytics.run_logs."""
        from ottolytics.analyze.analytics import run_logs
        return run_logs(self, run, task)

    # analytics live in analytics.py; these delegate so a notebook sees one object.

    def success_rate(self, by=("project", "task"), freq="W"):
        from ottolytics.analyze.analytics import success_rate
        return success_rate(self, by, freq)

    def duration_stats(self, by=("project", "task")):
        from ottolytics.analyze.analytics import duration_stats
        return duration_stats(self, by)

    def duration_trend(self, task, freq="D", project=None):
        from ottolytics.analyze.analytics import duration_trend
        return duration_trend(self, task, freq, project)

    def flaky(self, window=20):
        from ottolytics.analyze.analytics import flaky
        return flaky(self, window)

    def failures(self, since=None):
        from ottolytics.analyze.analytics import failures
        return failures(self, since)

    def failure_groups(self, since=None):
        from ottolytics.analyze.analytics import failure_groups
        return failure_groups(self, since)

    def regressions(self, task=None, **options):
        from ottolytics.analyze.analytics import regressions
        return regressions(self, task, **options)

    def critical_path(self, run):
        from ottolytics.analyze.analytics import critical_path
        return critical_path(self, run)

    def compare(self, run_a, run_b):
        from ottolytics.analyze.analytics import compare
        return compare(self, run_a, run_b)

    def disk_usage(self):
        from ottolytics.analyze.analytics import disk_usage
        return disk_usage(self)

    def largest_runs(self, n=10):
        from ottolytics.analyze.analytics import largest_runs
        return largest_runs(self, n)

    def disk_growth(self, freq="D"):
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

    def disk_samples(self):
        """Disk usage over time as ``ottolytics usage`` measured it: one row per scan
        and project (measured_at, project, runs, run_bytes, cache_bytes,
        orphan_cache_bytes, other_bytes, total_bytes), oldest first."""
        return self.query(lambda a: f"SELECT * FROM ({self.disk_samples_sql(a)}) "
                                    "ORDER BY measured_at, project")

    def grep(self, pattern, since=None, task=None, project=None, max_matches=10_000):
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
