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

__all__ = ["History", "open"]

import atexit
import functools
import inspect
import os
import re
import weakref
from collections.abc import Sequence
from typing import Any, Callable, ParamSpec, TypeVar
from datetime import date

import pandas as pd

from ottolytics.analyze import duck
from ottolytics.store.migrations import RUN_STATUSES, TASK_STATUSES
from ottolytics.core.paths import db_path
from ottolytics.core import timeutil
from ottolytics.core.values import no_nul
from ottolytics.analyze.sources.base import Relations, Source
from ottolytics.analyze.sources.mirror import stores_source
from ottolytics.analyze.sources.types import (  # noqa: F401  (the frames' column contract)
    RUN_COLUMNS, SOURCE_TYPES, TASK_COLUMNS, TRANSITION_COLUMNS)


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


def _listify(value, name=None):
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    for v in values:
        if name:
            no_nul(name, v)
    return values


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

# Histories not closed yet: whatever is left open at exit is closed before the
# interpreter tears down, so DuckDB never finalizes half torn down and a
# snapshot of a store (a whole copy, in the temporary directory) is not left.
_OPEN: "weakref.WeakSet[History]" = weakref.WeakSet()


@atexit.register
def _close_left_open():
    for h in list(_OPEN):
        try:
            h.close()
        except Exception:  # exiting: one failure must not keep the others open
            pass


# -- answers kept for the same question asked again --------------------------

ANSWERS_BYTES = 256 << 20   # what a History keeps of its answers, at most
ANSWER_ROWS = 1_000_000     # a bigger answer is not kept


def _frozen(value):
    """*value* as part of a dict key (lists become tuples), or raise TypeError."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    hash(value)
    return value


class _Answers:
    """The answers of one History (and its with_filters views), by question and
    by the source's state token (``Source.state``): a question asked again while
    no row changed is answered with a copy of the kept frame; any change gives
    a new token, so a kept answer is never stale. Oldest first out, past
    ANSWERS_BYTES."""

    def __init__(self):
        self.kept = {}  # key -> (frame, bytes), in the order they were kept
        self.size = 0

    def get(self, h, name, compute, args):
        if not h.keep_answers:
            return compute()
        try:
            question = (name, _frozen(args), _frozen(tuple(sorted(h.filters.items()))))
        except TypeError:
            return compute()  # an argument that cannot be compared: not kept
        token = h._source.state(h._con)
        if token is None:
            return compute()
        key = (token, question)
        if key in self.kept:
            return self.kept[key][0].copy(deep=True)
        frame = compute()
        if isinstance(frame, pd.DataFrame) and len(frame) <= ANSWER_ROWS:
            size = int(frame.memory_usage(deep=True, index=True).sum())
            if size <= ANSWERS_BYTES // 4:
                for old in [k for k in self.kept if k[0] != token]:
                    self.size -= self.kept.pop(old)[1]  # answers of older states
                while self.kept and self.size + size > ANSWERS_BYTES:
                    self.size -= self.kept.pop(next(iter(self.kept)))[1]
                self.kept[key] = (frame.copy(deep=True), size)
                self.size += size
        return frame

    def clear(self):
        self.kept.clear()
        self.size = 0


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _kept(*times: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A History method whose answer is kept (see _Answers); the arguments named
    in *times* are turned into unix seconds first ("7d" means a moment). The
    method keeps its signature for type checkers and help()."""
    def wrap(method: Callable[_P, _R]) -> Callable[_P, _R]:
        shape = inspect.signature(method)

        @functools.wraps(method)
        def kept(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            try:  # the question as the method sees it: defaults filled in
                bound = shape.bind(self, *args, **kwargs)
            except TypeError:
                return method(self, *args, **kwargs)  # (raises the method's own error)
            bound.apply_defaults()
            given = list(bound.arguments.items())[1:]
            key = tuple((k, to_unix(v) if k in times and v is not None
                         and not isinstance(v, (int, float)) else v) for k, v in given)
            return self._answers.get(self, method.__name__,
                                     lambda: method(self, *args, **kwargs), key)
        return kept
    return wrap


class _Unchanged:
    """with_filters' default: the filter stays as it is."""

    def __repr__(self):
        return "<unchanged>"


_SAME = _Unchanged()


class History:
    """The run history of one source (the SQLite stores, or a Parquet dataset),
    with filters applied to everything.

    ``ottolytics.open()`` makes one. Its methods return pandas frames: the frames
    (``runs``, ``tasks``, ``transitions``, ``params``, ``logs``), the analytics
    (``success_rate``, ``flaky``, ``regressions`` ...), ``sql`` and the exports
    (``to_parquet``, ``weekly_report``). The examples of its methods use
    ``h = ottolytics.open()``.

    *source* is a list of store paths (read as one; *home* is what their
    relative paths resolve against) or an ``ottolytics.analyze.sources.Source``.
    ``ottolytics.open()`` is the usual way to get one."""

    def __init__(self, source, *, since=None, until=None, project=None, task=None,
                 status=None, home=None, run=None, _share=None):
        self.filters = {"since": to_unix(since), "until": to_unix(until),
                        "project": _listify(project, "project"),
                        "task": _listify(task, "task"),
                        "status": _listify(status), "run": _listify(run, "run")}
        if _share is not None:  # a with_filters view: same source, same connection
            self._source, self._con, self._shared = _share._source, _share._con, True
            self._answers = _share._answers
            self.keep_answers = _share.keep_answers
        else:
            if not isinstance(source, Source):
                source = stores_source(source, home)
            self._source, self._shared = source, False
            self._answers = _Answers()
            self._con = duck.connect(scanner=source.sqlite_scanner)
            _OPEN.add(self)
            self._con.execute("SET TimeZone = 'UTC'")
            source.prepare(self._con)
            enum = lambda values: ", ".join(duck.sqlite_literal(v) for v in values)  # noqa: E731
            self._con.execute(f"CREATE TYPE run_status AS ENUM ({enum(RUN_STATUSES)})")
            self._con.execute(f"CREATE TYPE task_status AS ENUM ({enum(TASK_STATUSES)})")
        self.paths = list(self._source.paths)
        self.homes = list(self._source.homes)

    #: Keep answers for the same question asked again while no row changed (see
    #: "Answers asked again" in docs/python-api.md); False computes every time.
    keep_answers: bool = True

    def forget_answers(self) -> None:
        """Drop the answers this History (and its ``with_filters`` views) kept.

        Returns
        -------
        None

        Example
        -------
        >>> h.forget_answers()
        """
        self._answers.clear()

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
            _OPEN.discard(self)
            self._source.close()
            self._con.close()

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
        return History(None, **f, _share=self)

    # -- running queries (the engine's; analytics build on these) -------------

    def _run(self, build, fetch):
        """Run the SQL ``build(r)`` returns, *r* being the source's Relations with
        this History's filters; return ``fetch(result)``."""
        return self._source.query(
            self._con, lambda scope: build(Relations(self._source, scope, self.filters)), fetch)

    def _query(self, build, arrow=False):
        """The same, as a pandas frame (or an Arrow table, for writing files)."""
        if arrow:
            return self._run(build, _arrow)
        # Strings as Arrow's large_string, which pandas keeps without a copy (a
        # frame of ten million tasks: 1.6x -> 1.4x its size at peak, and faster);
        # Arrow results keep DuckDB's usual string type.
        self._con.execute("SET arrow_large_buffer_size = true")
        try:
            return self._run(build, _to_pandas)
        finally:
            self._con.execute("RESET arrow_large_buffer_size")

    def _local(self, sql):
        """Run *sql* on this History's DuckDB connection alone (over temp tables
        a ``_run`` made), without reading the source again; a frame."""
        return _to_pandas(self._con.execute(sql))

    def sql(self, query: str, arrow: bool = False) -> Any:
        """Run DuckDB SQL over the History's views, all with its filters.

        The views have the frames' columns and types: runs, tasks, transitions,
        params (long: run_id, key, value), deps (run_id, task, attempt,
        depends_on), disk_samples, and attempts (the lean task rows aggregations
        read: project, task, attempt, status, started_at, started_s, duration_s,
        script_hash). Only the views the query names are built. Temp tables it
        creates stay on the History's connection until ``close()``.

        Parameters
        ----------
        query : str
            DuckDB SQL.
        arrow : bool, default False
            Return a ``pyarrow.Table`` instead of a frame.

        Returns
        -------
        pandas.DataFrame or pyarrow.Table
            Its result.

        Example
        -------
        >>> h.sql("SELECT task, quantile_cont(duration_s, 0.95) AS p95_s FROM tasks "
        ...       "WHERE status = 'success' GROUP BY task ORDER BY p95_s DESC LIMIT 3")
        """
        named = {w.lower() for w in _WORDS.findall(query)}

        def build(r):
            for name, relation in SQL_VIEWS.items():
                if name in named:  # only the views the query names are built
                    self._con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {relation(r)}")
            return query
        return self._query(build, arrow=arrow)

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
        df = self._query(lambda r: f"SELECT * FROM ({r.runs()}) ORDER BY started_at DESC")
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
        return self._query(lambda r: f"SELECT * FROM ({r.tasks()})")

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
        df = self._query(lambda r: f"SELECT * FROM ({r.transitions()})")
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
        keys = self._query(lambda r: f"SELECT DISTINCT key FROM ({r.params()}) "
                                    "ORDER BY key")["key"].tolist()
        if not keys:
            return pd.DataFrame({"run_id": pd.Series([], dtype="str")})
        cols = ", ".join(f"max(value) FILTER (WHERE key = {duck.sqlite_literal(k)}) AS "
                         f'"{k.replace(chr(34), chr(34) * 2)}"' for k in keys)
        return self._query(lambda r: f"SELECT run_id, {cols} FROM ({r.params()}) "
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
        from ottolytics.analyze.weekly import weekly_report
        return weekly_report(self, week)

    def to_parquet(self, directory: str | os.PathLike[str]) -> dict:
        """Write this history as a partitioned Parquet dataset; only the chunks
        holding runs that changed since the last export (the store's change log
        says which) are rewritten. ``ottolytics.open(directory)`` reads it back.

        Parameters
        ----------
        directory : str or path
            The dataset's directory (created if missing).

        Returns
        -------
        dict
            What it wrote: ``written``, ``unchanged`` and ``removed`` (chunks: a
            chunk is a file per table), ``rows`` (per table, written) and
            ``snapshot`` (its name).

        Example
        -------
        >>> h.to_parquet("/tmp/ottolytics-parquet")
        >>> ottolytics.open("/tmp/ottolytics-parquet").runs().head()
        """
        from ottolytics.analyze.dataset import export
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

    @_kept()
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

    @_kept()
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

    @_kept()
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

    @_kept()
    def flaky(self, window: int = 20) -> pd.DataFrame:
        """Tasks ranked by how flaky they are over their last *window* runs, most
        flaky first. Only tasks that both passed and failed in the window, or
        passed on a retry after failing, are in it: a task that never failed is
        not flaky, nor is one that never passed (it is broken: ``failures()``).

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

    @_kept("since")
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

    @_kept("since")
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

    @_kept()
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

    @_kept()
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

    @_kept()
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

    @_kept()
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

    @_kept()
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
        return self._query(lambda r: f"SELECT * FROM ({r.disk_samples()}) "
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


_arrow, _to_pandas = duck.to_arrow, duck.to_pandas
