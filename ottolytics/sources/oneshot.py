"""oneshot: sessions (``oneshot_<local time>.json``) and their NDJSON activity logs.

What oneshot writes (jjurach/oneshot e6772dd): one file per session,
``~/.oneshot/sessions/oneshot_<local %Y-%m-%d_%H-%M-%S>.json`` (or under
``--logs-dir``), rewritten whole on every save. ``created_at`` and
``updated_at`` are naive ISO strings of the UTC clock. Each history entry is
``{"state", "ts"}`` where ``ts`` is ``datetime.utcnow().timestamp()``: the UTC
wall clock read as local time, so it is the true time minus the local UTC
offset. No pid and no reason are written. The activity log is
``metadata.session_log_path`` (by default ``<id without "oneshot_">-oneshot-log.json``),
relative to ``metadata.cwd``; each line is ``{"timestamp": time.time(), "data",
"executor": "worker"|"auditor", "is_heartbeat"}``.

A session becomes a run; its project is the name of ``metadata.cwd``. The
history becomes the run's status changes, with oneshot's state names as the
reasons. Worker and auditor iterations become the tasks ``worker`` and
``auditor``, one attempt per iteration, lasting from entering the state until
the next one. The history times are put right by the session's own UTC offset
(the local time in its id against ``created_at``) and marked derived. Log lines
become fragments of the iteration they were written in.

A session still in a working state has no pid to ask: it is ``running`` while
it shows signs of life (a save or a log line) within its inactivity timeout,
otherwise ``interrupted``, both marked derived.
"""

import json
import math
import os
import re
import time
from datetime import datetime, timezone
from os.path import basename, isabs, isdir, isfile, join

from ottolytics.sources.common import NotRegular, known, needs_writing, open_regular, read_utf8, save_runs
from ottolytics.sources.timestamps import to_unix

SOURCE = "oneshot"
SESSION_FILE = re.compile(r"^oneshot_.*\.json$")
ID_TIME = re.compile(r"^oneshot_(\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})$")
RUN_STATUS = {"COMPLETED": "success", "FAILED": "failed", "REJECTED": "failed",
              "INTERRUPTED": "interrupted"}
WORKING = ("CREATED", "WORKER_EXECUTING", "AUDITOR_EXECUTING", "AUDIT_PENDING",
           "REITERATION_PENDING", "RECOVERY_PENDING")
# How an iteration ended, from the state that followed it (oneshot's state.py).
WORKER_END = {"AUDIT_PENDING": "success", "RECOVERY_PENDING": "failed",
              "FAILED": "failed", "INTERRUPTED": "interrupted"}
AUDITOR_END = {"COMPLETED": ("success", "approved"),
               "REITERATION_PENDING": ("success", "asked for another iteration"),
               "REJECTED": ("success", "rejected the work"),
               "FAILED": ("failed", None), "INTERRUPTED": ("interrupted", None)}
# oneshot's default inactivity timeout (config.py), when the session names none.
DEFAULT_TIMEOUT_S = 300.0
QUARTER_HOUR = 900


def _now():
    return time.time()


def find_sessions(path):
    """Session files at or below *path* (a directory or one session file)."""
    if not isdir(path):
        return [path]
    found = []
    for root, _dirs, files in os.walk(path):
        found += [join(root, n) for n in files
                  if SESSION_FILE.match(n) and not n.endswith("-oneshot-log.json")]
    return sorted(found)


class BadSession(Exception):
    pass


def _load(path):
    text = read_utf8(path, BadSession)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadSession(f"not valid JSON, truncated? ({exc})") from None
    if not isinstance(data, dict) or "state" not in data:
        raise BadSession("lacks state: not a oneshot session")
    if not isinstance(data.get("history", []), list):
        raise BadSession("history is not a list")
    return data


def _naive_utc(value):
    """A naive ISO string of the UTC clock as a naive datetime; None if unreadable."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def _number(value):
    """A finite number as float; None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value):
        return float(value)
    return None


def _state(value):
    return value if isinstance(value, str) else None


def _host_offset(instant):
    """This host's UTC offset (seconds) at the unix time *instant*; None if unknown."""
    try:
        return datetime.fromtimestamp(instant, timezone.utc).astimezone() \
            .utcoffset().total_seconds()
    except (OverflowError, OSError, ValueError):
        return None


def history_clock(session_id, data, history):
    """A function putting oneshot's history ``ts`` right, to true unix time.

    ``ts`` is the UTC wall clock read as local time. The session's UTC offset
    comes from the session itself: oneshot names it from the local clock and
    writes ``created_at`` from the UTC clock a moment later, so their difference,
    rounded to the quarter hour, is the offset. When this host's zone has the
    same offset at that moment, its rules read each ``ts`` back (right across a
    daylight-saving switch, if it is the same zone); otherwise the offset is
    added as it is. Without a name in oneshot's form: the last ``ts`` against
    ``updated_at``, written right after it. Without either: this host's zone.
    """
    created = _naive_utc(data.get("created_at"))
    offset = None
    match = ID_TIME.match(session_id)
    try:
        local = datetime.strptime(match.group(1), "%Y-%m-%d_%H-%M-%S") if match else None
    except ValueError:
        local = None
    if local and created:
        offset = _quarter((local - created).total_seconds())
        if offset is not None and \
                _host_offset(created.replace(tzinfo=timezone.utc).timestamp()) == offset:
            offset = None
        elif offset is not None:
            return lambda ts: ts + offset
    elif history:
        updated = _naive_utc(data.get("updated_at"))
        last_ts = _number(history[-1].get("ts"))
        if updated and last_ts is not None:
            offset = _quarter(updated.replace(tzinfo=timezone.utc).timestamp() - last_ts)
            if offset is not None:
                return lambda ts: ts + offset

    def host_rules(ts):
        try:
            return datetime.fromtimestamp(ts).replace(tzinfo=timezone.utc).timestamp()
        except (OverflowError, OSError, ValueError):
            return ts
    return host_rules


def _quarter(diff):
    """*diff* seconds as a UTC offset: to the quarter hour; None if it is not one."""
    offset = round(diff / QUARTER_HOUR) * QUARTER_HOUR
    return offset if abs(diff - offset) < 120 and abs(offset) <= 14 * 3600 else None


def _resolve_log(data, metadata, session_dir, session_id, report, path):
    """The activity log's path, or None: session_log_path (or oneshot's default
    name) against the session's cwd, else beside the session file."""
    name = metadata.get("session_log_path")
    if not isinstance(name, str) or not name:
        name = "oneshot-log.json"  # oneshot's name when the session has no id
        if data.get("oneshot_id"):
            prefix = session_id[len("oneshot_"):] if session_id.startswith("oneshot_") \
                else session_id
            name = f"{prefix}-oneshot-log.json"
    cwd = metadata.get("cwd") if isinstance(metadata.get("cwd"), str) else None
    candidates = [name] if isabs(name) else \
        [join(d, name) for d in (cwd, session_dir) if d]
    for candidate in candidates:
        if os.path.exists(candidate):
            if not isfile(candidate):
                report.skip(SOURCE, path, "activity log is not a regular file")
                return None
            if candidate.endswith(".md"):
                report.skip(SOURCE, candidate, "activity log in markdown form: not read")
                return None
            return candidate
    return None


def _log_lines(path, report, since, until):
    """[(at, executor, text)] of the NDJSON activity log between *since* and *until*."""
    entries = []
    outside = 0
    try:
        with open_regular(path) as f:
            lines = f.read().split(b"\n")
    except OSError as exc:
        why = "is" if isinstance(exc, NotRegular) else "unreadable:"
        report.skip(SOURCE, path, f"activity log {why} {exc.strerror or exc}")
        return entries
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
        why = _not_activity(entry)
        if why:
            report.skip(SOURCE, f"{path}:{number}", f"not an activity-log line ({why}); "
                        "line skipped")
            continue
        at = float(entry["timestamp"])
        # A log named on the command line can be shared by several sessions:
        # lines outside this session's time belong to another one (or to no
        # oneshot session at all: session_log_path can name any file).
        if at < since - 1 or (until is not None and at > until + 5):
            outside += 1
            continue
        entries.append((at, entry["executor"], text))
    if outside:
        report.skip(SOURCE, path, f"{outside} lines outside the session's time "
                    "(another session's); skipped")
    return entries


ACTIVITY_KEYS = {"timestamp", "data", "executor", "is_heartbeat"}


def _not_activity(entry):
    """Why the JSON value *entry* is not a line oneshot's activity log writes (its
    TimestampedActivity record: exactly timestamp, data, executor, is_heartbeat),
    or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    if set(entry) != ACTIVITY_KEYS:
        return "keys are not timestamp, data, executor, is_heartbeat"
    at = entry["timestamp"]
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        return "timestamp is not a unix time"
    if not isinstance(entry["executor"], (str, type(None))):
        return "executor is not a name"
    if not isinstance(entry["is_heartbeat"], bool):
        return "is_heartbeat is not true or false"
    return None


def _iterations(history, times, status, end):
    """worker/auditor tasks from the state history; *times* are its corrected times."""
    tasks, counts = [], {"worker": 0, "auditor": 0}
    for i, entry in enumerate(history):
        role = {"WORKER_EXECUTING": "worker", "AUDITOR_EXECUTING": "auditor"}.get(
            _state(entry.get("state")))
        if role is None:
            continue
        counts[role] += 1
        start = times[i]
        nxt = history[i + 1] if i + 1 < len(history) else None
        task = {"name": role, "attempt": counts[role], "started_at": start,
                "deps": ["worker"] if role == "auditor" else None,
                "derived": {"started_at", "finished_at"}}
        if nxt is None:
            if status == "running":
                task.update(status="running", derived={"started_at"},
                            changes=[(None, "running", start, None)])
            else:
                finish = max(end, start)
                task.update(status="interrupted", finished_at=finish,
                            changes=[(None, "running", start, None),
                                     ("running", "interrupted", finish,
                                      "the session stopped here")])
                task["derived"].add("status")
        else:
            finish = times[i + 1]
            if role == "worker":
                result, verdict = WORKER_END.get(_state(nxt.get("state")), "success"), None
            else:
                result, verdict = AUDITOR_END.get(_state(nxt.get("state")), ("success", None))
            task.update(status=result, finished_at=finish,
                        changes=[(None, "running", start, None),
                                 ("running", result, finish, verdict)])
        tasks.append(task)
    return tasks


def _owner(tasks, at, executor):
    """The attempt of *executor* that wrote a log line at *at*: the last one that
    had started by then (oneshot enters the state before it starts the
    executor); a line older than every attempt goes to the first."""
    mine = [t for t in tasks if t["name"] == executor and t["started_at"] is not None]
    owner = mine[0] if mine else None
    for task in mine:
        if task["started_at"] <= at + 0.001:
            owner = task
    return owner


def read_session(path, report):
    data = _load(path)
    stem = basename(path)[:-len(".json")] if path.endswith(".json") else basename(path)
    session_id = str(data.get("oneshot_id") or stem)
    history = [h for h in data.get("history") or [] if isinstance(h, dict)]
    state = data["state"]
    if not isinstance(state, str) or (state not in RUN_STATUS and state not in WORKING):
        raise BadSession(f"unknown state {state!r}")
    started = to_unix(data.get("created_at"))
    clock = history_clock(session_id, data, history)

    def fix(ts):
        value = _number(ts)
        return None if value is None else clock(value)

    if started is None:
        started = fix(history[0].get("ts")) if history else None
    if started is None:
        raise BadSession("no created_at and no history: cannot place the run in time")
    updated = to_unix(data.get("updated_at")) or max(
        [fix(h.get("ts")) or started for h in history] + [started])
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    session_dir = os.path.dirname(os.path.abspath(path))
    final = state in RUN_STATUS
    log_path = _resolve_log(data, metadata, session_dir, session_id, report, path)
    lines = _log_lines(log_path, report, started, updated if final else None) \
        if log_path else []
    last_sign = max([updated] + [at for at, _e, _t in lines if at is not None])

    derived = set()
    status = RUN_STATUS.get(state)
    if status is None:
        timeout = _number(metadata.get("initial_timeout"))
        timeout = timeout if timeout and timeout > 0 else DEFAULT_TIMEOUT_S
        status = "running" if _now() - last_sign <= timeout else "interrupted"
        derived.add("status")
        if status == "interrupted":
            derived.add("finished_at")
    finished = None if status == "running" else (updated if final else last_sign)

    changes, previous = [], None
    # An entry without a readable ts takes the time of the one before it.
    times, at = [], started
    for h in history:
        at = fix(h.get("ts")) or at
        times.append(at)
    for h, at in zip(history, times):
        mapped = RUN_STATUS.get(_state(h.get("state")), "running")
        reason = str(h.get("state")) + (f": {h['reason']}" if h.get("reason") else "")
        changes.append((previous, mapped, at, reason))
        previous = mapped
    if not changes:
        changes.append((None, "running", started, state))
        previous = "running"
    if status == "interrupted" and previous != "interrupted":
        changes.append((previous, "interrupted", finished,
                        f"{state}: no sign of life within its inactivity timeout"))
    tasks = _iterations(history, times, status, finished)

    logs = []
    for at, executor, text in lines:
        owner = _owner(tasks, at, executor) if at is not None and executor else None
        fragment = {"stream": "event", "seq": len(logs) + 1,
                    "at": at if at is not None else started, "data": text}
        if owner:
            fragment.update(task=owner["name"], attempt=owner["attempt"])
        logs.append(fragment)
    for key in ("worker_result", "auditor_result"):
        if data.get(key) is not None:
            logs.append({"stream": key, "seq": len(logs) + 1, "at": updated,
                         "data": json.dumps(data[key])})

    params = {}
    if isinstance(data.get("variables"), dict):
        params.update(data["variables"])
    for key in ("executor_type", "max_iterations"):
        if metadata.get(key) is not None:
            params[key] = metadata[key]
    if data.get("iteration_count") is not None:
        params["iteration_count"] = data["iteration_count"]
    cwd = metadata.get("cwd") if isinstance(metadata.get("cwd"), str) else None
    project = basename(cwd.rstrip("/")) if cwd else ""
    log_size = os.path.getsize(log_path) if log_path else 0
    return {
        "source": SOURCE, "ref": session_id, "uid": f"oneshot-{session_id}",
        "project": project or "oneshot", "status": status, "started_at": started,
        "finished_at": finished, "cwd": cwd, "run_dir": session_dir, "derived": derived,
        "params": params, "tasks": tasks, "logs": logs, "changes": changes,
        # The status is part of it: a silent session turns interrupted without
        # any file changing.
        "signature": f"{data.get('updated_at')}:{len(history)}:{state}:{log_size}:{status}",
        # Never final: ``oneshot --resume`` takes up the latest session whatever
        # its state. Every session is parsed on each sync anyway; the signature
        # keeps an unchanged one from being written again.
        "final": False,
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
