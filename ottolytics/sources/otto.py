"""otto: run directories under OTTO_HOME, reconciled with otto.db.

The filesystem says which runs and tasks exist; otto.db (read-only, while otto
may be writing it) adds start times, end times and statuses where it has
them. What neither records is derived, by the rules in the README's sync
section, and named in the run's and task's ``derived`` column. otto's own
defects are corrected, not copied: runs are never finalized in otto.db, a
failed task's exit code there is always 1, skipped tasks and script hashes
are never recorded (an up-to-date task leaves no trace at all), the run's
timestamp in otto.db can be a second after its directory's name, auto-prune
deletes rows but leaves the directories, and of two runs started in the
same second only one is in otto.db.
"""

import errno
import hashlib
import math
import os
import re
import sqlite3
import time
from os.path import join

from ottolytics.store.liveness import hostname, pids
from ottolytics.core.paths import LogRefused, dir_size, open_log
from ottolytics.core.values import LAST_SECOND
from ottolytics.sources.common import (NotRegular, check_regular, known, needs_writing, open_regular, read_utf8,
               save_runs)

SOURCE = "otto"
# <basename of cwd>-<sha256(cwd)[:8]> (``otto-<hash8>`` for a directory named otto).
PROJECT_DIR = re.compile(r"^(?P<name>.+)-(?P<hash>[0-9a-f]{8})$")
KNOWN_DB_VERSIONS = (1, 2)
# A run whose newest file is younger than this may still be written by otto.
ACTIVE_WINDOW_S = 120.0
DB_TIMEOUT_S = 1.0
TAIL_BYTES = 4096
SCRIPT_BYTES = 1 << 20
DB_STATUS = {"completed": "success", "failed": "failed", "skipped": "skipped",
             "running": "running", "pending": "pending"}
# The generated prologue loads each dependency's input: bash and python forms.
DESERIALIZE = re.compile(r'^otto_deserialize_input[ (]"([^"]+)"\)?\s*$', re.M)
SIGNATURE_VERSION = "v2"
# How much later than the directory's name otto.db's timestamp may be read.
SKEW_S = 10


def otto_db_paths(home):
    """Where otto.db may be: ``$OTTO_DB_PATH``; else ``~/.otto/otto.db``, where otto
    keeps it even when OTTO_HOME is set, and ``$OTTO_HOME/otto.db``."""
    if os.environ.get("OTTO_DB_PATH"):
        return [os.environ["OTTO_DB_PATH"]]
    paths = []
    for path in (join(os.path.expanduser("~"), ".otto", "otto.db"), join(home, "otto.db")):
        if os.path.realpath(path) not in map(os.path.realpath, paths):
            paths.append(path)
    return paths


def project_dir_of(cwd):
    """The project directory otto makes for a run in *cwd*."""
    cwd = str(cwd).rstrip("/") or "/"
    name = os.path.basename(cwd) or "otto_project"
    return f"{name}-{hashlib.sha256(cwd.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


class OttoDb:
    """What the otto.db files know (small: otto prunes them). Runs are loaded once
    per sync, with a digest of their task rows computed by SQLite; the task rows
    themselves only when a run is read.

    ``complete`` is False when a database exists but cannot be read now (locked):
    then the runs stay open for the next sync to complete.
    """

    def __init__(self):
        self.runs = {}        # timestamp -> [run row]
        self.paths = []       # a run row's "_db" indexes this
        self.tasks = {}       # db index -> {run id: {task name: row}}
        self.complete = True
        self.found = False

    @classmethod
    def load(cls, paths, report):
        db = cls()
        for path in paths:
            if os.path.exists(path):
                db.found = True
                db._load_one(path, report)
        return db

    @staticmethod
    def _connect(path):
        uri = "file:" + os.path.abspath(path).replace("?", "%3F").replace("#", "%23") + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=DB_TIMEOUT_S)
        conn.row_factory = sqlite3.Row
        conn.text_factory = lambda b: b.decode("utf-8", "replace")  # bytes that are not UTF-8
        return conn

    def _load_one(self, path, report):
        try:
            check_regular(path)
        except NotRegular as exc:
            report.skip(SOURCE, path, f"otto.db {exc.strerror}; importing from files only")
            return
        except OSError:
            pass  # unreadable: SQLite says why below, and the runs stay open
        try:
            conn = self._connect(path)
        except sqlite3.Error as exc:
            report.skip(SOURCE, path, f"cannot open otto.db: {exc}; importing from files only")
            self.complete = False
            return
        try:
            has_version = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                       "AND name = 'schema_version'").fetchone()[0]
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] \
                if has_version else None
            if version not in KNOWN_DB_VERSIONS:
                report.skip(SOURCE, path, f"otto.db schema version {version} is not one this "
                            f"ottolytics reads ({', '.join(map(str, KNOWN_DB_VERSIONS))}); "
                            "importing from files only")
                return
            index = len(self.paths)
            self.paths.append(path)
            # A digest of each run's task rows, not their paths (they name where
            # OTTO_HOME was when otto ran): changes when otto or its prune does.
            for r in conn.execute(
                    "SELECT r.*, (SELECT count(*) || '/' || group_concat(t.id || ',' || t.name "
                    "|| ',' || t.status || ',' || ifnull(t.exit_code, '') || ',' "
                    "|| ifnull(t.started_at, '') || ',' || ifnull(t.ended_at, ''), ';') "
                    "FROM tasks t WHERE t.run_id = r.id) AS _tasks FROM runs r"):
                row = dict(r)
                try:
                    stamp = int(row["timestamp"])
                except (TypeError, ValueError):
                    continue
                row["_db"] = index
                self.runs.setdefault(stamp, []).append(row)
        except sqlite3.OperationalError as exc:
            reason = "locked by otto" if "locked" in str(exc) else str(exc)
            report.skip(SOURCE, path, f"otto.db {reason}; importing from files only, "
                        "the next sync fills in what it knows")
            self.complete = False
        except sqlite3.DatabaseError as exc:
            report.skip(SOURCE, path, f"otto.db unreadable ({exc}); importing from files only")
        finally:
            conn.close()

    def tasks_of(self, run):
        """{task name: row} of a run row, loading its database's task rows once."""
        index = run["_db"]
        if index not in self.tasks:
            by_run = self.tasks[index] = {}
            try:
                conn = self._connect(self.paths[index])
                try:
                    for r in conn.execute("SELECT * FROM tasks ORDER BY id"):
                        by_run.setdefault(r["run_id"], {})[r["name"]] = dict(r)
                finally:
                    conn.close()
            except sqlite3.Error:
                self.complete = False  # locked since: the next sync completes these runs
        return self.tasks[index].get(run["id"], {})

    def candidates(self, project_dir, ts):
        """Rows that may be the run in *project_dir*/*ts*: otto.db's timestamp is read
        from the clock after the directory's name (usually the same second or the
        next; later when otto waited to open a locked otto.db), and the row's cwd
        must give this project directory."""
        return [run for stamp in range(ts, ts + SKEW_S + 1) for run in self.runs.get(stamp, ())
                if run.get("cwd") is None or project_dir_of(str(run["cwd"])) == project_dir]

    def find(self, project_dir, ts, stamp, cwd):
        """(row, {task: row}) of the run whose run.yaml says *stamp* and *cwd*, else None."""
        rows = [r for r in self.runs.get(stamp, ()) if r.get("cwd") in (None, cwd)
                and (r.get("cwd") is None or project_dir_of(str(r["cwd"])) == project_dir)]
        run = (rows or [None])[0]
        return (run, self.tasks_of(run)) if run else None


RUN_KEYS = ("id", "timestamp", "status", "ended_at", "duration_seconds", "size_bytes",
            "cwd", "user", "hostname", "_tasks")


def _row_digest(runs):
    """A digest of otto.db's rows for a run: changes when otto or its prune changes them."""
    if not runs:
        return "-"
    values = sorted(tuple(str(r.get(k)) for k in RUN_KEYS) for r in runs)
    return hashlib.sha1(repr(values).encode("utf-8", "surrogateescape")).hexdigest()[:16]


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


def _tail(path, report, run_dir, home):
    """The last TAIL_BYTES of the stderr log at *path*, read by the readers' rule
    (core.paths.open_log): a regular file inside its run's directory *run_dir*,
    never through a link leaving it (its tail is copied into the store, where
    grep, failures and the MCP show it)."""
    try:
        with open_log(path, run_dir, home) as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except LogRefused as exc:
        report.skip(SOURCE, path, f"stderr log not read: {exc.reason}")
        return None
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
    """run.yaml as strings: serde_yaml writes YAML 1.2, which YAML 1.1 readers get
    wrong (a plain ``01234567`` hash would be an octal number), so every scalar is
    read as the text it is."""
    import yaml
    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # libyaml when present
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
    try:
        data["timestamp"] = int(data["timestamp"])
    except (TypeError, ValueError):
        raise BadRun("run.yaml's timestamp is not a unix time") from None
    for key in ("ottofile", "user", "cwd", "hash"):
        if data.get(key) in ("null", "~", "") or not isinstance(data.get(key), (str, type(None))):
            data[key] = None
    args = data.get("args")
    data["args"] = [str(a) for a in args] if isinstance(args, list) else None
    return data


def _link_problem(path):
    """None if the symlink at *path* resolves, else "broken" or "looping"."""
    try:
        os.stat(path)
        return None
    except OSError as exc:
        return "looping" if exc.errno == errno.ELOOP else "broken"


def _script_deps(path, scripts):
    """The dependencies a generated script loads (its prologue's
    ``otto_deserialize_input`` lines), read once per cache file; None if unreadable.
    *path* is the script's cache file (the link's target, resolved by its text)."""
    real = os.path.normpath(path)
    if real not in scripts:
        try:
            with open_regular(real) as f:
                text = f.read(SCRIPT_BYTES).decode("utf-8", "replace")
            scripts[real] = DESERIALIZE.findall(text)
        except OSError:
            scripts[real] = None
    return scripts[real]


def _task_files(task_dir, name, report, scripts):
    """What a task directory says about its task, from one pass over its entries.

    Each entry is lstat'ed once (its time and size); symlinks are resolved by
    their text, with one stat to tell a broken or looping one.
    """
    try:
        entries = list(os.scandir(task_dir))
    except OSError as exc:
        raise BadRun(f"task directory {name} unreadable: {exc.strerror or exc}") from None
    deps, times = set(), {}
    size = 0
    script_name = script_hash = None
    script_deps = None
    output = f"output.{name}.json"
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
                else:
                    script_deps = _script_deps(join(task_dir, target), scripts)
                stem = os.path.basename(target).rsplit(".", 1)[0]
                script_hash = stem if re.fullmatch(r"[0-9a-f]{8}", stem) else None
            else:
                script_deps = _script_deps(entry.path, scripts)
        elif n.startswith("input.") and (n.endswith(".json") or n.endswith(".env")):
            deps.add(n[len("input."):].rsplit(".", 1)[0])
            if n.endswith(".json") and entry.is_symlink():
                problem = _link_problem(entry.path)
                if problem:
                    report.skip(SOURCE, entry.path, f"{problem} symlink; dependency kept by name")
    deps.update(script_deps or ())
    last = [times[k] for k in ("stdout.log", "stderr.log", output) if k in times]
    return {
        "deps": sorted(deps), "script_name": script_name, "script_hash": script_hash,
        "has_output": output in times, "started": times.get(script_name),
        "last_write": max(last, default=None), "size": size,
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


def _ottofile_graph(meta, graphs):
    """{task: [deps]} of the run's ottofile when the file at run.yaml's ``ottofile``
    still hashes to run.yaml's ``hash`` (so it is the ottofile the run used);
    None when it changed, is gone, or uses ``foreach`` (its expansion is not
    reproduced here)."""
    path, want = meta.get("ottofile"), meta.get("hash")
    if not path or not want:
        return None
    key = (path, want)
    if key not in graphs:
        graphs[key] = None
        try:
            with open_regular(path) as f:
                raw = f.read(SCRIPT_BYTES)
            if hashlib.sha256(raw).hexdigest()[:8] == want:
                graphs[key] = _graph(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            pass
    return graphs[key]


def _graph(text):
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        spec = yaml.load(text, Loader=loader)
    except yaml.YAMLError:
        return None
    tasks = spec.get("tasks") if isinstance(spec, dict) else None
    if not isinstance(tasks, dict):
        return None
    graph = {str(name): [] for name in tasks}
    for name, task in tasks.items():
        task = task if isinstance(task, dict) else {}
        if task.get("foreach") is not None:
            return None
        for dep in task.get("before") or ():
            graph[str(name)].append(str(dep))
        for later in task.get("after") or ():  # "after: [X]": X runs after this task
            if str(later) in graph and str(name) not in graph[str(later)]:
                graph[str(later)].append(str(name))
    return graph


def fingerprint(run_dir):
    """A cheap digest of a run directory: run.yaml's time and size, and each task
    directory's name and time (a directory's time changes whenever an entry is
    made or removed in it, as otto does when a task starts or ends)."""
    h = hashlib.sha1()
    st = os.lstat(join(run_dir, "run.yaml"))
    h.update(f"{st.st_mtime_ns}:{st.st_size}".encode())
    try:
        entries = sorted(os.scandir(join(run_dir, "tasks")), key=lambda e: e.name)
    except FileNotFoundError:
        entries = []
    for e in entries:
        h.update(f"/{e.name}:{e.stat(follow_symlinks=False).st_mtime_ns}".encode(
            "utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def read_run(home, project_dir, ts, db, live_cwds, newest, now, report, caches=None):
    """One run directory as an ImportedRun; raises BadRun when it cannot be imported whole."""
    caches = caches if caches is not None else {"scripts": {}, "graphs": {}}
    run_dir = join(home, project_dir, str(ts))
    fp = fingerprint(run_dir)
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
    files = {name: _task_files(f"{tasks_dir}/{name}", name, report, caches["scripts"])
             for name in names if os.path.isdir(f"{tasks_dir}/{name}")}
    # A task that started has its script link. A directory without one was made by
    # `otto --tui` before anything ran, for a task that then never started.
    started = {n: f for n, f in files.items() if f["script_name"]}

    found = db.find(project_dir, ts, meta["timestamp"], meta.get("cwd")) if db else None
    db_run, db_tasks = found if found else (None, {})
    last_write = max([f["last_write"] for f in files.values() if f["last_write"]]
                     + [_mtime(join(run_dir, "run.yaml")) or ts])
    active = newest and (meta.get("cwd") in live_cwds or now - last_write < ACTIVE_WINDOW_S)

    tasks = []
    for name, f in started.items():
        d = dict(db_tasks.get(name) or {})
        d["started_at"], d["ended_at"] = _num(d.get("started_at")), _num(d.get("ended_at"))
        derived = set()
        db_status = DB_STATUS.get(d.get("status"))
        if f["has_output"]:
            status = "success"
            if db_status != "success":
                derived.add("status")
        elif db_status in ("failed", "skipped"):
            status = db_status
        elif active:
            status = "running"
            if db_status != "running":
                derived.add("status")
        elif db_status in ("running", "pending"):
            status = "interrupted"  # otto stopped while it ran: killed, or cut off
            derived.add("status")
        else:
            status = "failed"  # no row to tell a failure from a kill: see the README
            derived.add("status")
        started_at = d.get("started_at")
        if started_at is None:
            started_at = f["started"] or f["last_write"] or ts
            derived.add("started_at")
        finished = d.get("ended_at")
        if status != "running" and finished is None:
            finished = f["last_write"] or started_at
            derived.add("finished_at")
        if status == "running":
            finished = None
        exit_code = 0 if status == "success" else None  # otto.db's failed exit code is always 1
        if status == "success" and d.get("exit_code") != 0:
            derived.add("exit_code")
        task = {"name": name, "status": status, "started_at": float(started_at),
                "finished_at": None if finished is None else float(finished),
                "exit_code": exit_code, "deps": f["deps"],
                "stdout_path": f"tasks/{name}/stdout.log",
                "stderr_path": f"tasks/{name}/stderr.log",
                "script_path": f"tasks/{name}/{f['script_name']}",
                "script_hash": f["script_hash"]}
        if f["script_hash"]:
            derived.add("script_hash")
        if status == "failed":
            task["stderr_tail"] = _tail(join(tasks_dir, name, "stderr.log"), report,
                                        run_dir, home)
        if status == "interrupted":
            task["changes"] = [(None, "running", task["started_at"], None),
                               ("running", "interrupted", task["finished_at"],
                                "otto stopped writing this run")]
        task["derived"] = derived
        tasks.append(task)

    graph = _ottofile_graph(meta, caches["graphs"])
    tasks += _skipped(started, files, graph, tasks, active, ts)
    run_derived = {"status"}  # otto never finalizes a run
    if graph is not None and any(t["status"] == "skipped" for t in tasks):
        run_derived.add("tasks")  # some of its tasks come from the ottofile

    statuses = {t["status"] for t in tasks}
    if "running" in statuses or (active and not started):
        status = "running"
    elif "failed" in statuses:
        status = "failed"
    elif "interrupted" in statuses:
        status = "interrupted"
    else:
        status = "success"
    finished = None
    if status != "running":
        ends = [t["finished_at"] for t in tasks if t.get("finished_at")]
        finished = max(ends + [last_write])
        run_derived.add("finished_at")
    host = (db_run or {}).get("hostname")
    # otto writes NULL: the run was made on the host that holds its files
    if not isinstance(host, str) or not host:
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
        run_derived.add("size_bytes")
    dir_hash = match.group("hash") if match else "00000000"
    params = {"ottofile_hash": meta["hash"]} if meta.get("hash") else {}
    if meta["timestamp"] != ts:
        params["otto_timestamp"] = meta["timestamp"]  # otto.db's key for this run
    return {
        "source": SOURCE, "ref": f"{project_dir}/{ts}", "uid": f"otto-{ts}-{dir_hash}",
        "project": project, "status": status, "started_at": float(ts), "finished_at": finished,
        "args": meta.get("args"), "ottofile": meta.get("ottofile"),
        "user": meta.get("user"), "host": host, "cwd": meta.get("cwd"),
        "run_dir": f"{project_dir}/{ts}", "size_bytes": size, "derived": run_derived,
        "params": params or None, "tasks": tasks,
        # Final once otto stopped writing it, unless an otto.db was locked: then the
        # next sync reads it again to fill in what otto.db knows.
        "final": status != "running" and (db is None or db.complete),
        "signature": signature(fp, status, db, project_dir, ts),
    }


def _num(value):
    """A time from otto.db as a float, or None when it is not one (otto.db is input)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def signature(fp, status, db, project_dir, ts):
    """Changes whenever the run's files, its otto.db rows or its derived status do;
    ``v2`` tells runs read by an earlier importer, which are read again."""
    rows = _row_digest(db.candidates(project_dir, ts)) if db else "-"
    return f"{SIGNATURE_VERSION}:{fp}:{status}:{rows}"


def _skipped(started, files, graph, tasks, active, ts):
    """Tasks of this run that did not start, as ``skipped`` with the reason.

    otto skips an up-to-date task before making its directory and records it
    nowhere. What still tells: a task that started after a dependency that did
    not (its script loads that dependency's input, and otto starts a task only
    once every dependency completed or was skipped); the ottofile's graph, when
    it is still the one the run used, for the dependencies of those; and the
    empty directories of ``otto --tui``.
    """
    deps_of = {n: list(f["deps"]) for n, f in started.items()}
    if graph:
        for n in started:
            deps_of[n] = sorted(set(deps_of[n]) | set(graph.get(n, ())))
    needed_by = {}
    todo = list(started)
    while todo:
        n = todo.pop()
        for dep in deps_of.get(n, graph.get(n, ()) if graph else ()):
            if dep in started or dep in needed_by:
                continue
            needed_by[dep] = n
            todo.append(dep)
    starts = {t["name"]: t["started_at"] for t in tasks}
    failed = any(t["status"] in ("failed", "interrupted") for t in tasks)
    out = []
    for name in sorted(set(needed_by) | (set(files) - set(started))):
        if name in needed_by:
            first = needed_by[name]
            while first not in starts:
                first = needed_by[first]
            at = starts[first]
            reason = (f"up to date: {needed_by[name]} depends on it, and it has no "
                      "task directory" if name not in files else
                      f"up to date: {needed_by[name]} depends on it, and it never started")
        elif active:
            continue  # an empty --tui directory: the task may still start
        else:
            at = float(ts)
            reason = ("never started: up to date, or the run stopped at a failure first"
                      if failed else "never started in a run that succeeded: up to date")
        derived = {"status", "started_at", "finished_at"}
        task = {"name": name, "status": "skipped", "started_at": at, "finished_at": at,
                "derived": derived, "changes": [(None, "skipped", at, reason)]}
        if graph and graph.get(name):
            task["deps"] = list(graph[name])
            derived.add("deps")
        if name in files:
            task["stdout_path"] = f"tasks/{name}/stdout.log"
            task["stderr_path"] = f"tasks/{name}/stderr.log"
        out.append(task)
    return out


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
                continue  # .cache
            if not _unix_seconds(run.name):
                report.skip(SOURCE, run.path, "run directory name is not a unix timestamp")
                continue
            found.append((entry.name, int(run.name), run.path))
    return found


def _unix_seconds(name):
    """Whether *name* (a run directory's) is a unix timestamp: ASCII digits of a
    second no later than LAST_SECOND (a later one breaks every reader's dates)."""
    return name.isascii() and name.isdigit() and int(name) <= LAST_SECOND


def sync(store, home, report, progress=None):
    """Import otto's history under *home* into *store*.

    A run stored as final is read again only when its cheap signature (run.yaml,
    its task directories' times, its otto.db rows) changed: a no-op sync costs a
    few stats per run.
    """
    home = os.path.abspath(home)
    seen = known(store.conn, SOURCE)
    runs = scan(home, report)
    if not runs:
        return
    # Readers resolve a relative run_dir against the store's directory: relative
    # only when that is this OTTO_HOME, else absolute (a store kept elsewhere).
    base = os.path.dirname(os.path.abspath(store.path))
    relative = os.path.realpath(base) == os.path.realpath(home)
    stored_dirs = dict(store.conn.execute(
        "SELECT source_ref, run_dir FROM runs WHERE source = ?", (SOURCE,)))
    newest = {}
    for project_dir, ts, _path in runs:
        newest[project_dir] = max(ts, newest.get(project_dir, 0))
    db = OttoDb.load(otto_db_paths(home), report)
    db = db if db.found else None
    live = _live_otto_cwds()
    now = time.time()
    caches = {"scripts": {}, "graphs": {}}
    imported = []
    for project_dir, ts, path in runs:
        ref = f"{project_dir}/{ts}"
        previous, final = seen.get(ref, (None, False))
        try:
            want_dir = f"{project_dir}/{ts}" if relative else path
            if final and previous and stored_dirs.get(ref) == want_dir:
                old = previous.split(":")
                rows = _row_digest(db.candidates(project_dir, ts)) if db else "-"
                fp = fingerprint(path)
                if old[:2] == [SIGNATURE_VERSION, fp] and (
                        old[-1] == rows or rows == "-"):
                    # Unchanged; or otto's prune deleted its rows, which tells
                    # nothing new: keep what was read while they were there.
                    report.count("unchanged", SOURCE)
                    continue
            run = read_run(home, project_dir, ts, db, live, ts == newest[project_dir], now,
                           report, caches)
            run["run_dir"] = want_dir
        except BadRun as exc:
            report.skip(SOURCE, path, str(exc))
            continue
        except OSError as exc:
            report.skip(SOURCE, path, f"unreadable: {exc.strerror or exc}")
            continue
        if stored_dirs.get(ref, want_dir) != want_dir or needs_writing(seen, run, report):
            imported.append(run)
            if progress:
                progress(1)
    save_runs(store, imported, report)
