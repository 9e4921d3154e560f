"""The Parquet dataset's writer: ``History.to_parquet(DIR)`` (and ``ottolytics
export parquet DIR``) writes a store's history as the dataset that
``ParquetSource`` (``ottolytics.open(DIR)``) reads; the layout and manifest are
described in ``ottolytics.analyze.sources.parquet``.

The tables runs, tasks, transitions and params are Hive-partitioned by the UTC
month of the run's start (``date=YYYY-MM``) and its host (``unknown`` when not
recorded), one zstd-compressed file per partition with its rows sorted by time.
Partition values are percent-encoded as Hive and Spark do, so every Hive reader
decodes them back to the original.

* Bounded memory: the tasks, their dependency lists and the transitions are
  staged in DuckDB temp tables (read from SQLite once); each table is then
  written by queries sorted by partition and time (the tasks and transitions a
  month at a time), streamed batch by batch into the partitions' files one after
  another. DuckDB works under MEMORY_LIMIT on a connection of its own and spills
  to a temporary directory beside the dataset, so the export's memory does not
  grow with the store (867 MiB peak at 10M tasks, against 8.2 GB before).

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
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ottolytics.analyze import duck
from ottolytics.analyze.sources.parquet import (
    CURRENT, FORMAT_VERSION, LEGACY, LOCK, MANIFEST, SNAPSHOTS, TABLES, _partition_path,
    read_manifest)
from ottolytics.analyze.sources.sqlite import SqliteSource
from ottolytics.core.files import FileLock, atomic_write, fsync_dir, fsync_file
from ottolytics.store.statuses import UNFINISHED, sql_in

# The partition of a row: the UTC month of its run's start and its host.
PART = "strftime(%s, '%%Y-%%m') AS date, coalesce(%s, 'unknown') AS host"
STAGED = "_ottolytics_export_tasks"  # a temp table: the tasks are read from SQLite once
DEPS = "_ottolytics_export_deps"      # and their dependency lists
RAW_DEPS = "_ottolytics_export_raw_deps"
TRANSITIONS = "_ottolytics_export_transitions"
DEPS_SLICE = 1_500_000                 # tasks whose lists are grouped at once
MEMORY_LIMIT = "500MB"  # DuckDB's share while exporting; the rest spills to disk
BATCH_ROWS = 131_072    # rows per Arrow batch handed to the writer (a row group at most)


def _execute(h, build_sql):
    h._run(build_sql, lambda result: None)


def _stage_tasks(r, keep):
    """Read the tasks once into a temp table, with the store's own keys, so that
    tasks and transitions are both cut from it."""
    body = r.source.tasks(r.scope, r.filters, with_tail=True, internal=True)
    return (f"CREATE OR REPLACE TEMP TABLE {STAGED} AS SELECT * FROM ("
            f"SELECT t.* EXCLUDE (host), {PART % ('t.run_started_at', 't.host')} "
            f"FROM ({body}) t){keep}")


def _stage_deps(h):
    """The staged tasks' dependency lists, in a temp table of their own. The
    rows cross from SQLite once, then are grouped into lists a range of task
    ids at a time: DuckDB cannot spill a grouping into lists, and all of them at
    once took 4 GB at 10M tasks."""
    h._run(lambda r: f"CREATE OR REPLACE TEMP TABLE {RAW_DEPS} AS " + " UNION ALL ".join(
        f"SELECT {i} AS _store, task_id, depends_on "
        f"FROM {r.source._rel(alias, 'task_deps', r.source._ids_clause(r.filters))}"
        for i, alias in enumerate(r.scope)), lambda result: None)
    con = h._con
    con.execute(f"CREATE OR REPLACE TEMP TABLE {DEPS} "
                f"(_store INTEGER, _tid BIGINT, depends_on VARCHAR[])")
    n, low, high = con.execute(f"SELECT count(*), min(task_id), max(task_id) "
                               f"FROM {RAW_DEPS}").fetchone()
    slices = max(1, -(-n // DEPS_SLICE))
    step = (high - low) // slices + 1 if n else 1
    for k in range(slices if n else 0):
        con.execute(f"INSERT INTO {DEPS} SELECT _store, task_id, "
                    f"list(depends_on ORDER BY depends_on) FROM {RAW_DEPS} "
                    f"WHERE task_id >= {low + k * step} AND task_id < {low + (k + 1) * step} "
                    f"GROUP BY ALL")
    con.execute(f"DROP TABLE {RAW_DEPS}")


def _stage_transitions(r, keep):
    """The transitions, in a temp table: the rows a plain-path task implies (see
    the store's transitions view), cut from the staged tasks, then the logged
    ones from status_log."""
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
    return (f"CREATE OR REPLACE TEMP TABLE {TRANSITIONS} AS {' UNION ALL '.join(implied)} "
            f"UNION ALL SELECT * FROM ({' UNION ALL '.join(logged)}){keep}")


def _table_sql(r, table, keep, month=None):
    """The SELECT of one table's rows, with its partition columns ``date`` and
    ``host``, sorted by partition and, within one, by time (so that a file's row
    groups hold consecutive times and a filter on time skips the others). The
    two big tables, staged, are read a *month* at a time: each sort is a
    month's rows."""
    if table == "runs":
        return (f"SELECT * FROM (SELECT * EXCLUDE (host) REPLACE (CAST(status AS VARCHAR) AS status), "
                f"{PART % ('started_at', 'host')} FROM ({r.runs()})){keep} "
                f"ORDER BY date, host, started_at, run_id")
    if table == "params":
        runs = f"SELECT run_id AS _rid, started_at AS _at, {PART % ('started_at', 'host')} FROM ({r.runs()})"
        return (f"SELECT * EXCLUDE (_at) FROM (SELECT x.*, r._at, r.date, r.host FROM ({r.params()}) x "
                f"JOIN ({runs}) r ON r._rid = x.run_id){keep} ORDER BY date, host, _at, run_id, key")
    where = f"date = {duck.sqlite_literal(month)}"
    if table == "tasks":
        return (f"SELECT t.* EXCLUDE (_store, _tid, _logged, date, host) "
                f"REPLACE (CAST(t.status AS VARCHAR) AS status), d.depends_on, t.date, t.host "
                f"FROM (SELECT * FROM {STAGED} WHERE {where}) t "
                f"LEFT JOIN {DEPS} d ON d._store = t._store AND d._tid = t._tid "
                f"ORDER BY t.host, t.run_started_at, t.run_id, t.started_at, t.attempt")
    return f"SELECT * FROM {TRANSITIONS} WHERE {where} ORDER BY host, \"at\", run_id, task"


def _signatures_sql(r):
    tasks = (f"SELECT run_id, count(*) AS n, max(finished_at) AS last "
             f"FROM ({r.tasks()}) GROUP BY run_id")
    return f"""
        SELECT strftime(r.started_at, '%Y-%m') AS date, coalesce(r.host, 'unknown') AS host,
               'v{FORMAT_VERSION}:' || md5(string_agg(
                   concat_ws('|', r.run_id, r.status, epoch(r.finished_at), r.size_bytes,
                             t.n, epoch(t.last)), ',' ORDER BY r.run_id)) AS signature
        FROM ({r.runs()}) r LEFT JOIN ({tasks}) t USING (run_id)
        GROUP BY ALL"""


def _write_json_atomic(path, data):
    """The manifest, by core.files' one atomic write (temporary file, fsync,
    rename, fsync the directory)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))


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
    # And the spill directory of DuckDB's sorts (".spill-….tmp").
    leftovers = ("." + MANIFEST + ".", MANIFEST + ".", CURRENT + ".", ".spill-")
    for name in os.listdir(directory):
        if name.endswith(".tmp") and name.startswith(leftovers) and name not in keep:
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
    # exports into one shared directory take turns
    with FileLock(os.path.join(directory, LOCK)), _bounded_memory(h, directory) as own:
        return _export_locked(own, directory, os.path.basename(own.spill))


def _export_locked(h, directory, spill):
    try:
        manifest = read_manifest(directory)
    except duck.ReadError:
        manifest = None  # unreadable: write everything again
    if manifest and not os.path.isdir(os.path.join(directory, SNAPSHOTS, manifest["snapshot"])):
        manifest = None  # its snapshot is gone: nothing to carry over, write everything
    old_snapshot = manifest["snapshot"] if manifest else None
    _sweep(directory, {old_snapshot, spill})
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
        since = datetime.fromisoformat(min(d for d, _host in changed) + "-01").replace(
            tzinfo=timezone.utc).timestamp()
        if h.filters["since"] is None or h.filters["since"] < since:
            h = h.with_filters(since=since)
    if changed:
        _execute(h, lambda r: _stage_tasks(r, keep))
        try:
            _stage_deps(h)
            _execute(h, lambda r: _stage_transitions(r, keep))
            months = [m for (m,) in h._con.execute(
                f"SELECT DISTINCT date FROM {STAGED} UNION SELECT DISTINCT date "
                f"FROM {TRANSITIONS} ORDER BY 1").fetchall()]
            for table in TABLES:
                summary["rows"][table] = sum(h._run(
                    lambda r, table=table, m=m: _table_sql(r, table, keep, m),
                    lambda result, table=table: _write_partitions(
                        result, work, table, files[table]))
                    for m in ([None] if table in ("runs", "params") else months))
        finally:
            for name in (STAGED, DEPS, RAW_DEPS, TRANSITIONS):
                h._con.execute(f"DROP TABLE IF EXISTS {name}")
    else:
        summary["rows"] = {table: 0 for table in TABLES}
    # Durable before it becomes visible: the snapshot's directories, its rename,
    # then the manifest (written last) and the link.
    # Files first, then folders, many at a time: fsync waits on the disk, not the CPU.
    walked = list(os.walk(work))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fsync_file, [os.path.join(base, name)
                                    for base, _dirs, names in walked for name in names]))
        list(pool.map(fsync_dir, [base for base, _dirs, _names in walked]))
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
    _sweep(directory, {snapshot, old_snapshot, spill})
    if os.path.isdir(os.path.join(directory, "_signatures")):  # format 1's tree
        for name in LEGACY:
            _remove(os.path.join(directory, name))
    summary["snapshot"] = snapshot
    return summary


class _bounded_memory:
    """A History over *h*'s stores and filters on a DuckDB connection of its own,
    limited to MEMORY_LIMIT and spilling to a temporary directory beside the
    dataset (removed after): the staged tasks and the sorts stream through
    disk, so the export's memory does not grow with the store. (A connection's
    spill directory can be set only before its first spill, hence a new one.)"""

    def __init__(self, h, directory):
        self.h, self.directory = h, directory

    def __enter__(self):
        self.spill = tempfile.mkdtemp(prefix=".spill-", suffix=".tmp", dir=self.directory)
        # the same kind of source as h's (the stores' mirrors, or a direct read)
        source = type(self.h._source)(self.h.paths)
        source.homes = list(self.h.homes)
        self.own = type(self.h)(source, **self.h.filters)  # a History (not imported: a cycle)
        self.own.spill = self.spill
        self.own._con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        self.own._con.execute(f"SET temp_directory = {duck.sqlite_literal(self.spill)}")
        # Every query of the export says its order; without this DuckDB keeps
        # rows in order where none is asked for, which holds them in memory.
        self.own._con.execute("SET preserve_insertion_order = false")
        return self.own

    def __exit__(self, *exc):
        try:
            self.own.close()
        finally:
            shutil.rmtree(self.spill, ignore_errors=True)


def _write_partitions(result, root, table, files):
    """Stream *result* (sorted by partition) into one file per partition, inside
    the snapshot being built, batch by batch: the rows never pile up in memory.
    Appends [date, host, rows] to *files*; returns the rows written."""
    reader = result.to_arrow_reader(BATCH_ROWS)
    keep = [i for i, name in enumerate(reader.schema.names) if name not in ("date", "host")]
    schema = reader.schema
    schema = schema.remove(schema.get_field_index("host")).remove(schema.get_field_index("date"))
    out, done, total = None, set(), 0
    try:
        for batch in reader:
            if batch.num_rows == 0:
                continue
            duck._valid_text(batch)  # raises what the source turns into NotUtf8
            key = pc.binary_join_element_wise(batch["date"], batch["host"], "\x00")
            codes = np.asarray(key.dictionary_encode().indices)
            bounds = [0] + (np.flatnonzero(np.diff(codes)) + 1).tolist() + [batch.num_rows]
            data = batch.select(keep)
            for a, b in zip(bounds, bounds[1:]):
                part = (batch["date"][a].as_py(), batch["host"][a].as_py())
                if out is None or out.part != part:
                    if out is not None:
                        files.append([*out.part, out.close()])
                    if part in done:  # the query's ORDER BY makes this impossible
                        raise RuntimeError(f"export of {table}: rows of {part} not together")
                    done.add(part)
                    out = _PartitionFile(root, _partition_path(table, *part), part, schema)
                out.write(data.slice(a, b - a))
                total += b - a
        if out is not None:
            files.append([*out.part, out.close()])
            out = None
    finally:
        if out is not None:
            out.abandon()
    return total


class _PartitionFile:
    """One partition's file, inside the snapshot being built (not visible yet),
    written a row group at a time."""

    def __init__(self, root, rel, part, schema):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.part, self.rows = part, 0
        self.file = open(path, "wb")
        self.writer = pq.ParquetWriter(self.file, schema, compression="zstd")

    def write(self, batch):
        self.writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self):
        """Close the file (the export fsyncs the snapshot's files together)."""
        self.writer.close()
        self.file.close()
        return self.rows

    def abandon(self):
        try:
            self.writer.close()
        finally:
            self.file.close()
