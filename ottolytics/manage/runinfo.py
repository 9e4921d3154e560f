"""``ottolytics info RUN``: one run, whole: its metadata, each task with status,
duration, exit code and file paths (and the stderr tail of failed ones), and
the order its tasks' dependencies impose. Indexed sqlite3 only, so it answers
in milliseconds on any size of store.
"""

import json
import os
import time
from contextlib import contextmanager

from ottolytics.manage.listing import _duration, open_for_reading
from ottolytics.core.errors import RunNotFound  # noqa: F401 (its old home; core.errors)
from ottolytics.core.paths import (check_task_log, db_path, from_stored, store_home,
                                   task_path_from_stored)
from ottolytics.core.values import number, seconds

RUN_COLUMNS = ("id", "uid", "status", "started_at", "finished_at", "args", "ottofile", "user",
               "host", "cwd", "run_dir", "size_bytes", "source", "source_ref", "derived")



# The fewest characters of a run id that name a run by prefix ('latest', a whole id
# and otto's unix timestamp work at any length).
MIN_PREFIX = 4
_SHOWN = 5      # candidates listed in an "ambiguous" message
_FETCHED = 101  # candidates fetched at most; more are counted as "over 100"


def ref_clause(ref):
    """SQLite SQL over ``runs`` (uid, started_at) keeping every run that *ref* could
    name: the id itself, runs started in that second when *ref* is a unix
    timestamp, and ids starting with *ref*. None for 'latest'."""
    ref = str(ref).strip()
    if ref == "latest":
        return None
    lit = "'" + ref.replace("'", "''") + "'"
    clauses = [f"uid = {lit}", f"(uid >= {lit} AND uid < {lit} || char(1114111))"]
    if ref.isdigit() and len(ref) <= 12:
        clauses.append(f"(started_at >= {int(ref)} AND started_at < {int(ref) + 1})")
    return "(" + " OR ".join(clauses) + ")"


def ref_order(ref):
    """ORDER BY for ref_clause's rows: the best candidates first, so a LIMIT keeps them."""
    ref = str(ref).strip()
    lit = "'" + ref.replace("'", "''") + "'"
    return f"uid = {lit} DESC, uid"


def candidates(conn, ref, where=()):
    """(uid, started_at, source) rows of the runs *ref* could name in the store at
    *conn* (sqlite3), newest first for 'latest'; *where* adds SQLite clauses over
    runs (filters)."""
    if "\x00" in str(ref):
        return []  # no run id holds a NUL (and SQLite's text would end at it)
    clause = ref_clause(ref)
    clauses = list(where) + ([clause] if clause else [])
    sql = "SELECT uid, started_at, source FROM runs" + (
        " WHERE " + " AND ".join(clauses) if clauses else "")
    if clause is None:
        sql += " ORDER BY started_at DESC LIMIT 1"
    else:
        sql += f" ORDER BY {ref_order(ref)} LIMIT {_FETCHED}"
    return conn.execute(sql).fetchall()


def choose(ref, rows, where="the store"):
    """The one run id that *ref* names among *rows* (from :func:`candidates`, of one
    store or several); raises RunNotFound saying what matched and what to do.

    Order: 'latest' (the newest row), the exact id, the runs started in that
    second when *ref* is a unix timestamp (an otto run first: the run directory's
    name), then a prefix of at least MIN_PREFIX characters that matches one run."""
    ref = str(ref).strip()
    if not ref:
        raise RunNotFound("RUN is empty: give a run id, a unique prefix of at least "
                          f"{MIN_PREFIX} characters, otto's unix timestamp, or 'latest'")
    rows = list(dict.fromkeys((r[0], r[1], r[2]) for r in rows))
    if ref == "latest":
        if not rows:
            raise RunNotFound(f"latest: {where} has no runs yet")
        return max(rows, key=lambda r: r[1] or 0)[0]
    if any(r[0] == ref for r in rows):
        return ref
    if ref.isdigit():
        ts = int(ref)
        second = [r for r in rows if r[1] is not None and ts <= r[1] < ts + 1]
        otto = [r for r in second if r[2] == "otto" or str(r[0]).startswith("otto-")]
        second = otto or second
        if len(second) == 1:
            return second[0][0]
        if second:
            raise RunNotFound(f"{ref}: {len(second)} runs started in that second "
                              f"({', '.join(r[0] for r in second[:_SHOWN])}); pass a run id")
    prefixed = sorted(r[0] for r in rows if str(r[0]).startswith(ref))
    if len(prefixed) == 1 and len(ref) >= MIN_PREFIX:
        return prefixed[0]
    if prefixed:
        count = f"over {_FETCHED - 1}" if len(prefixed) >= _FETCHED else str(len(prefixed))
        more = " and more" if len(prefixed) > _SHOWN else ""
        if len(prefixed) == 1:
            raise RunNotFound(f"{ref}: too short to name a run (it matches {prefixed[0]}); "
                              f"give at least {MIN_PREFIX} characters of the id")
        hint = ("give more of the id" if len(ref) >= MIN_PREFIX
                else f"give more of the id (at least {MIN_PREFIX} characters)")
        raise RunNotFound(f"{ref}: ambiguous, matches {count} runs "
                          f"({', '.join(prefixed[:_SHOWN])}{more}); {hint}")
    raise RunNotFound(f"{ref}: no such run; list runs with 'ottolytics history' "
                      "(RUN is a run id, a unique prefix of at least "
                      f"{MIN_PREFIX} characters, otto's unix timestamp, or 'latest')")


def resolve(conn, ref):
    """The runs.id for *ref*: ``latest``, a run id (or a unique prefix of one), or
    otto's unix timestamp (the run directory's name)."""
    uid = choose(ref, candidates(conn, ref))
    return conn.execute("SELECT id FROM runs WHERE uid = ?", (uid,)).fetchone()[0]


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


def _refused(out, err, run_dir, source, home, uid=None):
    """{stream: reason} for the log paths the read rule (paths.open_log) refuses: what
    ``ottolytics logs``, the MCP server and History.logs would not read."""
    problems = {}
    for stream, stored in (("stdout", out), ("stderr", err)):
        if stored is not None:
            why = check_task_log(stored, run_dir, source, home, uid)
            if why is not None and why != "missing":
                problems[stream] = why
    return problems


@contextmanager
def _reading(db, conn, ref):
    """(connection, row id of the run *ref*): on *conn*, or on a read-only
    connection of its own that is closed after. Raises RunNotFound."""
    own = conn is None
    conn = conn or open_for_reading(db)
    try:
        yield conn, resolve(conn, ref)
    finally:
        if own:
            conn.close()


def run_info(db=None, ref="latest", conn=None, home=None):
    """The run *ref* as a dict: its fields (``args`` as stored, JSON text; ``argv``
    that list decoded, or None when it holds no list of strings), ``params``,
    ``tasks`` (final attempt
    last; paths absolute; ``refused`` names the log paths the read rule refuses,
    with why) and ``order``. Raises RunNotFound. Stored relative paths
    resolve against *home*, by default the store's directory, as History does."""
    home = store_home(db, home)
    with _reading(db, conn, ref) as (conn, rid):
        run = dict(zip(RUN_COLUMNS + ("project",), conn.execute(
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)}, p.name FROM runs r "
            "LEFT JOIN projects p ON p.id = r.project_id WHERE r.id = ?", (rid,)).fetchone()))
        run["started_at"], run["finished_at"] = seconds(run["started_at"]), seconds(
            run["finished_at"])
        run["size_bytes"] = number(run["size_bytes"], True)
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
    now = time.time()
    run_dir = run["run_dir"]
    tasks = []
    for (tid, name, attempt, status, started, finished, code, sig, cpu_u, cpu_s, rss, sh,
         script, out, err, derived, tail) in rows:
        started, finished = seconds(started), seconds(finished)
        code, sig, rss = number(code, True), number(sig, True), number(rss, True)
        cpu_u, cpu_s = number(cpu_u), number(cpu_s)
        tasks.append({
            "task": name, "attempt": attempt, "status": status, "started_at": started,
            "finished_at": finished, "duration_s": _duration(status, started, finished, now),
            "exit_code": code, "signal": sig, "cpu_user_s": cpu_u, "cpu_system_s": cpu_s,
            "peak_rss_bytes": rss, "script_hash": sh,
            "script_path": task_path_from_stored(script, run_dir, home),
            "stdout_path": task_path_from_stored(out, run_dir, home),
            "stderr_path": task_path_from_stored(err, run_dir, home),
            "depends_on": deps.get(tid, []),
            "refused": _refused(out, err, run_dir, run["source"], home, run["uid"]),
            "stderr_tail": tail if status == "failed" else None, "derived": derived})
    run_id = run.pop("uid")
    run.pop("id")
    result = {"run_id": run_id, **run, "argv": _argv(run["args"]),
              "duration_s": _duration(run["status"], run["started_at"], run["finished_at"], now),
              "run_dir": from_stored(run_dir, home), "params": params, "tasks": tasks}
    last = {}
    for t in tasks:
        last[t["task"]] = t
    result["order"] = dependency_order(list(last.values()))
    return result


def _argv(args):
    """The stored ``args`` (JSON text) as the list of strings it holds, or None
    when it holds anything else (rows are untrusted)."""
    if not isinstance(args, str):
        return None
    try:
        value = json.loads(args)
    except (ValueError, RecursionError):  # (nested past Python's stack)
        return None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        return None
    try:  # an escaped lone surrogate decodes to text no UTF-8 encoder takes
        for a in value:
            a.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


class TaskNotFound(RunNotFound):
    """The run has no such task (or no such attempt of it); the message names the
    tasks it has."""


def no_such_task(uid, task, names):
    """The TaskNotFound for run *uid* without a task *task*, naming its tasks
    *names* (what ``ottolytics logs RUN TASK`` says)."""
    return TaskNotFound(f"run {uid} has no task {task!r}; its tasks are "
                        f"{', '.join(names) or 'none'}")


def task_output(db=None, ref="latest", task=None, stream="stderr", attempt=None, conn=None,
                home=None, max_bytes=None):
    """One task attempt's output on *stream* (its last attempt unless *attempt*), as
    a dict: run_id, task, attempt, stream, path (absolute, or None), source
    ("file", "store (log fragments)", "store (last 4 KiB of stderr)", or None when
    nothing was kept) and text. The log file is read by the read rule
    (paths.open_task_log; LogRefused when it refuses it), keeping its last
    *max_bytes* (all by default, without a partial first line); else the output the
    store kept. Raises RunNotFound, TaskNotFound; ValueError for a bad *stream*."""
    from ottolytics.core.paths import open_task_log
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream={stream!r}: use 'stdout' or 'stderr'")
    home = store_home(db, home)
    with _reading(db, conn, ref) as (conn, rid):
        uid, run_dir, run_source = conn.execute(
            "SELECT uid, run_dir, source FROM runs WHERE id = ?", (rid,)).fetchone()
        row = conn.execute(
            f"SELECT t.id, t.attempt, t.{stream}_path, s.tail FROM tasks t "
            "LEFT JOIN task_stderr s ON s.task_id = t.id "
            "WHERE t.run_id = ? AND t.name = ? AND (? IS NULL OR t.attempt = ?) "
            "ORDER BY t.attempt DESC LIMIT 1", (rid, task, attempt, attempt)).fetchone()
        if row is None:
            names = [n for (n,) in conn.execute(
                "SELECT DISTINCT name FROM tasks WHERE run_id = ? ORDER BY name", (rid,))]
            raise TaskNotFound(f"task={task!r}: run {uid} has no such task"
                               + (f" (attempt {attempt})" if attempt else "")
                               + f"; its tasks are {', '.join(names) or 'none'}")
        task_id, got_attempt, stored, tail = row
        fragments = [d for (d,) in conn.execute(
            "SELECT data FROM log_fragments WHERE run_id = ? AND task_id = ? AND stream = ? "
            "ORDER BY seq", (rid, task_id, stream))]
    result = {"run_id": uid, "task": task, "attempt": got_attempt, "stream": stream,
              "path": task_path_from_stored(stored, run_dir, home)}
    log = None
    if stored is not None:
        try:
            _path, log = open_task_log(stored, run_dir, run_source, home, uid)
        except OSError:
            log = None  # not there (any more): what the store kept
    if log is not None:
        return {**result, "source": "file", "text": _read_end(log, max_bytes)}
    if fragments:
        return {**result, "source": "store (log fragments)", "text": "".join(fragments)}
    if stream == "stderr" and tail:
        return {**result, "source": "store (last 4 KiB of stderr)", "text": tail}
    return {**result, "source": None, "text": ""}


def _read_end(f, max_bytes=None):
    """The open log file *f* as text, or its last *max_bytes* without the partial
    first line; closes it."""
    with f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None:
            f.seek(max(0, size - max_bytes))
        data = f.read(max_bytes if max_bytes is not None else -1) or b""
    text = data.decode("utf-8", "replace")
    if max_bytes is not None and size > max_bytes:
        text = text.split("\n", 1)[-1]
    return text


FOLLOW_POLL_S = 0.25  # how often follow_output looks for more output


def follow_output(db=None, ref="latest", task=None, stream=None, home=None,
                  poll_s=FOLLOW_POLL_S):
    """*task*'s output in run *ref* as it is written, for ``ottolytics logs
    --follow``: a generator of ``("text", chunk)`` for each new piece of output
    and ``("attempt", n)`` when a later attempt starts (its output follows). It
    reads the log file by the read rule (paths.open_task_log), or the fragments
    the store keeps when the task has no file, waits *poll_s* seconds when
    nothing is new, and ends once the task has ended and all it wrote was given.

    *stream* is 'stdout', 'stderr' or None for both. A running run without the
    task yet is waited for. Raises StoreError (no store at *db*), RunNotFound,
    TaskNotFound (the run ended without the task) and LogRefused. Closing the
    generator, or an exception in it such as Ctrl-C, closes the store and files.

    >>> for kind, value in follow_output(db, "latest", "build"):  # doctest: +SKIP
    ...     print(value, end="") if kind == "text" else print(f"== attempt {value} ==")
    """
    from ottolytics.core.errors import StoreError
    from ottolytics.core.paths import open_task_log
    from ottolytics.store.connection import connect
    from ottolytics.store.statuses import UNFINISHED
    path = os.path.abspath(db_path(db))
    if not os.path.isfile(path):
        raise StoreError(f"{path}: no store here; record a run first or pass --db")
    home = store_home(db, home)
    streams = [stream] if stream else ["stdout", "stderr"]
    conn = connect(path, readonly=True)
    files, seq, attempt = {}, {s: 0 for s in streams}, None
    try:
        rid = resolve(conn, ref)
        uid, run_dir, source = conn.execute("SELECT uid, run_dir, source FROM runs WHERE id = ?",
                                            (rid,)).fetchone()
        while True:
            task_id, got, status, out_p, err_p, run_status = conn.execute(
                "SELECT t.id, t.attempt, t.status, t.stdout_path, t.stderr_path, r.status "
                "FROM runs r LEFT JOIN tasks t ON t.run_id = r.id AND t.name = ? "
                "WHERE r.id = ? ORDER BY t.attempt DESC LIMIT 1", (task, rid)).fetchone()
            if task_id is None:
                if run_status != "running":
                    names = [n for (n,) in conn.execute(
                        "SELECT DISTINCT name FROM tasks WHERE run_id = ? ORDER BY name",
                        (rid,))]
                    raise no_such_task(uid, task, names)
                time.sleep(poll_s)
                continue
            if attempt is not None and got != attempt:
                yield "attempt", got
                for f in files.values():
                    f.close()
                files, seq = {}, {s: 0 for s in streams}
            attempt = got
            stored = {"stdout": out_p, "stderr": err_p}
            wrote = False
            for s in streams:
                if s not in files and stored[s] is not None:
                    try:  # a refused path (LogRefused) rises
                        files[s] = open_task_log(stored[s], run_dir, source, home, uid)[1]
                    except OSError:
                        pass  # not created yet
                if s in files:
                    data = files[s].read(1 << 16)
                    while data:
                        yield "text", data.decode("utf-8", "replace")
                        wrote = True
                        data = files[s].read(1 << 16)
                elif stored[s] is None:
                    for n, text in conn.execute(
                            "SELECT seq, data FROM log_fragments WHERE task_id = ? AND stream = ? "
                            "AND seq > ? ORDER BY seq", (task_id, s, seq[s])).fetchall():
                        yield "text", text
                        seq[s], wrote = n, True
            if not wrote and status not in UNFINISHED:
                return
            if not wrote:
                time.sleep(poll_s)
    finally:
        for f in files.values():
            f.close()
        conn.close()
