"""``MirrorSource``: the SQLite stores, read through a columnar copy that is
brought up to date on every query.

Scanning SQLite caps an aggregate over ten million tasks at about a second; the
same over Parquet takes a fifth of that. So each store gets a *mirror*: Parquet
files of its tables (``runs``, ``tasks``, ``task_stderr``, ``task_deps``,
``status_log``, ``run_params``, ``log_fragments``) in the cache directory
(``$OTTOLYTICS_CACHE``, else ``$XDG_CACHE_HOME/ottolytics``, else
``~/.cache/ottolytics``; ``mirror/<hash of the store's path>/``), plus the rows
that are not in those files yet, read through Python's sqlite3. Every relation
of ``SqliteSource`` is built from them unchanged: only where a table comes from
differs (``_rel``).

Never stale, and never a manual step. The store keeps a change log (schema v4,
``store/migrations.py``): every run inserted or deleted, and every write to a
run that has finished (is *sealed*), moves that run to the end of ``changes``.
The mirror's state (``state.json``) records the newest seq it has seen (C), the
runs that were unfinished then (``open``), and which segment files hold what.
Before each query the store's ``PRAGMA data_version`` is compared with the last
read; when anything was committed, one read transaction reads again, whole, the
runs changed since C and the open ones (the *live* rows), and their older rows
in the files are masked (``dead``). So an answer reflects every commit made
before the query, like a direct read of the store.

* Sealing: when the live rows pass ``SEAL_ROWS`` tasks, the finished runs among
  them are written as a new segment (one Parquet file per table), and C moves to
  the transaction's newest seq. Segments are immutable; past ``MAX_SEGMENTS`` or
  many masked runs they are compacted into one.
* The first copy of a big store is written by DuckDB's sqlite scanner (whole-table
  scans, in bounded memory). In a process that also has the store open for
  recording, DuckDB's own SQLite must not touch the file (two SQLite libraries on
  one WAL file in one process crashed with SIGBUS; see ``store/inprocess.py``),
  so that first copy is made by a child process instead. Every later read of
  the store goes through Python's sqlite3, the same library the recorder uses,
  so a recording process reads without copying the store.
* Identity: ``store_info.uid`` (made once per store) and the change log's
  sequence must match the state, or the mirror is made again. Writers of the
  mirror (seal, compaction, first copy) take ``.lock``; readers never wait.

``OTTOLYTICS_MIRROR=off`` reads the stores directly (``SqliteSource``), as does a
process whose cache directory cannot be written.
"""

__all__ = ["MirrorSource", "Mirror", "cache_root", "stores_source", "SEAL_ROWS",
           "MAX_SEGMENTS", "BULK_TASKS"]

import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ottolytics.analyze import duck
from ottolytics.analyze.sources.base import literal, ts as _ts
from ottolytics.analyze.sources.sqlite import SqliteSource
from ottolytics.analyze.sources.types import SOURCE_TYPES
from ottolytics.core.errors import Busy, ReadError
from ottolytics.core.files import FileLock, atomic_write, fsync_file, lock_wait
from ottolytics.core.values import number
from ottolytics.store import inprocess
from ottolytics.store.statuses import UNFINISHED

# Mirrored tables and the column naming their run (None: through the task).
MIRRORED = {"runs": "id", "tasks": "run_id", "status_log": "run_id",
            "run_params": "run_id", "log_fragments": "run_id",
            "task_stderr": None, "task_deps": None}
# Small tables read whole on every refresh.
LIVE_ONLY = ("projects", "disk_samples")
FORMAT = 3  # 2: task_stderr has each tail's signature and message; 3: tasks their run's
STATE = "state.json"
LOCK = ".lock"
SEAL_ROWS = 20_000      # live task rows past which finished runs are sealed
UPKEEP_WAIT_S = 0.0     # sealing or compacting does not wait for the lock: put off, tried again later
MAX_SEGMENTS = 16       # segments past which they are compacted into one
MAX_DEAD = 50_000       # masked runs past which the segments are compacted
MAX_CHANGED = 10_000    # runs changed since the state past which it is sealed
BULK_TASKS = 200_000    # a first copy past this many tasks is made by DuckDB
LEFTOVER_AGE_S = 600    # files no state names are removed once this old
_ARROW = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "VARCHAR": pa.string()}
_GENERATIONS = itertools.count(1)  # Mirror.generation: never the same twice in a process
_NEVER = 1 << 62        # a mask's segment: every row of the run is masked
_NO_ROOM = (OSError, duck.duckdb.IOException)  # files that cannot be written


def cache_root():
    """The directory mirrors are kept in (see the module's docstring)."""
    root = os.environ.get("OTTOLYTICS_CACHE")
    if root:
        return os.path.abspath(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ottolytics")


def _enabled():
    return os.environ.get("OTTOLYTICS_MIRROR", "on").strip().lower() not in (
        "off", "0", "no", "false")


def stores_source(paths, home=None):
    """The source for SQLite stores: a MirrorSource, or a SqliteSource when
    mirrors are off or the cache directory cannot be written."""
    if _enabled():
        root = os.path.join(cache_root(), "mirror")
        try:
            os.makedirs(root, exist_ok=True)
            writable = os.access(root, os.W_OK | os.X_OK)
        except OSError:
            writable = False
        if writable:
            return MirrorSource(paths, home, root)
    return SqliteSource(paths, home)


def _q(name):
    return '"' + name.replace('"', '""') + '"'


# Columns the mirror adds to a table, computed from its row when it is copied:
# each stderr tail's failure signature and message (analyze/signatures.py), so
# that failures are not normalized again on every question.
DERIVED = {"task_stderr": {"signature": "VARCHAR", "message": "VARCHAR"}}
# Columns of a task's run copied beside it (read with the task, in one join), so
# that the facts aggregations read need no join with the runs: the run's row id
# (null for a task whose run is gone), project and start. A run changed after it
# finished is read again whole (the change log), so they never go stale.
JOINED = {"tasks": {"_run_id": ("id", "BIGINT"), "_project_id": ("project_id", "BIGINT"),
                    "_run_started_at": ("started_at", "DOUBLE")}}
# What the mirror's views show of each table: the store's columns, JOINED and DERIVED.
TYPES = {t: {**SOURCE_TYPES[t], **{c: k for c, (_, k) in JOINED.get(t, {}).items()},
             **DERIVED.get(t, {})} for t in (*MIRRORED, *LIVE_ONLY)}


def _sign(tails):
    """(signatures, messages) of *tails* (a pyarrow string array), each distinct
    tail normalized once."""
    from ottolytics.analyze.signatures import signed
    codes = pc.dictionary_encode(tails).combine_chunks() if isinstance(
        tails, pa.ChunkedArray) else pc.dictionary_encode(tails)
    done = [signed(t) for t in codes.dictionary.to_pylist()]
    index = codes.indices.to_pylist()
    return (pa.array([None if i is None else done[i][0] for i in index], pa.string()),
            pa.array(["" if i is None else done[i][1] for i in index], pa.string()))


def _with_derived(table, rows):
    """*rows* of *table* (as read from the store) with its DERIVED columns."""
    if table == "task_stderr":
        signatures, messages = _sign(rows["tail"])
        rows = rows.append_column("signature", signatures).append_column("message", messages)
    return rows


def _schema(table):
    fields = [pa.field(c, _ARROW[t]) for c, t in SOURCE_TYPES[table].items()]
    fields += [pa.field(c, _ARROW[t]) for c, (_, t) in JOINED.get(table, {}).items()]
    if table in MIRRORED:
        fields.append(pa.field("_run", pa.int64()))
    return pa.schema(fields)


def _select(table, where=None):
    """SQLite SQL reading *table*'s columns (and its run as _run), where the run
    matches *where* (an SQL condition on a run id, or None for all rows)."""
    cols = list(SOURCE_TYPES[table])
    run = MIRRORED.get(table, False)
    if run is None:  # through the task
        sql = (f"SELECT {', '.join('x.' + _q(c) for c in cols)}, t.run_id FROM {table} x "
               f"JOIN tasks t ON t.id = x.task_id")
        return sql + (f" WHERE t.run_id {where}" if where else "")
    if run is False:
        return f"SELECT {', '.join(map(_q, cols))} FROM {table}"
    joined = "".join(f", r.{_q(c)}" for c, _ in JOINED.get(table, {}).values())
    return (f"SELECT {', '.join('x.' + _q(c) for c in cols)}{joined}, x.{run} FROM {table} x"
            + (" LEFT JOIN runs r ON r.id = x.run_id" if joined else "")
            + (f" WHERE x.{run} {where}" if where else ""))


def _coerce(values, kind):
    """One column's values as *kind* where SQLite kept another type (rows are
    untrusted): numbers as numbers, text that is a number as that number, the
    rest as null; anything as text for a text column."""
    out = []
    for v in values:
        if v is None or kind == pa.string() and isinstance(v, str):
            out.append(v)
        elif kind == pa.string():
            out.append(v.decode("utf-8", "backslashreplace") if isinstance(v, bytes)
                       else str(v))
        else:
            out.append(number(v, kind == pa.int64()))
    return pa.array(out, kind)



def _to_arrow(table, rows):
    schema = _schema(table)
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    arrays = []
    for field, values in zip(schema, columns):
        try:
            arrays.append(pa.array(values, field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            arrays.append(_coerce(values, field.type))
    return _with_derived(table, pa.Table.from_arrays(arrays, schema=schema))


def _strict_text(data):
    return str(data, "utf-8")


class Mirror:
    """The columnar copy of one store (see the module's docstring)."""

    def __init__(self, path, root):
        self.path = os.path.abspath(path)
        key = hashlib.sha256(os.path.realpath(self.path).encode("utf-8", "surrogatepass"))
        self.dir = os.path.join(root, key.hexdigest()[:24])
        self.conn = None
        self.state = None
        self._stamp = None        # state.json's identity when loaded
        self._version = None      # PRAGMA data_version at the last read
        self._con = None          # the DuckDB connection holding the live rows
        self._alias = None
        self._read_seq = None     # the change log's seq at the last read
        self._changed = set()     # runs changed since the state's seq
        self._unfinished = set()  # live runs not finished yet: read again every time
        self._views = None        # what the views were made for
        self._epoch = 0           # bumped whenever the state or the connection changes
        self._dead_key = None     # what the masks on the connection were made for
        self._has_dead = False
        self._lock = threading.RLock()
        self.generation = None    # a new number whenever the rows may have changed

    # -- the store, through Python's sqlite3 -----------------------------------

    def _connect(self):
        from ottolytics.store.connection import open_readonly
        if self.conn is None:
            self.conn = open_readonly(self.path)
            self.conn.text_factory = _strict_text
        return self.conn

    def _disconnect(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self):
        with self._lock:
            self._disconnect()

    def _fetch(self, sql, args=()):
        try:
            return self._connect().execute(sql, args).fetchall()
        except UnicodeDecodeError:
            raise self._not_utf8() from None

    def _not_utf8(self):
        from ottolytics.store.migrations import NotUtf8, invalid_text, not_utf8_message
        from ottolytics.store.connection import decode_text
        self.conn.text_factory = decode_text
        try:
            found = invalid_text(self.conn, first=True)
        finally:
            self.conn.text_factory = _strict_text
        where = "{}.{}".format(*next(iter(found))) if found else None
        return NotUtf8(not_utf8_message(self.path, where))

    def _identity(self):
        """(store uid, newest seq of the change log)."""
        uid = self._fetch("SELECT value FROM store_info WHERE key = 'uid'")
        seq = self._fetch("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")
        return (uid[0][0] if uid else None), (seq[0][0] if seq else 0)

    def _read(self, since=None, runs=(), everything=False):
        """One read transaction: (store uid, newest seq, the runs changed after
        *since*, {table: Arrow rows}) of those runs and of *runs* (every row when
        *everything*); the small tables whole."""
        conn = self._connect()
        conn.execute("BEGIN")
        try:
            uid, seq = self._identity()
            if everything:
                changed, where, args = set(), None, ()
            else:
                changed = {r for (r,) in self._fetch(
                    "SELECT run_id FROM changes WHERE seq > ?", (since,))}
                wanted = sorted(changed | set(runs))
                where, args = "IN (SELECT value FROM json_each(?))", (json.dumps(wanted),)
            tables = {}
            for table in (*MIRRORED, *LIVE_ONLY):
                sql = _select(table, where)
                tables[table] = _to_arrow(table, self._fetch(
                    sql, args if where and table in MIRRORED else ()))
        finally:
            conn.execute("COMMIT")
        return uid, seq, changed, tables

    # -- the state -------------------------------------------------------------

    def _state_path(self):
        return os.path.join(self.dir, STATE)

    def _stat(self):
        try:
            st = os.stat(self._state_path())
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, uid, seq):
        """The state on disk, when it is this store's and whole; else None."""
        try:
            with open(self._state_path(), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("format") != FORMAT \
                or state.get("uid") != uid or uid is None or state.get("seq", 1 << 62) > seq:
            return None
        for segment in state.get("segments", []):
            for name in segment["files"].values():
                if not os.path.isfile(os.path.join(self.dir, name)):
                    return None
        if state.get("file") != self._file() or not self._same_history(state):
            return None
        return state

    def _file(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return [st.st_dev, st.st_ino]

    def _same_history(self, state):
        """Whether the store still holds the newest run it held when *state* was
        written (or logged its deletion since): an older copy of the same store
        put back at its path (same uid) fails this even once its change log has
        caught up with the state's seq."""
        last = state.get("last_run")
        if not last:
            return True
        found = self._fetch("SELECT uid FROM runs WHERE id = ?", (last[0],))
        if found:
            return found[0][0] == last[1]
        return bool(self._fetch("SELECT 1 FROM changes WHERE run_id = ? AND seq > ?",
                                (last[0], state["seq"])))

    def _save(self, state):
        """Write *state* (with the store's file identity and newest run, which
        _load checks) atomically; remove the files it no longer names."""
        os.makedirs(self.dir, exist_ok=True)
        newest = self._fetch("SELECT id, uid FROM runs ORDER BY id DESC LIMIT 1")
        state["file"], state["last_run"] = self._file(), list(newest[0]) if newest else None
        atomic_write(self._state_path(), json.dumps(state, sort_keys=True))
        self._sweep(state)

    def _sweep(self, state):
        """Remove the files no state names any more, once they are old enough that
        no reader opened before the change can still be reading them."""
        named = {n for s in state["segments"] for n in s["files"].values()}
        now = time.time()
        for name in os.listdir(self.dir):
            if name.endswith(".parquet") and name not in named or name.endswith(".tmp"):
                full = os.path.join(self.dir, name)
                try:
                    if now - os.path.getmtime(full) > LEFTOVER_AGE_S:
                        os.unlink(full)
                except OSError:
                    pass

    def _locked(self, upkeep=False):
        """The mirror's file lock. The first copy waits for another process's as
        long as any lock is waited for (core.files.lock_wait), then fails in one
        line; upkeep (sealing, compacting) waits at most UPKEEP_WAIT_S and is put
        off (Busy, which its callers catch: nothing is written, the live rows
        still answer, and a later question tries again)."""
        wait = min(lock_wait(), UPKEEP_WAIT_S) if upkeep else None
        return FileLock(os.path.join(self.dir, LOCK), wait=wait,
                        what=f"{self.path}: its columnar copy in {self.dir}",
                        hint="or read the store directly with OTTOLYTICS_MIRROR=off")

    # -- keeping it up to date -------------------------------------------------

    def attach(self, con, alias):
        """Make the views ``{alias}_{table}`` on *con* show the store as it is now:
        the files of the state, less the masked rows, plus the live rows, kept in
        temp tables on *con* and read again only for the runs that changed."""
        with self._lock:
            if self._con is not con or self._alias != alias:
                self._con, self._alias, self._version = con, alias, None
                self.state = self._views = None  # all made again on this connection
                self._epoch += 1
            try:
                conn = self._connect()
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                stamp = self._stat()
                if version == self._version and stamp == self._stamp \
                        and self.state is not None:
                    return
                self.generation = None  # (if the refresh fails, nothing is vouched for)
                self._refresh(version, stamp)
            except sqlite3.Error as exc:  # locked, damaged ...: the store's one line
                from ottolytics.store.migrations import explain
                raise explain(exc, self.path) from None
            self.generation = next(_GENERATIONS)

    def _refresh(self, version, stamp, again=True):
        uid, seq = self._identity()
        reset = self.state is None or stamp != self._stamp
        if reset:
            state = self._load(uid, seq) or self._first_copy(uid)
            reset = state != self.state
            self.state, self._stamp, self._epoch = state, self._stat(), self._epoch + 1
        if reset:
            since, carry = self.state["seq"], set(self.state["open"])
        else:
            since, carry = self._read_seq, self._unfinished
        uid, top, changed, rows = self._read(since, carry)
        if uid != self.state["uid"] or top < self.state["seq"]:
            if not again:
                raise ReadError(f"{self.path}: the store changed while its columnar copy "
                                f"in {self.dir} was read; try again")
            self.state = self._stamp = None  # replaced by another store meanwhile
            return self._refresh(version, self._stat(), again=False)
        self._apply(rows, changed | carry, reset)
        self._changed = changed if reset else self._changed | changed
        status = rows["runs"]["status"]
        unfinished = pc.fill_null(pc.is_in(status, pa.array(UNFINISHED)), False)
        self._unfinished = set(rows["runs"].filter(unfinished)["id"].to_pylist())
        self._read_seq, self._version = top, version
        self._set_dead()
        if self._count("tasks") > SEAL_ROWS or len(self._changed) > MAX_CHANGED:
            self._seal()  # (many changed runs: a clean, say; their masks go to the state)
        if len(self.state["segments"]) > MAX_SEGMENTS or len(self.state["dead"]) > MAX_DEAD:
            compacted = self._compact(self.state)
            if compacted is not self.state:
                self.state, self._stamp, self._epoch = compacted, self._stat(), self._epoch + 1
                self._set_dead()
        self._make_views()

    def _live(self, table):
        return f"{self._alias}__live_{table}"

    def _count(self, table):
        return self._con.execute(f"SELECT count(*) FROM {self._live(table)}").fetchone()[0]

    def _load_rows(self, name, rows, replace=True):
        con = self._con
        con.register("_ottolytics_rows", rows)
        try:
            if replace:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS "
                            f"SELECT * FROM _ottolytics_rows")
            else:
                con.execute(f"INSERT INTO {name} SELECT * FROM _ottolytics_rows")
        finally:
            con.unregister("_ottolytics_rows")

    def _apply(self, rows, reread, reset):
        """Put what was read into the live temp tables: all of them anew after a
        reset, else the runs read again replace their old rows. (Copied into
        DuckDB's own tables: a scan of a registered Arrow table refuses some of
        the filters DuckDB pushes down.)"""
        if not reset:
            self._load_rows("_ottolytics_reread", pa.table(
                {"id": pa.array(sorted(reread), pa.int64())}))
        for table, part in rows.items():
            if reset or table not in MIRRORED:
                self._load_rows(self._live(table), part)
            else:
                self._con.execute(f"DELETE FROM {self._live(table)} WHERE _run IN "
                                  f"(SELECT id FROM _ottolytics_reread)")
                if part.num_rows:
                    self._load_rows(self._live(table), part, replace=False)

    def _set_dead(self):
        key = (self._epoch, len(self._changed))
        if self._dead_key == key:
            return  # _changed only grows between states: same size, same set
        self._dead_key = key
        dead = [(int(r), s) for r, s in self.state["dead"].items()]
        dead += [(r, _NEVER) for r in self._changed]
        self._load_rows(f"{self._alias}__dead", pa.table({
            "run": pa.array([r for r, _ in dead], pa.int64()),
            "seg": pa.array([s for _, s in dead], pa.int64())}))
        self._has_dead = bool(dead)

    def _seal(self):
        """Write the finished live runs as a new segment, and drop them from the
        live rows (files first, then the state that names them, under the lock)."""
        state, con = self.state, self._con
        seg = state["next_seg"]
        self._load_rows("_ottolytics_sealed", pa.table({"id": pa.array(sorted(
            set(con.execute(f"SELECT id FROM {self._live('runs')}").fetchnumpy()["id"]
                .tolist()) - self._unfinished), pa.int64())}))
        new = dict(state, seq=self._read_seq, open=sorted(self._unfinished),
                   next_seg=seg + 1, dead=dict(state["dead"]), segments=list(state["segments"]))
        for run in self._changed:
            new["dead"][str(run)] = seg
        token = uuid.uuid4().hex[:8]
        files = {}
        try:
            # the lock first: when another process holds it, nothing is written
            with self._locked(upkeep=True):
                if self._load(state["uid"], self._read_seq) != state:
                    return  # another process sealed first: the next query reads its state
                for table in MIRRORED:
                    rows = (f"SELECT *, {seg}::BIGINT AS _seg FROM {self._live(table)} "
                            f"WHERE _run IN (SELECT id FROM _ottolytics_sealed)")
                    if not con.execute(f"SELECT count(*) FROM ({rows})").fetchone()[0]:
                        continue
                    name = f"{table}-{seg:06d}-{token}.parquet"
                    files[table] = name
                    _copy_to(con, rows, os.path.join(self.dir, name))
                new["segments"].append({"seg": seg, "files": files})
                self._save(new)
        except (*_NO_ROOM, Busy):
            # No room for the files, or another process holds the mirror: put
            # off; the live rows still answer. What was written goes.
            for name in files.values():
                try:
                    os.unlink(os.path.join(self.dir, name))
                except OSError:
                    pass
            return
        for table in MIRRORED:
            con.execute(f"DELETE FROM {self._live(table)} WHERE _run IN "
                        f"(SELECT id FROM _ottolytics_sealed)")
        self.state, self._stamp, self._changed = new, self._stat(), set()
        self._epoch += 1
        self._set_dead()

    def _make_views(self):
        files = {t: [s["files"][t] for s in self.state["segments"] if t in s["files"]]
                 for t in MIRRORED}
        key = (json.dumps(files, sort_keys=True), self._has_dead)
        if self._views == key:
            return
        alias = self._alias
        for table in (*MIRRORED, *LIVE_ONLY):
            cols = ", ".join(f"m.{_q(c)}" for c in TYPES[table])
            parts = []
            if files.get(table):
                src = "read_parquet([" + ", ".join(
                    literal(os.path.join(self.dir, n)) for n in files[table]) + "])"
                parts.append(f"SELECT {cols} FROM {src} m" + (
                    f" ANTI JOIN {alias}__dead d ON m._run = d.run AND m._seg < d.seg"
                    if self._has_dead else ""))
            parts.append(f"SELECT {cols} FROM {self._live(table)} m")
            self._con.execute(f"CREATE OR REPLACE TEMP VIEW {alias}_{table} AS "
                              + " UNION ALL ".join(parts))
        self._views = key

    def _new_state(self, uid):
        return {"format": FORMAT, "uid": uid, "seq": 0, "open": [], "dead": {},
                "segments": [], "next_seg": 1}

    def _first_copy(self, uid):
        """Copy the whole store; returns the new state."""
        try:
            os.makedirs(self.dir, exist_ok=True)
            with self._locked():
                state = self._copy_locked()
        except _NO_ROOM:
            # No room for the files (a full disk, say): every run is read live,
            # as slow as a direct read, and answers stay right.
            runs = [r for (r,) in self._fetch("SELECT id FROM runs")]
            return dict(self._new_state(uid), open=runs, seq=self._identity()[1])
        if state is not None:
            return state
        # This process records into the store: a child makes the copy (taking the
        # lock itself, so it is not held here meanwhile).
        _copy_in_child(self.path, os.path.dirname(self.dir))
        state = self._load(*self._identity())
        if state is None:
            raise ReadError(f"{self.path}: the columnar copy in {self.dir} was not made; set "
                            "OTTOLYTICS_MIRROR=off to read the store directly")
        return state

    def _copy_locked(self):
        """The first copy, made here under the lock; None when a child must make it."""
        uid, seq = self._identity()
        state = self._load(uid, seq)  # another process may have just made it
        if state is not None:
            return state
        tasks = self._fetch("SELECT max(id) FROM tasks")[0][0] or 0
        if tasks > BULK_TASKS:
            self._disconnect()
            with inprocess.lock:
                if inprocess.is_open(self.path):
                    return None
                try:
                    state = _bulk_copy(self.path, self.dir, self._new_state(uid))
                except ReadError:
                    state = None  # rows DuckDB cannot type (untrusted): read them here
            if state is not None:
                self._save(state)
                return state
        uid, seq, _changed, rows = self._read(everything=True)
        state = _first_segment(self.dir, self._new_state(uid), seq, rows)
        self._save(state)
        return state

    def _compact(self, state):
        """Merge every segment into one, dropping the masked rows."""
        seg = state["next_seg"]
        token = uuid.uuid4().hex[:8]
        new = dict(state, dead={}, next_seg=seg + 1, segments=[])
        files = {}
        con = duck.connect(scanner=False)  # Parquet to Parquet
        try:
            con.execute("SET preserve_insertion_order = false")
            dead = pa.table({"run": pa.array([int(r) for r in state["dead"]], pa.int64()),
                             "seg": pa.array(list(state["dead"].values()), pa.int64())})
            con.register("dead", dead)
            with self._locked(upkeep=True):
                if self._load(state["uid"], state["seq"]) != state:
                    return state  # another process changed it first
                for table in MIRRORED:
                    names = [s["files"][table] for s in state["segments"] if table in s["files"]]
                    if not names:
                        continue
                    src = "read_parquet([" + ", ".join(
                        literal(os.path.join(self.dir, n)) for n in names) + "])"
                    cols = ", ".join(f"m.{_q(c)}" for c in [*_schema(table).names,
                                                            *DERIVED.get(table, ())])
                    name = f"{table}-{seg:06d}-{token}.parquet"
                    target = os.path.join(self.dir, name)
                    _copy_to(con, f"SELECT {cols}, {seg}::BIGINT AS _seg FROM {src} m "
                                  f"ANTI JOIN dead d ON m._run = d.run AND m._seg < d.seg",
                             target)
                    files[table] = name
                new["segments"] = [{"seg": seg, "files": files}]
                self._save(new)
        except (*_NO_ROOM, Busy):
            return state  # put off: the segments as they are still answer
        finally:
            con.close()
        return new

    def candidates(self, ref, where):
        """runinfo.candidates over the store itself (an index lookup)."""
        from ottolytics.manage.runinfo import candidates
        with self._lock:
            try:
                return candidates(self._connect(), ref, where)
            except UnicodeDecodeError:
                raise self._not_utf8() from None


def _first_segment(directory, state, seq, rows):
    """The state of a first copy made from *rows* (every row of the store, read
    in one transaction): the finished runs' rows as segment 1."""
    runs = rows["runs"]
    unfinished = pc.fill_null(pc.is_in(runs["status"], pa.array(UNFINISHED)), False)
    open_runs = runs.filter(unfinished)["id"].to_pylist()
    keep = pa.array(sorted(set(runs["id"].to_pylist()) - set(open_runs)), pa.int64())
    seg = state["next_seg"]
    token = uuid.uuid4().hex[:8]
    files = {}
    for table in MIRRORED:
        part = rows[table].filter(pc.is_in(rows[table]["_run"], keep))
        if part.num_rows == 0:
            continue
        name = f"{table}-{seg:06d}-{token}.parquet"
        _write(os.path.join(directory, name),
               part.append_column("_seg", pa.array([seg] * part.num_rows, pa.int64())))
        files[table] = name
    return dict(state, seq=seq, open=sorted(open_runs), next_seg=seg + 1,
                segments=[{"seg": seg, "files": files}])


ROW_GROUP_BYTES = "64MB"  # a row group is buffered whole: stderr tails made 250 MB ones


def _copy_to(con, select, path):
    """COPY *select* on *con* to the Parquet file *path* (whole, then renamed).
    Where *con* keeps no insertion order (the big copies' connections), row
    groups are also cut at ROW_GROUP_BYTES."""
    ordered = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    cut = "" if ordered else f", ROW_GROUP_SIZE_BYTES '{ROW_GROUP_BYTES}'"
    con.execute(f"COPY ({select}) TO {literal(path + '.tmp')} "
                f"(FORMAT parquet, COMPRESSION zstd{cut})")
    fsync_file(path + ".tmp")
    os.replace(path + ".tmp", path)


def _write(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pq.write_table(rows, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _bulk_copy(path, directory, state):
    """The first copy of a big store, by DuckDB's sqlite scanner (whole-table
    scans, bounded memory). The change log's position is read first, then the
    rows: a run that changes after that position is read live and its copied rows
    masked, so the tables need not be copied at one instant."""
    from ottolytics.store.connection import open_readonly
    conn = open_readonly(path)
    try:
        conn.execute("BEGIN")
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchall()
        top = conn.execute("SELECT max(id) FROM runs").fetchone()[0] or 0
        open_runs = [r for (r,) in conn.execute(
            f"SELECT id FROM runs WHERE status IN {tuple(UNFINISHED)!r}")]
        conn.execute("COMMIT")
    finally:
        conn.close()
    seg = state["next_seg"]
    state = dict(state, seq=seq[0][0] if seq else 0, open=open_runs, next_seg=seg + 1)
    token = uuid.uuid4().hex[:8]
    files = {}
    con = duck.connect()
    stores = duck.Stores([path])
    try:
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET memory_limit = '400MB'")  # the whole process stays under 1 GB
        con.register("open_runs", pa.table({"id": pa.array(open_runs, pa.int64())}))

        def copy(aliases):
            (alias,) = aliases
            for table, run in MIRRORED.items():
                casts = ", ".join(f"CAST(x.{_q(c)} AS {t}) AS {_q(c)}"
                                  for c, t in SOURCE_TYPES[table].items())
                if run is None:
                    body = (f"SELECT {casts}, t.run_id AS _run FROM {alias}.{table} x "
                            f"JOIN {alias}.tasks t ON t.id = x.task_id")
                    key = "t.run_id"
                else:
                    joined = "".join(f", CAST(r.{_q(c)} AS {t}) AS {_q(name)}"
                                     for name, (c, t) in JOINED.get(table, {}).items())
                    body = (f"SELECT {casts}{joined}, x.{run} AS _run FROM {alias}.{table} x"
                            + (f" LEFT JOIN {alias}.runs r ON r.id = x.run_id" if joined else ""))
                    key = f"x.{run}"
                name = f"{table}-{seg:06d}-{token}.parquet"
                target = os.path.join(directory, name)
                rows = (f"SELECT *, {seg}::BIGINT AS _seg FROM ({body} WHERE {key} <= "
                        f"{top} AND {key} NOT IN (SELECT id FROM open_runs))")
                if table in DERIVED:
                    _copy_derived(con, table, rows, target)
                else:
                    _copy_to(con, rows, target)
                files[table] = name
            return "SELECT 1"
        stores.query(con, copy, lambda result: None)
    finally:
        stores.close()
        con.close()
    state["segments"] = [{"seg": seg, "files": files}]
    return state


def _copy_derived(con, table, rows, target):
    """COPY *rows* of *table* to *target* with its DERIVED columns: the rows go to
    a file first, then each distinct tail is signed once and joined in."""
    raw = target + ".raw"
    try:
        _copy_to(con, rows, raw)
        tails = con.execute(f"SELECT DISTINCT tail FROM read_parquet({literal(raw)}) "
                            f"WHERE tail IS NOT NULL").fetch_arrow_table()["tail"]
        signatures, messages = _sign(tails)
        con.register("_ottolytics_signed", pa.table(
            {"tail": tails, "signature": signatures, "message": messages}))
        _copy_to(con, f"SELECT m.*, s.signature, coalesce(s.message, '') AS message "
                      f"FROM read_parquet({literal(raw)}) m "
                      f"LEFT JOIN _ottolytics_signed s ON s.tail = m.tail", target)
        con.unregister("_ottolytics_signed")
    finally:
        if os.path.exists(raw):
            os.unlink(raw)


_CHILD_BUSY = 75  # the child's exit code for Busy (EX_TEMPFAIL)


def _copy_in_child(path, root):
    """Make the first copy in a child process (this one records into the store)."""
    done = subprocess.run([sys.executable, "-m", "ottolytics.analyze.sources.mirror", path,
                           root], capture_output=True, text=True)
    if done.returncode == _CHILD_BUSY:  # another process held the mirror past the wait
        lines = (done.stderr or "").strip().splitlines()
        raise Busy(lines[-1] if lines else f"{path}: its columnar copy is held by another "
                   "process; wait for it to end or set OTTOLYTICS_MIRROR=off")
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines()
        raise ReadError(f"{path}: making its columnar copy failed: "
                        f"{lines[-1] if lines else done.returncode}; set "
                        "OTTOLYTICS_MIRROR=off to read the store directly")


class MirrorSource(SqliteSource):
    """The SQLite stores at *paths*, read through their mirrors in *root*."""

    signs_tails = True  # task_stderr has DERIVED's signature and message
    sqlite_scanner = False  # the stores are read through Python's sqlite3

    def facts(self, aliases, f, need=()):
        """As SqliteSource's, but a task's project and its run's start are the
        columns copied beside it (JOINED): ten million rows join no runs."""
        if not set(need) <= {"project", "run_started_at"}:
            return super().facts(aliases, f, need)
        parts = []
        for i, alias in enumerate(aliases):
            cols = self._facts_columns(i)
            joins = ""
            if "run_started_at" in need:
                cols += f", {_ts('t._run_started_at')} AS run_started_at"
            if "project" in need:
                joins = f" JOIN {self._rel(alias, 'projects')} p ON p.id = t._project_id"
                cols += ", p.name AS project"
            tasks = self._rel(alias, "tasks", self._tasks_where(f),
                              [*self.FACTS_COLUMNS, *JOINED["tasks"]])
            parts.append(f"SELECT {cols} FROM {tasks} t{joins} WHERE t._run_id IS NOT NULL")
        return " UNION ALL ".join(parts)

    def __init__(self, paths, home=None, root=None):
        super().__init__(paths, home)
        root = root or os.path.join(cache_root(), "mirror")
        self.mirrors = [Mirror(p, root) for p in self.paths]

    def prepare(self, con):
        pass  # no SQLite store is attached: the join order needs no care

    def query(self, con, build, fetch):
        aliases = []
        for i, mirror in enumerate(self.mirrors):
            mirror.attach(con, f"s{i}")
            aliases.append(f"s{i}")
        return duck._in_one_transaction(con, build(aliases), fetch)

    def close(self):
        for mirror in self.mirrors:
            mirror.close()
        super().close()

    def state(self, con):
        """The mirrors' generations, after each has read what changed: a store
        written since (any connection's commit changes its ``data_version``) or
        a mirror's files replaced gives a new one."""
        for i, mirror in enumerate(self.mirrors):
            mirror.attach(con, f"s{i}")
        token = tuple(mirror.generation for mirror in self.mirrors)
        return None if None in token else token

    def _rel(self, alias, table, clauses=(), columns=None):
        """*table* of the store *alias* as its view; *clauses* (written for
        SQLite, naming runs, tasks and projects) read those tables' views."""
        cols = ", ".join(_q(c) for c in TYPES[table] if columns is None or c in columns)
        body = f"SELECT {cols} FROM {alias}_{table}"
        if clauses:
            names = ", ".join(f"{t} AS NOT MATERIALIZED (FROM {alias}_{t})"
                              for t in ("runs", "tasks", "projects"))
            body = f"WITH {names} {body} WHERE " + " AND ".join(f"({c})" for c in clauses)
        return f"({body})"

    def run_candidates(self, aliases, f, ref, clause, fetched):
        """The runs *ref* may name, looked up in each store by SQLite itself."""
        rows = []
        for mirror in self.mirrors:
            rows += mirror.candidates(ref, self._runs_where(f))
        if not rows:
            return "SELECT CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), " \
                   "CAST(NULL AS VARCHAR) WHERE false"
        return "SELECT * FROM (VALUES " + ", ".join(
            f"({literal(u)}, {literal(float(s)) if s is not None else 'NULL'}, {literal(src)})"
            for u, s, src in rows) + ")"


def main(argv=None):
    """``python -m ottolytics.analyze.sources.mirror STORE ROOT``: make STORE's
    first copy (a child of a recording process does this)."""
    path, root = (argv or sys.argv[1:])[:2]
    mirror = Mirror(path, root)
    try:
        uid, seq = mirror._identity()
        if mirror._load(uid, seq) is None:
            mirror._first_copy(uid)
    except Busy as exc:  # the parent raises it again as itself
        print(exc, file=sys.stderr)
        sys.exit(_CHILD_BUSY)
    finally:
        mirror.close()


if __name__ == "__main__":
    main()
