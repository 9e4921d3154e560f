"""Parquet datasets of the history: written by ``History.to_parquet(DIR)`` (and
``ottolytics export parquet DIR``), read back by ``ottolytics.open(DIR)``.

Layout: ``DIR/<table>/date=YYYY-MM-DD/host=<host>/data_0.parquet`` for the tables
runs, tasks, transitions and params, Hive-partitioned by the UTC date of the
run's start and its host (``unknown`` when not recorded), zstd-compressed.

* Incremental: every partition has a signature of what it holds (its runs'
  ids, statuses, end times and task counts). ``DIR/_signatures/<host>.json``
  keeps them, one file per host, so many hosts can export into one shared
  directory without touching each other's files; a re-export rewrites only
  partitions whose signature changed.
* Atomic: each partition's file is written beside its final name and renamed
  into place, so a reader sees a whole old file or a whole new one, never part
  of one. Partitions whose runs are gone (cleaned) are removed.
* DuckDB, ``pyarrow.dataset`` and pandas read it as it is; ``ottolytics.open(DIR)``
  answers the same questions as over the store.
"""

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import duck
from .history import History

TABLES = ("runs", "tasks", "transitions", "params")
FORMAT_VERSION = 1
SIGNATURES = "_signatures"


def is_dataset(path):
    return os.path.isdir(os.path.join(str(path), "runs"))


PART = "strftime(%s, '%%Y-%%m-%%d') AS date, coalesce(%s, 'unknown') AS host"
STAGED = "_ottolytics_export_tasks"  # a temp table: the tasks are read from SQLite once
PIECES = {"transitions": 3}  # how many SELECTs _table_sql returns for a table


def _execute(h, build_sql):
    h.stores.query(h.con, build_sql, lambda result: None)


def _stage_tasks(h, aliases, keep):
    """Read the tasks once into a temp table, sorted by partition, with the
    store's own keys, so that tasks and transitions are both cut from it."""
    body = h.tasks_sql(aliases, with_tail=True, with_deps=True, internal=True)
    return (f"CREATE OR REPLACE TEMP TABLE {STAGED} AS SELECT * FROM ("
            f"SELECT t.* EXCLUDE (host), {PART % ('t.run_started_at', 't.host')} "
            f"FROM ({body}) t){keep} ORDER BY date, host")


def _table_sql(h, aliases, table, keep):
    """The SELECTs (each sorted by partition) whose rows make up one table, with
    its partition columns ``date`` and ``host``."""
    if table == "runs":
        return [f"SELECT * FROM (SELECT * EXCLUDE (host) REPLACE (CAST(status AS VARCHAR) AS status), "
                f"{PART % ('started_at', 'host')} FROM ({h.runs_sql(aliases)})){keep} "
                f"ORDER BY date, host"]
    if table == "tasks":
        return [f"SELECT * EXCLUDE (_store, _tid, _logged) REPLACE (CAST(status AS VARCHAR) AS status) "
                f"FROM {STAGED}"]
    if table == "params":
        runs = f"SELECT run_id AS _rid, {PART % ('started_at', 'host')} FROM ({h.runs_sql(aliases)})"
        return [f"SELECT * FROM (SELECT x.*, r.date, r.host FROM ({h.params_long_sql(aliases)}) x "
                f"JOIN ({runs}) r ON r._rid = x.run_id){keep} ORDER BY date, host"]
    # transitions: the rows a plain-path task implies (see the store's transitions
    # view), cut from the staged tasks, then the logged ones from status_log.
    implied = [
        f"SELECT run_id, task, attempt, CAST(NULL AS VARCHAR) AS from_status, "
        f"'running' AS to_status, started_at AS \"at\", CAST(NULL AS VARCHAR) AS reason, date, host "
        f"FROM {STAGED} WHERE _logged = 0",
        f"SELECT run_id, task, attempt, 'running' AS from_status, CAST(status AS VARCHAR) AS to_status, "
        f"finished_at AS \"at\", CAST(NULL AS VARCHAR) AS reason, date, host FROM {STAGED} "
        f"WHERE _logged = 0 AND status NOT IN ('pending', 'running')"]
    f = h.filters
    logged = []
    for i, alias in enumerate(aliases):
        log = h._rel(alias, "status_log", h._by_run(f))
        r = h._rel(alias, "runs", h._runs_where(f, with_status=False))
        logged.append(
            f"SELECT r.uid AS run_id, t.task, t.attempt, x.from_status, x.to_status, "
            f"to_timestamp(x.\"at\") AS \"at\", x.reason, "
            f"{PART % ('to_timestamp(r.started_at)', 'r.host')} "
            f"FROM {log} x JOIN {r} r ON r.id = x.run_id "
            f"LEFT JOIN {STAGED} t ON t._store = {i} AND t._tid = x.task_id")
    return implied + [f"SELECT * FROM ({' UNION ALL '.join(logged)}){keep} ORDER BY date, host"]


def _signatures_sql(h, aliases):
    tasks = (f"SELECT run_id, count(*) AS n, max(finished_at) AS last "
             f"FROM ({h.tasks_sql(aliases)}) GROUP BY run_id")
    return f"""
        SELECT strftime(r.started_at, '%Y-%m-%d') AS date, coalesce(r.host, 'unknown') AS host,
               'v{FORMAT_VERSION}:' || md5(string_agg(
                   concat_ws('|', r.run_id, r.status, epoch(r.finished_at), r.size_bytes,
                             t.n, epoch(t.last)), ',' ORDER BY r.run_id)) AS signature
        FROM ({h.runs_sql(aliases)}) r LEFT JOIN ({tasks}) t USING (run_id)
        GROUP BY ALL"""


def _read_signatures(directory):
    found = {}
    folder = os.path.join(directory, SIGNATURES)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(folder, name)) as f:
                        found.update({tuple(k.split("/", 1)): v for k, v in json.load(f).items()})
                except (OSError, ValueError):
                    continue  # unreadable: those partitions are simply written again
    return found


def _write_json_atomic(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _safe(value):
    return value.replace("/", "_")


def export(h, directory):
    """Write *h* as a partitioned Parquet dataset in *directory*, incrementally.

    Returns {"written": partitions rewritten, "unchanged": partitions kept,
    "removed": partitions whose runs are gone, "rows": {table: rows written}}."""
    if isinstance(h, ParquetHistory):
        raise ValueError("export a store, not a Parquet dataset")
    directory = os.path.abspath(str(directory))
    os.makedirs(directory, exist_ok=True)
    current = h.query(lambda a: _signatures_sql(h, a))
    previous = _read_signatures(directory)
    now = {(d, host): sig for d, host, sig in current.itertuples(index=False)}
    changed = {key for key, sig in now.items() if previous.get(key) != sig}
    hosts = {host for _d, host in now}
    gone = {key for key in previous if key[1] in hosts and key not in now}
    summary = {"written": len(changed), "unchanged": len(now) - len(changed),
               "removed": len(gone), "rows": {}}
    keep = "" if len(changed) == len(now) else (
        " WHERE (date, host) IN (" + ", ".join(
            f"({duck.sqlite_literal(d)}, {duck.sqlite_literal(host)})" for d, host in changed)
        + ")")
    if keep and changed:  # only the changed partitions' runs cross from SQLite
        since = datetime.fromisoformat(min(d for d, _host in changed)).replace(
            tzinfo=timezone.utc).timestamp()
        if h.filters["since"] is None or h.filters["since"] < since:
            h = h.with_filters(since=since)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        if changed:
            _execute(h, lambda a: _stage_tasks(h, a, keep))
        try:
            jobs = []  # writes overlap the next table's query
            for table in TABLES:
                rows = 0
                if changed:
                    pieces = [h.query_arrow(lambda a, table=table, k=k: _table_sql(h, a, table, keep)[k])
                              for k in range(PIECES.get(table, 1))]
                    rows = sum(p.num_rows for p in pieces)
                    jobs += [pool.submit(_write_file, directory, table, d, host, part)
                             for (d, host), part in _split(pieces).items()]
                summary["rows"][table] = rows
            for job in jobs:
                job.result()
            for table in TABLES:
                for d, host in gone | (changed - _present(directory, table, changed)):
                    _remove_partition(directory, table, d, host)
        finally:
            _execute(h, lambda a: f"DROP TABLE IF EXISTS {STAGED}")
    by_host = {}
    for (d, host), sig in now.items():
        by_host.setdefault(host, {})[f"{d}/{host}"] = sig
    for host, sigs in by_host.items():
        _write_json_atomic(os.path.join(directory, SIGNATURES, f"{_safe(host)}.json"), sigs)
    return summary


def _split(pieces):
    """{(date, host): rows without the partition columns}, from Arrow tables that
    are each sorted by (date, host): a partition is a run of equal keys, cut out
    by slicing (no copy), and a partition's slices from several pieces are joined."""
    found = {}
    for table in pieces:
        if table.num_rows == 0:
            continue
        key = pc.binary_join_element_wise(table["date"], table["host"], "\x00")
        codes = np.asarray(key.combine_chunks().dictionary_encode().indices)
        if np.any(np.diff(codes) < 0):  # not sorted after all: sort (stable) first
            order = np.argsort(codes, kind="stable")
            table, codes = table.take(order), codes[order]
        bounds = [0] + (np.flatnonzero(np.diff(codes)) + 1).tolist() + [table.num_rows]
        data = table.drop_columns(["date", "host"])
        dates, hosts = table["date"], table["host"]
        for a, b in zip(bounds, bounds[1:]):
            found.setdefault((dates[a].as_py(), hosts[a].as_py()), []).append(
                data.slice(a, b - a))
    return {k: v[0] if len(v) == 1 else pa.concat_tables(v) for k, v in found.items()}


def _partition_dir(directory, table, d, host):
    return os.path.join(directory, table, f"date={d}", f"host={_safe(host)}")


def _write_file(directory, table, d, host, rows):
    """One partition's file, written beside its final name and renamed into place."""
    folder = _partition_dir(directory, table, d, host)
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, "data_0.parquet")
    tmp = os.path.join(folder, f".data_0.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(rows, tmp, compression="zstd")
        os.replace(tmp, final)  # atomic: readers see the old file or the new one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _present(directory, table, keys):
    return {(d, host) for d, host in keys
            if os.path.exists(os.path.join(_partition_dir(directory, table, d, host),
                                           "data_0.parquet"))}


def _remove_partition(directory, table, d, host):
    shutil.rmtree(_partition_dir(directory, table, d, host), ignore_errors=True)


# -- reading ------------------------------------------------------------------

class _Files:
    """What a ParquetHistory queries: the dataset's files, nothing to attach."""

    def __init__(self, directory):
        self.paths = [directory]

    def query(self, con, build_sql, fetch):
        try:
            return fetch(con.execute(build_sql([])))
        except duck.duckdb.Error as exc:
            raise duck.ReadError(f"reading {self.paths[0]}: {exc}") from None

    def close(self):
        pass


class ParquetHistory(History):
    """A History over a Parquet dataset written by to_parquet (from one host or many)."""

    def __init__(self, directory, _share=None, **filters):
        directory = os.path.abspath(str(directory))
        if not is_dataset(directory):
            raise duck.ReadError(f"{directory}: not an ottolytics Parquet dataset (no runs/)")
        self.directory = directory
        super().__init__([], **filters, _share=_share)
        self.paths = [directory]
        if _share is None:
            self.stores = _Files(directory)

    @classmethod
    def _derived(cls, parent, f):
        return cls(parent.directory, _share=parent, **f)

    def _source(self, table):
        glob = os.path.join(self.directory, table, "**", "*.parquet")
        if not any(True for _ in _iter_files(os.path.join(self.directory, table))):
            return None
        return (f"read_parquet({duck.sqlite_literal(glob)}, hive_partitioning = true, "
                f"hive_types = {{'date': VARCHAR, 'host': VARCHAR}}, union_by_name = true)")

    def _where(self, f, status=True, tasks=False, run_col="run_id", time_col="started_at"):
        clauses = []
        if f["since"] is not None:
            clauses.append(f"{time_col} >= to_timestamp({float(f['since'])})")
            clauses.append(f"date >= strftime(to_timestamp({float(f['since'])}), '%Y-%m-%d')")
        if f["until"] is not None:
            clauses.append(f"{time_col} < to_timestamp({float(f['until'])})")
        for key, col in (("project", "project"), ("run", run_col)):
            if f.get(key):
                clauses.append(f"{col} IN (" + ", ".join(map(duck.sqlite_literal, f[key])) + ")")
        if tasks and f["task"]:
            clauses.append("task IN (" + ", ".join(map(duck.sqlite_literal, f["task"])) + ")")
        if status and f["status"]:
            clauses.append("CAST(status AS VARCHAR) IN ("
                           + ", ".join(map(duck.sqlite_literal, f["status"])) + ")")
        return (" WHERE " + " AND ".join(clauses)) if clauses else ""

    def _empty(self, columns):
        return "SELECT " + ", ".join(f"NULL AS {c}" for c in columns) + " WHERE false"

    def runs_sql(self, aliases, f=None, status=True):
        f = f or self.filters
        src = self._source("runs")
        if src is None:
            from .history import RUN_COLUMNS
            return self._empty(RUN_COLUMNS)
        return (f"SELECT run_id, project, CAST(status AS run_status) AS status, started_at, "
                f"finished_at, duration_s, host, \"user\", cwd, ottofile, args, run_dir, "
                f"size_bytes, source, source_ref, derived FROM {src}"
                + self._where(f, status))

    def _tasks_base(self, f, status):
        run_started = "run_started_at"
        return (f"SELECT * FROM {self._source('tasks')}"
                + self._where(f, status, tasks=True, time_col=run_started))

    def tasks_sql(self, aliases, f=None, status=True, with_tail=False):
        f = f or self.filters
        if self._source("tasks") is None:
            from .history import TASK_COLUMNS
            return self._empty(TASK_COLUMNS + (["stderr_tail"] if with_tail else []))
        tail = ", stderr_tail" if with_tail else ""
        return (f"SELECT run_id, project, host, task, attempt, "
                f"CAST(status AS task_status) AS status, started_at, finished_at, duration_s, "
                f"exit_code, signal, cpu_user_s, cpu_system_s, peak_rss_bytes, script_hash, "
                f"script_path, stdout_path, stderr_path, derived, run_started_at{tail} "
                f"FROM ({self._tasks_base(f, status)})")

    def facts_sql(self, aliases, need=()):
        f = self.filters
        if self._source("tasks") is None:
            return self._empty(["task", "status", "attempt", "started_at", "started_s",
                                "duration_s", "script_hash", "run_key", "run_id", "host",
                                "run_started_at", "project"])
        return (f"SELECT task, CAST(status AS VARCHAR) AS status, attempt, started_at, "
                f"epoch(started_at) AS started_s, duration_s, script_hash, run_id AS run_key, "
                f"run_id, host, run_started_at, project FROM ({self._tasks_base(f, True)})")

    def transitions_sql(self, aliases, f=None):
        f = f or self.filters
        src = self._source("transitions")
        if src is None:
            from .history import TRANSITION_COLUMNS
            return self._empty(TRANSITION_COLUMNS)
        keep = self.runs_sql(aliases, dict(f, status=None))
        return (f"SELECT x.run_id, x.task, x.attempt, x.from_status, x.to_status, x.\"at\", "
                f"x.reason FROM {src} x WHERE x.run_id IN (SELECT run_id FROM ({keep}))")

    def params_long_sql(self, aliases, f=None):
        f = f or self.filters
        src = self._source("params")
        if src is None:
            return self._empty(["run_id", "key", "value"])
        keep = self.runs_sql(aliases, dict(f, status=None))
        return (f"SELECT x.run_id, x.key, x.value FROM {src} x "
                f"WHERE x.run_id IN (SELECT run_id FROM ({keep}))")

    def deps_sql(self, aliases, f=None):
        f = f or self.filters
        if self._source("tasks") is None:
            return self._empty(["run_id", "task", "attempt", "depends_on"])
        return (f"SELECT run_id, task, attempt, unnest(depends_on) AS depends_on "
                f"FROM ({self._tasks_base(dict(f, status=None), False)}) "
                f"WHERE depends_on IS NOT NULL")

    def logs_sql(self, aliases, f=None):
        # Log fragments stay in the store; the dataset holds the log files' paths.
        return self._empty(["run_id", "task", "attempt", "stream", "seq", '"at"', "text"])

    def disk_samples_sql(self, aliases):
        # Disk samples describe one machine's OTTO_HOME; they stay in its store.
        return self._empty(["measured_at", "project", "runs", "run_bytes", "cache_bytes",
                            "orphan_cache_bytes", "other_bytes", "total_bytes"])


def _iter_files(root):
    for base, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".parquet"):
                yield os.path.join(base, name)
