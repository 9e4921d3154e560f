"""Versioned, transactional schema migrations for the run store.

Each migration is a list of SQL statements applied inside one ``BEGIN
IMMEDIATE`` transaction together with its row in ``schema_migrations`` and the
``user_version`` bump, so a migration either lands whole or not at all. Before
an existing store is migrated, a consistent file copy is taken with SQLite's
backup API. A store written by a newer ottolytics is refused untouched.

Times in every table are unix seconds (UTC) as REAL, so sub-second precision
costs 8 bytes. Paths below OTTO_HOME are stored relative to it.
"""

import re
import sqlite3
import os
import time

from ottolytics.core.errors import StoreError  # noqa: F401 (its old home; core.errors)
from ottolytics.store.statuses import RUN_STATUSES, TASK_STATUSES  # noqa: F401 (re-exported)
from ottolytics.store.statuses import UNFINISHED, sql_in as _in

# "OTTO" in ASCII: marks a file as an ottolytics store.
APPLICATION_ID = 0x4F54544F


V1 = [
    """CREATE TABLE schema_migrations (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at REAL NOT NULL
    )""",
    """CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    )""",
    f"""CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        project_id INTEGER NOT NULL REFERENCES projects(id),
        status TEXT NOT NULL CHECK (status IN {_in(RUN_STATUSES)}),
        started_at REAL NOT NULL,
        finished_at REAL,
        args TEXT,
        ottofile TEXT,
        user TEXT,
        host TEXT,
        cwd TEXT,
        pid INTEGER,
        pid_started_at REAL,
        run_dir TEXT,
        size_bytes INTEGER,
        source TEXT NOT NULL DEFAULT 'ottolytics',
        source_ref TEXT
    )""",
    "CREATE INDEX runs_started ON runs(started_at)",
    "CREATE INDEX runs_project_started ON runs(project_id, started_at)",
    "CREATE INDEX runs_active ON runs(status) WHERE status = 'running'",
    "CREATE UNIQUE INDEX runs_source_ref ON runs(source, source_ref) WHERE source_ref IS NOT NULL",
    f"""CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        status TEXT NOT NULL CHECK (status IN {_in(TASK_STATUSES)}),
        started_at REAL,
        finished_at REAL,
        exit_code INTEGER,
        signal INTEGER,
        cpu_user_s REAL,
        cpu_system_s REAL,
        peak_rss_bytes INTEGER,
        pid INTEGER,
        pid_started_at REAL,
        script_path TEXT,
        script_hash TEXT,
        stdout_path TEXT,
        stderr_path TEXT,
        status_logged INTEGER NOT NULL DEFAULT 0,
        UNIQUE (run_id, name, attempt)
    )""",
    # No (name, started_at) index: it would cost every task start a page write
    # (~25% of the recorder's time). A task's history walks runs newest first
    # (runs_started) and probes the unique (run_id, name, attempt) index, so it
    # stays indexed: 0.02-0.2 ms on a 1M-task store, 31 ms for a name never seen.
    # Bounded (4 KiB) but large next to a task row, so kept out of the hot table.
    """CREATE TABLE task_stderr (
        task_id INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
        tail TEXT NOT NULL
    )""",
    """CREATE TABLE task_deps (
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        depends_on TEXT NOT NULL,
        PRIMARY KEY (task_id, depends_on)
    ) WITHOUT ROWID""",
    # Status changes that the run and task rows cannot state themselves. A
    # task whose status_logged is 0 took the plain path: created 'running' at
    # started_at and, once closed, changed to its status at finished_at; those
    # two changes are implied by its row and not stored again. Everything else
    # (skips, reasons, recoveries, imported histories, every run change) is
    # here. task_id carries no foreign key: rows go with their run (indexed),
    # which avoids a scan of this table for every deleted task.
    """CREATE TABLE status_log (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        task_id INTEGER,
        from_status TEXT,
        to_status TEXT NOT NULL,
        at REAL NOT NULL,
        reason TEXT
    )""",
    "CREATE INDEX status_log_run ON status_log(run_id)",
    # Every status change of every run and task, with its time and reason.
    """CREATE VIEW transitions AS
        SELECT run_id, id AS task_id, NULL AS from_status, 'running' AS to_status,
               started_at AS at, NULL AS reason
          FROM tasks WHERE status_logged = 0
        UNION ALL
        SELECT run_id, id, 'running', status, finished_at, NULL
          FROM tasks WHERE status_logged = 0 AND status NOT IN ('pending', 'running')
        UNION ALL
        SELECT run_id, task_id, from_status, to_status, at, reason FROM status_log""",
    """CREATE TABLE run_params (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT,
        PRIMARY KEY (run_id, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE log_fragments (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        task_id INTEGER,
        stream TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX log_fragments_run ON log_fragments(run_id, task_id, seq)",
    # Spool files already applied, so a replay happens exactly once even if
    # the process dies between the commit and deleting the file.
    """CREATE TABLE spool_replays (
        name TEXT PRIMARY KEY,
        events INTEGER NOT NULL,
        replayed_at REAL NOT NULL
    ) WITHOUT ROWID""",
]

# Imported histories (ottolytics sync): which values were inferred rather
# than measured, and what each source has already been read up to.
V2 = [
    # Comma-separated column names whose values a heuristic derived (see the
    # README's sync section), NULL when every value was measured.
    "ALTER TABLE runs ADD COLUMN derived TEXT",
    "ALTER TABLE tasks ADD COLUMN derived TEXT",
    """CREATE TABLE sync_state (
        source TEXT NOT NULL,
        ref TEXT NOT NULL,
        signature TEXT,
        run_uid TEXT,
        final INTEGER NOT NULL DEFAULT 0,
        synced_at REAL NOT NULL,
        PRIMARY KEY (source, ref)
    ) WITHOUT ROWID""",
]

# Disk usage as `ottolytics usage` measured it, one row per project per scan, so
# that analysis can trend disk growth (runs' own sizes go to runs.size_bytes).
V3 = [
    """CREATE TABLE disk_samples (
        at REAL NOT NULL,
        project TEXT NOT NULL,
        runs INTEGER NOT NULL,
        run_bytes INTEGER NOT NULL,
        cache_bytes INTEGER NOT NULL,
        orphan_cache_bytes INTEGER NOT NULL,
        other_bytes INTEGER NOT NULL,
        PRIMARY KEY (at, project)
    ) WITHOUT ROWID""",
]

# The change log that lets a reader keep a columnar copy of the store up to date
# without rereading it (analyze/sources/mirror.py). A run is *sealed* once it is
# finished (its status is not in UNFINISHED): from then on every write that
# touches its rows, and every run inserted or deleted, moves the run to the end
# of ``changes`` (AUTOINCREMENT: a seq is never reused). A reader that copied the
# store when the newest seq was C reads again exactly the runs with seq > C and
# the runs that were unfinished then. Writes to a running run (the recorder's
# every task) cost one indexed lookup in a trigger's WHEN and nothing else.
# ``store_info`` holds an id made once per store, so a copy is never taken for
# another store's at the same path.
_SEALED = f"NOT IN {_in(UNFINISHED)}"


def _touch(table, run_of):
    """Triggers on *table* (INSERT, UPDATE, DELETE) that log the run of the row
    (*run_of*, an SQL expression over NEW/OLD given as {row}) when it is sealed."""
    out = []
    for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
        run = run_of.format(row=row)
        out.append(
            f"CREATE TRIGGER changes_{table}_{event.lower()} AFTER {event} ON {table} "
            f"WHEN (SELECT status FROM runs WHERE id = {run}) {_SEALED} "
            f"BEGIN INSERT OR REPLACE INTO changes(run_id) VALUES ({run}); END")
        if event == "UPDATE":  # a row moved to another run: log the old one too
            old = run_of.format(row="OLD")
            out.append(
                f"CREATE TRIGGER changes_{table}_moved AFTER UPDATE ON {table} "
                f"WHEN {old} IS NOT {run} AND (SELECT status FROM runs WHERE id = {old}) "
                f"{_SEALED} BEGIN INSERT OR REPLACE INTO changes(run_id) VALUES ({old}); END")
    return out


_TASK_RUN = "(SELECT run_id FROM tasks WHERE id = {row}.task_id)"

V4 = [
    """CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL UNIQUE
    )""",
    """CREATE TABLE store_info (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID""",
    "INSERT INTO store_info(key, value) VALUES ('uid', lower(hex(randomblob(16))))",
    # Runs: every insert and delete; an update only once the run was sealed (a
    # run's own end, running -> success, is not a change of a sealed run).
    "CREATE TRIGGER changes_runs_insert AFTER INSERT ON runs "
    "BEGIN INSERT OR REPLACE INTO changes(run_id) VALUES (NEW.id); END",
    "CREATE TRIGGER changes_runs_delete AFTER DELETE ON runs "
    "BEGIN INSERT OR REPLACE INTO changes(run_id) VALUES (OLD.id); END",
    f"CREATE TRIGGER changes_runs_update AFTER UPDATE ON runs WHEN OLD.status {_SEALED} "
    "BEGIN INSERT OR REPLACE INTO changes(run_id) VALUES (OLD.id); "
    "INSERT OR REPLACE INTO changes(run_id) VALUES (NEW.id); END",
    *_touch("tasks", "{row}.run_id"),
    *_touch("status_log", "{row}.run_id"),
    *_touch("run_params", "{row}.run_id"),
    *_touch("log_fragments", "{row}.run_id"),
    *_touch("task_stderr", _TASK_RUN),
    *_touch("task_deps", _TASK_RUN),
]

# (version, name, statements). Append only; never edit a released entry.
MIGRATIONS = [
    (1, "initial schema", V1),
    (2, "sync: derived values and sync state", V2),
    (3, "usage: disk samples", V3),
    (4, "change log for columnar copies", V4),
]

CURRENT_VERSION = MIGRATIONS[-1][0]



class SchemaTooNew(StoreError):
    """The store was written by a newer ottolytics."""


class NotAStore(StoreError):
    """The file is an SQLite database, but not an ottolytics store."""


class Unreadable(StoreError):
    """The file is not an SQLite database at all, or is damaged."""


class StoreLocked(StoreError):
    """Another process held the store's lock for longer than the busy timeout."""


class NotUtf8(StoreError):
    """A row holds text that is not UTF-8 (another program wrote it there)."""


def not_utf8_message(path, where=None):
    place = f" in {where}" if where else ""
    return (f"{path}: the store holds text that is not UTF-8{place} (another program wrote "
            f"it there); run 'ottolytics doctor --db {path}' to rewrite it with the bytes "
            "escaped (\\xff)")


def _ident(name):
    return '"' + name.replace('"', '""') + '"'


def invalid_text(conn, first=False):
    """{(table, column): {raw bytes: rows}} for every TEXT value in the store that
    is not valid UTF-8 (SQLite stores what it is given; ottolytics never writes
    such text, another program may). With *first*, stop at the first one found.
    Read-only; values are read as bytes, whatever the connection's text_factory."""
    found = {}
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
        "ORDER BY name")]
    for table in tables:
        for column in [r[1] for r in conn.execute(f"PRAGMA table_info({_ident(table)})")]:
            col = _ident(column)
            for (raw,) in conn.execute(f"SELECT CAST({col} AS BLOB) FROM {_ident(table)} "
                                       f"WHERE typeof({col}) = 'text'"):
                if raw.isascii():
                    continue
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    seen = found.setdefault((table, column), {})
                    seen[raw] = seen.get(raw, 0) + 1
                    if first:
                        return found
    return found


def locked_message(path, timeout_s):
    return (f"{path}: locked by another process for more than {timeout_s:g}s; try again "
            f"when it is done (see who holds it: fuser -v {path}), or wait longer with "
            "OTTOLYTICS_BUSY_TIMEOUT=SECONDS")


def _free_bytes(directory):
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _sqlite_header(path):
    """Does *path* start as an SQLite database does (or is it empty)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return True  # cannot tell: say the general thing
    return head in (b"", b"SQLite format 3\x00")


def _foreign_sqlite(path):
    """The header is SQLite's and says the file is not ours: another application
    id, or none and no schema version (every store of ours has one or both)."""
    try:
        with open(path, "rb") as f:
            head = f.read(72)
    except OSError:
        return False
    if len(head) < 72 or not head.startswith(b"SQLite format 3\x00"):
        return False
    app_id = int.from_bytes(head[68:72], "big")
    return app_id not in (0, APPLICATION_ID) or int.from_bytes(head[60:64], "big") == 0


def explain(exc, path, timeout_s=None):
    """A StoreError whose one line says what is wrong with *path*, for an sqlite3
    or OS error met while opening or reading it. Only an error that means the
    bytes themselves are wrong is called damage."""
    text = str(exc)
    low = text.lower()
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if isinstance(exc, StoreError):
        return exc
    if "locked" in low or "busy" in low:
        if timeout_s is None:
            try:
                timeout_s = float(os.environ.get("OTTOLYTICS_BUSY_TIMEOUT", 5))
            except ValueError:
                timeout_s = 5.0
        return StoreLocked(locked_message(path, timeout_s))
    if os.path.isdir(path):
        return StoreError(f"{path}: is a directory, not a store; pass the store file "
                          f"(e.g. --db {os.path.join(path, 'ottolytics.db')})")
    if isinstance(exc, PermissionError) or (os.path.exists(path)
                                            and not os.access(path, os.R_OK)):
        return StoreError(f"{path}: permission denied reading it; run as its owner or "
                          "fix its permissions")
    if "disk is full" in low or "no space" in low or (
            "i/o error" in low and _free_bytes(directory) == 0):
        return StoreError(f"{path}: the disk holding {directory} is full ({text}); free "
                          "some space and try again")
    if "i/o error" in low:
        return StoreError(f"{path}: disk I/O error ({text}): SQLite could not read the file "
                          f"or write its -shm/-wal beside it (a full disk, a file size limit, "
                          f"or a failing disk); check free space on {directory} and the "
                          "system log")
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        if not os.access(directory, os.W_OK):
            return StoreError(f"{path}: its directory {directory} is read-only ({text}), and "
                              "SQLite must create files beside the store to write it; make "
                              "the directory writable, or copy the store to one that is")
        return StoreError(f"{path}: cannot be opened ({text}); check the file and its "
                          "directory (permissions, free space, the mount)")
    if isinstance(exc, OSError):
        return StoreError(f"{path}: {exc.strerror or text}")
    if "could not decode to utf-8" in low:  # a row's text, not the file's bytes
        column = re.search(r"column '([^']*)'", text)
        return NotUtf8(not_utf8_message(path, column and f"column {column.group(1)}"))
    if not _sqlite_header(path):
        return Unreadable(f"{path}: not an SQLite database ({text}); point --db or "
                          "OTTOLYTICS_DB at an ottolytics.db")
    if _foreign_sqlite(path):
        return Unreadable(f"{path}: not an ottolytics store (another program's SQLite "
                          f"database, and unreadable: {text}); leave it be and point --db "
                          "or OTTOLYTICS_DB at an ottolytics.db")
    return Unreadable(
        f"{path}: an SQLite database, but damaged ({text}); point --db at an "
        "ottolytics.db, or, if this is your store, move this file aside (recording then "
        "starts a new store)")


def read_version(conn):
    """Return (user_version, application_id, has_tables) without writing anything."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    has_tables = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type='table'"
    ).fetchone()[0] > 0
    return version, app_id, has_tables


def check_version(conn, path, migrations=MIGRATIONS):
    """Raise if *path* cannot be used by this ottolytics; return its version."""
    current = migrations[-1][0]
    try:
        version, app_id, has_tables = read_version(conn)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise  # busy, not damaged: the callers retry or spool
        raise explain(exc, path) from None
    if app_id not in (0, APPLICATION_ID) or (version == 0 and has_tables):
        raise NotAStore(
            f"{path}: is an SQLite database but not an ottolytics store; "
            "point --db or OTTOLYTICS_DB at an ottolytics.db"
        )
    if version > current:
        raise SchemaTooNew(
            f"{path}: written by a newer ottolytics (schema v{version}, this one "
            f"knows up to v{current}); upgrade ottolytics, the store was left unaltered"
        )
    return version


def backup(conn, path, version):
    """Copy the store beside itself before migrating it; return the copy's path."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = f"{path}.v{version}.{stamp}.bak"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.v{version}.{stamp}-{n}.bak"
    dest = sqlite3.connect(target)
    try:
        conn.backup(dest)
    finally:
        dest.close()
    return target


def migrate(conn, path, migrations=MIGRATIONS):
    """Bring the store at *path* up to the newest version.

    Returns the backup path when an existing store was migrated, else None.
    *conn* must be in autocommit mode (isolation_level=None).
    """
    current = migrations[-1][0]
    version = check_version(conn, path, migrations)
    if version == current:
        return None
    backup_path = backup(conn, path, version) if version > 0 else None
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated while we waited for the lock.
        version = check_version(conn, path, migrations)
        for number, name, statements in migrations:
            if number <= version:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (number, name, time.time()),
            )
            conn.execute(f"PRAGMA user_version = {int(number)}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return backup_path
