"""Parquet datasets of the history: written by ``History.to_parquet(DIR)`` (and
``ottolytics export parquet DIR``), read back by ``ottolytics.open(DIR)``.

Layout::

    DIR/manifest.json                      what the dataset is now (written last)
    DIR/current -> snapshots/<snapshot>    the same, for other Hive readers
    DIR/snapshots/<snapshot>/<table>/date=YYYY-MM-DD/host=<host>/data_0.parquet

for the tables runs, tasks, transitions and params, Hive-partitioned by the UTC
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
* ``ottolytics.open(DIR)`` reads exactly the files the manifest names.
"""

import hashlib
import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ottolytics.analyze import duck
from ottolytics.analyze.history import History

TABLES = ("runs", "tasks", "transitions", "params")
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
CURRENT = "current"
SNAPSHOTS = "snapshots"
LOCK = ".lock"
DATA_FILE = "data_0.parquet"
LEGACY = (*TABLES, "_signatures")  # format 1 wrote straight into DIR/<table>
_SNAPSHOT_NAME = re.compile(r"^[0-9]{6,}-[0-9a-f]{8}$")


def is_dataset(path):
    return os.path.isfile(os.path.join(str(path), MANIFEST))


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


# Hive escapes these in partition values (Spark's list; pyarrow, DuckDB and
# polars decode any %XX). Other characters, non-ASCII included, stay as they are:
# Spark decodes %XX one byte to one character, so UTF-8 must not be escaped.
_ESCAPE = set('"#%\'*/:=?\\{[]^\x7f') | {chr(i) for i in range(0x20)}


def hive_value(value):
    """*value* as a Hive partition path segment that every Hive reader decodes
    back to *value*. Values a reader would take as null get one letter escaped:
    DuckDB reads ``null`` (any case) as null, and every reader
    ``__HIVE_DEFAULT_PARTITION__`` (pyarrow and polars even when escaped)."""
    text = "".join(f"%{ord(c):02X}" if c in _ESCAPE else c for c in str(value))
    if text.lower() in ("null", "__hive_default_partition__"):
        text = f"%{ord(text[0]):02X}" + text[1:]
    return text


MAX_SEGMENT = 200  # bytes of an escaped value in a path; file names stop at 255


def _segment(value):
    """The escaped path segment of a partition value. A value too long for a file
    name (store rows are untrusted) is shortened to its start and a hash of the
    whole, so that one hostile row cannot stop every export."""
    text = hive_value(value)
    if len(text.encode()) <= MAX_SEGMENT:
        return text
    digest = hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = str(value)
    while len(hive_value(head).encode()) > MAX_SEGMENT - 20:
        head = head[:len(head) * 3 // 4]
    return hive_value(f"{head}~{digest}")


def _partition_path(table, d, host):
    return os.path.join(table, f"date={_segment(d)}", f"host={_segment(host)}", DATA_FILE)


def _fsync_path(path, directory=False):
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return  # a file system that cannot open directories for fsync
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path, data):
    """Temporary file in the same directory, fsync, rename, fsync the directory."""
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_path(os.path.dirname(path), directory=True)


def read_manifest(directory):
    """The manifest of the dataset in *directory*, checked, or None when there is
    none. Raises duck.ReadError when it is not one this version can read."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise duck.ReadError(f"{path}: unreadable ({exc}); export again to rewrite it") from None
    try:
        ok = (data["format"] == FORMAT_VERSION and _SNAPSHOT_NAME.match(data["snapshot"])
              and all(isinstance(d, str) and isinstance(host, str) and isinstance(rows, int)
                      for t in TABLES for d, host, rows in data["files"][t])
              and all(isinstance(d, str) and isinstance(host, str) and isinstance(sig, str)
                      for d, host, sig in data["partitions"])
              and isinstance(data["version"], int))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise duck.ReadError(f"{path}: not a manifest this version of ottolytics can read "
                             f"(format {FORMAT_VERSION}); export again to rewrite it")
    return data


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
    for name in os.listdir(directory):
        if name.endswith(".tmp") and (name.startswith(MANIFEST + ".")
                                      or name.startswith(CURRENT + ".")):
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
    _fsync_path(directory, directory=True)


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
    if isinstance(h, ParquetHistory):
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
    current = h.query(lambda a: _signatures_sql(h, a))
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
            _execute(h, lambda a: _stage_tasks(h, a, keep))
        try:
            jobs = []  # writes overlap the next table's query
            for table in TABLES:
                rows = 0
                if changed:
                    pieces = [h.query_arrow(lambda a, table=table, k=k: _table_sql(h, a, table, keep)[k])
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
            _execute(h, lambda a: f"DROP TABLE IF EXISTS {STAGED}")
    # Durable before it becomes visible: the snapshot's directories, its rename,
    # then the manifest (written last) and the link.
    folders = [base for base, _dirs, _files in os.walk(work)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # fsync waits on the disk, not the CPU
        list(pool.map(lambda folder: _fsync_path(folder, directory=True), folders))
    final = os.path.join(snapshots, snapshot)
    os.rename(work, final)
    _fsync_path(snapshots, directory=True)
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
        if _share is not None:
            self.snapshot, self._tables = _share.snapshot, _share._tables
        else:
            self.snapshot, self._tables = _open_snapshot(directory)
        self.directory = directory
        super().__init__([], **filters, _share=_share)
        self.paths = [directory]
        if _share is None:
            self.stores = _Files(directory)

    @classmethod
    def _derived(cls, parent, f):
        return cls(parent.directory, _share=parent, **f)

    def _source(self, table):
        if not self._tables[table]:
            return None
        # The snapshot is immutable and was checked against the manifest on open,
        # so this glob names exactly the manifest's files.
        glob = os.path.join(self.directory, SNAPSHOTS, self.snapshot, table, "**", "*.parquet")
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
            from ottolytics.analyze.history import RUN_COLUMNS
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
            from ottolytics.analyze.history import TASK_COLUMNS
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
            from ottolytics.analyze.history import TRANSITION_COLUMNS
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


def _open_snapshot(directory):
    """(snapshot name, {table: its files}) of the dataset's manifest, after
    checking that the snapshot holds exactly the files the manifest names."""
    manifest = read_manifest(directory) if os.path.isdir(directory) else None
    if manifest is None:
        if os.path.isdir(os.path.join(directory, "_signatures")):
            why = "written by an older ottolytics (no manifest.json)"
        elif os.path.isdir(os.path.join(directory, SNAPSHOTS)):
            why = "no complete export yet (the first one was interrupted)"
        else:
            why = "not an ottolytics Parquet dataset (no manifest.json)"
        raise duck.ReadError(f"{directory}: {why}; export again with "
                             f"'ottolytics export parquet {directory}'")
    root = os.path.join(directory, SNAPSHOTS, manifest["snapshot"])
    tables = {t: {_partition_path(t, d, host) for d, host, _rows in manifest["files"][t]}
              for t in TABLES}
    named = set().union(*tables.values())
    found = {os.path.relpath(os.path.join(base, name), root)
             for base, _dirs, names in os.walk(root) for name in names}
    if not os.path.isdir(root) or named != found:
        missing, extra = len(named - found), len(found - named)
        raise duck.ReadError(f"{directory}: snapshot {manifest['snapshot']} does not match "
                             f"its manifest ({missing} files missing, {extra} not named); "
                             f"export again")
    return manifest["snapshot"], tables
