"""workflow-manager: executions, their params and event logs, from executions.db.

Executions become runs (project = the workflow's name), params become params.
Phase* and Task* events become tasks with their status changes; TaskProgress,
Agent* and StateFileCreated events, and RawOutput, become log fragments. The
database is opened read-only.

What workflow-manager writes, and how it is read (its ``database.rs`` and
``runtime.rs``):

* A restarting manager rewrites every execution it left ``Running`` as
  ``Failed`` with end = start and no exit code: that pattern is imported as
  ``interrupted``, ending at its last stored log. A ``Running`` execution whose
  workflow binary no longer runs on this host is ``interrupted`` too.
* ``execution_logs.timestamp`` is when a parser flushed its batch (50 lines, or
  the first line more than 5 s after its last flush, or end of stream), and the
  events carry no time of their own. Each line's time is bounded from the flushes
  (see :func:`event_times`) and marked derived when not exact.
* The process's exit is recorded independently of the parsers' last flush, so
  for a while a finished execution may still lack its last logs: it is stored
  as not final, and the signature covers its logs so that the next sync re-reads
  it when they arrive.
"""

import json
import math
import os
import sqlite3
import time

from ottolytics.store.liveness import pids
from ottolytics.sources.common import check_regular, known, needs_writing, save_runs
from ottolytics.sources.timestamps import to_unix
from ottolytics.store.statuses import OUTCOMES

SOURCE = "workflow-manager"
STATUS = {"Completed": "success", "Failed": "failed", "Running": "running",
          "NotStarted": "running"}
TIMEOUT_S = 1.0
BATCH = 50            # a parser flushes when this many lines are pending...
FLUSH_AFTER_S = 5.0   # ...or when a line arrives more than this after its last flush
SAME_FLUSH_S = 0.1    # rows of one flush are written within this of each other
AT_EXIT_S = 1.0       # a stream's last write this close to the exit may be its end
FLUSH_GRACE_S = 60.0  # after the exit, the parsers' last flush may still be coming


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


def event_times(rows, started, ended):
    """Estimate when each log line arrived, from the times its batches were flushed.

    *rows* are dicts with ``id``, ``stream`` and ``flushed`` (unix seconds), in
    ``sequence`` order, which is the order the lines arrived in across both
    streams. Sets ``at`` (the estimate) and ``exact`` on each.

    A parser's batch holds the lines that arrived after its previous flush (or the
    execution's start). Every line but the one that triggered the flush arrived
    within 5 s of that previous flush, else it would have triggered it; the
    trigger (the 50th line, or the first one after 5 s) arrived at the flush. The
    last batch of a stream may instead be the end-of-stream flush: when it came at
    the exit, its last line is put at the flush, not exactly. Then a line arrived
    no earlier than any line before it, and no later than any line after it.
    """
    streams = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        streams.setdefault(row["stream"], []).append(row)
    for stream_rows in streams.values():
        batches = []
        for row in stream_rows:
            batch = batches[-1] if batches else None
            if batch and row["id"] == batch[-1]["id"] + 1 and len(batch) < BATCH and \
                    row["flushed"] - batch[0]["flushed"] < SAME_FLUSH_S:
                batch.append(row)
            else:
                batches.append([row])
        previous = started
        for i, batch in enumerate(batches):
            flushed = batch[0]["flushed"]
            for row in batch:
                row["lo"], row["hi"], row["guess"] = previous, \
                    max(previous, min(flushed, previous + FLUSH_AFTER_S)), None
            if len(batch) >= BATCH or flushed - previous > FLUSH_AFTER_S:
                last = batch[-1]
                at_exit = i == len(batches) - 1 and len(batch) < BATCH and \
                    ended is not None and flushed >= ended - AT_EXIT_S
                if at_exit:  # the trigger, or the end-of-stream flush of a waiting line
                    last["hi"], last["guess"] = flushed, flushed
                else:
                    last["lo"] = last["hi"] = flushed
            previous = max(previous, flushed)
    lo = float("-inf")
    for row in rows:
        lo = row["lo"] = max(lo, row["lo"])
    hi = float("inf")
    for row in reversed(rows):
        hi = row["hi"] = min(hi, row["hi"])
    for row in rows:
        low, high = row["lo"], row["hi"]
        if abs(high - low) <= 0.001:
            row["at"], row["exact"] = high, row["guess"] is None
        elif low > high:  # times that contradict their order: a clock moved
            row["at"], row["exact"] = high, False
        else:
            guess = row["guess"] if row["guess"] is not None else (low + high) / 2
            row["at"], row["exact"] = min(max(guess, low), high), False
    return rows


def _events_to_tasks(rows, run_final, end_at):
    """Tasks and log fragments from an execution's rows, in sequence order."""
    tasks, order, logs = {}, [], []
    for row in rows:
        kind, at, inexact = row["kind"], row["at"], not row["exact"]
        data = row["data"]
        key = None
        if kind.startswith("Phase"):
            key = f"phase:{data.get('name') if data.get('name') is not None else data.get('phase')}"
        elif kind.startswith("Task"):
            key = str(data.get("task_id")) if data.get("task_id") is not None else None
        if kind in ("PhaseStarted", "TaskStarted") and key:
            task = tasks.get(key)
            if task is None:
                task = tasks[key] = {"name": key, "status": "running", "started_at": at,
                                     "finished_at": None, "changes": [], "derived": set()}
                order.append(key)
                if inexact:
                    task["derived"].add("started_at")
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
            if inexact:
                task["derived"].add("finished_at")
            if new == "failed" and data.get("error"):
                task["stderr_tail"] = str(data["error"])[-4096:]
        else:
            task_key = str(data["task_id"]) if data.get("task_id") is not None else None
            if kind == "RawOutput":
                stream = row["stream"]
                text = data["line"] if isinstance(data.get("line"), str) else json.dumps(data)
            else:
                stream, text = "event", json.dumps(dict(data, type=kind))
            logs.append({"task": task_key if task_key in tasks else None, "stream": stream,
                         "seq": row["sequence"], "at": at, "data": text})
    result = []
    for key in order:
        task = tasks[key]
        if task["status"] == "running" and run_final:
            task["changes"].append(("running", "interrupted", end_at,
                                    "the execution ended before this finished"))
            task["status"], task["finished_at"] = "interrupted", end_at
            task["derived"].update({"status", "finished_at"})
        result.append(task)
    return result, logs


def _rows(src, ex, started, report, path):
    """The execution's log rows in sequence order, with their estimated times."""
    rows = []
    for rid, sequence, stamp, kind, raw in src.execute(
            "SELECT id, sequence, timestamp, log_type, log_data FROM execution_logs "
            "WHERE execution_id = ? ORDER BY sequence, id", (ex["id"],)):
        try:
            data = json.loads(raw) if raw else {}
        except (TypeError, ValueError):
            report.skip(SOURCE, f"{path}#{ex['id']}/{sequence}",
                        f"{kind} event with invalid JSON; skipped")
            continue
        if not isinstance(data, dict):
            data = {"line": data} if kind == "RawOutput" else {"message": data}
        kind = str(kind)
        # Events come through the stderr parser; RawOutput says which stream.
        stream = data.get("stream") if kind == "RawOutput" and data.get("stream") in (
            "stdout", "stderr") else "stderr"
        flushed = to_unix(stamp)
        rows.append({"id": rid if isinstance(rid, int) else 0, "sequence": sequence,
                     "kind": kind, "data": data, "stream": stream,
                     "flushed": flushed if flushed is not None else started})
    return rows


def _restarted(ex):
    """Rewritten by a restarting manager: Failed, end = start, no exit code."""
    return ex["status"] == "Failed" and ex.get("exit_code") is None and \
        ex.get("end_time") is not None and ex.get("end_time") == ex.get("start_time")


def signature(ex, stats, now, live):
    """(signature, final) of an execution, from its row, its logs' count and last id,
    and for a Running one whether its binary still runs.

    Final once the manager has finished it and its parsers' last flush is past.
    """
    end = to_unix(ex.get("end_time"))
    final = _restarted(ex) or (ex["status"] in ("Completed", "Failed") and end is not None
                               and now - end >= FLUSH_GRACE_S)
    count, last_id = stats.get(ex["id"], (0, None))
    state = "final" if final else "open"
    if STATUS.get(ex["status"]) == "running":
        state = "live" if ex.get("binary_path") in live() else "gone"
    return (f"{ex.get('updated_at')}:{ex.get('status')}:{ex.get('end_time')}:{count}:"
            f"{last_id}:{state}", final)


def _time(value):
    """Unix seconds from one of workflow-manager's times; None if it is not one."""
    at = to_unix(value)
    return at if at is not None and math.isfinite(at) else None


def read_execution(src, ex, live, report, path):
    """One execution as an imported run (without signature); None (reported) if it
    can't be read."""
    ref = str(ex["id"])
    status = STATUS.get(ex["status"])
    if status is None:
        report.skip(SOURCE, f"{path}#{ref}", f"unknown status {ex['status']!r}")
        return None
    derived = set()
    raw_start = ex.get("start_time")
    started = _time(raw_start)
    if started is None and raw_start not in (None, ""):
        # workflow-manager always writes one (RFC 3339): no honest value replaces it
        report.skip(SOURCE, f"{path}#{ref}",
                    f"start_time {str(raw_start)[:80]!r} is not a time; execution skipped")
        return None
    if started is None:
        started = _time(ex.get("created_at"))  # the record's creation, at the start
        derived.add("started_at")
    if started is None:
        report.skip(SOURCE, f"{path}#{ref}", "no start time")
        return None
    raw_end = ex.get("end_time")
    finished = _time(raw_end)
    rows = _rows(src, ex, started, report, path)
    last_flush = max([r["flushed"] for r in rows], default=started)
    if (finished is None and raw_end not in (None, "")) or \
            (finished is not None and finished < started):
        # an unreadable end, or one before the start: never a negative duration;
        # the run lasted at least until its last log flush
        finished = max(last_flush, started)
        derived.add("finished_at")
    reason = None
    if _restarted(ex):
        status, reason = "interrupted", "the manager restarted while this ran"
    elif status == "running" and ex.get("binary_path") not in live():
        status, reason = "interrupted", "no live workflow process"
    if status == "interrupted":
        finished = max(last_flush, started)
        derived.update({"status", "finished_at"})
    # Only a manager that saw the exit wrote the streams' ends; one that died did not.
    event_times(rows, started, finished if status in OUTCOMES else None)
    tasks, logs = _events_to_tasks(rows, status != "running", finished or started)
    params = {r[0]: r[1] for r in src.execute(
        "SELECT param_name, param_value FROM execution_params WHERE execution_id = ?",
        (ex["id"],))}
    if ex.get("exit_code") is not None:
        params["exit_code"] = ex["exit_code"]
    if ex.get("workflow_id") is not None:
        params["workflow_id"] = ex["workflow_id"]
    changes = [(None, "running", started, None)]
    if status != "running":
        changes.append(("running", status, finished or started, reason))
    return {
        "source": SOURCE, "ref": ref, "uid": f"wm-{ref}",
        "project": ex.get("workflow_name") or ex.get("workflow_id") or "workflow",
        "status": status, "started_at": started,
        "finished_at": None if status == "running" else (finished or started),
        "args": [ex["binary_path"]] if ex.get("binary_path") else None,
        "derived": derived, "params": params, "tasks": tasks, "logs": logs,
        "changes": changes,
    }


def sync(store, path, report, progress=None):
    """Import executions.db at *path* into *store*."""
    uri = "file:" + os.path.abspath(path).replace("?", "%3F").replace("#", "%23") + "?mode=ro"
    try:
        check_regular(path)  # SQLite's own open would wait on a FIFO forever
    except OSError as exc:
        report.skip(SOURCE, path, f"{exc.strerror or exc}; nothing imported from it")
        return
    try:
        src = sqlite3.connect(uri, uri=True, timeout=TIMEOUT_S)
        src.row_factory = sqlite3.Row
        executions = [dict(r) for r in src.execute("SELECT * FROM executions")]
        needed = {"id", "workflow_id", "workflow_name", "status", "start_time", "end_time"}
        if executions and not needed <= set(executions[0]):
            raise sqlite3.DatabaseError(f"executions lacks {sorted(needed - set(executions[0]))}")
        stats = {r[0]: (r[1], r[2]) for r in src.execute(
            "SELECT execution_id, COUNT(*), MAX(id) FROM execution_logs GROUP BY execution_id")}
    except sqlite3.Error as exc:
        reason = "locked" if "locked" in str(exc) else f"not a workflow-manager database ({exc})"
        report.skip(SOURCE, path, f"{reason}; nothing imported from it")
        return
    seen = known(store.conn, SOURCE)
    cache = []

    def live():
        if not cache:
            cache.append(_live_binaries())
        return cache[0]

    now = time.time()
    runs = []
    try:
        for ex in executions:
            sig, final = signature(ex, stats, now, live)
            if not needs_writing(seen, {"source": SOURCE, "ref": str(ex["id"]),
                                        "signature": sig}, report):
                continue
            run = read_execution(src, ex, live, report, path)
            if run is not None:
                runs.append(dict(run, signature=sig, final=final))
                if progress:
                    progress(1)
    except sqlite3.Error as exc:
        report.skip(SOURCE, path, f"stopped reading: {exc}")
    finally:
        src.close()
    save_runs(store, runs, report)
