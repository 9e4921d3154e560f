"""Recording events and the SQL that applies them to the store.

The recorder turns every call into a small event dict. Applied directly, or
written to the spool and replayed later, an event goes through the same
function here, so a spooled history lands exactly as a live one would.
Every status change is recorded: a task on the plain path (created running,
then closed once) is implied by its own row; any other change goes to
``status_log``. The ``transitions`` view shows both.

Events refer to runs by their uid (made on the client, so known even when the
store is unreachable) and to tasks by row id, or by a spool-local token when
the task was started while spooling.
"""

from ottolytics.store.statuses import OUTCOMES, TERMINAL_TASK, UNFINISHED


def storable(text):
    """*text* as SQLite can hold it: undecodable bytes shown as ``\\xNN``.

    Arguments, names and paths reach Python with undecodable bytes as lone
    surrogates (PEP 383), which SQLite's UTF-8 cannot take. A run's ``args``
    keep the exact bytes (JSON ``\\udcNN`` escapes, see ``_json_list``); in
    names and other text each such byte is written as ``\\xNN``.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("ascii")


def _clean(value):
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _storable(value):
    if isinstance(value, str):
        return value.isascii() or storable(value) is value
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def clean_event(ev):
    """*ev* with every string made storable; ``args`` stays exact (JSON escapes)."""
    if all(key == "args" or _storable(value) for key, value in ev.items()):
        return ev  # the usual case: nothing to copy
    out = {}
    for key, value in ev.items():
        if key == "args" or not isinstance(value, (str, dict, list)):
            out[key] = value
        else:
            out[key] = _clean(value)
    return out


def _json_list(items):
    """A list of strings as JSON, through the json module's own C encoder:
    importing json itself pulls in re and costs the shim ~2 ms."""
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:
        import json
        return json.dumps([str(i) for i in items])
    return "[" + ", ".join(quote(str(i)) for i in items) + "]"


def _transition(conn, run_id, task_id, old, new, at, reason=None):
    conn.execute(
        "INSERT INTO status_log(run_id, task_id, from_status, to_status, at, reason) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run_id, task_id, old, new, at, reason),
    )


def _log_task_change(conn, task_id, run_id, old, new, at, reason):
    """Log a task change that its row cannot imply: first write out the
    implied creation (if the task was still on the plain path), then the change."""
    row = conn.execute("SELECT status_logged, started_at FROM tasks WHERE id = ?",
                       (task_id,)).fetchone()
    if row is not None and row[0] == 0:
        _transition(conn, run_id, task_id, None, "running", row[1])
        conn.execute("UPDATE tasks SET status_logged = 1 WHERE id = ?", (task_id,))
    _transition(conn, run_id, task_id, old, new, at, reason)


def set_task_status(conn, task_id, run_id, old, new, at, reason=None):
    """Move a task to *new* (closing it if terminal) and log the change."""
    _log_task_change(conn, task_id, run_id, old, new, at, reason)
    conn.execute(
        "UPDATE tasks SET status = ?, finished_at = ? WHERE id = ?",
        (new, at if new not in UNFINISHED else None, task_id),
    )


def set_run_status(conn, run_id, old, new, at, reason=None):
    """Move a run to *new*, closing it if terminal, and log the transition."""
    conn.execute(
        "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
        (new, at if new != "running" else None, run_id),
    )
    _transition(conn, run_id, None, old, new, at, reason)


def derive_run_status(conn, run_id):
    """A run's status from the last attempt of each of its tasks.

    failed beats interrupted beats success; a run with no finished tasks
    succeeded. Tasks still running do not decide it.
    """
    rows = conn.execute(
        "SELECT t.status FROM tasks t WHERE t.run_id = ? AND t.attempt = "
        "(SELECT max(attempt) FROM tasks u WHERE u.run_id = t.run_id AND u.name = t.name)",
        (run_id,),
    ).fetchall()
    statuses = {r[0] for r in rows}
    if "failed" in statuses:
        return "failed"
    if "interrupted" in statuses:
        return "interrupted"
    return "success"


def _run_start(store, conn, ev, tokens):
    project_id = store.project_id(conn, ev["project"], ev["at"])
    args = ev.get("args")
    if args is not None:
        args = _json_list(args)
    rid = conn.execute(
        "INSERT INTO runs(uid, project_id, status, started_at, args, ottofile, user, host, "
        "cwd, pid, pid_started_at, run_dir, source, source_ref) "
        "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ev["uid"], project_id, ev["at"], args,
         ev.get("ottofile"), ev.get("user"), ev.get("host"), ev.get("cwd"), ev.get("pid"),
         ev.get("pid_started_at"), ev.get("run_dir"), ev.get("source") or "ottolytics",
         ev.get("source_ref")),
    ).lastrowid
    store._run_ids[ev["uid"]] = rid
    _transition(conn, rid, None, None, "running", ev["at"])
    params = ev.get("params")
    if params:
        _params(store, conn, {"run": ev["uid"], "params": params}, tokens)
    return rid


def _run_finish(store, conn, ev, tokens):
    rid = store.run_id(conn, ev["uid"])
    row = conn.execute("SELECT status FROM runs WHERE id = ?", (rid,)).fetchone()
    old = row[0]
    status = ev.get("status") or derive_run_status(conn, rid)
    if ev.get("size_bytes") is not None:
        conn.execute("UPDATE runs SET size_bytes = ? WHERE id = ?", (ev["size_bytes"], rid))
    if old == status:
        return rid
    if old in OUTCOMES and not ev.get("status"):
        return rid  # ended twice: the first word stands; an explicit status still wins
    # A run that recovery guessed was interrupted takes the real end when it comes.
    set_run_status(conn, rid, old, status, ev["at"], ev.get("reason"))
    return rid


_SQL = {}

# Optional task columns an event may carry, beyond the ones always written.
_START_FIELDS = ("pid", "pid_started_at", "script_path", "script_hash", "stdout_path",
                 "stderr_path")
_FINISH_FIELDS = ("exit_code", "signal", "cpu_user_s", "cpu_system_s", "peak_rss_bytes",
                  "stdout_path", "stderr_path")


def _insert_task_sql(columns):
    """INSERT naming only the columns that have values: binding a dozen NULLs
    costs the recorder ~15% of its time per task."""
    sql = _SQL.get(("insert", columns))
    if sql is None:
        sql = _SQL["insert", columns] = (
            f"INSERT INTO tasks({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})")
    return sql


def _finish_task_sql(columns, guarded):
    """UPDATE setting status, finished_at and only the fields that have values."""
    sql = _SQL.get(("finish", columns, guarded))
    if sql is None:
        sets = ", ".join(f"{c} = ?" for c in ("status", "finished_at") + columns)
        sql = f"UPDATE tasks SET {sets} WHERE id = ?"
        if guarded:
            sql += " AND status = 'running' AND status_logged = 0"
        _SQL["finish", columns, guarded] = sql
    return sql


def _task_start(store, conn, ev, tokens):
    rid = store.run_id(conn, ev["run"])
    attempt = ev.get("attempt")
    if attempt is None:  # a run other processes add to: ask the store
        attempt = conn.execute(
            "SELECT coalesce(max(attempt), 0) + 1 FROM tasks WHERE run_id = ? AND name = ?",
            (rid, ev["name"]),
        ).fetchone()[0]
    status = ev.get("status") or "running"
    at = ev["at"]
    # The plain path (created running, no reason) is implied by the row itself.
    logged = status != "running" or bool(ev.get("reason"))
    columns = ["run_id", "name", "attempt", "status", "started_at"]
    values = [rid, ev["name"], attempt, status, at]
    if status in TERMINAL_TASK:
        columns.append("finished_at")
        values.append(at)
    if logged:
        columns.append("status_logged")
        values.append(1)
    for field in _START_FIELDS:
        value = ev.get(field)
        if value is not None:
            columns.append(field)
            values.append(value)
    tid = conn.execute(_insert_task_sql(tuple(columns)), values).lastrowid
    if logged:
        _transition(conn, rid, tid, None, status, at, ev.get("reason"))
    deps = ev.get("deps")
    if deps:
        conn.executemany(
            "INSERT OR IGNORE INTO task_deps(task_id, depends_on) VALUES (?, ?)",
            [(tid, d) for d in deps],
        )
    if ev.get("tok"):
        tokens[ev["tok"]] = tid
    store._open_tasks[tid] = (rid, status)
    return tid


def _task_id(ev, tokens):
    tid = ev.get("task")
    if tid is None:
        tid = tokens.get(ev.get("tok"))
    if tid is None:
        raise KeyError(f"task token {ev.get('tok')!r} was never started")
    return tid


def _task_finish(store, conn, ev, tokens):
    tid = _task_id(ev, tokens)
    new = ev["status"]
    columns, values = [], [new, ev["at"]]
    for field in _FINISH_FIELDS:
        value = ev.get(field)
        if value is not None:
            columns.append(field)
            values.append(value)
    columns = tuple(columns)
    values.append(tid)
    reason = ev.get("reason")
    # Fast path: this connection started the task and it is still on the plain
    # path, so one guarded UPDATE says it all (the guard catches a change made
    # meanwhile by recovery in another process).
    row = store._open_tasks.pop(tid, None)
    if (row is not None and not reason and row[1] == "running"
            and conn.execute(_finish_task_sql(columns, True), values).rowcount == 1):
        rid, old = row
    else:
        row = conn.execute("SELECT run_id, status FROM tasks WHERE id = ?", (tid,)).fetchone()
        if row is None:
            raise KeyError(f"task {tid} is not in the store")
        rid, old = row
        if old in TERMINAL_TASK:
            return tid  # finished twice: the first word stands
        logged = conn.execute("SELECT status_logged FROM tasks WHERE id = ?",
                              (tid,)).fetchone()[0]
        if logged or reason or old != "running":
            _log_task_change(conn, tid, rid, old, new, ev["at"], reason)
        conn.execute(_finish_task_sql(columns, False), values)
    tail = ev.get("stderr_tail")
    if tail:
        conn.execute("INSERT OR REPLACE INTO task_stderr(task_id, tail) VALUES (?, ?)",
                     (tid, tail))
    return tid


def _params(store, conn, ev, tokens):
    rid = store.run_id(conn, ev["run"])
    conn.executemany(
        "INSERT OR REPLACE INTO run_params(run_id, key, value) VALUES (?, ?, ?)",
        [(rid, str(k), None if v is None else str(v)) for k, v in ev["params"].items()],
    )
    return rid


def _logs(store, conn, ev, tokens):
    rid = store.run_id(conn, ev["run"])
    tid = _task_id(ev, tokens) if (ev.get("task") or ev.get("tok")) else None
    conn.executemany(
        "INSERT INTO log_fragments(run_id, task_id, stream, seq, at, data) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(rid, tid, f["stream"], f["seq"], f["at"], f["data"]) for f in ev["fragments"]],
    )
    return rid


APPLY = {
    "run_start": _run_start,
    "run_finish": _run_finish,
    "task_start": _task_start,
    "task_finish": _task_finish,
    "params": _params,
    "logs": _logs,
}


def apply(store, conn, ev, tokens):
    """Apply one event inside the caller's transaction; return the row id it touched."""
    return APPLY[ev["e"]](store, conn, clean_event(ev), tokens)
