"""``ParquetSource``: a Parquet dataset written by ``History.to_parquet`` (from one
host or many), and the dataset's format: its layout, partition paths and manifest.
The writer is ``ottolytics.analyze.dataset``.

Layout::

    DIR/manifest.json                      what the dataset is now (written last)
    DIR/current -> snapshots/<snapshot>    the same, for other Hive readers
    DIR/snapshots/<snapshot>/<table>/date=YYYY-MM/host=<host>/<chunk>.parquet
    DIR/snapshots/<snapshot>/_runs.arrow   which chunk holds each run (the writer's)

A partition is the UTC month of the runs' start (``date=2026-11``) and their
host: a year of a fleet is a few dozen partitions per table. Format 4 lets a
partition hold several files, *chunks*: each holds whole runs (a run's rows of
every table are in the chunk of the same name), sorted by time, so that a
filter on time skips whole row groups. A full export writes one chunk per
partition; an incremental one writes the runs that changed as new chunks and
merges small ones, so a partition holds at most ``MAX_CHUNKS`` files per store.
Format 3 held one file per partition (``data_0.parquet``) and format 2 cut
partitions by day (``date=2026-11-21``); this reader reads all three, and the
next export rewrites a host's older partitions in the current format.

The manifest lists every file (``files``: ``[date, host, rows, chunk]`` per table;
formats 2 and 3 had no chunk, meaning ``data_0``) and, per store that exported
into the directory (by its ``store_info.uid``), the change-log position and the
unfinished runs of its last export (``stores``): what the next export starts
from. ``_runs.arrow`` (not a Parquet file, so no reader's glob takes it) maps
each store's runs to their chunks.

``ottolytics.open(DIR)`` reads exactly the files the manifest names. The
dataset holds no log fragments and no disk samples (they describe one machine
and stay in its store), and its log paths are other machines': no log file is
read through it.
"""

__all__ = ["ParquetSource", "is_dataset", "read_manifest", "hive_value", "FORMAT_VERSION", "READABLE",
           "MANIFEST", "CURRENT", "SNAPSHOTS", "LOCK", "TABLES", "LEGACY", "INDEX", "LEGACY_CHUNK",
           "file_entries"]

import hashlib
import json
import os
import re

from ottolytics.analyze import duck
from ottolytics.analyze.sources.base import SHAPES, Source, empty, literal
TABLES = ("runs", "tasks", "transitions", "params")
FORMAT_VERSION = 4
READABLE = (2, 3, 4)  # 3: one file a partition; 2: the same, a partition a day
MANIFEST = "manifest.json"
CURRENT = "current"
SNAPSHOTS = "snapshots"
LOCK = ".lock"
LEGACY_CHUNK = "data_0"  # the one file of a format 2 or 3 partition
INDEX = "_runs.arrow"   # which chunk holds each run (read by the writer only)
LEGACY = (*TABLES, "_signatures")  # format 1 wrote straight into DIR/<table>
_SNAPSHOT_NAME = re.compile(r"^[0-9]{6,}-[0-9a-f]{8}$")
_CHUNK_NAME = re.compile(r"^(data_0|part-[0-9]{6,}-[0-9]{4,})$")


def is_dataset(path):
    return os.path.isfile(os.path.join(str(path), MANIFEST))



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


def _partition_path(table, d, host, chunk=LEGACY_CHUNK):
    return os.path.join(table, f"date={_segment(d)}", f"host={_segment(host)}",
                        f"{chunk}.parquet")


def file_entries(manifest, table):
    """(date, host, rows, chunk) of each file of *table* the manifest names
    (formats 2 and 3 name no chunk: their one file is ``data_0``)."""
    return [(e[0], e[1], e[2], e[3] if len(e) > 3 else LEGACY_CHUNK)
            for e in manifest["files"][table]]


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
        ok = (data["format"] in READABLE and _SNAPSHOT_NAME.match(data["snapshot"])
              and all(len(e) in (3, 4) and all(isinstance(v, str) for v in e[:2] + e[3:])
                      and isinstance(e[2], int) for t in TABLES for e in data["files"][t])
              and all(_CHUNK_NAME.match(e[3]) for t in TABLES for e in data["files"][t]
                      if len(e) > 3)
              and isinstance(data.get("stores", {}), dict)
              and all(isinstance(d, str) and isinstance(host, str) and isinstance(sig, str)
                      for d, host, sig in data["partitions"])
              and isinstance(data["version"], int))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise duck.ReadError(f"{path}: not a manifest this version of ottolytics can read "
                             f"(format {FORMAT_VERSION}); export again to rewrite it")
    return data


class _Files:
    """What a ParquetSource queries: the dataset's files, nothing to attach."""

    def __init__(self, directory):
        self.paths = [directory]

    def query(self, con, build_sql, fetch):
        try:
            return fetch(con.execute(build_sql([])))
        except duck.duckdb.Error as exc:
            raise duck.ReadError(f"reading {self.paths[0]}: {exc}") from None

    def close(self):
        pass


class ParquetSource(Source):
    """The Parquet dataset in *directory* (see the module's docstring). The
    snapshot the manifest names is opened once, checked, and read throughout."""

    def __init__(self, directory):
        self.directory = os.path.abspath(str(directory))
        self.snapshot, self._tables = _open_snapshot(self.directory)
        self.paths = [self.directory]
        self.homes = []
        self._files = _Files(self.directory)

    def query(self, con, build, fetch):
        return self._files.query(con, build, fetch)

    def state(self, con):
        return ("dataset", self.directory, self.snapshot)  # one snapshot, read throughout

    def _source(self, table):
        if not self._tables[table]:
            return None
        # The snapshot is immutable and was checked against the manifest on open,
        # so this glob names exactly the manifest's files.
        glob = os.path.join(self.directory, SNAPSHOTS, self.snapshot, table, "**", "*.parquet")
        return (f"read_parquet({literal(glob)}, hive_partitioning = true, "
                f"hive_types = {{'date': VARCHAR, 'host': VARCHAR}}, union_by_name = true)")

    def _where(self, f, status=True, tasks=False, run_col="run_id", time_col="started_at"):
        clauses = []
        if f["since"] is not None:
            clauses.append(f"{time_col} >= to_timestamp({float(f['since'])})")
            # A month (or, in format 2, a day: later in the same month sorts after it).
            clauses.append(f"date >= strftime(to_timestamp({float(f['since'])}), '%Y-%m')")
        if f["until"] is not None:
            clauses.append(f"{time_col} < to_timestamp({float(f['until'])})")
        for key, col in (("project", "project"), ("run", run_col)):
            if f.get(key):
                clauses.append(f"{col} IN (" + ", ".join(map(literal, f[key])) + ")")
        if tasks and f["task"]:
            clauses.append("task IN (" + ", ".join(map(literal, f["task"])) + ")")
        if status and f["status"]:
            clauses.append("CAST(status AS VARCHAR) IN ("
                           + ", ".join(map(literal, f["status"])) + ")")
        return (" WHERE " + " AND ".join(clauses)) if clauses else ""

    def runs(self, scope, f, status=True):
        src = self._source("runs")
        if src is None:
            return empty(SHAPES["runs"], "runs")
        return (f"SELECT run_id, project, CAST(status AS run_status) AS status, started_at, "
                f"finished_at, duration_s, host, \"user\", cwd, ottofile, args, run_dir, "
                f"size_bytes, source, source_ref, derived FROM {src}"
                + self._where(f, status))

    def _tasks_base(self, f, status):
        return (f"SELECT * FROM {self._source('tasks')}"
                + self._where(f, status, tasks=True, time_col="run_started_at"))

    def tasks(self, scope, f, status=True, with_tail=False, with_deps=False):
        if self._source("tasks") is None:
            return empty(SHAPES["tasks"] + (["stderr_tail"] if with_tail else [])
                         + (["depends_on"] if with_deps else []), "tasks")
        extra = (", stderr_tail" if with_tail else "") + (", depends_on" if with_deps else "")
        return (f"SELECT run_id, project, host, task, attempt, "
                f"CAST(status AS task_status) AS status, started_at, finished_at, duration_s, "
                f"exit_code, signal, cpu_user_s, cpu_system_s, peak_rss_bytes, script_hash, "
                f"script_path, stdout_path, stderr_path, derived, run_started_at{extra} "
                f"FROM ({self._tasks_base(f, status)})")

    def facts(self, scope, f, need=()):
        if self._source("tasks") is None:
            return empty(["task", "status", "attempt", "started_at", "started_s",
                          "duration_s", "script_hash", "run_key", "run_id", "host",
                          "run_started_at", "project"])
        return (f"SELECT task, CAST(status AS VARCHAR) AS status, attempt, started_at, "
                f"epoch(started_at) AS started_s, duration_s, script_hash, run_id AS run_key, "
                f"run_id, host, run_started_at, project FROM ({self._tasks_base(f, True)})")

    def transitions(self, scope, f):
        src = self._source("transitions")
        if src is None:
            return empty(SHAPES["transitions"])
        keep = self.runs(scope, dict(f, status=None))
        return (f"SELECT x.run_id, x.task, x.attempt, x.from_status, x.to_status, x.\"at\", "
                f"x.reason FROM {src} x WHERE x.run_id IN (SELECT run_id FROM ({keep}))")

    def params(self, scope, f):
        src = self._source("params")
        if src is None:
            return empty(SHAPES["params"])
        keep = self.runs(scope, dict(f, status=None))
        return (f"SELECT x.run_id, x.key, x.value FROM {src} x "
                f"WHERE x.run_id IN (SELECT run_id FROM ({keep}))")

    def deps(self, scope, f):
        if self._source("tasks") is None:
            return empty(SHAPES["deps"])
        return (f"SELECT run_id, task, attempt, unnest(depends_on) AS depends_on "
                f"FROM ({self._tasks_base(dict(f, status=None), False)}) "
                f"WHERE depends_on IS NOT NULL")


def _open_snapshot(directory):
    """(snapshot name, {table: its files}) of the dataset's manifest, after
    checking that the snapshot holds exactly the files the manifest names."""
    manifest = read_manifest(directory) if os.path.isdir(directory) else None
    if manifest is None:
        if os.path.isdir(os.path.join(directory, "_signatures")):
            why = "written by an older ottolytics (no manifest.json)"
        elif os.path.isdir(os.path.join(directory, SNAPSHOTS)) or (
                os.path.isdir(directory) and os.listdir(directory) and all(
                    n == LOCK or n.startswith(".spill-") for n in os.listdir(directory))):
            why = "no complete export yet (the first one was interrupted)"
        elif os.path.isdir(directory) and not os.listdir(directory):
            raise duck.ReadError(f"{directory}: an empty directory, neither a store nor a "
                                 f"dataset; pass the store file, or export a dataset into it "
                                 f"with 'ottolytics export parquet {directory}'")
        else:  # a directory of anything else: most likely the store's (OTTO_HOME)
            store = os.path.join(directory, "ottolytics.db")
            raise duck.ReadError(
                f"{directory}: is a directory, neither a store nor an ottolytics Parquet "
                f"dataset (no manifest.json); pass the store file (e.g. --db {store}) or "
                f"the directory that 'ottolytics export parquet' wrote")
        raise duck.ReadError(f"{directory}: {why}; export again with "
                             f"'ottolytics export parquet {directory}'")
    root = os.path.join(directory, SNAPSHOTS, manifest["snapshot"])
    tables = {t: {_partition_path(t, d, host, chunk)
                  for d, host, _rows, chunk in file_entries(manifest, t)} for t in TABLES}
    named = set().union(*tables.values())
    found = {os.path.relpath(os.path.join(base, name), root)
             for base, _dirs, names in os.walk(root) for name in names
             if base != root or not name.startswith("_")}  # the writer's index
    if not os.path.isdir(root) or named != found:
        missing, extra = len(named - found), len(found - named)
        raise duck.ReadError(f"{directory}: snapshot {manifest['snapshot']} does not match "
                             f"its manifest ({missing} files missing, {extra} not named); "
                             f"export again")
    return manifest["snapshot"], tables
