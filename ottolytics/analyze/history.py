"""``ottolytics.open()`` and ``History``: the run history as pandas frames, via DuckDB.

    h = ottolytics.open(since="30d", project="web")
    h.tasks()                      # one row per task attempt
    h.success_rate(by="task", freq="W")
    h.sql("SELECT task, count(*) FROM tasks GROUP BY task")

A History holds one source (``analyze/sources``: the SQLite stores, several
read as one, or a Parquet dataset) and offers frames and analytics only; the
source turns the filters (``since``, ``until``, ``project``, ``task``,
``status``) into SQL, pushed into SQLite where it can, so a narrow question
reads few rows. Timestamps are tz-aware UTC, durations are
float seconds (``duration_s``), statuses are categoricals in a fixed order.
"""

import os
import re

import pandas as pd

from ottolytics.analyze import duck
from ottolytics.store.migrations import RUN_STATUSES, TASK_STATUSES
from ottolytics.core.paths import db_path
from ottolytics.core import timeutil
from ottolytics.analyze.sources.base import Relations, Source
from ottolytics.analyze.sources.sqlite import SqliteSource
from ottolytics.analyze.sources.types import (  # noqa: F401  (the frames' column contract)
    RUN_COLUMNS, SOURCE_TYPES, TASK_COLUMNS, TRANSITION_COLUMNS)


def open(db=None, *, since=None, until=None, project=None, task=None, status=None, home=None):
    """A History over one store, a list of stores, or a Parquet dataset directory
    written by ``to_parquet``; see History for the filters."""
    filters = dict(since=since, until=until, project=project, task=task, status=status)
    if db is not None and not isinstance(db, (list, tuple)) and os.path.isdir(str(db)):
        from ottolytics.analyze.sources.parquet import ParquetSource
        return History(ParquetSource(db), **filters)
    if isinstance(db, (list, tuple)):
        paths = [str(p) for p in db]
    else:
        paths = [db_path(db)]
    return History(paths, **filters, home=home)


def to_unix(value, now=None):
    """Unix seconds from any form of a point in time: timeutil.to_unix, the one reader."""
    return timeutil.to_unix(value, now)


def _listify(value):
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


# The views ``h.sql`` offers, each a relation of the History's source.
SQL_VIEWS = {
    "runs": lambda r: r.runs(), "tasks": lambda r: r.tasks(),
    "transitions": lambda r: r.transitions(), "params": lambda r: r.params(),
    "deps": lambda r: r.deps(), "disk_samples": lambda r: r.disk_samples(),
    # the lean task rows aggregations read: fewer columns, fewer joins than tasks
    "attempts": lambda r: (f"SELECT project, task, attempt, status, started_at, started_s, "
                           f"duration_s, script_hash FROM ({r.facts(need=('project',))})"),
}
_WORDS = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


class History:
    """The run history of one source (the SQLite stores, or a Parquet dataset),
    with filters applied to everything; its frames and analytics.

    *source* is a list of store paths (read as one; *home* is what their
    relative paths resolve against) or an ``ottolytics.analyze.sources.Source``.
    ``ottolytics.open()`` is the usual way to get one."""

    def __init__(self, source, *, since=None, until=None, project=None, task=None,
                 status=None, home=None, run=None, _share=None):
        self.filters = {"since": to_unix(since), "until": to_unix(until),
                        "project": _listify(project), "task": _listify(task),
                        "status": _listify(status), "run": _listify(run)}
        if _share is not None:  # a with_filters view: same source, same connection
            self._source, self._con, self._shared = _share._source, _share._con, True
        else:
            if not isinstance(source, Source):
                source = SqliteSource(source, home)
            self._source, self._shared = source, False
            self._con = duck.connect()
            self._con.execute("SET TimeZone = 'UTC'")
            source.prepare(self._con)
            enum = lambda values: ", ".join(duck.sqlite_literal(v) for v in values)  # noqa: E731
            self._con.execute(f"CREATE TYPE run_status AS ENUM ({enum(RUN_STATUSES)})")
            self._con.execute(f"CREATE TYPE task_status AS ENUM ({enum(TASK_STATUSES)})")
        self.paths = list(self._source.paths)
        self.homes = list(self._source.homes)

    def close(self):
        if not self._shared:
            self._source.close()
            self._con.close()

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
        return History(None, **f, _share=self)

    # -- running queries (the engine's; analytics build on these) -------------

    def _run(self, build, fetch):
        """Run the SQL ``build(r)`` returns, *r* being the source's Relations with
        this History's filters; return ``fetch(result)``."""
        return self._source.query(
            self._con, lambda scope: build(Relations(self._source, scope, self.filters)), fetch)

    def _query(self, build, arrow=False):
        """The same, as a pandas frame (or an Arrow table, for writing files)."""
        return self._run(build, _arrow if arrow else _to_pandas)

    def _local(self, sql):
        """Run *sql* on this History's DuckDB connection alone (over temp tables
        a ``_run`` made), without reading the source again; a frame."""
        return _to_pandas(self._con.execute(sql))

    def sql(self, query, arrow=False):
        """Run DuckDB SQL over the views runs, tasks, transitions, params (long:
        run_id, key, value), deps (run_id, task, attempt, depends_on),
        disk_samples and attempts (the lean task rows aggregations read), all
        with this History's filters; returns a frame (an Arrow table with
        arrow=True). Temp tables it creates stay until close()."""
        named = {w.lower() for w in _WORDS.findall(query)}

        def build(r):
            for name, relation in SQL_VIEWS.items():
                if name in named:  # only the views the query names are built
                    self._con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {relation(r)}")
            return query
        return self._query(build, arrow=arrow)

    def resolve(self, ref):
        """The run id that *ref* names: a run id, a unique prefix of one (at least
        runinfo.MIN_PREFIX characters), otto's unix timestamp, or 'latest' (the
        newest run this History's filters keep; ids and prefixes are looked up
        whatever the time and status filters, as the run methods read a run
        whole). Raises runinfo.RunNotFound (a one-line message); the same
        resolver as ``ottolytics info`` and the MCP tools."""
        from ottolytics.manage.runinfo import _FETCHED, choose, ref_clause
        ref = str(ref).strip()
        f = self.filters if ref == "latest" else dict(self.filters, since=None, until=None,
                                                      status=None, run=None)
        clause = ref_clause(ref)
        rows = self._query(lambda r: r.source.run_candidates(r.scope, f, ref, clause, _FETCHED))
        return choose(ref, rows.itertuples(index=False, name=None),
                      where=", ".join(self.paths) + (" (with its filters)" if any(
                          v is not None for v in f.values()) else ""))

    # -- frames -----------------------------------------------------------------

    def runs(self, params=False):
        """One row per run, newest first. With params=True, each param as a
        ``params.<key>`` column (MLflow's layout), pivoted inside DuckDB."""
        df = self._query(lambda r: f"SELECT * FROM ({r.runs()}) ORDER BY started_at DESC")
        df = df[RUN_COLUMNS]
        if params:
            wide = self.params()
            wide.columns = ["run_id"] + [f"params.{c}" for c in wide.columns[1:]]
            df = df.merge(wide, on="run_id", how="left")
        return df

    def tasks(self):
        """One row per task attempt, in no particular order (sorting a million
        rows in DuckDB would double the load; ``sort_values`` is cheap)."""
        return self._query(lambda r: f"SELECT * FROM ({r.tasks()})")

    def transitions(self):
        """Every status change of the runs and tasks (task is empty for the run's
        own), in no particular order."""
        df = self._query(lambda r: f"SELECT * FROM ({r.transitions()})")
        return df[TRANSITION_COLUMNS]

    def params(self):
        """Wide: one row per run that has params, one column per param key.

        Pivoted inside DuckDB from (run_id, key, value), one value per cell, so
        unlike a join of params onto runs it can never multiply rows."""
        keys = self._query(lambda r: f"SELECT DISTINCT key FROM ({r.params()}) "
                                    "ORDER BY key")["key"].tolist()
        if not keys:
            return pd.DataFrame({"run_id": pd.Series([], dtype="str")})
        cols = ", ".join(f"max(value) FILTER (WHERE key = {duck.sqlite_literal(k)}) AS "
                         f'"{k.replace(chr(34), chr(34) * 2)}"' for k in keys)
        return self._query(lambda r: f"SELECT run_id, {cols} FROM ({r.params()}) "
                                    "GROUP BY run_id ORDER BY run_id")

    def weekly_report(self, week=None):
        """One row per project and task for an ISO week ("2026-W47"; default: the last
        complete week in local time). See ``report`` for the columns."""
        from ottolytics.analyze.weekly import weekly_report
        return weekly_report(self, week)

    def to_parquet(self, directory):
        """Write this history as a partitioned Parquet dataset (see ``parquet``);
        returns {"written", "unchanged", "rows"}. Only changed partitions are rewritten."""
        from ottolytics.analyze.dataset import export
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

    def disk_samples(self):
        """Disk usage over time as ``ottolytics usage`` measured it: one row per scan
        and project (measured_at, project, runs, run_bytes, cache_bytes,
        orphan_cache_bytes, other_bytes, total_bytes), oldest first."""
        return self._query(lambda r: f"SELECT * FROM ({r.disk_samples()}) "
                                    "ORDER BY measured_at, project")

    def grep(self, pattern, since=None, task=None, project=None, max_matches=10_000):
        from ottolytics.analyze.analytics import grep
        return grep(self, pattern, since=since, task=task, project=project,
                    max_matches=max_matches)


_arrow, _to_pandas = duck.to_arrow, duck.to_pandas
