"""otto: run directories under OTTO_HOME, reconciled with otto.db.

The filesystem says which runs and tasks exist; otto.db (read-only, while otto
may be writing it) adds start times, end times and statuses where it has
them. What neither records is derived, by the rules in the README's sync
section, and named in the run's and task's ``derived`` column. otto's own
defects are corrected, not copied: runs are never finalized in otto.db, a
failed task's exit code there is always 1, skipped tasks and script hashes
are never recorded, and of two runs started in the same second only one is
in otto.db.
"""

import errno
import os
import re
import sqlite3
import time
from os.path import join

from ..liveness import hostname, pids
from ..paths import dir_size
from . import known, needs_writing, read_utf8, save_runs

SOURCE = "otto"
# <basename of cwd>-<hash8>, and the older otto-<hash8>.
PROJECT_DIR = re.compile(r"^(?P<name>.+)-(?P<hash>[0-9a-f]{8})$")
KNOWN_DB_VERSIONS = (1, 2)
# A run whose newest file is younger than this may still be written by otto.
ACTIVE_WINDOW_S = 120.0
DB_TIMEOUT_S = 1.0
TAIL_BYTES = 4096
DB_STATUS = {"completed": "success", "failed": "failed", "skipped": "skipped",
             "running": "running", "pending": "pending"}


def otto_db_path(home):
    return os.environ.get("OTTO_DB_PATH") or join(home, "otto.db")


ABSENT, UNKNOWN = "absent", "unknown"


class OttoDb:
    """What otto.db knows, loaded once per sync (it is small: one row per run)."""

    def __init__(self, runs, tasks, projects):
        self.runs = runs          # timestamp -> row dict
        self.tasks = tasks        # run id -> {task name: row dict}
        self.projects = projects  # project id -> row dict

    @classmethod
    def load(cls, path, report):
        """The database; ABSENT when there is none; UNKNOWN when it can never be read
        (unknown schema, corrupt); None when it cannot be read now (locked): then
        runs stay open for the next sync to complete."""
        if not os.path.exists(path):
            return ABSENT
        uri = "file:" + os.path.abspath(path).replace("?", "%3F").replace("#", "%23") + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=DB_TIMEOUT_S)
        except sqlite3.Error as exc:
            report.skip(SOURCE, path, f"cannot open otto.db: {exc}; importing from files only")
            return None
        conn.row_factory = sqlite3.Row
        try:
            has_version = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                       "AND name = 'schema_version'").fetchone()[0]
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] \
                if has_version else None
            if version not in KNOWN_DB_VERSIONS:
                report.skip(SOURCE, path, f"otto.db schema version {version} is not one this "
                            f"ottolytics reads ({', '.join(map(str, KNOWN_DB_VERSIONS))}); "
                            "importing from files only")
                return UNKNOWN
            projects = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM projects")}
            runs = {int(r["timestamp"]): dict(r) for r in conn.execute("SELECT * FROM runs")}
            tasks = {}
            for r in conn.execute("SELECT * FROM tasks"):
                tasks.setdefault(r["run_id"], {})[r["name"]] = dict(r)
            return cls(runs, tasks, projects)
        except sqlite3.OperationalError as exc:
            reason = "locked by otto" if "locked" in str(exc) else str(exc)
            report.skip(SOURCE, path, f"otto.db {reason}; importing from files only, "
                        "the next sync fills in what it knows")
            return None
        except sqlite3.DatabaseError as exc:
            report.skip(SOURCE, path, f"otto.db unreadable ({exc}); importing from files only")
            return UNKNOWN
        finally:
            conn.close()


def _live_otto_cwds():
    """Working directories of the otto processes running on this host."""
    cwds = set()
    for pid in pids():
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                if f.read().strip() != b"otto":
                    continue
            cwds.add(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
    return cwds


def _mtime(path):
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return None


def _tail(path, report):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        report.skip(SOURCE, path, "bytes that are not UTF-8 in the stderr tail; replaced")
        return data.decode("utf-8", "replace")


class BadRun(Exception):
    """This run cannot be imported whole; the message says why."""


def _read_yaml(path):
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
    try:
        text = read_utf8(path, BadRun)
    except BadRun as exc:
        raise BadRun(f"run.yaml {exc}") from None
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise BadRun(f"run.yaml is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadRun("run.yaml is not a mapping (truncated or empty?)")
    missing = [k for k in ("prog", "cwd", "timestamp", "hash") if k not in data]
    if missing:
        raise BadRun(f"run.yaml lacks {', '.join(missing)} (truncated?)")
    return data


def _link_problem(path):
    """None if the symlink at *path* resolves, else "broken" or "looping"."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        return "looping" if exc.errno == errno.ELOOP else "broken"


def _task_files(task_dir, name, run_dir, report):
    """What a task directory says about its task, from one pass over its entries.

    Each entry is lstat'ed once (its time and size); symlinks are resolved by
    their text, with one stat to tell a broken or looping one.
    """
    try:
        entries = list(os.scandir(task_dir))
    except OSError as exc:
        raise BadRun(f"task directory {name} unreadable: {exc.strerror or exc}") from None
    deps, reused, times = set(), {}, {}
    size = 0
    script_name = script_hash = None
    output = f"output.{name}.json"
    run_prefix = run_dir + os.sep
    for entry in entries:
        n = entry.name
        st = entry.stat(follow_symlinks=False)
        if n in ("stdout.log", "stderr.log", output, "script.sh", "script.py"):
            times[n] = st.st_mtime
        if entry.is_dir(follow_symlinks=False):  # artifacts/: a directory itself counts 0
            size += dir_size(entry.path)
            continue
        size += st.st_size  # as paths.dir_size counts: files and links, as themselves
        if n in ("script.sh", "script.py"):
            script_name = n
            if entry.is_symlink():
                target = os.readlink(entry.path)
                problem = _link_problem(entry.path)
                if problem:
                    report.skip(SOURCE, entry.path,
                                f"{problem} symlink to {target}; hash taken from its name")
                stem = os.path.basename(target).rsplit(".", 1)[0]
                script_hash = stem if re.fullmatch(r"[0-9a-f]{8}", stem) else None
        elif n.startswith("input.") and (n.endswith(".json") or n.endswith(".env")):
            dep = n[len("input."):].rsplit(".", 1)[0]
            deps.add(dep)
            if n.endswith(".json") and entry.is_symlink():
                target = os.path.normpath(os.path.join(task_dir, os.readlink(entry.path)))
                problem = _link_problem(entry.path)
                if problem:
                    report.skip(SOURCE, entry.path, f"{problem} symlink; dependency kept by name")
                elif not target.startswith(run_prefix):
                    reused[dep] = target
    last = [times[k] for k in ("stdout.log", "stderr.log", output) if k in times]
    return {
        "deps": sorted(deps), "reused": reused, "script_name": script_name,
        "script_hash": script_hash, "has_output": output in times,
        "started": times.get(script_name), "last_write": max(last, default=None),
        "size": size,
    }


def _run_size(run_dir, files):
    """The run's size as paths.dir_size defines it, reusing the task directories'
    sizes measured while reading them."""
    size = 0
    for e in os.scandir(run_dir):
        if not e.is_dir(follow_symlinks=False):
            size += e.stat(follow_symlinks=False).st_size
        elif e.name == "tasks":
            size += sum(f["size"] for f in files.values())
            for child in os.scandir(e.path):
                if child.name not in files:
                    size += dir_size(child.path)
        else:
            size += dir_size(e.path)
    return size


def read_run(home, project_dir, ts, db, live_cwds, newest, now, report):
    """One run directory as an ImportedRun; raises BadRun when it cannot be imported whole."""
    run_dir = join(home, project_dir, str(ts))
    meta = _read_yaml(join(run_dir, "run.yaml"))
    match = PROJECT_DIR.match(project_dir)
    tasks_dir = join(run_dir, "tasks")
    try:
        names = sorted(os.listdir(tasks_dir)) if os.path.isdir(tasks_dir) else []
    except OSError as exc:
        raise BadRun(f"tasks directory unreadable: {exc.strerror or exc}") from None
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRun(f"a task directory name holds bytes that are not UTF-8: "
                         f"{name.encode('utf-8', 'surrogateescape')!r}") from None
    files = {name: _task_files(f"{tasks_dir}/{name}", name, run_dir, report) for name in names
             if os.path.isdir(f"{tasks_dir}/{name}")}

    db_run = db_tasks = None
    if isinstance(db, OttoDb):
        candidate = db.runs.get(ts)
        # timestamp is UNIQUE in otto.db: another project's run may own this second.
        if candidate and (candidate.get("cwd") in (None, meta.get("cwd"))):
            db_run = candidate
            db_tasks = db.tasks.get(candidate["id"], {})
    last_write = max([f["last_write"] for f in files.values() if f["last_write"]]
                     + [_mtime(join(run_dir, "run.yaml")) or ts])
    active = newest and (meta.get("cwd") in live_cwds or now - last_write < ACTIVE_WINDOW_S)

    tasks = []
    run_derived = set()
    for name, f in files.items():
        d = (db_tasks or {}).get(name) or {}
        derived = set()
        db_status = DB_STATUS.get(d.get("status"))
        if f["has_output"]:
            status = "success"
            if db_status != "success":
                derived.add("status")
        elif db_status == "failed" or db_status == "skipped":
            status = db_status
        elif active:
            status = "running"
            if db_status != "running":
                derived.add("status")
        else:
            # No output, and nobody is writing the run any more.
            status = "interrupted" if db_status in ("running", "pending") else "failed"
            derived.add("status")
        started = d.get("started_at")
        if started is None:
            started = f["started"] or f["last_write"] or ts
            derived.add("started_at")
        finished = d.get("ended_at")
        if status != "running" and finished is None:
            finished = f["last_write"] or started
            derived.add("finished_at")
        if status == "running":
            finished = None
        exit_code = 0 if status == "success" else None  # otto.db's failed exit code is always 1
        if status == "success" and d.get("exit_code") != 0:
            derived.add("exit_code")
        task = {"name": name, "status": status, "started_at": float(started),
                "finished_at": None if finished is None else float(finished),
                "exit_code": exit_code, "deps": f["deps"],
                "stdout_path": f"tasks/{name}/stdout.log",
                "stderr_path": f"tasks/{name}/stderr.log",
                "script_path": f"tasks/{name}/{f['script_name']}" if f["script_name"] else None,
                "script_hash": f["script_hash"]}
        if f["script_hash"]:
            derived.add("script_hash")
        if status == "failed":
            task["stderr_tail"] = _tail(join(tasks_dir, name, "stderr.log"), report)
        if status == "interrupted":
            task["changes"] = [(None, "running", task["started_at"], None),
                               ("running", "interrupted", task["finished_at"],
                                "otto stopped writing this run")]
        task["derived"] = derived
        tasks.append(task)
    # Dependencies that did not run here (reused output, or no directory) were skipped.
    present = {t["name"] for t in tasks}
    for name, f in files.items():
        for dep in f["deps"]:
            if dep in present:
                continue
            present.add(dep)
            reused = f["reused"].get(dep)
            reason = (f"output reused from {os.path.relpath(reused, home)}" if reused
                      else "no task directory in this run")
            tasks.append({"name": dep, "status": "skipped", "started_at": float(ts),
                          "finished_at": float(ts), "derived": {"status", "started_at"},
                          "changes": [(None, "skipped", float(ts), reason)]})

    statuses = {t["status"] for t in tasks}
    if "running" in statuses or (active and not tasks):
        status = "running"
    elif "failed" in statuses:
        status = "failed"
    elif "interrupted" in statuses:
        status = "interrupted"
    else:
        status = "success"
    run_derived.add("status")  # otto never finalizes a run
    finished = None
    if status != "running":
        ends = [t["finished_at"] for t in tasks if t.get("finished_at")]
        finished = max(ends + [last_write])
        run_derived.add("finished_at")
    host = (db_run or {}).get("hostname")
    if not host:
        host = hostname()
        run_derived.add("host")
    # The ottofile's parent directory names the project, as in otto. (otto.db's
    # projects are keyed by the ottofile's content, which two projects can share.)
    project = os.path.basename(os.path.dirname(str(meta.get("ottofile") or "")))
    if not project:
        name = match.group("name") if match else project_dir
        project = os.path.basename(str(meta.get("cwd") or "").rstrip("/")) \
            if name == "otto" else name
        project = project or project_dir
    size = None
    if status != "running":  # the task directories were measured while reading them
        size = _run_size(run_dir, files)
    if size is not None:
        run_derived.add("size_bytes")
    dir_hash = match.group("hash") if match else "00000000"
    return {
        "source": SOURCE, "ref": f"{project_dir}/{ts}", "uid": f"otto-{ts}-{dir_hash}",
        "project": project, "status": status, "started_at": float(ts), "finished_at": finished,
        "args": meta.get("args"), "ottofile": _str(meta.get("ottofile")),
        "user": _str(meta.get("user")), "host": host, "cwd": _str(meta.get("cwd")),
        "run_dir": f"{project_dir}/{ts}", "size_bytes": size, "derived": run_derived,
        "params": {"ottofile_hash": meta.get("hash")} if meta.get("hash") else None,
        "tasks": tasks,
        # Final once otto stopped writing it, unless otto.db was locked: then the
        # next sync reads it again to fill in what otto.db knows.
        "final": status != "running" and db is not None,
        "signature": f"{last_write:.3f}:{len(files)}:{'db' if isinstance(db, OttoDb) else '-'}",
    }


def _str(value):
    return None if value is None else str(value)


def scan(home, report):
    """Every (project_dir, timestamp, path) run directory under *home*, newest last."""
    found = []
    try:
        entries = sorted(os.scandir(home), key=lambda e: e.name)
    except OSError as exc:
        report.skip(SOURCE, home, f"OTTO_HOME unreadable: {exc.strerror or exc}")
        return found
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or not PROJECT_DIR.match(entry.name):
            continue
        try:
            runs = list(os.scandir(entry.path))
        except OSError as exc:
            report.skip(SOURCE, entry.path, f"project directory unreadable: "
                        f"{exc.strerror or exc}")
            continue
        for run in runs:
            if run.name.startswith(".") or not run.is_dir(follow_symlinks=False):
                continue  # .cache, builtins.sh
            if not run.name.isdigit():
                report.skip(SOURCE, run.path, "run directory name is not a unix timestamp")
                continue
            found.append((entry.name, int(run.name), run.path))
    return found


def sync(store, home, report, progress=None):
    """Import otto's history under *home* into *store*."""
    home = os.path.abspath(home)
    seen = known(store.conn, SOURCE)
    runs = scan(home, report)
    newest = {}
    for project_dir, ts, _path in runs:
        newest[project_dir] = max(ts, newest.get(project_dir, 0))
    todo = [r for r in runs if not seen.get(f"{r[0]}/{r[1]}", (None, False))[1]]
    report.count("unchanged", SOURCE, len(runs) - len(todo))
    if not todo:
        return
    db = OttoDb.load(otto_db_path(home), report)
    live = _live_otto_cwds()
    now = time.time()
    imported = []
    for project_dir, ts, path in todo:
        try:
            run = read_run(home, project_dir, ts, db, live, ts == newest[project_dir], now,
                           report)
        except BadRun as exc:
            report.skip(SOURCE, path, str(exc))
            continue
        except OSError as exc:
            report.skip(SOURCE, path, f"unreadable: {exc.strerror or exc}")
            continue
        if needs_writing(seen, run, report):
            imported.append(run)
            if progress:
                progress(1)
    save_runs(store, imported, report)

