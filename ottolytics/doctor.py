"""``ottolytics doctor``: check the store and repair what is safe to repair.

It runs SQLite's integrity check, reports the schema version and the WAL
size, replays any spooled events, marks stale runs interrupted, and reports
the spool backlog left over. Each finding is a ``Check``; any check that is
not ok makes the command exit non-zero.
"""

import glob
import os
from dataclasses import asdict, dataclass

from . import liveness, migrations, spool
from .paths import db_path, spool_dirs
from .store import Store, connect


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    value: object = None


def _spool_backlog(path):
    """(files waiting, events in them, files kept as .failed) for the store at *path*."""
    pending = spool.pending_files(path)
    events = 0
    for f in pending:
        try:
            with open(f, "rb") as handle:
                events += max(0, sum(1 for _ in handle) - 1)  # minus the header line
        except OSError:
            pass
    failed = []
    for directory in spool_dirs(path):
        failed += sorted(glob.glob(os.path.join(glob.escape(directory), "*.failed")))
    return pending, events, failed


def _finish_clean(path):
    """A clean killed midway leaves runs in the store whose directories it
    removed: finish it (by clean's rules) so that the store and the disk agree."""
    from . import clean
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
        checks.append(Check("store", True, str(path), str(path)))
    try:
        conn = connect(path, readonly=True)
        version = migrations.check_version(conn, path)
        result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        conn.close()
    except Exception as exc:
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
    try:
        store = Store.open(path, create=False)
    except Exception as exc:
        checks.append(Check("write", False, f"cannot open for writing: {exc}"))
        pending, events, failed = _spool_backlog(path)
        checks.append(Check("spool", not pending and not failed,
                            f"{len(pending)} files, {events} events waiting", events))
        return checks
    try:
        files, applied, skipped = spool.replay(store)
        if files:
            checks.append(Check("replay", skipped == 0,
                                f"replayed {applied} events from {files} spool files"
                                + (f", skipped {skipped}" if skipped else ""), applied))
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
        detail += (f"; {len(failed)} files with events that could not be applied, kept "
                   f"for inspection: {', '.join(str(f) for f in failed[:3])}")
    checks.append(Check("spool", not pending and not failed, detail, events))
    return checks


def as_dicts(checks):
    return [asdict(c) for c in checks]


def healthy(checks):
    return all(c.ok for c in checks)
