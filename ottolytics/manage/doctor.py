"""``ottolytics doctor``: check the store and repair what is safe to repair.

It runs SQLite's integrity check, reports the schema version and the WAL
size, replays any spooled events, marks stale runs interrupted, finishes a
``clean`` that was killed midway, and reports the spool backlog left over.
Each finding is a ``Check``; any check that is not ok makes the command exit
non-zero.

It advises moving a file aside only when the file is recognisably an
ottolytics store (SQLite with our application id); a directory, another
program's file or database is reported as not a store. A store locked by
another process past the busy timeout is one check saying so.
"""

import os
import sqlite3
from dataclasses import asdict, dataclass

from ottolytics.store import liveness
from ottolytics.store import migrations
from ottolytics.store import spool
from ottolytics.core.paths import DB_FILENAME, db_path, spool_dirs
from ottolytics.store.connection import Store, connect


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    value: object = None


def _spool_backlog(path):
    """(files waiting, events in them, quarantined files not yet reported) for *path*."""
    pending = spool.pending_files(path)
    events = 0
    for f in pending:
        try:
            with open(f, "rb") as handle:
                events += max(0, sum(1 for _ in handle) - 1)  # minus the header line
        except OSError:
            pass
    fresh, _seen = spool.quarantined(path)
    return pending, events, fresh


SQLITE_MAGIC = b"SQLite format 3\x00"


def _header(path):
    try:
        with open(path, "rb") as f:
            return f.read(100)
    except OSError:
        return b""


def _ours(path):
    """The file is recognisably an ottolytics store: SQLite with our application
    id (or, from before there was one, no id and a schema version), or a file
    named ottolytics.db whose header is gone."""
    header = _header(path)
    if os.path.basename(path) == DB_FILENAME and not header.startswith(SQLITE_MAGIC):
        return True  # named as our store, damaged down to its header
    if not header.startswith(SQLITE_MAGIC) or len(header) < 72:
        return False
    app_id = int.from_bytes(header[68:72], "big")
    return app_id == migrations.APPLICATION_ID or (
        app_id == 0 and int.from_bytes(header[60:64], "big") > 0)


def _not_a_store(path):
    """Why *path* (which exists) cannot be an ottolytics store, or None."""
    import stat
    try:
        st = os.stat(path)
    except OSError as exc:
        return (f"{path}: cannot examine it ({exc.strerror or exc}); pass --db with the path "
                "of your ottolytics.db")
    if stat.S_ISDIR(st.st_mode):
        return (f"{path} is a directory, not a store; pass --db "
                f"{os.path.join(path, 'ottolytics.db')} (or wherever your store is)")
    if not stat.S_ISREG(st.st_mode):
        return (f"{path} is not a regular file, so not a store; pass --db with the path of "
                "your ottolytics.db")
    if not st.st_size:
        return (f"{path} is an empty file (0 bytes), not an ottolytics store; pass --db with "
                "the path of your ottolytics.db (recording there makes it a new store)")
    header = _header(path)
    if st.st_size and not header.startswith(SQLITE_MAGIC) and not _ours(path):
        return (f"{path} is not an ottolytics store (not an SQLite database); leave it be and "
                "pass --db with the path of your ottolytics.db")
    if header.startswith(SQLITE_MAGIC) and len(header) >= 72 and int.from_bytes(
            header[68:72], "big") not in (
            0, migrations.APPLICATION_ID):
        return (f"{path} is not an ottolytics store (another program's SQLite database); "
                "leave it be and pass --db with the path of your ottolytics.db")
    if header.startswith(SQLITE_MAGIC) and not _ours(path):
        return (f"{path} is not an ottolytics store (an SQLite database without ottolytics' "
                "schema version); leave it be and pass --db with the path of your "
                "ottolytics.db")
    return None


def _locked(exc):
    from ottolytics.store.connection import StoreBusy
    text = str(exc).lower()
    return isinstance(exc, StoreBusy) or (
        isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text))


def _busy(path):
    from ottolytics.store.connection import busy_timeout_s
    return Check("store", False,
                 f"{path}: locked by another process for more than {busy_timeout_s():g} s; "
                 f"retry once it is done (fuser {path} shows it), or raise "
                 "OTTOLYTICS_BUSY_TIMEOUT", str(path))


def _text_check(found):
    """Text that is not UTF-8 (*found* by migrations.invalid_text), which another
    program wrote into the store: the quick commands show it escaped, the DuckDB
    read path refuses it. _rewrite_text repairs it."""
    if not found:
        return Check("text", True, "all UTF-8", 0)
    where = ", ".join(f"{t}.{c}: {sum(v.values())}" for (t, c), v in found.items())
    return Check("text", False, f"not UTF-8 ({where})", sum(
        sum(v.values()) for v in found.values()))


def _rewrite_text(store, check, found):
    """Rewrite each value of *check* that is not UTF-8 with its bytes escaped, as
    the quick commands show it (b'p\\xff' becomes the text 'p\\xff'). A value
    whose escaped form another row of a unique column already holds is left."""
    from ottolytics.store.connection import decode_text
    rewrote, kept = 0, []
    for (table, column), values in found.items():
        t, c = migrations._ident(table), migrations._ident(column)
        for raw in values:
            try:
                rewrote += store.write(lambda conn: conn.execute(
                    f"UPDATE {t} SET {c} = ? WHERE typeof({c}) = 'text' "
                    f"AND CAST({c} AS BLOB) = ?", (decode_text(raw), raw)).rowcount)
            except sqlite3.IntegrityError:
                kept.append(f"{table}.{column}")
            except sqlite3.OperationalError as exc:
                if _locked(exc):
                    raise
                return Check("text", False, f"{check.detail}; cannot rewrite them ({exc}): "
                             "run doctor with write access to the store", check.value)
    where = check.detail[len("not UTF-8 "):]
    detail = f"text not UTF-8 {where}: rewrote {rewrote} values with the bytes escaped (\\xff)"
    if kept:
        detail += (f"; left {len(kept)} as is ({', '.join(sorted(set(kept)))}): their "
                   "escaped form is already another row's")
    return Check("text", not kept, detail, rewrote)


def _finish_clean(path):
    """A clean killed midway leaves runs in the store whose directories it
    removed: finish it (by clean's rules) so that the store and the disk agree."""
    from ottolytics.manage import clean
    try:
        result = clean.resume(path)
    except Exception as exc:  # a journal of another OTTO_HOME, or unreadable
        return Check("clean", False, str(exc))
    if result is None:
        return Check("clean", True, "none interrupted", 0)
    detail = (f"an interrupted clean left {len(result.deleted) + len(result.kept)} runs in the "
              f"store whose directories it was deleting; finished it: deleted "
              f"{len(result.deleted)} runs")
    if result.errors:
        detail += (f", kept {len(result.kept)}: "
                   + "; ".join(f"{p}: {m}" for p, m in result.errors[:3]))
    return Check("clean", not result.errors, detail, len(result.deleted))


def diagnose(db=None, max_run_age=None):
    """Run every check against the store at *db*; returns a list of Check."""
    path = db_path(db)
    checks = []
    if not os.path.exists(path):
        pending, events, failed = _spool_backlog(path)
        if not pending:
            checks.append(Check("store", False, f"{path} does not exist; record a run first "
                                "or pass --db", str(path)))
            return checks
        try:  # spooled events are waiting for this store: create it to replay them
            Store.open(path).close()
        except Exception as exc:
            checks.append(Check("store", False, f"{path}: cannot create it ({exc}); "
                                f"{events} spooled events are waiting for it", str(path)))
            return checks
        checks.append(Check("store", True, f"{path} (created to replay the spool)", str(path)))
    else:
        not_ours = _not_a_store(path)
        if not_ours:
            return [Check("store", False, not_ours, str(path))]
        checks.append(Check("store", True, str(path), str(path)))
    try:
        conn = connect(path, readonly=True)
        try:
            version = migrations.check_version(conn, path)
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            bad_text = migrations.invalid_text(conn)
        finally:
            conn.close()
    except Exception as exc:
        if _locked(exc):
            return [_busy(path)]
        if isinstance(exc, migrations.NotAStore) or not _ours(path):
            # one verdict, without the advice meant for a store of ours
            return [Check("store", False, f"{path} is not recognisably an ottolytics store "
                          "(it cannot be read as one); leave it be and pass --db with the "
                          "path of your ottolytics.db", str(path))]
        checks.append(Check("open", False,
                            f"cannot read the store: {exc}. If it is corrupt, move it aside "
                            f"(mv {path} {path}.corrupt); spooled events are kept and "
                            "replayed into a fresh store at the next recording"))
        pending, events, failed = _spool_backlog(path)
        checks.append(Check("spool", not pending and not failed,
                            f"{len(pending)} files, {events} events waiting", events))
        return checks
    ok = result == ["ok"]
    checks.append(Check("integrity", ok, "ok" if ok else "; ".join(result[:5]),
                        "ok" if ok else result))
    current = migrations.CURRENT_VERSION
    checks.append(Check("schema", True,
                        f"v{version}" + ("" if version == current else f", migrating to v{current}"),
                        version))
    wal = path + "-wal"
    wal_size = os.path.getsize(wal) if os.path.exists(wal) else 0
    checks.append(Check("wal", True, f"{wal_size} bytes", wal_size))
    checks.append(_text_check(bad_text))
    try:
        return _repair(path, checks, max_run_age, bad_text)
    except Exception as exc:
        if _locked(exc):
            return [_busy(path)]
        raise


def _repair(path, checks, max_run_age, bad_text=None):
    """The checks that write: replay the spool, close stale runs, finish a clean."""
    try:
        store = Store.open(path, create=False)
    except Exception as exc:
        if _locked(exc):
            raise
        checks.append(Check("write", False, f"cannot open for writing: {exc}"))
        pending, events, failed = _spool_backlog(path)
        checks.append(Check("spool", not pending and not failed,
                            f"{len(pending)} files, {events} events waiting", events))
        return checks
    text_at = [i for i, c in enumerate(checks) if c.name == "text" and not c.ok]
    try:
        files, applied, skipped = spool.replay(store)
        if files:
            checks.append(Check("replay", skipped == 0,
                                f"replayed {applied} events from {files} spool files"
                                + (f", skipped {skipped}" if skipped else ""), applied))
        if text_at and bad_text:
            checks[text_at[0]] = _rewrite_text(store, checks[text_at[0]], bad_text)
        age = max_run_age if max_run_age is not None else liveness.DEFAULT_MAX_AGE_S
        marked = liveness.recover_stale(store, age)
        runs = [m for m in marked if m[1] is None]
        checks.append(Check("stale", True,
                            f"marked {len(runs)} runs and {len(marked) - len(runs)} tasks "
                            "interrupted" if marked else "none", len(marked)))
    finally:
        store.close()
    checks.append(_finish_clean(path))
    pending, events, failed = _spool_backlog(path)
    detail = f"{len(pending)} files, {events} events waiting"
    if failed:
        # Reported once: they are moved aside, so the next doctor is not BAD for good.
        spool.mark_reported(failed)
        detail += (f"; {len(failed)} files with events that could not be applied, "
                   f"quarantined for inspection: {', '.join(str(f) for f in failed[:3])}")
    else:
        seen = spool.quarantined(path)[1]
        if seen:
            detail += (f"; {len(seen)} quarantined files reported before, kept in "
                       f"{os.path.dirname(seen[0])}")
    checks.append(Check("spool", not pending and not failed, detail, events))
    return checks


def as_dicts(checks):
    return [asdict(c) for c in checks]


def healthy(checks):
    return all(c.ok for c in checks)
