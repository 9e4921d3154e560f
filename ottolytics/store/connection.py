"""The SQLite run store: connection settings and short, retried write transactions.

Only the standard library's sqlite3 is used here, so the recorder, the shim
and the quick commands start fast. Writers take ``BEGIN IMMEDIATE`` so a lock
conflict shows up at the start of a transaction (where it can be retried)
rather than in the middle of it.
"""

import os
import sqlite3
import time

from ottolytics.store import inprocess
from ottolytics.store import migrations
from ottolytics.core.errors import RunNotFound, StoreError
from ottolytics.core.paths import db_path

DEFAULT_BUSY_TIMEOUT_S = 5.0
DEFAULT_ATTEMPTS = 4


# An event names a run id the store does not hold (a caller's mistake): the one
# "unknown run" error, under the name the recorder has always caught.
UnknownRun = RunNotFound


class StoreBusy(StoreError):
    """The store stayed locked by another writer past every retry."""


def busy_timeout_s():
    """Seconds one lock wait may take: ``$OTTOLYTICS_BUSY_TIMEOUT`` or 5."""
    try:
        return float(os.environ.get("OTTOLYTICS_BUSY_TIMEOUT", DEFAULT_BUSY_TIMEOUT_S))
    except ValueError:
        return DEFAULT_BUSY_TIMEOUT_S


def _uri_path(path):
    """Percent-encode the characters that would end an SQLite URI's path early."""
    for ch in "%?#":
        path = path.replace(ch, "%{:02X}".format(ord(ch)))
    return path


def _jitter():
    """A number in [0, 1) for back-off jitter (cheaper to import than random)."""
    return (time.perf_counter_ns() * 2654435761 % 4294967296) / 4294967296


def _is_lock_error(exc):
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def decode_text(data):
    """The text_factory of every connection to a store: UTF-8, with any byte that
    is not UTF-8 shown escaped (``\\xff``) instead of failing the whole read.
    ottolytics never writes such text; another program may have (doctor rewrites
    it). Valid text decodes exactly as sqlite3's default does."""
    return str(data, "utf-8", "backslashreplace")


def connect(path, *, readonly=False, timeout=None):
    """Open *path* in autocommit mode with ottolytics' connection settings."""
    timeout = busy_timeout_s() if timeout is None else timeout
    with inprocess.lock:  # never while DuckDB has this store attached (see inprocess)
        if readonly:
            uri = "file:" + _uri_path(os.path.abspath(path)) + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None,
                                   check_same_thread=False, factory=inprocess.TrackedConnection)
        else:
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False, factory=inprocess.TrackedConnection)
    conn.text_factory = decode_text
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class _Reader(inprocess.TrackedConnection):
    """A read-only connection that, when it closes, removes the -wal and -shm
    files its reading made SQLite create (see :func:`open_readonly`)."""

    release = None

    def close(self):
        path, self.release = self.release, None
        super().close()
        if path:
            _release_wal(path)


def _release_wal(path):
    """Let SQLite remove a WAL store's -wal and -shm files, as it does when its
    last connection closes: a read-only connection may not, so a plain one opens
    and closes. It writes nothing to the store itself, as the WAL holds no frames
    of ours; if another connection opened meanwhile, the files stay, for it."""
    if not (os.path.exists(path + "-wal") or os.path.exists(path + "-shm")):
        return
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None,
                               factory=inprocess.TrackedConnection)
    except sqlite3.Error:
        return
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error:
        pass
    finally:
        conn.close()


def _cannot_make_shm(exc, path):
    """SQLite could not open a WAL store for reading because its directory cannot
    be written: no writer can create a -wal there either, so reading the file as
    immutable is safe."""
    return ("unable to open" in str(exc).lower()
            and not writable_dir(os.path.dirname(os.path.abspath(path))))


def writable_dir(folder):
    """Can files be created in *folder*? os.access does not see every reason why
    not (an immutable directory, a read-only mount), so a probe file is made."""
    folder = folder or "."
    if not os.access(folder, os.W_OK):
        return False
    probe = os.path.join(folder, f".ottolytics-probe-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return False
    os.unlink(probe)
    return True


def check_store_path(path):
    """Raise StoreError, one line, when *path* exists and is not a regular file (a
    directory, a device such as /dev/null, a FIFO, a socket): recording there
    would make SQLite's journal, the spool and the runs' logs beside it (in /dev).
    A missing path is fine: recording makes the store (or spools, where it cannot)."""
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing, or not to be seen: opening it says what is wrong, or spools
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a device, FIFO or socket"
        raise StoreError(f"{path}: not a regular file ({what}); pass --db or OTTOLYTICS_DB "
                         f"the path of a store file (a new name makes a new store)")


def open_readonly(path, timeout=None):
    """A read-only connection to the existing store at *path*, for commands that
    only read: nothing of the store's bytes changes, and no file is left beside it.

    SQLite's ``mode=ro``: a rollback-journal store (the committed sample) is read
    under a shared lock and nothing is created. A WAL store being written shares
    the writer's -wal and -shm, so its newest commits are read consistently. A WAL
    store with no -wal (no writer) makes SQLite create -wal and -shm, which are
    removed again at close (see _release_wal); where its directory cannot be
    written, no writer can create a -wal either, so it is read ``immutable``.
    Raises StoreError with one line that says what is wrong.
    """
    timeout = busy_timeout_s() if timeout is None else timeout
    if os.path.isdir(path):
        raise migrations.explain(IsADirectoryError(path), path)
    if not os.path.exists(path):
        raise StoreError(f"{path}: no store yet; record a run with 'ottolytics exec -- CMD' "
                         "or pass --db")
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise migrations.explain(exc, path) from None
    if not header:
        raise StoreError(f"{path}: an empty file (0 bytes), not a store; pass --db with the "
                         "path of your ottolytics.db (recording there makes it a new store)")
    wal = len(header) == 100 and header[18] == 2
    no_writer = wal and not os.path.exists(path + "-wal")
    base = "file:" + _uri_path(os.path.abspath(path))
    conn = None
    for option in ("?mode=ro", "?immutable=1") if no_writer else ("?mode=ro",):
        with inprocess.lock:
            conn = sqlite3.connect(base + option, uri=True, timeout=timeout,
                                   isolation_level=None, check_same_thread=False,
                                   factory=_Reader)
        if no_writer and option == "?mode=ro":
            conn.release = path
        conn.text_factory = decode_text
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            version = migrations.check_version(conn, path)
            break
        except sqlite3.OperationalError as exc:
            conn.close()
            if option == "?mode=ro" and no_writer and _cannot_make_shm(exc, path):
                continue  # a directory where no -shm can be made: read it immutable
            raise migrations.explain(exc, path, timeout) from None
        except StoreError as exc:
            conn.close()
            if option == "?mode=ro" and no_writer and _cannot_make_shm(exc, path):
                continue
            raise
        except BaseException:
            conn.close()
            raise
    if version == 0:
        # An SQLite database without our schema (an empty one): reading must not
        # make it a store.
        conn.close()
        raise migrations.NotAStore(
            f"{path}: an SQLite database without ottolytics' tables, not an ottolytics "
            "store; point --db or OTTOLYTICS_DB at an ottolytics.db")
    if version != migrations.CURRENT_VERSION:
        # Written by an older ottolytics: migrate it once (with a backup), the one
        # case where reading writes, then read it as usual.
        conn.close()
        try:
            Store.open(path, create=False).close()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{path}: needs migrating to schema v{migrations.CURRENT_VERSION}"
                             f" but cannot be written ({exc}); run ottolytics once with "
                             "write access") from None
        return open_readonly(path, timeout)
    return conn


def _set_wal(conn, timeout=None):
    """Switch to WAL once; the mode is persistent, so later opens only read it.

    The switch needs an exclusive lock, so it is retried (re-reading the mode,
    which another process may have switched meanwhile) for up to *timeout*
    (default: the busy timeout).
    """
    deadline = time.monotonic() + (busy_timeout_s() if timeout is None else timeout)
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() == "wal":
                return
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if not _is_lock_error(exc):
                raise
        if time.monotonic() > deadline:
            raise StoreBusy("could not switch the store to WAL mode: it stayed locked")
        time.sleep(0.01 + _jitter() * 0.05)


def _create(path):
    """Create a fully migrated WAL store at *path* atomically.

    The store is built in a private temporary file and hard-linked into place,
    so concurrent first writers never see (or fight over) a half-made store:
    one link wins and the others open the winner's file.
    """
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}-{os.urandom(4).hex()}.creating")
    try:
        conn = connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrations.migrate(conn, tmp)
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first; use theirs
        except OSError:
            if not os.path.exists(path):  # no hard links on this filesystem
                os.rename(tmp, path)
    finally:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{tmp}{suffix}")
            except FileNotFoundError:
                pass


class Store:
    """An open, migrated run store. Use :meth:`open` to get one."""

    def __init__(self, conn, path):
        self.conn = conn
        self.path = str(path)
        self.attempts = DEFAULT_ATTEMPTS
        self._project_ids = {}
        self._run_ids = {}
        # task id -> (run id, status) for tasks this connection started, so a
        # finish needs no read. Only valid while this process is the writer of
        # that task, which is the recorder's case; cleared on any rollback.
        self._open_tasks = {}

    @classmethod
    def open(cls, db=None, *, create=True, timeout=None):
        """Open (creating and migrating as needed) the store at *db*.

        Raises StoreError subclasses or sqlite3.Error when the file cannot be
        used; the caller decides whether to degrade (the recorder spools).
        """
        path = db_path(db)
        if not os.path.exists(path):
            if not create:
                raise StoreError(f"{path}: no store here; record a run first or pass --db")
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            _create(path)
        conn = connect(path, timeout=timeout)
        try:
            # Check the version before anything that could write to the file.
            version = migrations.check_version(conn, path)
            _set_wal(conn, timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
            if version != migrations.CURRENT_VERSION:
                migrations.migrate(conn, path)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def set_wait(self, seconds):
        """Wait at most *seconds* for a lock, once: for callers that must not stall
        (the shim) and would rather spool the events."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        self.attempts = 1

    def close(self):
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def write(self, fn, *args):
        """Run ``fn(conn, *args)`` in a short BEGIN IMMEDIATE transaction.

        A lock that outlasts the busy timeout is retried a bounded number of
        times with jittered back-off; after that StoreBusy is raised and no
        partial change is left behind.
        """
        conn = self.conn
        for attempt in range(self.attempts):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc):
                    raise
                time.sleep(min(0.5, 0.02 * 2 ** attempt) * (0.5 + _jitter()))
                continue
            try:
                result = fn(conn, *args)
                conn.execute("COMMIT")
                return result
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self.forget_caches()
                if isinstance(exc, sqlite3.OperationalError) and _is_lock_error(exc):
                    continue
                raise
        raise StoreBusy(
            f"{self.path}: still locked by another writer after {self.attempts} tries; "
            "find the process holding it (ottolytics doctor) or raise OTTOLYTICS_BUSY_TIMEOUT"
        )

    # Lookups cached per connection: ids never change once assigned.

    def project_id(self, conn, name, now):
        pid = self._project_ids.get(name)
        if pid is None:
            row = conn.execute("SELECT id FROM projects WHERE name = ?", (name,)).fetchone()
            if row is None:
                pid = conn.execute(
                    "INSERT INTO projects(name, created_at) VALUES (?, ?)", (name, now)
                ).lastrowid
            else:
                pid = row[0]
            self._project_ids[name] = pid
        return pid

    def run_id(self, conn, uid):
        rid = self._run_ids.get(uid)
        if rid is None:
            row = conn.execute("SELECT id FROM runs WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                raise UnknownRun(f"{self.path}: no run with id {uid!r}; "
                                 "start one with 'ottolytics run start'")
            rid = self._run_ids[uid] = row[0]
        return rid

    def forget_caches(self):
        """Drop cached ids, e.g. after a rolled-back transaction created some."""
        self._project_ids.clear()
        self._run_ids.clear()
        self._open_tasks.clear()
