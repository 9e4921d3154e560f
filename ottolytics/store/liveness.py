"""Is the process that is recording a run still alive? Recovery of stale runs.

A run or task left ``running`` after its recording process died (kill -9, a
crash, a reboot) is marked ``interrupted``. On the recording host this is
decided from the pid and the process start time (which catches pid reuse);
for another host, or a run with no recording process, by a maximum age.
"""

import os
import time

from ottolytics.store.events import derive_run_status, set_run_status, set_task_status
from ottolytics.core.paths import task_path_from_stored
from ottolytics.store.statuses import UNFINISHED, sql_in

DEFAULT_MAX_AGE_S = 24 * 3600
# A pid whose start time differs by more than this is another process.
START_TIME_TOLERANCE_S = 5.0


def hostname() -> str:
    return os.uname().nodename


def pids():
    """The pids of the processes on this host (from /proc; none elsewhere)."""
    try:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []


def _boot_time():
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _proc_stat(pid):
    """(state, start time in unix seconds) of *pid* from /proc, or (None, None)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None, None
    # The command name may hold spaces and parentheses; fields follow the last ')'.
    fields = data[data.rfind(b")") + 2:].split()
    boot = _boot_time()
    if boot is None or len(fields) < 20:
        return None, None
    return fields[0].decode(), boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_start_time(pid):
    """Wall-clock start of *pid* in unix seconds, or None where /proc is missing."""
    return _proc_stat(pid)[1]


def pid_alive(pid, started_at=None) -> bool:
    """True while *pid* runs and (when known) started at *started_at*."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    state, actual = _proc_stat(pid)
    if state == "Z":
        return False  # exited, not yet reaped by its parent
    if started_at is not None and actual is not None:
        if abs(actual - started_at) > START_TIME_TOLERANCE_S:
            return False  # the pid now belongs to another process
    return True


def _verdict(pid, pid_started_at, host, started_at, now, max_age_s, here):
    """None when the recorder may still be alive, else the reason it is not."""
    if pid is not None and host == here:
        if pid_alive(pid, pid_started_at):
            return None
        return f"recording process {pid} on {host} is gone"
    if now - (started_at or now) > max_age_s:
        return f"still running after {max_age_s / 3600:g} h with no live recorder to check"
    return None


def _task_last_seen(conn, task_id, fallback):
    """When a dead task was last seen: its newest log write, else *fallback*."""
    row = conn.execute("SELECT t.stdout_path, t.stderr_path, r.run_dir FROM tasks t "
                       "JOIN runs r ON r.id = t.run_id WHERE t.id = ?", (task_id,)).fetchone()
    seen = fallback
    if row is None:
        return seen
    for stored in row[:2]:
        if stored:
            try:
                seen = max(seen, os.stat(task_path_from_stored(stored, row[2])).st_mtime)
            except OSError:
                pass
    return seen


def _last_sign_of_life(conn, run_id, fallback):
    row = conn.execute(
        "SELECT max(max(coalesce(finished_at, 0), coalesce(started_at, 0))) FROM tasks "
        "WHERE run_id = ?", (run_id,)).fetchone()
    return max(fallback, row[0] or 0)


def recover_stale(store, max_age_s=DEFAULT_MAX_AGE_S, now=None):
    """Mark runs and tasks whose recorder is gone as interrupted.

    Returns a list of ``(run_uid, task_name_or_None, reason)`` for what it marked.
    Open tasks are found through the running runs (a partial index), so this
    is cheap to call at every open. (A task left open in a run that was
    already ended is closed by the next ``run end`` instead.)
    """
    now = time.time() if now is None else now
    here = hostname()
    conn = store.conn
    tasks = conn.execute(
        "SELECT t.id, t.run_id, t.name, t.status, coalesce(t.pid, r.pid), "
        "CASE WHEN t.pid IS NULL THEN r.pid_started_at ELSE t.pid_started_at END, "
        "r.host, t.started_at, r.uid FROM runs r JOIN tasks t ON t.run_id = r.id "
        f"WHERE r.status = 'running' AND t.status IN {sql_in(UNFINISHED)}").fetchall()
    runs = conn.execute(
        "SELECT id, uid, status, pid, pid_started_at, host, started_at FROM runs "
        "WHERE status = 'running'").fetchall()
    stale_tasks = []
    for tid, rid, name, status, pid, pst, host, started, uid in tasks:
        reason = _verdict(pid, pst, host, started, now, max_age_s, here)
        if reason:
            stale_tasks.append((tid, rid, name, status, uid, reason))
    stale_runs = []
    for rid, uid, status, pid, pst, host, started in runs:
        reason = _verdict(pid, pst, host, started, now, max_age_s, here)
        if reason:
            stale_runs.append((rid, uid, reason))
    if not stale_tasks and not stale_runs:
        return []

    marked = []

    def mark(conn):
        marked.clear()
        for tid, rid, name, status, uid, reason in stale_tasks:
            current = conn.execute("SELECT status, started_at FROM tasks WHERE id = ?",
                                   (tid,)).fetchone()
            if current is None or current[0] != status:
                continue  # finished meanwhile
            set_task_status(conn, tid, rid, status, "interrupted",
                            _task_last_seen(conn, tid, current[1] or now), reason)
            marked.append((uid, name, reason))
        for rid, uid, reason in stale_runs:
            current = conn.execute("SELECT status, started_at FROM runs WHERE id = ?",
                                   (rid,)).fetchone()
            if current is None or current[0] != "running":
                continue
            # Close any task of this run still open: its recorder is the run's.
            for tid, name, status in conn.execute(
                    "SELECT id, name, status FROM tasks WHERE run_id = ? AND status IN "
                    + sql_in(UNFINISHED), (rid,)).fetchall():
                set_task_status(conn, tid, rid, status, "interrupted",
                                _task_last_seen(conn, tid, current[1]), reason)
                marked.append((uid, name, reason))
            status = derive_run_status(conn, rid)
            status = "interrupted" if status == "success" else status
            set_run_status(conn, rid, "running", status,
                           _last_sign_of_life(conn, rid, current[1]), reason)
            marked.append((uid, None, reason))

    store.write(mark)
    return marked
