"""``ottolytics info RUN``: one run, whole: its metadata, each task with status,
duration, exit code and file paths (and the stderr tail of failed ones), and
the order its tasks' dependencies impose. Indexed sqlite3 only, so it answers
in milliseconds on any size of store.
"""

import os
import time

from .listing import _duration, open_for_reading
from .migrations import StoreError
from .paths import db_path, from_stored, task_path_from_stored

RUN_COLUMNS = ("id", "uid", "status", "started_at", "finished_at", "args", "ottofile", "user",
               "host", "cwd", "run_dir", "size_bytes", "source", "source_ref", "derived")


class RunNotFound(StoreError):
    """RUN matched no run, or more than one; the message says which and what to do."""


def resolve(conn, ref):
    """The runs.id for *ref*: ``latest``, a run id (or a unique prefix of one), or
    otto's unix timestamp (the run directory's name)."""
    ref = str(ref).strip()
    if ref == "latest":
        row = conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        if row is None:
            raise RunNotFound("latest: the store has no runs yet")
        return row[0]
    row = conn.execute("SELECT id FROM runs WHERE uid = ?", (ref,)).fetchone()
    if row:
        return row[0]
    if ref.isdigit():
        ts = int(ref)
        rows = conn.execute(
            "SELECT id, uid FROM runs WHERE started_at >= ? AND started_at < ? "
            "ORDER BY source = 'otto' DESC, started_at", (ts, ts + 1)).fetchall()
        otto = [r for r in rows if r[1].startswith("otto-")]
        rows = otto or rows
        if len(rows) == 1:
            return rows[0][0]
        if rows:
            raise RunNotFound(f"{ref}: {len(rows)} runs started in that second "
                              f"({', '.join(r[1] for r in rows[:5])}); pass a run id")
    if len(ref) >= 4:
        rows = conn.execute("SELECT id, uid FROM runs WHERE uid >= ? AND uid < ? LIMIT 6",
                            (ref, ref + "\U0010ffff")).fetchall()
        if len(rows) == 1:
            return rows[0][0]
        if rows:
            raise RunNotFound(f"{ref}: ambiguous, matches {', '.join(r[1] for r in rows[:5])}"
                              f"{' and more' if len(rows) > 5 else ''}; give more of the id")
    raise RunNotFound(f"{ref}: no such run; list runs with 'ottolytics history' "
                      "(RUN is a run id, otto's unix timestamp, or 'latest')")


def dependency_order(tasks):
    """Task names in an order where each comes after what it depends on; ties go
    by start time, then name. Dependencies outside the run are ignored, and a
    cycle (which otto would reject) is broken by start time."""
    names = {t["task"] for t in tasks}
    start = {t["task"]: (t["started_at"] is None, t["started_at"] or 0, t["task"])
             for t in tasks}
    deps = {t["task"]: {d for d in t["depends_on"] if d in names and d != t["task"]}
            for t in tasks}
    order, done = [], set()
    while len(order) < len(names):
        ready = [n for n in names if n not in done and deps[n] <= done]
        if not ready:  # a cycle: take the earliest remaining
            ready = [min((n for n in names if n not in done), key=start.get)]
        for n in sorted(ready, key=start.get):
            order.append(n)
            done.add(n)
    return order


def run_info(db=None, ref="latest", conn=None, home=None):
    """The run *ref* as a dict: its fields, ``params``, ``tasks`` (final attempt
    last; paths absolute) and ``order``. Raises RunNotFound. Stored relative paths
    resolve against *home*, by default the store's directory, as History does."""
    if home is None:
        home = os.path.dirname(os.path.abspath(db_path(db)))
    own = conn is None
    conn = conn or open_for_reading(db)
    try:
        rid = resolve(conn, ref)
        run = dict(zip(RUN_COLUMNS + ("project",), conn.execute(
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)}, p.name FROM runs r "
            "JOIN projects p ON p.id = r.project_id WHERE r.id = ?", (rid,)).fetchone()))
        params = dict(conn.execute("SELECT key, value FROM run_params WHERE run_id = ? "
                                   "ORDER BY key", (rid,)).fetchall())
        rows = conn.execute(
            "SELECT t.id, t.name, t.attempt, t.status, t.started_at, t.finished_at, "
            "t.exit_code, t.signal, t.cpu_user_s, t.cpu_system_s, t.peak_rss_bytes, "
            "t.script_hash, t.script_path, t.stdout_path, t.stderr_path, t.derived, s.tail "
            "FROM tasks t LEFT JOIN task_stderr s ON s.task_id = t.id "
            "WHERE t.run_id = ? ORDER BY t.started_at, t.name, t.attempt", (rid,)).fetchall()
        deps = {}
        for task_id, dep in conn.execute(
                "SELECT d.task_id, d.depends_on FROM task_deps d JOIN tasks t "
                "ON t.id = d.task_id WHERE t.run_id = ? ORDER BY d.depends_on", (rid,)):
            deps.setdefault(task_id, []).append(dep)
    finally:
        if own:
            conn.close()
    now = time.time()
    run_dir = run["run_dir"]
    tasks = []
    for (tid, name, attempt, status, started, finished, code, sig, cpu_u, cpu_s, rss, sh,
         script, out, err, derived, tail) in rows:
        tasks.append({
            "task": name, "attempt": attempt, "status": status, "started_at": started,
            "finished_at": finished, "duration_s": _duration(status, started, finished, now),
            "exit_code": code, "signal": sig, "cpu_user_s": cpu_u, "cpu_system_s": cpu_s,
            "peak_rss_bytes": rss, "script_hash": sh,
            "script_path": task_path_from_stored(script, run_dir, home),
            "stdout_path": task_path_from_stored(out, run_dir, home),
            "stderr_path": task_path_from_stored(err, run_dir, home),
            "depends_on": deps.get(tid, []),
            "stderr_tail": tail if status == "failed" else None, "derived": derived})
    run_id = run.pop("uid")
    run.pop("id")
    result = {"run_id": run_id, **run,
              "duration_s": _duration(run["status"], run["started_at"], run["finished_at"], now),
              "run_dir": from_stored(run_dir, home), "params": params, "tasks": tasks}
    last = {}
    for t in tasks:
        last[t["task"]] = t
    result["order"] = dependency_order(list(last.values()))
    return result
