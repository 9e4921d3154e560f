"""Writes otto-format trees the way otto 1.1.1 (commit 61e63f7) writes them, for
the importer's tests, the sync benchmark and the sample history.

Each fact below was read in otto's source (paths relative to its ``src/``); the
code and text here are ours:

* ``$OTTO_HOME`` (else ``~/.otto``) holds ``<basename of cwd>-<sha256(cwd)[:8]>/``
  per project (``executor/workspace.rs``); a project whose directory is named
  ``otto`` gives ``otto-<hash8>``. Beside it, ``.cache/<sha256(script)[:8]>.sh``
  (or ``.py``), mode 0755, shared by the project's runs (``executor/action.rs``).
* The run directory is named by one clock read (the workspace's); ``run.yaml``'s
  ``timestamp`` and otto.db's ``runs.timestamp`` come from a second one, made a
  moment later (``ExecutionContext::new``): the two can differ by a second.
  ``run.yaml`` is serde_yaml output: prog, cwd, user, timestamp, hash (sha256 of
  the ottofile's content, first 8 hex digits, quoted when serde_yaml would read
  it as a number), ottofile, and ``args`` always ``[otto]`` (nothing overwrites
  them).
* A task that is up to date is skipped before its directory is made: no
  directory, no otto.db row (``executor/scheduler.rs``). A task that runs gets,
  in this order: its directory; ``input.<dep>.json`` (a symlink to the dep's
  output) and ``input.<dep>.env`` for each dependency whose output exists in
  this run; its ``builtins.sh``/``.py``; the cached script and the ``script.*``
  symlink to it; its otto.db row (inserted ``running``, updated when it ends);
  ``stdout.log``/``stderr.log``. On success a bash task's script writes
  ``output.<task>.env`` and otto converts it to ``output.<task>.json``; a python
  task writes the JSON itself. A failure stops the run: tasks not started stay
  without a directory, tasks still running are cut off (row left ``running``).
* ``otto --tui`` creates every task's directory with empty logs before
  anything runs (``app.rs``, ``executor/output.rs``).
* otto.db is ``$OTTO_DB_PATH``, else ``$HOME/.otto/otto.db`` even when
  ``OTTO_HOME`` is set (``executor/state/db.rs``); WAL, ``foreign_keys`` on,
  schema version 2 with its indexes (``executor/state/schema.rs``). A project is
  inserted with ``first_seen = last_seen = now`` and ``run_count`` 0, then each
  run bumps ``last_seen`` to its timestamp and ``run_count`` by one. ``hostname``
  is always NULL, runs stay ``running`` forever, a failed task's exit code is
  always 1, and of two runs with the same timestamp the second has no row.
* After every run, auto-prune (``executor/pruning.rs``), at most once per 24 h
  (``$OTTO_HOME/.last_prune``): the rows of runs older than 30 days, except the
  newest 10 across all projects, are deleted; the directory it then removes is
  ``$HOME/.otto/otto-<ottofile content hash>/<ts>``, which is not where runs
  are, so the run directories stay; the orphaned-cache pass only looks at
  ``otto-*`` project directories.
"""

import hashlib
import json
import math
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS schema_version (
        version INTEGER PRIMARY KEY,
        applied_at INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS projects (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        name TEXT,
        ottofile_path TEXT,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        run_count INTEGER DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL,
        timestamp INTEGER NOT NULL UNIQUE,
        status TEXT NOT NULL,
        duration_seconds REAL,
        size_bytes INTEGER,
        ottofile_path TEXT,
        cwd TEXT,
        user TEXT,
        hostname TEXT,
        args TEXT,
        ended_at INTEGER,
        FOREIGN KEY (project_id) REFERENCES projects(id) ON DELETE CASCADE)""",
    "CREATE INDEX IF NOT EXISTS idx_runs_timestamp ON runs(timestamp)",
    "CREATE INDEX IF NOT EXISTS idx_runs_status ON runs(status)",
    "CREATE INDEX IF NOT EXISTS idx_runs_project ON runs(project_id)",
    """CREATE TABLE IF NOT EXISTS tasks (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        script_hash TEXT,
        exit_code INTEGER,
        started_at INTEGER,
        ended_at INTEGER,
        duration_seconds REAL,
        stdout_path TEXT,
        stderr_path TEXT,
        script_path TEXT,
        FOREIGN KEY (run_id) REFERENCES runs(id) ON DELETE CASCADE)""",
    "CREATE INDEX IF NOT EXISTS idx_tasks_run ON tasks(run_id)",
    "CREATE INDEX IF NOT EXISTS idx_tasks_name ON tasks(name)",
    "CREATE INDEX IF NOT EXISTS idx_tasks_status ON tasks(status)",
    "CREATE INDEX IF NOT EXISTS idx_tasks_name_run ON tasks(name, run_id)",
    "CREATE INDEX IF NOT EXISTS idx_projects_name ON projects(name)",
]

DAY = 86400
# otto's RetentionSpec defaults
KEEP_DAYS, KEEP_LAST, PRUNE_INTERVAL_H = 30, 10, 24


def sha8(text):
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:8]


@dataclass
class Task:
    """One task of a run. ``status``: success | failed | running (still running, or
    cut off: otto died or stopped at another task's failure) | skipped (up to date)
    | unreached (not started: the run stopped first)."""
    name: str
    status: str = "success"
    start: int = 0                   # seconds after the run's directory timestamp
    duration: int = 5
    deps: list = field(default_factory=list)
    stderr: str = ""
    stdout: str = "ok\n"
    script: str = ""                 # the user's action; defaults to one naming the task
    python: bool = False
    output: dict = field(default_factory=dict)   # what the task puts in OTTO_OUTPUT


def project_dir(home, cwd):
    return Path(home) / f"{Path(cwd).name}-{sha8(str(cwd))}"


def default_db_path():
    """Where otto keeps otto.db: ``$OTTO_DB_PATH``, else ``$HOME/.otto/otto.db``."""
    return Path(os.environ.get("OTTO_DB_PATH")
                or Path(os.environ["HOME"]) / ".otto" / "otto.db")


def otto_db(path=None, now=1_700_000_000):
    """Open otto.db as otto does (WAL, foreign keys on), creating its schema on first use."""
    path = Path(path) if path else default_db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    has = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                       "AND name = 'schema_version'").fetchone()[0]
    if not has or conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] is None:
        for sql in SCHEMA:
            conn.execute(sql)
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (2, ?)", (now,))
    return conn


_YAML_NULLS = ("", "~", "null", "Null", "NULL")
_YAML_BOOLS = ("true", "True", "TRUE", "false", "False", "FALSE")
_RUST_FLOAT = re.compile(r"(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
                         re.I)


def _serde_yaml_reads_as_non_string(s):
    """True when serde_yaml 0.9 would read plain *s* as null, bool or number, and so
    writes it single-quoted."""
    if s in _YAML_NULLS or s in _YAML_BOOLS:
        return True
    body = s[1:] if s[:1] in "+-" else s
    for prefix, digits in (("0x", "0-9a-fA-F"), ("0o", "0-7"), ("0b", "01")):
        if body.startswith(prefix):
            return re.fullmatch(f"[{digits}]+", body[2:]) is not None
    leading_zero_digits = len(body) > 1 and body[0] == "0" and body.isdigit()
    if body.isdigit() and not leading_zero_digits:
        return True
    if leading_zero_digits:
        return False
    if body in (".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"):
        return True
    if _RUST_FLOAT.fullmatch(body):  # as Rust's f64 parser reads it; finite only
        return math.isfinite(float(body))
    return False


def yaml_str(s):
    s = str(s)
    return f"'{s}'" if _serde_yaml_reads_as_non_string(s) else s


def run_yaml(cwd, user, timestamp, ottofile_hash, ottofile):
    """run.yaml's text, as serde_yaml writes otto's ExecutionContext."""
    return (f"prog: otto\ncwd: {yaml_str(cwd)}\nuser: {yaml_str(user)}\n"
            f"timestamp: {timestamp}\nhash: {yaml_str(ottofile_hash)}\n"
            f"ottofile: {yaml_str(ottofile) if ottofile else 'null'}\nargs:\n- otto\n")


def ottofile_text(tasks):
    """An ottofile declaring *tasks* (``before:`` lists their dependencies)."""
    lines = ["otto:", "  api: 1", "tasks:"]
    for t in tasks:
        lines.append(f"  {json.dumps(t.name)}:")
        if t.deps:
            lines.append(f"    before: {json.dumps(list(t.deps))}")
        lines.append(f"    action: {json.dumps(_action(t))}")
    return "\n".join(lines) + "\n"


def _action(t):
    if t.script:
        return t.script
    return (f"#!/usr/bin/env python3\nprint({t.name!r})" if t.python
            else f"#!/bin/bash\necho {t.name}")


def generated_script(t):
    """The script otto generates around the user's action: shebang, a prologue that
    loads builtins and each dependency's input, the action, an epilogue that
    serializes OTTO_OUTPUT."""
    action = _action(t)
    first, _, rest = action.partition("\n")
    shebang, body = (first, rest) if first.startswith("#!") else ("", action)
    if t.python:
        pro = ["# prologue (otto)", "import importlib.util, os",
               "OTTO_INPUT, OTTO_OUTPUT = {}, {}"]
        pro += [f'otto_deserialize_input("{d}")' for d in t.deps]
        epi = [f'otto_serialize_output("{t.name}")']
    else:
        pro = ["# prologue (otto)", "set -euo pipefail", 'source "$(dirname "$0")/builtins.sh"']
        pro += [f'otto_deserialize_input "{d}"' for d in t.deps]
        epi = [f'otto_serialize_output "{t.name}"']
    parts = ([shebang] if shebang else []) + ["\n".join(pro), body, "\n".join(epi)]
    return "\n".join(parts) + "\n"


BASH_BUILTINS = ("#!/bin/bash\n# builtins for otto tasks: input/output helpers\n"
                 "otto_deserialize_input() { :; }\notto_serialize_output() { :; }\n")
PY_BUILTINS = ('"""builtins for otto tasks: input/output helpers"""\n'
               "def otto_deserialize_input(name):\n    return True\n"
               "def otto_serialize_output(name):\n    return True\n")


def _env_name(s):
    return s.upper().replace("-", "_").replace(".", "_")


def input_env(dep, data):
    """input.<dep>.env: the dependency's output as OTTO_INPUT_<DEP>_<KEY>='value' lines."""
    lines = [f"# inputs from {dep}, generated by otto", "# sourced by otto_deserialize_input", ""]
    for key in sorted(data):
        value = data[key]
        text = value if isinstance(value, str) else ("" if value is None else json.dumps(value))
        lines.append(f"OTTO_INPUT_{_env_name(dep)}_{_env_name(key)}='"
                     + text.replace("'", "'\\''") + "'")
    return "\n".join(lines) + "\n"


def _set_mtime(path, t):
    os.utime(path, (t, t), follow_symlinks=False)


def _write(path, text, t, mode=None):
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    if mode:
        os.chmod(path, mode)
    _set_mtime(path, t)


def make_run(home, cwd, ts, tasks, *, user="alice", ottofile=None, ottofile_content=None,
             write_ottofile=False, db=True, db_path=None, tui=False, clock_skew=0,
             prune=True):
    """Write one otto run as otto 1.1.1 does; returns its directory.

    *ts* is the run directory's clock read; run.yaml and otto.db get
    ``ts + clock_skew``. Tasks are written in the order given, which must be an
    order otto could run them in. *db_path* is where otto.db is (default: where
    otto puts it, ``$OTTO_DB_PATH`` or ``$HOME/.otto/otto.db``). With
    *write_ottofile* the ottofile is written at its path (``<cwd>/otto.yml``).
    """
    home, cwd = Path(home), str(cwd)
    pdir = project_dir(home, cwd)
    cache = pdir / ".cache"
    run = pdir / str(ts)
    for d in (home, pdir, cache, run, run / "tasks"):
        d.mkdir(parents=True, exist_ok=True)
    ottofile = str(ottofile or f"{cwd}/otto.yml")
    content = ottofile_content if ottofile_content is not None else ottofile_text(tasks)
    if write_ottofile:
        Path(ottofile).parent.mkdir(parents=True, exist_ok=True)
        Path(ottofile).write_text(content)
    ohash = sha8(content)
    stamp = ts + clock_skew
    _write(run / "run.yaml", run_yaml(cwd, user, stamp, ohash, ottofile), stamp)

    conn = run_id = None
    if db:
        conn = otto_db(db_path, now=stamp)
        row = conn.execute("SELECT id FROM projects WHERE hash = ?", (ohash,)).fetchone()
        if row:
            project_id = row[0]
        else:
            name = Path(ottofile).parent.name or ohash
            project_id = conn.execute(
                "INSERT INTO projects (hash, name, ottofile_path, first_seen, last_seen, "
                "run_count) VALUES (?, ?, ?, ?, ?, 0)",
                (ohash, name, ottofile, stamp, stamp)).lastrowid
        try:
            run_id = conn.execute(
                "INSERT INTO runs (project_id, timestamp, status, ottofile_path, cwd, user, "
                "hostname, args) VALUES (?, ?, 'running', ?, ?, ?, NULL, ?)",
                (project_id, stamp, ottofile, cwd, user, '["otto"]')).lastrowid
            conn.execute("UPDATE projects SET last_seen = ?, run_count = run_count + 1 "
                         "WHERE id = ?", (stamp, project_id))
        except sqlite3.IntegrityError:
            run_id = None  # timestamp is UNIQUE: a second run in the same second has no row

    if tui:  # every task's directory and empty logs, before anything runs
        for t in tasks:
            tdir = run / "tasks" / t.name
            tdir.mkdir(exist_ok=True)
            for log in ("stdout.log", "stderr.log"):
                _write(tdir / log, "", ts)
            _set_mtime(tdir, ts)

    outputs = {}  # task -> (end time, data) of the tasks whose output exists
    last = ts
    for t in tasks:
        if t.status in ("skipped", "unreached"):
            continue
        start, end = ts + t.start, ts + t.start + t.duration
        tdir = run / "tasks" / t.name
        tdir.mkdir(exist_ok=True)
        for dep in t.deps:
            if dep in outputs and outputs[dep][0] <= start:
                link = tdir / f"input.{dep}.json"
                os.symlink(f"../{dep}/output.{dep}.json", link)
                _set_mtime(link, start)
                _write(tdir / f"input.{dep}.env", input_env(dep, outputs[dep][1]), start)
        ext = "py" if t.python else "sh"
        _write(tdir / f"builtins.{ext}", PY_BUILTINS if t.python else BASH_BUILTINS, start,
               None if t.python else 0o755)
        script = generated_script(t)
        cached = cache / f"{sha8(script)}.{ext}"
        if not cached.exists():
            _write(cached, script, start, 0o755)
        os.symlink(f"../../../.cache/{cached.name}", tdir / f"script.{ext}")
        _set_mtime(tdir / f"script.{ext}", start)
        task_id = None
        if run_id is not None:
            task_id = conn.execute(
                "INSERT INTO tasks (run_id, name, status, script_hash, started_at, "
                "stdout_path, stderr_path, script_path) VALUES (?, ?, 'running', NULL, ?, ?, "
                "?, ?)", (run_id, t.name, start, str(tdir / "stdout.log"),
                          str(tdir / "stderr.log"), str(tdir / f"script.{ext}"))).lastrowid
        stop = end if t.status != "running" else start + max(1, t.duration // 2)
        _write(tdir / "stdout.log", t.stdout, stop)
        _write(tdir / "stderr.log", t.stderr, stop)
        if t.status == "success":
            if t.python:
                text = json.dumps(t.output, indent=2)
            else:
                env = ["# OTTO_OUTPUT of " + t.name, ""] + [
                    f"{k}='" + str(v).replace("'", "'\\''") + "'" for k, v in t.output.items()]
                _write(tdir / f"output.{t.name}.env", "\n".join(env) + "\n", end)
                text = json.dumps({k: str(v) for k, v in t.output.items()}, indent=2)
            _write(tdir / f"output.{t.name}.json", text, end)
            outputs[t.name] = (end, t.output if t.python else
                               {k: str(v) for k, v in t.output.items()})
        if task_id is not None and t.status in ("success", "failed"):
            conn.execute("UPDATE tasks SET status = ?, exit_code = ?, ended_at = ?, "
                         "duration_seconds = ? WHERE id = ?",
                         ("completed" if t.status == "success" else "failed",
                          0 if t.status == "success" else 1, end, float(end - start), task_id))
        _set_mtime(tdir, stop)
        last = max(last, stop)
    _set_mtime(run / "tasks", ts)
    _set_mtime(run, ts)
    if conn is not None:
        if prune:
            auto_prune(home, conn, now=last)
        conn.close()
    return run


def auto_prune(home, conn, now, keep_days=KEEP_DAYS, keep_last=KEEP_LAST):
    """otto's auto-prune after a run, at time *now*: at most once per 24 h, delete
    the otto.db rows of runs older than *keep_days* except the newest *keep_last*
    (across all projects); the run directories stay. Returns the pruned timestamps."""
    home = Path(home)
    marker = home / ".last_prune"
    if marker.exists() and now - marker.stat().st_mtime < PRUNE_INTERVAL_H * 3600:
        return []
    cutoff = now - keep_days * DAY
    rows = conn.execute("SELECT id, project_id, timestamp, status FROM runs "
                        "ORDER BY timestamp DESC").fetchall()
    doomed = [r for i, r in enumerate(rows) if i >= keep_last and r[2] < cutoff]
    for run_id, project_id, ts, _status in sorted(doomed, key=lambda r: r[2]):
        conn.execute("DELETE FROM tasks WHERE run_id = ?", (run_id,))
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        conn.execute("UPDATE projects SET run_count = run_count - 1 WHERE id = ?",
                     (project_id,))
        # otto then removes ~/.otto/otto-<projects.hash>/<ts>: named by the ottofile's
        # content hash, that directory is not where the run is, so nothing is removed.
    for pdir in home.iterdir():  # the orphaned-cache pass: only otto-* directories
        if not (pdir.is_dir() and pdir.name.startswith("otto-") and (pdir / ".cache").is_dir()):
            continue
        used = {os.path.basename(os.readlink(s)) for s in pdir.glob("*/tasks/*/script.*")
                if s.is_symlink()}
        for f in (pdir / ".cache").iterdir():
            if f.is_file() and f.name not in used:
                f.unlink()
    marker.touch()
    _set_mtime(marker, now)
    return [r[2] for r in doomed]
