"""Importers of histories that other tools already wrote: one module per source.

Each importer turns its source into plain ``ImportedRun`` dicts; this module
writes them. A run is written whole in one transaction (its row, tasks,
dependencies, params, status changes and log fragments), so a sync never
leaves half a run behind. Re-importing a run that was still in progress
replaces its tasks with the new picture. ``sync_state`` remembers what each
source has been read up to, so a second sync does nothing.

An imported run is a dict with the keys of the ``runs`` table (``uid``,
``project``, ``status``, ``started_at``, …) plus:

* ``source``, ``ref``: where it came from (stored as runs.source / source_ref);
* ``signature``: changes whenever the source's copy changes;
* ``final``: True once the source should not change it any more (a changed
  signature is still read again);
* ``derived``: names of the values a heuristic inferred;
* ``params``: {key: value}; ``logs``: [{task, stream, seq, at, data}];
* ``changes``: run-level status changes [(from, to, at, reason)];
* ``tasks``: [{name, attempt, status, started_at, finished_at, exit_code,
  signal, script_path, script_hash, stdout_path, stderr_path, stderr_tail,
  deps, derived, changes}]; a task without ``changes`` took the plain path.
"""

import errno
import json
import os
import stat
import time

from ottolytics.store.statuses import PLAIN_PATH, TERMINAL_TASK

RUN_COLUMNS = ("status", "started_at", "finished_at", "args", "ottofile", "user", "host",
               "cwd", "run_dir", "size_bytes", "derived")
TASK_COLUMNS = ("status", "started_at", "finished_at", "exit_code", "signal", "script_path",
                "script_hash", "stdout_path", "stderr_path", "derived")


class Report:
    """What a sync did: counts per source, and every skipped item with its reason."""

    def __init__(self):
        self.added = {}
        self.updated = {}
        self.unchanged = {}
        self.skipped = []  # (source, path, reason)

    def count(self, kind, source, n=1):
        table = getattr(self, kind)
        table[source] = table.get(source, 0) + n

    def skip(self, source, path, reason):
        self.skipped.append((source, str(path), reason))

    def as_dict(self):
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "skipped": [{"source": s, "path": p, "reason": r} for s, p, r in self.skipped]}


NOT_REGULAR = "not a regular file (a FIFO, device or socket); skipped"


class NotRegular(OSError):
    """A path where an importer expects a file names something else."""

    def __init__(self, path):
        super().__init__(errno.EINVAL, NOT_REGULAR, str(path))


def open_regular(path):
    """*path* opened for reading (binary), only if it is a regular file. It is
    opened ``O_NONBLOCK`` and checked with fstat, so a FIFO or a device raises
    NotRegular (an OSError) at once instead of blocking the sync forever. Every
    importer opens the files of other tools through this."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path):
    """Raise NotRegular unless *path* is a regular file (for files that SQLite
    opens itself: a FIFO named as a database would block its open)."""
    with open_regular(path):
        pass


def read_utf8(path, error):
    """The text of *path*; raises *error* (an exception class) saying why not."""
    try:
        with open_regular(path) as f:
            raw = f.read()
    except OSError as exc:
        raise error(exc.strerror if isinstance(exc, NotRegular)
                    else f"unreadable: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error("holds bytes that are not UTF-8") from None


def known(conn, source):
    """{ref: (signature, final)} of everything *source* has imported so far."""
    return {ref: (sig, bool(final)) for ref, sig, final in conn.execute(
        "SELECT ref, signature, final FROM sync_state WHERE source = ?", (source,))}


def needs_writing(seen, run, report):
    """True for a run that is new, or whose source changed since it was imported;
    otherwise counts it unchanged.

    A run stored as final is read again too when its signature differs: the
    source changed after all (a late write), or an earlier version of the
    importer read it wrongly, and the next sync corrects it.
    """
    previous = seen.get(run["ref"])
    if previous and previous[0] == run["signature"]:
        report.count("unchanged", run["source"])
        return False
    return True


def derived_text(names):
    return ",".join(sorted(set(names))) if names else None


def _log_change(conn, run_id, task_id, change):
    old, new, at, reason = change
    conn.execute("INSERT INTO status_log(run_id, task_id, from_status, to_status, at, reason) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (run_id, task_id, old, new, at, reason))


def _default_changes(status, started, finished):
    changes = [(None, "running", started, None)]
    if status != "running":
        changes.append(("running", status, finished if finished is not None else started, None))
    return changes


def write_run(store, conn, run):
    """Insert or replace one imported run inside the caller's transaction.

    Returns "added" or "updated".
    """
    row = conn.execute("SELECT id FROM runs WHERE source = ? AND source_ref = ?",
                       (run["source"], run["ref"])).fetchone()
    now = time.time()
    project_id = store.project_id(conn, run["project"], run["started_at"])
    args = run.get("args")
    values = {c: run.get(c) for c in RUN_COLUMNS}
    values["args"] = json.dumps(args) if args is not None else None
    values["derived"] = derived_text(run.get("derived"))
    if row is None:
        outcome = "added"
        cols = ("uid", "project_id", "source", "source_ref") + RUN_COLUMNS
        run_id = conn.execute(
            f"INSERT INTO runs({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (run["uid"], project_id, run["source"], run["ref"])
            + tuple(values[c] for c in RUN_COLUMNS)).lastrowid
    else:
        outcome = "updated"
        run_id = row[0]
        sets = ", ".join(f"{c} = ?" for c in ("project_id",) + RUN_COLUMNS)
        conn.execute(f"UPDATE runs SET {sets} WHERE id = ?",
                     (project_id,) + tuple(values[c] for c in RUN_COLUMNS) + (run_id,))
        # The new picture replaces the old one; the run row keeps its id.
        for table in ("tasks", "status_log", "run_params", "log_fragments"):
            conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
    for change in run.get("changes") or _default_changes(
            run["status"], run["started_at"], run.get("finished_at")):
        _log_change(conn, run_id, None, change)
    task_ids = {}
    for task in run.get("tasks", ()):
        changes = task.get("changes")
        plain = not changes and task["status"] in PLAIN_PATH
        cols = ("run_id", "name", "attempt", "status_logged") + TASK_COLUMNS
        vals = {c: task.get(c) for c in TASK_COLUMNS}
        vals["derived"] = derived_text(task.get("derived"))
        if vals["status"] in TERMINAL_TASK and vals["finished_at"] is None:
            vals["finished_at"] = vals["started_at"]
        tid = conn.execute(
            f"INSERT INTO tasks({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (run_id, task["name"], task.get("attempt", 1), 0 if plain else 1)
            + tuple(vals[c] for c in TASK_COLUMNS)).lastrowid
        task_ids[(task["name"], task.get("attempt", 1))] = tid
        if not plain:
            for change in changes or _default_changes(vals["status"], vals["started_at"],
                                                      vals["finished_at"]):
                _log_change(conn, run_id, tid, change)
        if task.get("deps"):
            conn.executemany("INSERT OR IGNORE INTO task_deps(task_id, depends_on) VALUES (?, ?)",
                             [(tid, d) for d in task["deps"]])
        if task.get("stderr_tail"):
            conn.execute("INSERT INTO task_stderr(task_id, tail) VALUES (?, ?)",
                         (tid, task["stderr_tail"]))
    if run.get("params"):
        conn.executemany("INSERT OR REPLACE INTO run_params(run_id, key, value) VALUES (?, ?, ?)",
                         [(run_id, str(k), None if v is None else str(v))
                          for k, v in run["params"].items()])
    logs = run.get("logs")
    if logs:
        conn.executemany(
            "INSERT INTO log_fragments(run_id, task_id, stream, seq, at, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, task_ids.get((f.get("task"), f.get("attempt", 1))) if f.get("task") else None,
              f["stream"], f["seq"], f["at"], f["data"]) for f in logs])
    conn.execute(
        "INSERT OR REPLACE INTO sync_state(source, ref, signature, run_uid, final, synced_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run["source"], run["ref"], run.get("signature"), run["uid"], int(bool(run.get("final"))),
         now))
    return outcome


def save_runs(store, runs, report):
    """Write each run in its own transaction, counting what happened."""
    for run in runs:
        try:
            outcome = store.write(lambda conn: write_run(store, conn, run))
        except Exception as exc:  # one bad run must not stop the others
            report.skip(run.get("source", "?"), run.get("ref", "?"), f"not written: {exc}")
            continue
        report.count(outcome, run["source"])
