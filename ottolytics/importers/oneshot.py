"""oneshot: sessions (``oneshot.json``) and their NDJSON activity logs.

A session becomes a run. Its state history becomes the run's status changes,
each with oneshot's own state name in the reason. Worker and auditor
iterations become the tasks ``worker`` and ``auditor``: one attempt per
iteration, each lasting from entering its state until the next state. The
activity log (``oneshot-log.json`` or ``<id>-oneshot-log.json`` beside the
session) becomes log fragments. A session still in a working state whose
last process is gone is imported as ``interrupted``.
"""

import json
import os
from os.path import basename, dirname, isdir, join

from ..liveness import pid_alive
from . import known, needs_writing, read_utf8, save_runs
from .timestamps import to_unix

SOURCE = "oneshot"
RUN_STATUS = {"COMPLETED": "success", "FAILED": "failed", "REJECTED": "failed",
              "INTERRUPTED": "interrupted"}
WORKING = ("CREATED", "WORKER_EXECUTING", "AUDITOR_EXECUTING", "AUDIT_PENDING",
           "REITERATION_PENDING", "RECOVERY_PENDING")
# How an iteration ended, from the state that followed it.
WORKER_END = {"AUDITOR_EXECUTING": "success", "AUDIT_PENDING": "success",
              "COMPLETED": "success", "FAILED": "failed", "RECOVERY_PENDING": "failed",
              "REJECTED": "failed", "INTERRUPTED": "interrupted"}
AUDITOR_END = {"COMPLETED": ("success", "approved"),
               "REITERATION_PENDING": ("success", "asked for another iteration"),
               "REJECTED": ("success", "rejected the work"),
               "AUDIT_PENDING": ("success", None),
               "FAILED": ("failed", None), "RECOVERY_PENDING": ("failed", None),
               "INTERRUPTED": ("interrupted", None)}


def find_sessions(path):
    """oneshot.json files at or below *path* (a directory or one session file)."""
    if not isdir(path):
        return [path]
    found = []
    for root, _dirs, files in os.walk(path):
        if "oneshot.json" in files:
            found.append(join(root, "oneshot.json"))
    return sorted(found)


class BadSession(Exception):
    pass


def _load(path):
    text = read_utf8(path, BadSession)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadSession(f"not valid JSON, truncated? ({exc})") from None
    if not isinstance(data, dict) or not data.get("oneshot_id") or "state" not in data:
        raise BadSession("lacks oneshot_id or state")
    if not isinstance(data.get("history", []), list):
        raise BadSession("history is not a list")
    return data


def _activity_log(session_dir, session_id):
    for name in (f"{session_id}-oneshot-log.json", "oneshot-log.json"):
        path = join(session_dir, name)
        if os.path.exists(path):
            return path
    return None


def _log_fragments(path, report):
    fragments = []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as exc:
        report.skip(SOURCE, path, f"activity log unreadable: {exc.strerror or exc}")
        return fragments
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
            entry = json.loads(text)
        except UnicodeDecodeError:
            report.skip(SOURCE, f"{path}:{number}", "bytes that are not UTF-8; line skipped")
            continue
        except ValueError:
            report.skip(SOURCE, f"{path}:{number}", "invalid JSON; line skipped")
            continue
        at = None
        if isinstance(entry, dict):
            at = to_unix(entry.get("ts") or entry.get("timestamp") or entry.get("time"))
        fragments.append({"stream": "event", "seq": len(fragments) + 1, "at": at, "data": text})
    return fragments


def _iterations(history, run_open, now_end):
    """worker/auditor tasks from the state history."""
    tasks, counts = [], {"worker": 0, "auditor": 0}
    for i, entry in enumerate(history):
        state = entry.get("state")
        role = {"WORKER_EXECUTING": "worker", "AUDITOR_EXECUTING": "auditor"}.get(state)
        if role is None:
            continue
        counts[role] += 1
        start = to_unix(entry.get("ts"))
        nxt = history[i + 1] if i + 1 < len(history) else None
        task = {"name": role, "attempt": counts[role], "started_at": start,
                "deps": ["worker"] if role == "auditor" else None}
        if nxt is None:
            if run_open:
                task["status"] = "running"
                task["changes"] = [(None, "running", start, None)]
            else:
                task["status"], task["finished_at"] = "interrupted", now_end
                task["derived"] = {"status", "finished_at"}
                task["changes"] = [(None, "running", start, None),
                                   ("running", "interrupted", now_end, "session ended")]
        else:
            end = to_unix(nxt.get("ts"))
            if role == "worker":
                status, verdict = WORKER_END.get(nxt.get("state"), "success"), None
            else:
                status, verdict = AUDITOR_END.get(nxt.get("state"), ("success", None))
            reason = verdict or nxt.get("reason")
            task.update(status=status, finished_at=end,
                        changes=[(None, "running", start, None),
                                 ("running", status, end, reason)])
        tasks.append(task)
    return tasks


def read_session(path, report):
    data = _load(path)
    session_id = str(data["oneshot_id"])
    history = [h for h in data.get("history") or [] if isinstance(h, dict)]
    state = data["state"]
    started = to_unix(data.get("created_at")) or (to_unix(history[0].get("ts"))
                                                  if history else None)
    if started is None:
        raise BadSession("no created_at and no history: cannot place the run in time")
    updated = to_unix(data.get("updated_at")) or max(
        [to_unix(h.get("ts")) or started for h in history] + [started])
    derived = set()
    status = RUN_STATUS.get(state)
    if status is None:
        if state not in WORKING:
            raise BadSession(f"unknown state {state!r}")
        last_pid = next((h.get("pid") for h in reversed(history) if h.get("pid")), None)
        status = "running" if last_pid and pid_alive(int(last_pid)) else "interrupted"
        if status == "interrupted":
            derived.update({"status", "finished_at"})
    changes, previous = [], None
    for h in history:
        mapped = RUN_STATUS.get(h.get("state"), "running")
        reason = h.get("state") + (f": {h['reason']}" if h.get("reason") else "")
        changes.append((previous, mapped, to_unix(h.get("ts")) or started, reason))
        previous = mapped
    if not changes:
        changes.append((None, "running", started, state))
        previous = "running"
    if status == "interrupted" and previous != "interrupted":
        changes.append((previous, "interrupted", updated, "the session's process is gone"))
    tasks = _iterations(history, status == "running", updated)
    for key in ("worker_result", "auditor_result"):
        result = data.get(key)
        role = key.split("_")[0]
        mine = [t for t in tasks if t["name"] == role]
        if result and mine and mine[-1]["status"] == "failed":
            mine[-1]["stderr_tail"] = json.dumps(result)[-4096:]
    session_dir = dirname(os.path.abspath(path))
    log_path = _activity_log(session_dir, session_id)
    logs = _log_fragments(log_path, report) if log_path else []
    for fragment in logs:
        fragment["at"] = fragment["at"] or started
    for key in ("worker_result", "auditor_result"):
        if data.get(key) is not None:
            logs.append({"stream": key, "seq": len(logs) + 1, "at": updated,
                         "data": json.dumps(data[key])})
    params = {}
    if isinstance(data.get("variables"), dict):
        params.update(data["variables"])
    for key in ("max_iterations", "iteration_count", "version"):
        if data.get(key) is not None:
            params[key] = data[key]
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    project = metadata.get("project") or basename(session_dir) or "oneshot"
    log_size = os.path.getsize(log_path) if log_path else 0
    return {
        "source": SOURCE, "ref": session_id, "uid": f"oneshot-{session_id}",
        "project": str(project), "status": status, "started_at": started,
        "finished_at": None if status == "running" else updated,
        "cwd": metadata.get("cwd"), "run_dir": session_dir, "derived": derived,
        "params": params, "tasks": tasks, "logs": logs, "changes": changes,
        "signature": f"{data.get('updated_at')}:{len(history)}:{state}:{log_size}",
        "final": state in RUN_STATUS,
    }


def sync(store, path, report, progress=None):
    """Import the oneshot sessions at or below *path* into *store*."""
    seen = known(store.conn, SOURCE)
    runs = []
    for session in find_sessions(path):
        try:
            run = read_session(session, report)
        except BadSession as exc:
            report.skip(SOURCE, session, str(exc))
            continue
        if needs_writing(seen, run, report):
            runs.append(run)
            if progress:
                progress(1)
    save_runs(store, runs, report)
