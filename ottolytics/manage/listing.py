"""Recent runs for the quick ``history`` command: indexed SQL over sqlite3 only."""

import time

from ottolytics.store.migrations import TASK_STATUSES
from ottolytics.core.paths import db_path
from ottolytics.core.values import number, seconds
from ottolytics.store.connection import open_readonly
from ottolytics.store.statuses import success_rate


def open_for_reading(db=None):
    """A read-only connection to an existing store (see store.open_readonly).

    Reading changes nothing: stale runs are closed and the spool is replayed by
    the next recording, ``sync`` or ``doctor``, not here. Raises StoreError with
    a one-line message.
    """
    return open_readonly(db_path(db))


def stale_running(db, uids, max_age_s=None, now=None):
    """{run id: reason} for those of *uids* stored as running whose recorder is
    gone, judged as recovery judges them (liveness), but without writing: a
    recording or ``doctor`` marks them interrupted."""
    from ottolytics.store import liveness
    if not uids:
        return {}
    max_age_s = liveness.DEFAULT_MAX_AGE_S if max_age_s is None else max_age_s
    now = time.time() if now is None else now
    conn = open_for_reading(db)
    try:
        marks = ",".join("?" * len(uids))
        rows = conn.execute(f"SELECT uid, pid, pid_started_at, host, started_at FROM runs "
                            f"WHERE status = 'running' AND uid IN ({marks})",
                            list(uids)).fetchall()
    finally:
        conn.close()
    here = liveness.hostname()
    found = {}
    for uid, pid, pst, host, started in rows:
        reason = liveness._verdict(pid, pst, host, started, now, max_age_s, here)
        if reason:
            found[uid] = reason
    return found


def reading_notes(db=None, runs=(), spool=True):
    """What a reader of *runs* (dicts of recent_runs or task_history) should know
    that the store does not say yet, as lines: with *spool*, spooled events
    waiting; runs stored as running whose recorder is gone (three named, then
    how many more). Reading writes nothing, so these wait for the next recording
    or ``doctor``. A store that cannot be read gives no note on running runs.

    >>> reading_notes(db, recent_runs(db))[0]  # doctest: +SKIP
    "1 spool file of events not yet in the store; the next recording or ..."
    """
    import sqlite3
    from ottolytics.core.errors import StoreError
    notes = []
    waiting = spool_waiting(db) if spool else 0
    if waiting:
        notes.append(f"{waiting} spool file{'s' if waiting > 1 else ''} of events not yet in "
                     "the store; the next recording or 'ottolytics doctor' replays them")
    try:
        stale = stale_running(db, [r["run_id"] for r in runs if r["status"] == "running"])
    except (StoreError, sqlite3.Error):
        stale = {}  # a note, not the answer
    notes += [f"run {uid} is stored as running, but {reason}; 'ottolytics doctor' marks it "
              "interrupted" for uid, reason in list(stale.items())[:3]]
    if len(stale) > 3:
        notes.append(f"{len(stale) - 3} more such runs")
    return notes


def project_names(db=None):
    """Every project name in the store at *db*, sorted."""
    conn = open_for_reading(db)
    try:
        return [n for (n,) in conn.execute("SELECT name FROM projects ORDER BY name")]
    finally:
        conn.close()


def unknown_project(db=None, project=None):
    """None when the store at *db* knows *project*, else the one line that says
    it does not and names the projects it has (ten, then how many more).

    >>> unknown_project(db, "wbe")  # doctest: +SKIP
    "wbe: no such project in the store; it has api, etl, web"
    """
    names = project_names(db)
    if project in names:
        return None
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return (f"{project}: no such project in the store; "
            + (f"it has {shown}" if names else "it has no projects yet"))


def has_runs(db=None):
    """True when the store at *db* holds any run at all (to tell "nothing
    recorded" from "nothing matched")."""
    conn = open_for_reading(db)
    try:
        return conn.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None
    finally:
        conn.close()


def spool_waiting(db=None):
    """How many spool files wait to be replayed into the store at *db*; as
    spool.pending_files counts them, without importing the replay machinery."""
    import os
    from ottolytics.core.paths import spool_dirs
    count = 0
    for directory in spool_dirs(db_path(db)):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        count += sum(1 for n in names if n.endswith(".jsonl") or ".replaying-" in n)
    return count


def recent_runs(db=None, limit=20, conn=None, status=None, project=None, offset=0,
                since=None, task=None):
    """The newest *limit* runs (after skipping *offset*) as dicts: run_id, project,
    status, started_at, finished_at, duration_s, size_bytes, user, host, tasks and
    tasks_<status> for every task status. *since* is unix seconds; *task* keeps
    runs that ran that task. Walks the runs_started index newest first."""
    own = conn is None
    conn = conn or open_for_reading(db)
    where, args = _where("r.status", status, project, since, task)
    try:
        rows = conn.execute(
            "SELECT r.id, r.uid, p.name, r.status, r.started_at, r.finished_at, r.size_bytes, "
            "r.user, r.host FROM runs r LEFT JOIN projects p ON p.id = r.project_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY r.started_at DESC LIMIT ? OFFSET ?",
            (*args, limit, offset)).fetchall()
        counts = {}
        if rows:
            marks = ",".join("?" * len(rows))
            for run_id, st, n in conn.execute(
                    f"SELECT run_id, status, count(*) FROM tasks WHERE run_id IN ({marks}) "
                    "GROUP BY run_id, status", [r[0] for r in rows]):
                counts.setdefault(run_id, {})[st] = n
    finally:
        if own:
            conn.close()
    now = time.time()
    result = []
    for rid, uid, pname, st, started, finished, size, user, host in rows:
        started, finished, size = seconds(started), seconds(finished), number(size, True)
        c = counts.get(rid, {})
        item = {"run_id": uid, "project": pname, "status": st,
                "started_at": started, "finished_at": finished,
                "duration_s": _duration(st, started, finished, now),
                "size_bytes": size, "user": user, "host": host,
                "tasks": sum(c.values())}
        for s in TASK_STATUSES:
            item[f"tasks_{s}"] = c.get(s, 0)
        result.append(item)
    return result


def _where(status_column, status, project, since=None, task=None):
    """SQL conditions and their arguments for the status, project, since and task filters."""
    where, args = [], []
    if status:
        where.append(f"{status_column} = ?")
        args.append(status)
    if project:
        where.append("p.name = ?")
        args.append(project)
    if since is not None:
        where.append("r.started_at >= ?")
        args.append(since)
    if task:
        where.append("EXISTS (SELECT 1 FROM tasks x WHERE x.run_id = r.id AND x.name = ?)")
        args.append(task)
    return where, args


def count_runs(conn, status=None, project=None, since=None, task=None):
    """How many runs recent_runs could page through with these filters."""
    where, args = _where("r.status", status, project, since, task)
    return conn.execute("SELECT count(*) FROM runs r LEFT JOIN projects p ON p.id = r.project_id"
                        + (" WHERE " + " AND ".join(where) if where else ""), args).fetchone()[0]


def run_page(db=None, limit=20, offset=0, conn=None, status=None, project=None, since=None,
             task=None):
    """One page of runs, newest first: {"total", "offset", "limit", "runs" (as
    recent_runs gives them), "next_offset" (None on the last page)}, under the
    filters of recent_runs; what the MCP tool list_execution_history pages through."""
    own = conn is None
    conn = conn or open_for_reading(db)
    try:
        total = count_runs(conn, status, project, since, task)
        runs = recent_runs(conn=conn, limit=limit, offset=offset, status=status,
                           project=project, since=since, task=task)
    finally:
        if own:
            conn.close()
    more = offset + len(runs) < total
    return {"total": total, "offset": offset, "limit": limit, "runs": runs,
            "next_offset": offset + len(runs) if more else None}


def _duration(status, started, finished, now):
    end = finished if finished is not None else (now if status == "running" else None)
    return None if end is None or started is None else max(0.0, end - started)


def task_history(db=None, task=None, limit=20, conn=None, status=None, project=None,
                 since=None):
    """A task's runs, newest first: one dict per run (its last attempt) with
    run_id, project, status, started_at, finished_at, duration_s, exit_code,
    attempts, size_bytes, user; plus a summary over those runs.

    Walks runs newest first and probes the (run_id, name, attempt) index, so a
    task seen recently costs a few index steps, however long the history."""
    own = conn is None
    conn = conn or open_for_reading(db)
    where, args = _where("t.status", status, project, since)
    where, args = ["t.name = ?"] + where, [task] + args
    try:
        rows = conn.execute(
            "SELECT r.uid, p.name, t.status, t.started_at, t.finished_at, t.exit_code, "
            "t.attempt, r.size_bytes, r.user FROM runs r "
            "LEFT JOIN projects p ON p.id = r.project_id "
            "JOIN tasks t ON t.run_id = r.id AND t.attempt = (SELECT max(attempt) FROM tasks "
            "WHERE run_id = r.id AND name = t.name) "
            "WHERE " + " AND ".join(where) + " ORDER BY r.started_at DESC LIMIT ?",
            (*args, limit)).fetchall()
    finally:
        if own:
            conn.close()
    now = time.time()
    runs = []
    for uid, pname, st, started, finished, code, attempt, size, user in rows:
        started, finished = seconds(started), seconds(finished)
        runs.append({"run_id": uid, "project": pname, "status": st, "started_at": started,
                     "finished_at": finished, "duration_s": _duration(st, started, finished, now),
                     "exit_code": number(code, True), "attempts": attempt,
                     "size_bytes": number(size, True), "user": user})
    ok = sum(r["status"] == "success" for r in runs)
    failed = sum(r["status"] == "failed" for r in runs)
    return {"task": task, "runs": runs,
            "summary": {"runs": len(runs), "successes": ok, "failures": failed,
                        "success_rate": success_rate(ok, failed)}}
