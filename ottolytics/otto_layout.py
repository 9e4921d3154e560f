"""Writes otto's on-disk layout and otto.db (schema_version 2) as otto 1.1.x
does, defects included: for the importer's tests, the sync benchmark and sample
data. What it writes follows otto's source:

* ``<OTTO_HOME>/<basename of cwd>-<sha256(cwd)[:8]>/`` (or ``otto-<hash8>``);
* ``<project>/<unix seconds>/run.yaml`` and ``tasks/<task>/`` with a
  ``script.sh``/``.py`` symlink into the flat ``.cache/``, ``builtins``,
  ``stdout.log``, ``stderr.log``, ``output.<task>.json`` on success and
  ``input.<dep>.json``/``.env`` for each dependency;
* otto.db: the run stays ``running`` with no end, failed tasks get exit code
  1, skipped tasks and script hashes are not recorded, and a second run in the
  same second is missing.
"""

import hashlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

OTTO_DB_V2 = [
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    """CREATE TABLE projects (id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT,
        ottofile_path TEXT, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
        run_count INTEGER DEFAULT 0)""",
    """CREATE TABLE runs (id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL,
        timestamp INTEGER NOT NULL UNIQUE, status TEXT NOT NULL, duration_seconds REAL,
        size_bytes INTEGER, ottofile_path TEXT, cwd TEXT, user TEXT, hostname TEXT, args TEXT,
        ended_at INTEGER, FOREIGN KEY (project_id) REFERENCES projects(id) ON DELETE CASCADE)""",
    """CREATE TABLE tasks (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, name TEXT NOT NULL,
        status TEXT NOT NULL, script_hash TEXT, exit_code INTEGER, started_at INTEGER,
        ended_at INTEGER, duration_seconds REAL, stdout_path TEXT, stderr_path TEXT,
        script_path TEXT, FOREIGN KEY (run_id) REFERENCES runs(id) ON DELETE CASCADE)""",
]


def sha8(text):
    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass
class Task:
    name: str
    status: str = "success"          # success | failed | running | skipped
    start: int = 0                   # seconds after the run's timestamp
    duration: int = 5
    deps: list = field(default_factory=list)
    stderr: str = ""
    stdout: str = "ok\n"
    script: str = ""                 # defaults to a script naming the task
    python: bool = False


def project_dir(home, cwd, old_naming=False):
    h = sha8(str(cwd))
    return Path(home) / (f"otto-{h}" if old_naming else f"{Path(cwd).name}-{h}")


def otto_db(home, version=2):
    """Create (or open) otto.db in WAL mode with otto's schema."""
    path = Path(os.environ.get("OTTO_DB_PATH") or Path(home) / "otto.db")
    new = not path.exists()
    conn = sqlite3.connect(path, isolation_level=None)
    if new:
        conn.execute("PRAGMA journal_mode = WAL")
        for sql in OTTO_DB_V2:
            conn.execute(sql)
        conn.execute("INSERT INTO schema_version VALUES (?, 1700000000)", (version,))
    return conn


def _set_mtime(path, t):
    os.utime(path, (t, t), follow_symlinks=False)


def make_run(home, cwd, ts, tasks, *, old_naming=False, user="alice", ottofile_text="tasks: {}",
             db=True, host="build-1"):
    """Write one run as otto does; returns its directory."""
    home = Path(home)
    pdir = project_dir(home, cwd, old_naming)
    cache = pdir / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    (pdir / "builtins.sh").write_text("# otto builtins\n")
    run = pdir / str(ts)
    (run / "tasks").mkdir(parents=True)
    ottofile = f"{cwd}/otto.yml"
    (run / "run.yaml").write_text(
        f"prog: otto\ncwd: {cwd}\nuser: {user}\ntimestamp: {ts}\n"
        f"hash: {sha8(ottofile_text)}\nottofile: {ottofile}\nargs:\n- otto\n")
    _set_mtime(run / "run.yaml", ts)  # written when the run starts
    for t in tasks:
        if t.status == "skipped":
            continue  # otto creates nothing for a task it skips
        tdir = run / "tasks" / t.name
        tdir.mkdir()
        ext = "py" if t.python else "sh"
        script = t.script or f"#!/bin/sh\necho {t.name} {ts}\n"
        cached = cache / f"{sha8(script)}.{ext}"
        cached.write_text(script)
        os.symlink(f"../../../.cache/{cached.name}", tdir / f"script.{ext}")
        (tdir / f"builtins.{ext}").write_text("# builtins\n")
        (tdir / "stdout.log").write_text(t.stdout)
        (tdir / "stderr.log").write_text(t.stderr)
        for dep in t.deps:
            os.symlink(f"../{dep}/output.{dep}.json", tdir / f"input.{dep}.json")
            (tdir / f"input.{dep}.env").write_text("")
        start, end = ts + t.start, ts + t.start + t.duration
        if t.status == "success":
            (tdir / f"output.{t.name}.json").write_text('{"ok": true}')
            _set_mtime(tdir / f"output.{t.name}.json", end)
        _set_mtime(tdir / f"script.{ext}", start)
        for log in ("stdout.log", "stderr.log"):
            _set_mtime(tdir / log, end if t.status != "running" else start + 1)
    if db:
        conn = otto_db(home)
        project_hash = sha8(ottofile_text)
        conn.execute("INSERT OR IGNORE INTO projects(hash, name, ottofile_path, first_seen, "
                     "last_seen, run_count) VALUES (?, ?, ?, ?, ?, 0)",
                     (project_hash, Path(cwd).name, ottofile, ts, ts))
        pid = conn.execute("SELECT id FROM projects WHERE hash = ?", (project_hash,)).fetchone()[0]
        try:  # otto's defect: a second run in the same second is missing from otto.db
            rid = conn.execute(
                "INSERT INTO runs(project_id, timestamp, status, ottofile_path, cwd, user, "
                "hostname, args) VALUES (?, ?, 'running', ?, ?, ?, ?, '[\"otto\"]')",
                (pid, ts, ottofile, str(cwd), user, host)).lastrowid
        except sqlite3.IntegrityError:
            rid = None
        if rid:
            for t in tasks:
                if t.status == "skipped":
                    continue  # otto's defect: skipped tasks are never recorded
                status = {"success": "completed"}.get(t.status, t.status)
                ended = None if t.status == "running" else ts + t.start + t.duration
                conn.execute(
                    "INSERT INTO tasks(run_id, name, status, script_hash, exit_code, started_at, "
                    "ended_at, duration_seconds, stdout_path, stderr_path, script_path) "
                    "VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
                    (rid, t.name, status,
                     {"success": 0, "failed": 1}.get(t.status),  # failed is always 1
                     ts + t.start, ended, None if ended is None else t.duration,
                     str(run / "tasks" / t.name / "stdout.log"),
                     str(run / "tasks" / t.name / "stderr.log"),
                     str(run / "tasks" / t.name / "script.sh")))
        conn.close()
    return run
