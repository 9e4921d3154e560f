"""The Parquet dataset's writer: ``History.to_parquet(DIR)`` (and ``ottolytics
export parquet DIR``) writes a store's history as the dataset that
``ParquetSource`` (``ottolytics.open(DIR)``) reads; the layout and manifest are
described in ``ottolytics.analyze.sources.parquet``.

The tables runs, tasks, transitions and params are Hive-partitioned by the UTC
month of the run's start (``date=YYYY-MM``) and its host (``unknown`` when not
recorded). A partition holds one or a few zstd-compressed files, *chunks*: a
chunk is a set of whole runs (the same runs in each table's file of that name),
its rows sorted by time. Partition values are percent-encoded as Hive and Spark
do, so every Hive reader decodes them back to the original.

* Incremental, from the store's change log: the manifest keeps, per store (its
  ``store_info.uid``), the change log's newest seq and the runs unfinished at
  its last export; ``_runs.arrow`` in the snapshot says which chunk holds each
  run. The next export reads the runs logged since (inserted, deleted, or
  written after they finished) and the runs that were unfinished, rewrites only
  the chunks holding them, writes their new rows as a new chunk of each
  partition they belong to, and hard-links every other file from the previous
  snapshot. Nothing else of the store is read: the cost follows what changed,
  not the store's size. A partition holds at most ``MAX_CHUNKS`` chunks of one
  store: past that, its smallest chunks are merged into the new one. A store not
  seen before (another uid), a store whose change log went back, a filtered
  History, or a dataset of an older format is exported whole.
* Fast and bounded full exports: the runs are written a batch of chunks at a
  time (``BATCH_RUNS`` runs). Each table's rows of the batch are read from the
  source (the store's columnar mirror, or the store) by one query, its scans
  bounded by the batch's run ids (and task ids) so they skip the rest of the
  mirror's files, sorted by chunk and time, and streamed in Arrow batches to a
  writer thread that writes the chunks' files (pyarrow, zstd) while DuckDB sorts
  the next table. The dependency lists are made in Arrow from the batch's
  dependency rows sorted by task (sorted once into a file for a many-batch
  export). DuckDB works under MEMORY_LIMIT on a connection of its own and spills
  to a temporary directory beside the dataset, so the export's memory does not
  grow with the store (under 900 MiB at 10M tasks).

* Complete states only: an export builds a new snapshot directory (named
  ``*.tmp`` until it is whole and fsynced), renames it, then replaces
  ``manifest.json`` (temporary file, fsync, rename) and the ``current`` link. A
  reader sees the previous snapshot or the new one, never a mix; a killed export
  leaves the previous one, and the next export removes what it left (and, if
  the kill came between the manifest and the link, first points the link at the
  manifest's snapshot).
* Many hosts can export into one shared directory: an export replaces only its
  own store's chunks, and on a whole export the chunks of its hosts that another
  store or an older format wrote (a host is exported by one store); a lock file
  serialises exports.
"""

import hashlib
import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ottolytics.analyze import duck
from ottolytics.analyze.sources.parquet import (
    CURRENT, FORMAT_VERSION, INDEX, LEGACY, LOCK, MANIFEST, SNAPSHOTS, TABLES,
    _partition_path, file_entries, read_manifest)
from ottolytics.analyze.sources.sqlite import SqliteSource
from ottolytics.analyze.sources.base import ts
from ottolytics.core.errors import Refused
from ottolytics.core.files import (FileLock, atomic_write, fsync_dir, fsync_file,
                                   writable)
from ottolytics.store import inprocess
from ottolytics.store.statuses import UNFINISHED, sql_in

MEMORY_LIMIT = "500MB"  # DuckDB's share while exporting; the rest spills to disk
MAX_CHUNKS = 8          # chunks of one store in a partition, past which small ones merge
CHUNK_RUNS = 50_000     # runs in one chunk at most (a bigger partition is cut)
BATCH_RUNS = 20_000     # runs whose chunks are read and written together (~400k tasks)
BATCH_ROWS = 131_072    # rows per Arrow batch handed to the writer (a row group at most)
# The staged rows of a batch (temp tables), and the rows a batch is made of.
WANT, DEPS = "_ottolytics_export_want", "_ottolytics_export_deps"
# Each table's order within a file: by time, ties broken by the store's integer
# keys (a sort on them costs half what one on the run ids' text does).
ORDER = {"runs": "started_at, x._rid", "tasks": "run_started_at, t._rid, started_at, attempt",
         "transitions": '"at", _r, _t', "params": "_at, _r, key"}
# Columns of few distinct values, dictionary-encoded in the files. Only these:
# encoding every text column so took pyarrow 2.5 times as long, for larger files.
DICTIONARY = ("project", "task", "status", "from_status", "to_status", "reason", "key",
              "user", "source", "script_hash")
# The index: each run (the store's uid, the run's id) and its chunk (as a number,
# see _chunk_id: comparing numbers, not names, over a whole store's runs).
_EMPTY_INDEX = pa.schema([("store", pa.string()), ("run", pa.int64()), ("chunk", pa.int64())])


def _chunk_id(name):
    """The number of chunk *name* (``part-VVVVVV-NNNN``: VVVVVV * 10**6 + NNNN),
    or None for an older format's ``data_0``."""
    if not name.startswith("part-"):
        return None
    version, n = name[5:].split("-")
    return int(version) * 1_000_000 + int(n)


def _store_position(path, previous):
    """(key, seq, changed) of the store at *path*: its uid (or its path when it
    keeps no change log), the change log's newest seq (None without one), and
    the runs logged after the seq *previous* gives for that key (None when
    there is none), read in the same transaction. Read before any row, so a run
    written meanwhile is logged after this seq and exported again next time."""
    from ottolytics.store.connection import open_readonly
    with inprocess.lock:
        conn = open_readonly(path)
        try:
            conn.execute("BEGIN")
            try:
                uid = conn.execute("SELECT value FROM store_info WHERE key = 'uid'").fetchall()
                top = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchall()
                seq = top[0][0] if top else 0
            except Exception:  # no change log (a schema before v4): exported whole
                uid, seq = [], None
            key = str(uid[0][0]) if uid else "path:" + os.path.abspath(path)
            since, changed = previous(key), None
            if seq is not None and since is not None and since <= seq:
                changed = {r for (r,) in conn.execute(
                    "SELECT run_id FROM changes WHERE seq > ?", (since,))}
            conn.execute("COMMIT")
        finally:
            conn.close()
    return key, seq, changed


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


# The names an export makes in DIR/snapshots: "000012-1a2b3c4d" (".tmp" while
# being built). Nothing else there is swept: it is not the export's.
_SNAPSHOT_NAME = re.compile(r"\d{6,}-[0-9a-f]{8}(\.tmp)?")
# What an export leaves at the top of DIR: the manifest's and the link's
# temporary files (core.files.atomic_write's ".manifest.json.….tmp"; older
# versions wrote "manifest.json.….tmp"; the link's "current.….tmp") and the
# spill directory of DuckDB's sorts (".spill-….tmp").
_LEFTOVERS = ("." + MANIFEST + ".", MANIFEST + ".", CURRENT + ".", ".spill-")


def _check_target(directory):
    """Refuse, in one line, a *directory* that is a file, or not empty and not a
    dataset (no manifest, and something in it that no export made): an export
    never deletes or overwrites what it did not make."""
    text = str(directory)
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise Refused(f"{text}: is a file, not a directory; give the dataset's "
                      f"directory (a new or empty one for a first export)")
    if not os.path.isdir(directory) or os.path.exists(os.path.join(directory, MANIFEST)):
        return
    # format 1 wrote its tables straight into DIR, beside "_signatures", and no manifest
    format_1 = os.path.isdir(os.path.join(directory, "_signatures"))
    for name in os.listdir(directory):
        full = os.path.join(directory, name)
        if name == LOCK or (name.endswith(".tmp") and name.startswith(_LEFTOVERS)):
            continue
        if format_1 and name in LEGACY and os.path.isdir(full) and not os.path.islink(full):
            continue
        if name == CURRENT and os.path.islink(full) and \
                os.readlink(full).startswith(SNAPSHOTS + os.sep):
            continue
        if name == SNAPSHOTS and os.path.isdir(full) and not os.path.islink(full) and all(
                _SNAPSHOT_NAME.fullmatch(n) for n in os.listdir(full)):
            continue  # (an interrupted first export's)
        raise Refused(f"{text}: not empty and not an ottolytics dataset (no {MANIFEST}; "
                      f"{name!r} is not an export's), so nothing in it is touched; export "
                      f"into a new or empty directory")


def _sweep(directory, keep):
    """Remove what earlier exports left: temporary files and snapshots that
    neither *keep* nor the ``current`` link names (only names an export makes)."""
    keep = set(keep) | {_current_target(directory)}
    for name in os.listdir(directory):
        if name.endswith(".tmp") and name.startswith(_LEFTOVERS) and name not in keep:
            _remove(os.path.join(directory, name))
    folder = os.path.join(directory, SNAPSHOTS)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name not in keep and _SNAPSHOT_NAME.fullmatch(name):
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
    _check_target(directory)
    existing = directory  # where its directories are to be made
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    writable(existing)
    os.makedirs(directory, exist_ok=True)
    # exports into one shared directory take turns
    with FileLock(os.path.join(directory, LOCK), what=f"export into {directory}"), \
            _bounded_memory(h, directory) as own:
        return _export_locked(own, directory, os.path.basename(own.spill))


def _previous(directory):
    """The previous export: (manifest, its snapshot's directory, its chunks
    {(date, host, name): [store key or "", runs]}, its index, an Arrow table of
    (store, run, chunk)); (None, None, {}, empty) when there is none to build on."""
    try:
        manifest = read_manifest(directory)
    except duck.ReadError:
        manifest = None  # unreadable: write everything again
    root = os.path.join(directory, SNAPSHOTS, manifest["snapshot"]) if manifest else None
    if manifest is None or not os.path.isdir(root):
        return None, None, {}, _EMPTY_INDEX.empty_table()
    chunks = {}
    for table in TABLES:
        for d, host, _rows, name in file_entries(manifest, table):
            chunks[(d, host, name)] = ["", 0]  # an older format's: no store, no index
    index = _EMPTY_INDEX.empty_table()
    if manifest["format"] == FORMAT_VERSION:
        for d, host, name, key, runs in manifest.get("chunks", []):
            chunks[(d, host, name)] = [key, runs]
        try:
            with ipc.open_file(os.path.join(root, INDEX)) as f:
                index = f.read_all().select(_EMPTY_INDEX.names).cast(_EMPTY_INDEX)
        except (OSError, pa.ArrowInvalid, KeyError):
            manifest = dict(manifest, stores={})  # no index: every store exported whole
    return manifest, root, chunks, index


def _runs_of(h, wanted=None):
    """(store, run id, date, host, unfinished) of the runs the History's filters
    keep, or of *wanted* ({store: run ids}) only, read from the source (its
    columnar mirror: one scan of four columns of the runs)."""
    if wanted is not None:
        pairs = [(i, r) for i, ids in wanted.items() for r in ids]
        h._con.register("_ottolytics_wanted", pa.table({
            "s": pa.array([p[0] for p in pairs], pa.int32()),
            "r": pa.array([p[1] for p in pairs], pa.int64())}))

    def build(r):
        parts = []
        for i, alias in enumerate(r.scope):
            src = r.source
            runs = src._rel(alias, "runs", src._runs_where(r.filters),
                            ["id", "started_at", "host", "status"])
            where = ""
            if wanted is not None:
                ids = sorted(wanted.get(i, ())) or [0, -1]
                where = (f" WHERE x.id BETWEEN {int(ids[0])} AND {int(ids[-1])} AND x.id IN "
                         f"(SELECT r FROM _ottolytics_wanted WHERE s = {i})")
            parts.append(
                f"SELECT {i}::INTEGER AS _store, x.id AS _rid, "
                # (a run of unknown start, rows being untrusted: partition 'unknown',
                # which sorts after every month, so a since filter keeps it)
                f"coalesce(strftime({ts('x.started_at')}, '%Y-%m'), 'unknown') AS date, "
                f"coalesce(x.host, 'unknown') AS host, "
                f"coalesce(x.status IN {sql_in(UNFINISHED)}, false) AS open FROM {runs} x{where}")
        return " UNION ALL ".join(parts)

    try:
        return h._run(build, lambda result: result.to_arrow_table())
    finally:
        if wanted is not None:
            h._con.unregister("_ottolytics_wanted")


def _cut(runs):
    """*runs* (a sorted array) in chunks of CHUNK_RUNS at most."""
    return [runs[i:i + CHUNK_RUNS] for i in range(0, len(runs), CHUNK_RUNS)]


def _grouped(table, keys, column):
    """[(values of *keys*, numpy array of *column*)] of *table*'s rows grouped by
    *keys* (kept in Arrow: a whole store's runs as Python objects took 100 MB)."""
    out = table.group_by(keys).aggregate([(column, "list")])
    return [(tuple(out[k][j].as_py() for k in keys), out[column + "_list"][j].values.to_numpy())
            for j in range(out.num_rows)]


def _plan(h, stores, previous, chunks, index):
    """What to write: (new chunks [(date, host, key, store, run ids)], removed
    chunk keys, new store states {key: state or None}). *stores* is [(key, seq,
    changed)] in the History's store order, *previous* the stores' states the
    manifest keeps."""
    filtered = any(v for v in h.filters.values())
    new_chunks, removed, states = [], set(), {}
    own_keys = {key for key, _seq, _changed in stores}
    for i, (key, seq, changed) in enumerate(stores):
        mine = [c for c, (k, _n) in chunks.items() if k == key]
        prev = previous.get(key)
        own = index.filter(pc.equal(index["store"], key))
        by_id = {_chunk_id(name): (d, host) for d, host, name in mine}
        incremental = (changed is not None and not filtered and isinstance(prev, dict)
                       and prev.get("seq") is not None
                       and set(pc.unique(own["chunk"]).to_pylist()) <= set(by_id))
        groups = {}  # (date, host) -> arrays of run ids
        if incremental:
            wanted = set(changed) | set(prev.get("open", []))
            hit = own.filter(pc.is_in(own["run"], pa.array(sorted(wanted), pa.int64())))
            dirty = set(hit["chunk"].to_pylist())
            keep = own.filter(pc.and_(pc.is_in(own["chunk"], pa.array(sorted(dirty), pa.int64())),
                                      pc.invert(pc.is_in(own["run"], pa.array(sorted(wanted),
                                                                            pa.int64())))))
            for (chunk,), runs in _grouped(keep, ["chunk"], "run"):
                groups.setdefault(by_id[chunk], []).append(runs)
            now = _runs_of(h, {i: sorted(wanted)})
            removed |= {c for c in mine if _chunk_id(c[2]) in dirty}
        else:
            now = _runs_of(h)
            removed |= set(mine)
            hosts = set(pc.unique(now["host"]).to_pylist())
            # a whole export replaces its hosts' chunks of other stores and older formats
            removed |= {c for c, (k, _n) in chunks.items()
                        if c[1] in hosts and k not in own_keys}
        still_open = now.filter(now["open"])["_rid"].to_pylist()
        for part, runs in _grouped(now, ["date", "host"], "_rid"):
            groups.setdefault(part, []).append(runs)
        if incremental:  # past MAX_CHUNKS in a partition, its smallest chunks merge
            for part in groups:
                rest = sorted((chunks[c][1], c) for c in mine
                              if (c[0], c[1]) == part and c not in removed)
                while rest and len(rest) + 1 > MAX_CHUNKS:
                    _n, c = rest.pop(0)
                    removed.add(c)
                    groups[part].append(own.filter(pc.equal(own["chunk"], _chunk_id(c[2])))["run"]
                                        .to_numpy())
        for (d, host), runs in sorted(groups.items()):
            for piece in _cut(np.unique(np.concatenate(runs))):
                new_chunks.append((d, host, key, i, piece))
        states[key] = {"seq": None if filtered else seq, "open": sorted(still_open)}
    # another store whose chunks were replaced exports whole next time
    for key in {chunks[c][0] for c in removed} - own_keys - {""}:
        states[key] = None
    return new_chunks, removed, states


def _export_locked(h, directory, spill):
    manifest, old_root, chunks, index = _previous(directory)
    old_snapshot = manifest["snapshot"] if manifest else None
    _sweep(directory, {old_snapshot, spill})
    if old_snapshot and _current_target(directory) not in (None, old_snapshot) and \
            os.path.isdir(os.path.join(directory, SNAPSHOTS, old_snapshot)):
        # an export killed between its manifest and its link left the link on the
        # snapshot before: finish its job first, so a reader of the link sees what
        # was committed or what this export commits, never an older export
        _point_current(directory, old_snapshot)
    previous = dict(manifest.get("stores", {})) \
        if manifest and manifest["format"] == FORMAT_VERSION else {}
    seqs = {k: v.get("seq") for k, v in previous.items() if isinstance(v, dict)}
    stores = [_store_position(path, seqs.get) for path in h.paths]
    new_chunks, removed, states = _plan(h, stores, previous, chunks, index)
    version = (manifest["version"] + 1) if manifest else 1
    snapshot = f"{version:06d}-{uuid.uuid4().hex[:8]}"
    snapshots = os.path.join(directory, SNAPSHOTS)
    work = os.path.join(snapshots, snapshot + ".tmp")
    os.makedirs(work)
    files = {t: [] for t in TABLES}
    kept = {c: v for c, v in chunks.items() if c not in removed}
    if manifest:
        for table in TABLES:
            for d, host, rows, name in file_entries(manifest, table):
                if (d, host, name) in kept:
                    rel = _partition_path(table, d, host, name)
                    _carry(os.path.join(old_root, rel), os.path.join(work, rel))
                    files[table].append([d, host, rows, name])
    named = [(f"part-{version:06d}-{n:04d}", *c) for n, c in enumerate(new_chunks)]
    written = _write_chunks(h, work, named, files)
    summary = {"written": len(named), "unchanged": len(kept), "removed": len(removed),
               "rows": written}
    for name, d, host, key, _i, runs in named:
        kept[(d, host, name)] = [key, len(runs)]
    # the index: the kept chunks' rows, and the new chunks'
    gone = pa.array(sorted({_chunk_id(c[2]) for c in removed} - {None}), pa.int64())
    parts = [index.filter(pc.invert(pc.is_in(index["chunk"], gone)))]
    for name, _d, _host, key, _i, runs in named:
        parts.append(pa.table({"store": pa.array([key] * len(runs), pa.string()),
                               "run": pa.array(runs, pa.int64()),
                               "chunk": pa.array(np.full(len(runs), _chunk_id(name)),
                                                 pa.int64())}))
    with ipc.new_file(os.path.join(work, INDEX), _EMPTY_INDEX) as f:
        f.write_table(pa.concat_tables(parts).combine_chunks())
    # Durable before it becomes visible: the new files and the snapshot's
    # directories, its rename, then the manifest (written last) and the link.
    # Many at a time: fsync waits on the disk, not the CPU. (Carried files are
    # links to files made durable by an earlier export.)
    new_names = {n[0] for n in named}
    fresh = {os.path.join(work, INDEX)} | {
        os.path.join(work, _partition_path(t, d, host, name))
        for t in TABLES for d, host, _rows, name in files[t] if name in new_names}
    walked = [base for base, _dirs, _names in os.walk(work)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fsync_file, sorted(fresh)))
        list(pool.map(fsync_dir, walked))
    final = os.path.join(snapshots, snapshot)
    os.rename(work, final)
    fsync_dir(snapshots)
    stores_state = previous
    for key, state in states.items():
        if state is None:
            stores_state.pop(key, None)
        else:
            stores_state[key] = state
    partitions = {}
    for (d, host, name) in kept:
        partitions.setdefault((d, host), []).append(name)
    _write_json_atomic(os.path.join(directory, MANIFEST), {
        "format": FORMAT_VERSION, "version": version, "snapshot": snapshot,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stores": stores_state,
        "chunks": sorted([d, host, name, key, runs] for (d, host, name), (key, runs)
                         in kept.items()),
        "partitions": sorted([d, host, f"v{FORMAT_VERSION}:" + hashlib.md5(
            ",".join(sorted(names)).encode()).hexdigest()]
            for (d, host), names in partitions.items()),
        "files": {t: sorted(files[t]) for t in TABLES}})
    _point_current(directory, snapshot)
    # The previous snapshot stays for readers that opened it; older ones go.
    _sweep(directory, {snapshot, old_snapshot, spill})
    if os.path.isdir(os.path.join(directory, "_signatures")):  # format 1's tree
        for name in LEGACY:
            _remove(os.path.join(directory, name))
    summary["snapshot"] = snapshot
    return summary


def _batches(named):
    """The new chunks in groups of about BATCH_RUNS runs (in partition order, so a
    batch's runs are near each other in the store)."""
    batch, size = [], 0
    for chunk in named:
        if batch and size + len(chunk[5]) > BATCH_RUNS:
            yield batch
            batch, size = [], 0
        batch.append(chunk)
        size += len(chunk[5])
    if batch:
        yield batch


def _write_chunks(h, work, named, files):
    """Write the chunks *named* ([name, date, host, key, store, run ids]) into the
    snapshot being built, a batch at a time; append their [date, host, rows,
    name] to *files*; return {table: rows written}."""
    rows = {t: 0 for t in TABLES}
    con = h._con
    writer = _Writer()
    batches = list(_batches(named))
    # Many batches: the dependency rows sorted by task once, into a file beside
    # the spill (out of DuckDB's memory), so that each batch reads its range of
    # them (the mirror's copy of them is not in task order, and every batch
    # would scan all of it).
    sorted_deps = None
    try:
        if len(batches) > 2:
            sorted_deps = os.path.join(h.spill, "deps.parquet")
            con.execute("SET preserve_insertion_order = true")  # the file keeps the order
            try:
                h._run(lambda r: "COPY (" + " UNION ALL ".join(
                    f"SELECT {i} AS _store, task_id, depends_on "
                    f"FROM {r.source._rel(alias, 'task_deps')}" for i, alias in enumerate(r.scope))
                    + " ORDER BY _store, task_id, depends_on) "
                    f"TO {duck.sqlite_literal(sorted_deps)} "
                    f"(FORMAT parquet, ROW_GROUP_SIZE 65536)", lambda result: None)
            finally:
                con.execute("SET preserve_insertion_order = false")
        for batch in batches:
            con.register("_ottolytics_batch", pa.table({
                "_store": pa.array(np.concatenate([np.full(len(c[5]), c[4]) for c in batch]),
                                   pa.int32()),
                "_rid": pa.array(np.concatenate([c[5] for c in batch]), pa.int64()),
                "chunk": pa.array(np.concatenate([np.full(len(c[5]), k)
                                                  for k, c in enumerate(batch)]), pa.int32())}))
            try:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {WANT} AS "
                            f"SELECT * FROM _ottolytics_batch")
            finally:
                con.unregister("_ottolytics_batch")
            sql = _Batch(h, sorted_deps)
            for table in TABLES:
                h._run(lambda r, table=table: sql.table(r, table),
                       lambda result, table=table: _write_sorted(
                           result, work, table, batch, writer))
        writer.finish()
        for table, f in writer.files:
            files[table].append([*f.entry[:2], f.rows, f.entry[2]])
            rows[table] += f.rows
        writer.files = []
    finally:
        writer.close()
        con.execute(f"DROP TABLE IF EXISTS {WANT}")
        try:
            con.unregister(DEPS)
        except duck.duckdb.Error:
            pass
    return rows


class _Batch:
    """The SQL of one batch's rows of each table, read from the source, with the
    column ``chunk`` (the batch's index of the chunk) and sorted by it and, within
    one, by time. Every scan of a big table is bounded by the batch's run ids (or
    its tasks' ids), which the mirror's files are sorted by, so it skips the row
    groups of other runs. The tasks' dependency lists are grouped first, into a
    temp table (a sort of each small list costs less than an ordered aggregate)."""

    def __init__(self, h, sorted_deps):
        con = h._con
        self.sorted_deps = sorted_deps
        self.bounds = {i: (int(lo), int(hi)) for i, lo, hi in con.execute(
            f"SELECT _store, min(_rid), max(_rid) FROM {WANT} GROUP BY _store").fetchall()}
        self.tids = dict(h._run(self._task_ids, lambda result: [
            (i, (lo, hi)) for i, lo, hi in result.fetchall()]))
        self._deps(h)

    def within(self, i, column, bounds=None):
        lo, hi = (bounds or self.bounds).get(i, (0, -1))
        return f"{column} BETWEEN {int(lo or 0)} AND {int(hi if hi is not None else -1)}"

    def lean_tasks(self, r, i, alias):
        return r.source._rel(alias, "tasks", columns=[
            "id", "run_id", "name", "attempt", "status", "started_at", "finished_at",
            "status_logged"])

    def _task_ids(self, r):
        return " UNION ALL ".join(
            f"SELECT {i} AS _store, min(t.id), max(t.id) FROM {self.lean_tasks(r, i, alias)} t "
            f"WHERE {self.within(i, 't.run_id')}" for i, alias in enumerate(r.scope)
            if i in self.bounds) or "SELECT 0, NULL, NULL WHERE false"

    def _deps(self, h):
        """The dependency lists of the batch's tasks, registered on the connection
        as DEPS: the rows of the batch's range of task ids, sorted (by task, then
        name), made into lists in Arrow. (DuckDB's list aggregate took three
        times as long, and a whole store's of them cannot spill.)"""
        con = h._con

        def build(r):
            parts = []
            for i, alias in enumerate(r.scope):
                if i not in self.tids:
                    continue
                rows = (f"(SELECT task_id, depends_on FROM "
                        f"read_parquet({duck.sqlite_literal(self.sorted_deps)}) WHERE _store = {i})"
                        if self.sorted_deps else r.source._rel(alias, "task_deps"))
                parts.append(f"SELECT {i}::INTEGER AS _store, d.task_id AS _tid, d.depends_on "
                             f"FROM {rows} d WHERE {self.within(i, 'd.task_id', self.tids)}")
            if not parts:
                return ("SELECT 0::INTEGER AS _store, 0::BIGINT AS _tid, "
                        "''::VARCHAR AS depends_on WHERE false")
            # the sorted file is in that order already: a scan that keeps it needs no sort
            return " UNION ALL ".join(parts) + (
                "" if self.sorted_deps else " ORDER BY _store, _tid, depends_on")

        if self.sorted_deps:
            con.execute("SET preserve_insertion_order = true")
        try:
            rows = h._run(build, lambda result: result.to_arrow_table())
        finally:
            con.execute("SET preserve_insertion_order = false")
        store = rows["_store"].to_numpy()
        tid = rows["_tid"].to_numpy()
        starts = np.flatnonzero((np.diff(store) != 0) | (np.diff(tid) != 0)) + 1
        starts = np.concatenate([[0], starts]) if len(tid) else starts
        offsets = np.concatenate([starts, [len(tid)]]).astype(np.int32)
        values = rows["depends_on"].combine_chunks() if rows.num_rows else pa.array(
            [], pa.string())
        con.register(DEPS, pa.table({
            "_store": pa.array(store[starts], pa.int32()),
            "_tid": pa.array(tid[starts], pa.int64()),
            "depends_on": pa.ListArray.from_arrays(pa.array(offsets), values)}))

    def table(self, r, table):
        return getattr(self, "_" + table)(r) + f" ORDER BY chunk, {ORDER[table]}"

    def _runs(self, r):
        return (f"SELECT x.* EXCLUDE (host, _store, _rid) "
                f"REPLACE (CAST(x.status AS VARCHAR) AS status), w.chunk "
                f"FROM ({r.source.runs(r.scope, r.filters, internal=True)}) x "
                f"JOIN {WANT} w ON w._store = x._store AND w._rid = x._rid")

    def _tasks(self, r):
        body = r.source.tasks(r.scope, r.filters, with_tail=True, internal=True)
        return (f"SELECT t.* EXCLUDE (host, _store, _tid, _logged, _rid) "
                f"REPLACE (CAST(t.status AS VARCHAR) AS status), d.depends_on, w.chunk "
                f"FROM ({body}) t JOIN {WANT} w ON w._store = t._store AND w._rid = t._rid "
                f"LEFT JOIN {DEPS} d ON d._store = t._store AND d._tid = t._tid "
                # (the task ids' range too: it bounds the scan of the stderr tails)
                f"WHERE " + " OR ".join(f"(t._store = {i} AND {self.within(i, 't._rid')} AND "
                                         f"{self.within(i, 't._tid', self.tids)})"
                                         for i in self.bounds))

    def _transitions(self, r):
        """The rows a plain-path task implies (see the store's transitions view),
        then the logged ones from status_log."""
        parts = []
        for i, alias in enumerate(r.scope):
            if i not in self.bounds:
                continue
            src = r.source
            tasks = self.lean_tasks(r, i, alias)
            uids = src._rel(alias, "runs", columns=["id", "uid"])
            # both implied rows from one scan of the tasks: n = 1 its start, n = 2 its end
            parts.append(
                f"SELECT u.uid AS run_id, t.name AS task, t.attempt, "
                f"CASE WHEN n = 2 THEN 'running' END AS from_status, "
                f"CASE WHEN n = 1 THEN 'running' ELSE t.status END AS to_status, "
                f"{ts('CASE WHEN n = 1 THEN t.started_at ELSE t.finished_at END')} "
                f"AS \"at\", CAST(NULL AS VARCHAR) AS reason, w.chunk, "
                f"{i} * 1099511627776 + t.run_id AS _r, t.id AS _t "
                f"FROM {tasks} t JOIN {WANT} w ON w._store = {i} AND w._rid = t.run_id "
                f"JOIN {uids} u ON u.id = t.run_id CROSS JOIN (VALUES (1), (2)) k(n) "
                f"WHERE t.status_logged = 0 AND {self.within(i, 't.run_id')} "
                f"AND (n = 1 OR t.status NOT IN {sql_in(UNFINISHED)})")
            logged_at = ts('x."at"')
            parts.append(
                f"SELECT u.uid, t.name, t.attempt, x.from_status, x.to_status, "
                f"{logged_at}, x.reason, w.chunk, {i} * 1099511627776 + x.run_id, "
                f"x.task_id "
                f"FROM {src._rel(alias, 'status_log')} x "
                f"JOIN {WANT} w ON w._store = {i} AND w._rid = x.run_id "
                f"JOIN {uids} u ON u.id = x.run_id "
                f"LEFT JOIN (SELECT * FROM {tasks} WHERE {self.within(i, 'run_id')}) t "
                f"ON t.id = x.task_id WHERE {self.within(i, 'x.run_id')}")
        return "SELECT * EXCLUDE (_r, _t) FROM (" + " UNION ALL ".join(parts) + ")"

    def _params(self, r):
        parts = []
        for i, alias in enumerate(r.scope):
            if i not in self.bounds:
                continue
            src = r.source
            parts.append(
                f"SELECT u.uid AS run_id, x.key, x.value, w.chunk, "
                f"{ts('u.started_at')} AS _at, {i} * 1099511627776 + x.run_id AS _r "
                f"FROM {src._rel(alias, 'run_params')} x "
                f"JOIN {WANT} w ON w._store = {i} AND w._rid = x.run_id "
                f"JOIN {src._rel(alias, 'runs', columns=['id', 'uid', 'started_at'])} u "
                f"ON u.id = x.run_id WHERE {self.within(i, 'x.run_id')}")
        return "SELECT run_id, key, value, chunk FROM (" + " UNION ALL ".join(parts) + ")"


class _Writer:
    """The thread that writes the files, in the order given, while DuckDB makes
    the next rows (the next table's sort included); at most AHEAD writes wait
    for it, so the rows in flight stay few."""

    AHEAD = 1

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending = []
        self.files = []  # (table, chunk file) of every file begun

    def submit(self, fn, *args):
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.AHEAD:
            self.pending.pop(0).result()

    def finish(self):
        """Wait for every write; raises the first that failed."""
        while self.pending:
            self.pending.pop(0).result()

    def close(self):
        for future in self.pending:
            future.exception()  # let the writes in flight end
        self.pool.shutdown()
        for _table, f in self.files:
            f.abandon()


def _write_sorted(result, work, table, batch, writer):
    """Stream *result* (sorted by its column ``chunk``) into one file per chunk of
    *batch*, an Arrow batch at a time, through *writer*: the rows never pile up
    in memory."""
    reader = result.to_arrow_reader(BATCH_ROWS)
    schema = reader.schema
    at = schema.get_field_index("chunk")
    schema = schema.remove(at)
    out = None
    for part in reader:
        if part.num_rows == 0:
            continue
        codes = part.column(at).to_numpy()
        bounds = [0] + (np.flatnonzero(np.diff(codes)) + 1).tolist() + [part.num_rows]
        data = part.remove_column(at)
        for a, b in zip(bounds, bounds[1:]):
            k = int(codes[a])
            if out is None or out.chunk != k:
                if out is not None:
                    writer.submit(out.close)
                name, d, host = batch[k][:3]
                out = _ChunkFile(work, _partition_path(table, d, host, name), k, schema)
                out.entry = (d, host, name)
                writer.files.append((table, out))
            writer.submit(out.write, data.slice(a, b - a))
    if out is not None:
        writer.submit(out.close)


class _ChunkFile:
    """One chunk's file of a table, inside the snapshot being built (not visible
    yet), written a row group at a time."""

    def __init__(self, root, rel, chunk, schema):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.chunk, self.rows = chunk, 0
        self.file = open(path, "wb")
        self.writer = pq.ParquetWriter(
            self.file, schema, compression="zstd", compression_level=3,
            use_dictionary=[c for c in DICTIONARY if c in schema.names])

    def write(self, part):
        self.writer.write_batch(part)
        self.rows += part.num_rows

    def close(self):
        """Close the file (the export fsyncs the snapshot's new files together)."""
        self.writer.close()
        self.file.close()

    def abandon(self):
        if self.file.closed:
            return
        try:
            self.writer.close()
        finally:
            self.file.close()


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
        # Each batch reads its own rows once: keeping the files' blocks cached
        # would only hold memory.
        self.own._con.execute("SET enable_external_file_cache = false")
        # Every query of the export says its order; without this DuckDB keeps
        # rows in order where none is asked for, which holds them in memory.
        self.own._con.execute("SET preserve_insertion_order = false")
        return self.own

    def __exit__(self, *exc):
        try:
            self.own.close()
        finally:
            shutil.rmtree(self.spill, ignore_errors=True)
