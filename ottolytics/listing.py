"""Recent runs for the quick ``history`` command: indexed SQL over sqlite3 only."""

import os
import time

from . import liveness, migrations
from .migrations import TASK_STATUSES, StoreError
from .paths import db_path
from .store import Store, connect


def open_for_reading(db=None):
    """A connection to an existing store, migrated and with stale runs closed.

    Falls back to a read-only connection when the store cannot be written
    (recovery is then skipped). Raises StoreError with a one-line message.
    """
    path = db_path(db)
    if not os.path.exists(path):
        raise StoreError(f"{path}: no store yet; record a run with 'ottolytics exec -- CMD' "
                         "or pass --db")
    try:
        store = Store.open(path, create=False)
    except StoreError:
        raise
    except Exception:
        conn = connect(path, readonly=True)
        try:
            version = migrations.check_version(conn, path)
        except BaseException:
            conn.close()
            raise
        if version != migrations.CURRENT_VERSION:
            conn.close()
            raise StoreError(f"{path}: needs migrating to schema v{migrations.CURRENT_VERSION} "
                             "but is not writable; run ottolytics once with write access")
        return conn
    try:
        liveness.recover_stale(store)
    except Exception:
        pass  # reading must not fail because a write did
    return store.conn


def recent_runs(db=None, limit=20, conn=None):
    """The newest *limit* runs as dicts: run_id, project, status, started_at,
    finished_at, duration_s, tasks and tasks_<status> for every task status."""
    own = conn is None
    conn = conn or open_for_reading(db)
    try:
        rows = conn.execute(
            "SELECT r.id, r.uid, p.name, r.status, r.started_at, r.finished_at "
            "FROM runs r JOIN projects p ON p.id = r.project_id "
            "ORDER BY r.started_at DESC LIMIT ?", (limit,)).fetchall()
        counts = {}
        if rows:
            marks = ",".join("?" * len(rows))
            for run_id, status, n in conn.execute(
                    f"SELECT run_id, status, count(*) FROM tasks WHERE run_id IN ({marks}) "
                    "GROUP BY run_id, status", [r[0] for r in rows]):
                counts.setdefault(run_id, {})[status] = n
    finally:
        if own:
            conn.close()
    now = time.time()
    result = []
    for rid, uid, project, status, started, finished in rows:
        c = counts.get(rid, {})
        end = finished if finished is not None else (now if status == "running" else None)
        item = {"run_id": uid, "project": project, "status": status,
                "started_at": started, "finished_at": finished,
                "duration_s": None if end is None else max(0.0, end - started),
                "tasks": sum(c.values())}
        for s in TASK_STATUSES:
            item[f"tasks_{s}"] = c.get(s, 0)
        result.append(item)
    return result
