"""The Parquet dataset's writer: ``History.to_parquet(DIR)`` (and ``ottolytics
export parquet DIR``) writes a store's history as the dataset that
``ParquetSource`` (``ottolytics.open(DIR)``) reads; the layout and manifest are
described in ``ottolytics.analyze.sources.parquet``.

The tables runs, tasks, transitions and params are Hive-partitioned by the UTC
date of the run's start and its host (``unknown`` when not recorded),
zstd-compressed. Partition values are percent-encoded as Hive and Spark do, so
every Hive reader decodes them back to the original.

* Complete states only: an export builds a new snapshot directory (named
  ``*.tmp`` until it is whole and fsynced), renames it, then replaces
  ``manifest.json`` (temporary file, fsync, rename) and the ``current`` link. A
  reader sees the previous snapshot or the new one, never a mix; a killed export
  leaves the previous one, and the next export removes what it left.
* Incremental: every partition has a signature of what it holds (its runs'
  ids, statuses, end times, sizes and task counts), kept in the manifest; an
  export writes only partitions whose signature changed and hard-links the
  others from the previous snapshot. Many hosts can export into one shared
  directory: an export replaces only its own hosts' partitions (a lock file
  serialises exports).
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

from ottolytics.analyze import duck
from ottolytics.analyze.sources.parquet import (
    CURRENT, FORMAT_VERSION, LEGACY, LOCK, MANIFEST, SNAPSHOTS, TABLES, _partition_path,
    read_manifest)
from ottolytics.analyze.sources.sqlite import SqliteSource
from ottolytics.core.files import atomic_write, fsync_dir
from ottolytics.store.statuses import UNFINISHED, sql_in

PART = "strftime(%s, '%%Y-%%m-%%d') AS date, coalesce(%s, 'unknown') AS host"
STAGED = "_ottolytics_export_tasks"  # a temp table: the tasks are read from SQLite once
PIECES = {"transitions": 3}  # how many SELECTs _table_sql returns for a table


def _execute(h, build_sql):
    h._run(build_sql, lambda result: None)


def _stage_tasks(r, keep):
    """Read the tasks once into a temp table, sorted by partition, with the
    store's own keys, so that tasks and transitions are both cut from it."""
    body = r.source.tasks(r.scope, r.filters, with_tail=True, with_deps=True, internal=True)
    return (f"CREATE OR REPLACE TEMP TABLE {STAGED} AS SELECT * FROM ("
            f"SELECT t.* EXCLUDE (host), {PART % ('t.run_started_at', 't.host')} "
            f"FROM ({body}) t){keep} ORDER BY date, host")


def _table_sql(r, table, keep):
    """The SELECTs (each sorted by partition) whose rows make up one table, with
    its partition columns ``date`` and ``host``."""
    if table == "runs":
        return [f"SELECT * FROM (SELECT * EXCLUDE (host) REPLACE (CAST(status AS VARCHAR) AS status), "
                f"{PART % ('started_at', 'host')} FROM ({r.runs()})){keep} "
                f"ORDER BY date, host"]
    if table == "tasks":
        return [f"SELECT * EXCLUDE (_store, _tid, _logged) REPLACE (CAST(status AS VARCHAR) AS status) "
                f"FROM {STAGED}"]
    if table == "params":
        runs = f"SELECT run_id AS _rid, {PART % ('started_at', 'host')} FROM ({r.runs()})"
        return [f"SELECT * FROM (SELECT x.*, r.date, r.host FROM ({r.params()}) x "
                f"JOIN ({runs}) r ON r._rid = x.run_id){keep} ORDER BY date, host"]
    # transitions: the rows a plain-path task implies (see the store's transitions
    # view), cut from the staged tasks, then the logged ones from status_log.
    implied = [
        f"SELECT run_id, task, attempt, CAST(NULL AS VARCHAR) AS from_status, "
        f"'running' AS to_status, started_at AS \"at\", CAST(NULL AS VARCHAR) AS reason, date, host "
        f"FROM {STAGED} WHERE _logged = 0",
        f"SELECT run_id, task, attempt, 'running' AS from_status, CAST(status AS VARCHAR) AS to_status, "
        f"finished_at AS \"at\", CAST(NULL AS VARCHAR) AS reason, date, host FROM {STAGED} "
        f"WHERE _logged = 0 AND status NOT IN {sql_in(UNFINISHED)}"]
    f, src = r.filters, r.source
    logged = []
    for i, alias in enumerate(r.scope):
        log = src._rel(alias, "status_log", src._by_run(f))
        runs = src._rel(alias, "runs", src._runs_where(f, with_status=False))
        logged.append(
            f"SELECT r.uid AS run_id, t.task, t.attempt, x.from_status, x.to_status, "
            f"to_timestamp(x.\"at\") AS \"at\", x.reason, "
            f"{PART % ('to_timestamp(r.started_at)', 'r.host')} "
            f"FROM {log} x JOIN {runs} r ON r.id = x.run_id "
            f"LEFT JOIN {STAGED} t ON t._store = {i} AND t._tid = x.task_id")
    return implied + [f"SELECT * FROM ({' UNION ALL '.join(logged)}){keep} ORDER BY date, host"]


def _signatures_sql(r):
    tasks = (f"SELECT run_id, count(*) AS n, max(finished_at) AS last "
             f"FROM ({r.tasks()}) GROUP BY run_id")
    return f"""
        SELECT strftime(r.started_at, '%Y-%m-%d') AS date, coalesce(r.host, 'unknown') AS host,
               'v{FORMAT_VERSION}:' || md5(string_agg(
                   concat_ws('|', r.run_id, r.status, epoch(r.finished_at), r.size_bytes,
                             t.n, epoch(t.last)), ',' ORDER BY r.run_id)) AS signature
        FROM ({r.runs()}) r LEFT JOIN ({tasks}) t USING (run_id)
        GROUP BY ALL"""


def _write_json_atomic(path, data):
    """The manifest, by core.files' one atomic write (temporary file, fsync,
    rename, fsync the directory)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


class _Lock:
    """An exclusive lock on DIR/.lock while an export runs (none where the
    platform has no fcntl): exports into one shared directory take turns."""

    def __init__(self, directory):
        self.path = os.path.join(directory, LOCK)
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock


def _current_target(directory):
    try:
        target = os.readlink(os.path.join(directory, CURRENT))
    except OSError:
        return None
    return os.path.basename(target)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _sweep(directory, keep):
    """Remove what earlier exports left: temporary files and snapshots that
    neither *keep* nor the ``current`` link names."""
    keep = set(keep) | {_current_target(directory)}
    # The manifest's (core.files.atomic_write's ".manifest.json.….tmp"; older
    # versions wrote "manifest.json.….tmp") and the link's ("current.….tmp").
    leftovers = ("." + MANIFEST + ".", MANIFEST + ".", CURRENT + ".")
    for name in os.listdir(directory):
        if name.endswith(".tmp") and name.startswith(leftovers):
            _remove(os.path.join(directory, name))
    folder = os.path.join(directory, SNAPSHOTS)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name not in keep:
                _remove(os.path.join(folder, name))


def _point_current(directory, snapshot):
    """Swing the ``current`` link to *snapshot* atomically (a new link, renamed
    over the old one). Where links cannot be made, readers use the manifest."""
    link = os.path.join(directory, CURRENT)
    if os.path.exists(link) and not os.path.islink(link):
        return  # something of the user's: leave it
    tmp = f"{link}.{uuid.uuid4().hex}.tmp"
    try:
        os.symlink(os.path.join(SNAPSHOTS, snapshot), tmp)
        os.replace(tmp, link)
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        return
    fsync_dir(directory)


def _carry(old, new):
    """An unchanged partition's file into the new snapshot: a hard link (the file
    is never written again), or a copy where links are not possible."""
    os.makedirs(os.path.dirname(new), exist_ok=True)
    try:
        os.link(old, new)
    except OSError:
        shutil.copy2(old, new)


def export(h, directory):
    """Write *h* as a partitioned Parquet dataset in *directory*, incrementally,
    as a new complete snapshot that replaces the previous one at once.

    Returns {"written": partitions rewritten, "unchanged": partitions kept,
    "removed": partitions whose runs are gone, "rows": {table: rows written},
    "snapshot": the new snapshot's directory name}."""
    if not isinstance(h._source, SqliteSource):
        raise ValueError("export a store, not a Parquet dataset")
    directory = os.path.abspath(str(directory))
    os.makedirs(directory, exist_ok=True)
    with _Lock(directory):
        return _export_locked(h, directory)


def _export_locked(h, directory):
    try:
        manifest = read_manifest(directory)
    except duck.ReadError:
        manifest = None  # unreadable: write everything again
    if manifest and not os.path.isdir(os.path.join(directory, SNAPSHOTS, manifest["snapshot"])):
        manifest = None  # its snapshot is gone: nothing to carry over, write everything
    old_snapshot = manifest["snapshot"] if manifest else None
    _sweep(directory, {old_snapshot})
    previous = {(d, host): sig for d, host, sig in manifest["partitions"]} if manifest else {}
    current = h._query(_signatures_sql)
    now = {(d, host): sig for d, host, sig in current.itertuples(index=False)}
    changed = {key for key, sig in now.items() if previous.get(key) != sig}
    hosts = {host for _d, host in now}
    gone = {key for key in previous if key[1] in hosts and key not in now}
    summary = {"written": len(changed), "unchanged": len(now) - len(changed),
               "removed": len(gone), "rows": {}}
    # Partitions of other hosts (exported from their own stores) are carried too.
    kept = {key: sig for key, sig in previous.items() if key not in gone and key not in now}
    kept.update((key, sig) for key, sig in now.items() if key not in changed)
    version = (manifest["version"] + 1) if manifest else 1
    snapshot = f"{version:06d}-{uuid.uuid4().hex[:8]}"
    snapshots = os.path.join(directory, SNAPSHOTS)
    work = os.path.join(snapshots, snapshot + ".tmp")
    os.makedirs(work)
    files = {t: [] for t in TABLES}
    if manifest:
        old_root = os.path.join(snapshots, old_snapshot)
        for table in TABLES:
            for d, host, rows in manifest["files"][table]:
                if (d, host) in kept:
                    rel = _partition_path(table, d, host)
                    _carry(os.path.join(old_root, rel), os.path.join(work, rel))
                    files[table].append([d, host, rows])
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
            _execute(h, lambda r: _stage_tasks(r, keep))
        try:
            jobs = []  # writes overlap the next table's query
            for table in TABLES:
                rows = 0
                if changed:
                    pieces = [h._query(lambda r, table=table, k=k: _table_sql(r, table, keep)[k], arrow=True)
                              for k in range(PIECES.get(table, 1))]
                    rows = sum(p.num_rows for p in pieces)
                    for (d, host), part in _split(pieces).items():
                        files[table].append([d, host, part.num_rows])
                        jobs.append(pool.submit(_write_file, work,
                                                _partition_path(table, d, host), part))
                summary["rows"][table] = rows
            for job in jobs:
                job.result()
        finally:
            _execute(h, lambda r: f"DROP TABLE IF EXISTS {STAGED}")
    # Durable before it becomes visible: the snapshot's directories, its rename,
    # then the manifest (written last) and the link.
    folders = [base for base, _dirs, _files in os.walk(work)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # fsync waits on the disk, not the CPU
        list(pool.map(fsync_dir, folders))
    final = os.path.join(snapshots, snapshot)
    os.rename(work, final)
    fsync_dir(snapshots)
    partitions = sorted([d, host, sig] for (d, host), sig in {**kept, **{
        k: now[k] for k in changed}}.items())
    _write_json_atomic(os.path.join(directory, MANIFEST), {
        "format": FORMAT_VERSION, "version": version, "snapshot": snapshot,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "partitions": partitions,
        "files": {t: sorted(files[t]) for t in TABLES}})
    _point_current(directory, snapshot)
    # The previous snapshot stays for readers that opened it; older ones go.
    _sweep(directory, {snapshot, old_snapshot})
    if os.path.isdir(os.path.join(directory, "_signatures")):  # format 1's tree
        for name in LEGACY:
            _remove(os.path.join(directory, name))
    summary["snapshot"] = snapshot
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


def _write_file(root, rel, rows):
    """One partition's file, inside the snapshot being built (not visible yet)."""
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pq.write_table(rows, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())


