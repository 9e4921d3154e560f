"""workflow-manager: executions, their params and event logs, from executions.db.

Executions become runs (project = the workflow's name), params become params.
Phase* and Task* events become tasks with their status changes; TaskProgress,
Agent* and StateFileCreated events, and RawOutput, become log fragments. A
``Running`` execution whose workflow binary no longer runs on this host is
imported as ``interrupted``. The database is opened read-only.
"""

import json
import os
import sqlite3

from ..liveness import pids
from . import known, save_runs
from .timestamps import to_unix

SOURCE = "workflow-manager"
STATUS = {"Completed": "success", "Failed": "failed", "Running": "running",
          "NotStarted": "running"}
TIMEOUT_S = 1.0


def _live_binaries():
    """Executables of the processes running on this host."""
    exes = set()
    for pid in pids():
        try:
            exes.add(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                exes.add(f.read().split(b"\0", 1)[0].decode("utf-8", "replace"))
        except OSError:
            pass
    return exes


def _text(data, *keys):
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in keys:
            if isinstance(data.get(key), str):
                return data[key]
    return json.dumps(data)


def _events_to_tasks(events, run_final, end_at, report, path):
    """Tasks and log fragments from an execution's ordered events."""
    tasks, order, logs = {}, [], []
    seq = 0
    for sequence, at, kind, raw in events:
        try:
            data = json.loads(raw) if raw else {}
        except (TypeError, ValueError):
            report.skip(SOURCE, f"{path}#{sequence}", f"{kind} event with invalid JSON; skipped")
            continue
        if not isinstance(data, dict):
            data = {"message": data}
        key = None
        if kind.startswith("Phase"):
            key = f"phase:{data.get('name') or data.get('phase')}"
        elif kind.startswith("Task"):
            key = str(data.get("task_id")) if data.get("task_id") is not None else None
        if kind in ("PhaseStarted", "TaskStarted") and key:
            task = tasks.get(key)
            if task is None:
                task = tasks[key] = {"name": key, "status": "running", "started_at": at,
                                     "finished_at": None, "changes": []}
                order.append(key)
            task["changes"].append((None if not task["changes"] else task["status"],
                                    "running", at, data.get("description")))
            task["status"] = "running"
        elif kind in ("PhaseCompleted", "TaskCompleted", "PhaseFailed", "TaskFailed") and key:
            new = "success" if kind.endswith("Completed") else "failed"
            task = tasks.get(key)
            if task is None:  # finished without a start event: it started then at the latest
                task = tasks[key] = {"name": key, "status": "running", "started_at": at,
                                     "changes": [(None, "running", at, None)],
                                     "derived": {"started_at"}}
                order.append(key)
            task["changes"].append(("running", new, at, data.get("error")))
            task["status"], task["finished_at"] = new, at
            if new == "failed" and data.get("error"):
                task["stderr_tail"] = str(data["error"])[-4096:]
        else:
            stream = "stdout" if kind == "RawOutput" else "event"
            if kind == "RawOutput" and isinstance(data, dict) and data.get("stream") in (
                    "stdout", "stderr"):
                stream = data["stream"]
            seq += 1
            task_key = str(data["task_id"]) if data.get("task_id") is not None else None
            text = _text(data, "line", "text", "data", "output", "message") \
                if kind == "RawOutput" else json.dumps(dict(data, type=kind))
            logs.append({"task": task_key if task_key in tasks else None, "stream": stream,
                         "seq": seq, "at": at, "data": text})
    result = []
    for key in order:
        task = tasks[key]
        if task["status"] == "running" and run_final:
            task["changes"].append(("running", "interrupted", end_at,
                                    "the execution ended before this finished"))
            task["status"], task["finished_at"] = "interrupted", end_at
            task.setdefault("derived", set()).add("status")
        result.append(task)
    return result, logs


def sync(store, path, report, progress=None):
    """Import executions.db at *path* into *store*."""
    uri = "file:" + os.path.abspath(path).replace("?", "%3F").replace("#", "%23") + "?mode=ro"
    try:
        src = sqlite3.connect(uri, uri=True, timeout=TIMEOUT_S)
        src.row_factory = sqlite3.Row
        executions = [dict(r) for r in src.execute("SELECT * FROM executions")]
        needed = {"id", "workflow_id", "workflow_name", "status", "start_time", "end_time"}
        if executions and not needed <= set(executions[0]):
            raise sqlite3.DatabaseError(f"executions lacks {sorted(needed - set(executions[0]))}")
    except sqlite3.Error as exc:
        reason = "locked" if "locked" in str(exc) else f"not a workflow-manager database ({exc})"
        report.skip(SOURCE, path, f"{reason}; nothing imported from it")
        return
    seen = known(store.conn, SOURCE)
    live = None
    runs = []
    try:
        for ex in executions:
            ref = str(ex["id"])
            signature = f"{ex.get('updated_at')}:{ex.get('status')}:{ex.get('end_time')}"
            previous = seen.get(ref)
            if previous and (previous[1] or previous[0] == signature):
                report.count("unchanged", SOURCE)
                continue
            status = STATUS.get(ex["status"])
            if status is None:
                report.skip(SOURCE, f"{path}#{ref}", f"unknown status {ex['status']!r}")
                continue
            derived = set()
            started = to_unix(ex.get("start_time")) or to_unix(ex.get("created_at"))
            if started is None:
                report.skip(SOURCE, f"{path}#{ref}", "no start time")
                continue
            finished = to_unix(ex.get("end_time"))
            if status == "running":
                live = live if live is not None else _live_binaries()
                if ex.get("binary_path") not in live:
                    status = "interrupted"
                    derived.update({"status", "finished_at"})
            events = src.execute(
                "SELECT sequence, timestamp, log_type, log_data FROM execution_logs "
                "WHERE execution_id = ? ORDER BY sequence", (ex["id"],)).fetchall()
            event_rows = [(r[0], to_unix(r[1]) or started, str(r[2]), r[3]) for r in events]
            if status == "interrupted" and finished is None:
                finished = max([e[1] for e in event_rows] + [to_unix(ex.get("updated_at"))
                                                              or started])
            tasks, logs = _events_to_tasks(event_rows, status != "running",
                                           finished or started, report, path)
            params = {r[0]: r[1] for r in src.execute(
                "SELECT param_name, param_value FROM execution_params WHERE execution_id = ?",
                (ex["id"],))}
            if ex.get("exit_code") is not None:
                params["exit_code"] = ex["exit_code"]
            if ex.get("workflow_id") is not None:
                params["workflow_id"] = ex["workflow_id"]
            changes = [(None, "running", started, None)]
            if status != "running":
                changes.append(("running", status, finished or started,
                                "no live workflow process" if status == "interrupted" else None))
            runs.append({
                "source": SOURCE, "ref": ref, "uid": f"wm-{ref}",
                "project": ex.get("workflow_name") or ex.get("workflow_id") or "workflow",
                "status": status, "started_at": started,
                "finished_at": None if status == "running" else (finished or started),
                "args": [ex["binary_path"]] if ex.get("binary_path") else None,
                "derived": derived, "params": params, "tasks": tasks, "logs": logs,
                "changes": changes, "signature": signature,
                "final": ex["status"] in ("Completed", "Failed"),
            })
            if progress:
                progress(1)
    except sqlite3.Error as exc:
        report.skip(SOURCE, path, f"stopped reading: {exc}")
    finally:
        src.close()
    save_runs(store, runs, report)
