"""``ottolytics clean``: delete old runs from the store and the filesystem by
retention policy, and with ``--cache`` the script-cache files no kept run uses.

Planning and deleting are separate steps (``plan`` then ``execute``), so that
``--dry-run`` and the confirmation show exactly what would go. The rules that
keep this safe, each tested:

* nothing outside OTTO_HOME is deleted, and no symlink is followed: a link
  inside a run is removed as a link and its target is left alone; a store row
  naming OTTO_HOME's top level, a project directory or the store's directory as
  a run directory is refused;
* a run that is running, or that started within the last hour, is kept;
* a cache file that a kept run's ``script.*`` link references is kept;
* ``otto.db``, ``ottolytics.db`` and their WAL, SHM and journal files are never
  deleted, wherever they are;
* a permission error is reported for its path and the rest goes on; a run whose
  directory could not be removed entirely stays in the store.

Standard library only, like the rest of the write path.
"""

import os
import stat
import time
from collections import namedtuple
from dataclasses import dataclass, field

from . import disk, retention
from .listing import open_for_reading
from .paths import db_path, from_stored, otto_home

RECENT_S = 3600  # a run younger than this is never deleted, whatever the policy
PROTECTED = ("otto.db", "ottolytics.db")
PROTECTED_SUFFIXES = ("", "-wal", "-shm", "-journal")


@dataclass
class Candidate:
    """A run the policy deletes."""
    db_id: int
    run_id: str
    project: str
    status: str
    started_at: float
    path: str | None   # its directory, or None when only the store knows it
    bytes: int
    reason: str


@dataclass
class Plan:
    home: str
    runs: list = field(default_factory=list)        # Candidate
    cache: list = field(default_factory=list)       # (path, bytes, project)
    kept: int = 0
    protected: list = field(default_factory=list)   # (run_id, why the policy was overruled)
    policies: dict = field(default_factory=dict)    # project -> retention.Policy
    mode: str = "runs"                              # runs | runs+cache | cache

    @property
    def run_bytes(self):
        return sum(c.bytes for c in self.runs)

    @property
    def cache_bytes(self):
        return sum(b for _p, b, _project in self.cache)

    @property
    def bytes(self):
        return self.run_bytes + self.cache_bytes

    def as_dict(self):
        return {
            "home": self.home, "mode": self.mode, "kept_runs": self.kept,
            "bytes": self.bytes, "run_bytes": self.run_bytes, "cache_bytes": self.cache_bytes,
            "runs": [{"run_id": c.run_id, "project": c.project, "status": c.status,
                      "started_at": c.started_at, "path": c.path, "bytes": c.bytes,
                      "reason": c.reason} for c in self.runs],
            "cache": [{"path": p, "bytes": b, "project": pr} for p, b, pr in self.cache],
            "protected": [{"run_id": r, "why": w} for r, w in self.protected],
            "policies": {p: {"keep_days": v.keep_days, "keep_last": v.keep_last,
                             "keep_failed": v.keep_failed, "sources": v.sources}
                         for p, v in sorted(self.policies.items())},
        }


@dataclass
class Result:
    deleted: list = field(default_factory=list)     # run ids removed from disk and store
    kept: list = field(default_factory=list)        # run ids left because of errors
    cache_deleted: int = 0
    freed: int = 0                                  # bytes actually unlinked, measured
    errors: list = field(default_factory=list)      # (path, message)

    def as_dict(self):
        return {"deleted_runs": self.deleted, "runs_kept_after_errors": self.kept,
                "cache_files_deleted": self.cache_deleted, "freed_bytes": self.freed,
                "errors": [{"path": p, "error": m} for p, m in self.errors]}


StoreRun = namedtuple("StoreRun", "id uid project status started_at run_dir size_bytes ottofile")


def store_runs(conn, project=None):
    """Every run the store knows (of *project*), newest first, as StoreRun tuples."""
    sql = ("SELECT r.id, r.uid, p.name, r.status, r.started_at, r.run_dir, r.size_bytes, "
           "r.ottofile FROM runs r JOIN projects p ON p.id = r.project_id")
    if project:
        rows = conn.execute(sql + " WHERE p.name = ? ORDER BY r.started_at DESC", (project,))
    else:
        rows = conn.execute(sql + " ORDER BY r.started_at DESC")
    return [StoreRun(*row) for row in rows]


def _decide(runs, policy, now):
    """(delete, protected): the runs of one project (newest first) that *policy*
    deletes with why, and those it would delete but that are too young or running."""
    delete, protected = [], []
    day = 86400.0
    for rank, run in enumerate(runs):
        uid, status = run.uid, run.status
        age = now - run.started_at
        if rank < policy.keep_last or age < policy.keep_days * day or (
                status == "failed" and age < policy.keep_failed * day):
            continue
        if status == "running":
            protected.append((uid, "still running"))
            continue
        if age < RECENT_S:
            protected.append((uid, "started within the last hour"))
            continue
        why = (f"older than {policy.keep_failed:g} days (failed)" if status == "failed"
               else f"older than {policy.keep_days:g} days, beyond the last {policy.keep_last}")
        delete.append((run, why))
    return delete, protected


def plan(db=None, home=None, *, keep_days=None, keep_last=None, keep_failed=None,
         project=None, cache=False, cache_only=False, scan=None, conn=None, now=None,
         progress=None):
    """What clean would delete, as a Plan. *scan* (a disk.HomeScan) is reused
    when the caller has one; *conn* likewise."""
    home = os.path.abspath(otto_home(home))
    now = time.time() if now is None else now
    flags = {"keep_days": keep_days, "keep_last": keep_last, "keep_failed": keep_failed}
    config_path, config = retention.read_config(home)
    result = Plan(home=home, mode="cache" if cache_only else ("runs+cache" if cache else "runs"))
    own = conn is None
    if own:
        store_file = db_path(db, home)
        if not os.path.isdir(home) and not os.path.exists(store_file):
            from .migrations import StoreError
            raise StoreError(f"{home}: no OTTO_HOME here and no store at {store_file}; "
                             "pass --otto-home DIR or set OTTO_HOME")
        conn = open_for_reading(store_file) if os.path.exists(store_file) else None
    try:
        runs = store_runs(conn, project) if conn is not None else []
    finally:
        if own and conn is not None:
            conn.close()
    if scan is None:
        scan = disk.scan(home, progress=progress)
    sized = {os.path.normpath(r.path): r for r in scan.run_dirs()}
    by_project = {}
    for run in runs:
        by_project.setdefault(run.project, []).append(run)
    doomed = set()
    for name, project_runs in sorted(by_project.items()):
        ottofile = next((r.ottofile for r in project_runs if r.ottofile), None)
        policy = retention.resolve(name, flags, config, ottofile, os.path.basename(config_path))
        result.policies[name] = policy
        if cache_only:
            result.kept += len(project_runs)
            continue
        delete, protected = _decide(project_runs, policy, now)
        result.protected += protected
        result.kept += len(project_runs) - len(delete)
        for run, why in delete:
            path = os.path.normpath(from_stored(run.run_dir, home)) if run.run_dir else None
            measured = sized.get(path)
            result.runs.append(Candidate(run.id, run.uid, run.project, run.status,
                                         run.started_at, path, measured.tree.bytes if measured
                                         else (run.size_bytes or 0), why))
            if path:
                doomed.add(path)
    if cache or cache_only:
        result.cache = _orphans(scan, doomed, runs, project, now)
    return result


def _orphans(scan, doomed, runs, project, now):
    """Cache files that no run staying on disk links to. Runs the store doesn't
    know count as staying; a file changed within the last hour is left for an
    otto that may be starting a run with it."""
    names = None
    if project:  # the project directories that hold this project's runs
        names = {os.path.basename(os.path.dirname(from_stored(r.run_dir, scan.home)))
                 for r in runs if r.run_dir and r.project == project}
    found = []
    for pd in scan.projects.values():
        if not pd.cache or (names is not None and pd.name not in names):
            continue
        refs = set()
        for r in pd.runs:
            if os.path.normpath(r.path) not in doomed:
                refs |= r.tree.cache_refs
        for name in pd.orphans(refs):
            path = os.path.join(pd.path, ".cache", name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if now - st.st_mtime < RECENT_S:
                continue
            found.append((path, st.st_size, project or pd.name))
    return found


# -- deleting ---------------------------------------------------------------------

def _protected_name(name):
    return any(name == base + suffix for base in PROTECTED for suffix in PROTECTED_SUFFIXES)


def _inside(path, home):
    """*path*'s parent resolved (the path itself is not followed) lies inside *home*."""
    real_home = os.path.realpath(home)
    parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    target = os.path.join(parent, os.path.basename(path))
    return target != real_home and target.startswith(real_home.rstrip(os.sep) + os.sep), target


def remove(path, home, protect=()):
    """Delete *path* (a file, a link or a directory tree) without following any
    symlink and only inside *home*. Returns (bytes freed, errors, gone)."""
    ok, target = _inside(path, home)
    if not ok:
        return 0, [(path, "outside OTTO_HOME; left alone")], False
    protect = {os.path.realpath(p) for p in protect}
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return 0, [], True
    except OSError as exc:
        return 0, [(target, exc.strerror or str(exc))], False
    errors = []
    if not stat.S_ISDIR(st.st_mode):
        freed = _unlink(None, target, st, errors, protect)
        return freed, errors, not errors
    freed = _remove_dir(target, errors, protect)
    if not errors:
        try:
            os.rmdir(target)
            freed += st.st_size
        except OSError as exc:
            errors.append((target, exc.strerror or str(exc)))
    return freed, errors, not errors


def _unlink(dir_fd, name, st, errors, protect, shown=None):
    shown = shown or name
    if _protected_name(os.path.basename(name)) or shown in protect:
        errors.append((shown, "a store or otto.db file; never deleted by clean"))
        return 0
    try:
        os.unlink(name, dir_fd=dir_fd)
        return st.st_size
    except OSError as exc:
        errors.append((shown, exc.strerror or str(exc)))
        return 0


def _remove_dir(path, errors, protect):
    """Empty the directory *path*, descriptor-relative so nothing is followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        errors.append((path, exc.strerror or str(exc)))
        return 0
    freed = 0
    try:
        for name in os.listdir(fd):
            child = os.path.join(path, name)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                errors.append((child, exc.strerror or str(exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                before = len(errors)
                freed += _remove_dir(child, errors, protect)
                if len(errors) == before:
                    try:
                        os.rmdir(name, dir_fd=fd)
                        freed += st.st_size
                    except OSError as exc:
                        errors.append((child, exc.strerror or str(exc)))
            else:
                freed += _unlink(fd, name, st, errors, protect, child)
    except OSError as exc:
        errors.append((path, exc.strerror or str(exc)))
    finally:
        os.close(fd)
    return freed


def _not_a_run_dir(path, home, store_file):
    """Why *path* must not be deleted as a run directory, or None. A store row
    could name OTTO_HOME's top level, a project directory (with its script
    cache) or the store's own directory; none of those is a run."""
    real_home = os.path.realpath(home)
    real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    rel = os.path.relpath(real, real_home)
    if rel.startswith(os.pardir) or rel == os.curdir:
        return None  # _inside reports these
    if len(rel.split(os.sep)) < 2:
        return "directly below OTTO_HOME, so not a run directory; left alone"
    if os.path.isdir(os.path.join(real, ".cache")):
        return "holds a script cache: a project directory, not a run; left alone"
    if os.path.realpath(store_file).startswith(real.rstrip(os.sep) + os.sep):
        return "holds the store; left alone"
    return None


def execute(p, db=None, progress=None):
    """Carry out Plan *p*; returns a Result. Store rows go only for runs whose
    directory is entirely gone, in one transaction after the files."""
    from .store import Store
    result = Result()
    store_file = os.path.abspath(db_path(db, p.home))
    gone_ids = []
    for c in p.runs:
        refused = c.path and _not_a_run_dir(c.path, p.home, store_file)
        if refused:
            result.errors.append((c.path, refused))
            gone = False
        elif c.path:
            freed, errors, gone = remove(c.path, p.home, protect=[store_file])
            result.freed += freed
            result.errors += errors
        else:
            gone = True  # only the store knew it
        if gone:
            gone_ids.append(c.db_id)
            result.deleted.append(c.run_id)
        else:
            result.kept.append(c.run_id)
        if progress:
            progress(1)
    if gone_ids:
        with Store.open(store_file, create=False) as store:
            store.write(lambda conn: conn.executemany(
                "DELETE FROM runs WHERE id = ?", [(i,) for i in gone_ids]))
    for path, _size, _project in p.cache:
        freed, errors, gone = remove(path, p.home, protect=[store_file])
        result.freed += freed
        result.errors += errors
        result.cache_deleted += int(gone)
        if progress:
            progress(1)
    return result
