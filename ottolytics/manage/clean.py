"""``ottolytics clean``: delete old runs from the store and the filesystem by
retention policy, and with ``--cache`` the script-cache files no kept run uses.

Planning and deleting are separate steps (``plan`` then ``execute``), so that
``--dry-run`` and the confirmation show exactly what would go. The rules that
keep this safe, each tested:

* store rows are untrusted: a run's directory is deleted only if it has the
  shape of one run of its source -- otto's ``<project-dir>/<unix-ts>`` directly
  under OTTO_HOME, or ``ottolytics/runs/<run-id>`` for runs ottolytics records
  itself -- with no component a symlink, and only if no run that stays names it,
  or a path inside it, as its own directory. A run that fails this is kept,
  row and files, and the plan says why;
* nothing outside OTTO_HOME is deleted, and no symlink is followed: a link
  inside a run is removed as a link and its target is left alone;
* a run that is running, or that started within the last hour, is kept: by its
  row's start, and by its directory's own timestamp (an otto run's name, another
  run's directory's mtime), since a row's start is untrusted;
* an otto run's directory must be its own: ``<project-dir>/<ts>`` for the run
  ``otto-<ts>-<hash8>`` that the importer names after it;
* a run whose directory is missing is forgotten only when the place it would be
  in exists here (otto or a person removed it); when even that is missing the
  run's files are elsewhere (another OTTO_HOME), so its row is kept, with a
  warning, unless ``forget_missing``;
* a cache file that a kept run's ``script.*`` link references is kept;
* ``otto.db``, ``ottolytics.db`` and their WAL, SHM and journal files are never
  deleted, wherever they are;
* a permission error is reported for its path and the rest goes on; a run whose
  directory could not be removed entirely stays in the store;
* before deleting anything, the runs to delete are written to a journal beside
  the store (``<store>.clean-journal``); a clean that is killed midway is
  finished by the next ``clean`` or by ``doctor`` (``resume``), so the store
  never keeps listing runs whose directories a clean removed.

Sizes are measured now, by the one definition of ``paths.dir_size`` (apparent
bytes of files and links; directories count 0), and so is what was freed.
Standard library only, like the rest of the write path.
"""

import os
import stat
import time
from collections import namedtuple
from dataclasses import dataclass, field

from ottolytics.manage import disk
from ottolytics.manage import retention
from ottolytics.manage.listing import open_for_reading
from ottolytics.core.files import atomic_write
from ottolytics.core.paths import db_path, dir_size, from_stored, is_inside, otto_home
from ottolytics.core.values import number, seconds

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
    forget_missing: bool = False                    # drop rows whose files are elsewhere
    cache_recent: list = field(default_factory=list)  # orphans kept: changed within the hour

    @property
    def files_elsewhere(self):
        """Ids of the runs the policy deletes whose directories are not under this
        OTTO_HOME: their rows are kept, unless *forget_missing*."""
        return [r for r, why in self.protected if FILES_ELSEWHERE in why]

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
            "sizes": "measured now: apparent bytes of files and links (paths.dir_size)",
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


StoreRun = namedtuple("StoreRun",
                      "id uid project status started_at run_dir size_bytes ottofile source")


def store_runs(conn, project=None):
    """Every run the store knows (of *project*), newest first, as StoreRun tuples."""
    sql = ("SELECT r.id, r.uid, p.name, r.status, r.started_at, r.run_dir, r.size_bytes, "
           "r.ottofile, r.source FROM runs r JOIN projects p ON p.id = r.project_id")
    if project:
        rows = conn.execute(sql + " WHERE p.name = ? ORDER BY r.started_at DESC", (project,))
    else:
        rows = conn.execute(sql + " ORDER BY r.started_at DESC")
    return [_store_run(row) for row in rows]


def _store_run(row):
    """A StoreRun of a runs row, its numbers read by core/values.py (rows are
    untrusted): a start that is no time is None (unknown), never deleted by age."""
    run = StoreRun(*row)
    return run._replace(started_at=seconds(run.started_at),
                        size_bytes=number(run.size_bytes, True))


def _decide(runs, policy, now):
    """(delete, protected): the runs of one project (newest first) that *policy*
    deletes with why, and those it would delete but that are too young or running."""
    delete, protected = [], []
    day = 86400.0
    for rank, run in enumerate(runs):
        uid, status = run.uid, run.status
        if rank < policy.keep_last:
            continue
        if run.started_at is None:
            protected.append((uid, "its start time is unknown"))
            continue
        age = now - run.started_at
        if age < policy.keep_days * day or (
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
         progress=None, forget_missing=False, sync=False):
    """What clean would delete, as a Plan. *scan* (a disk.HomeScan) is reused
    when the caller has one; *conn* likewise. With *forget_missing*, runs whose
    directories are not under this OTTO_HOME at all lose their rows too.

    With *sync* (default False: the plan is of what the store holds), the otto
    runs under OTTO_HOME are imported into the store first (``sources.sync``), so
    that a run otto wrote since the last sync is judged by the policy and its
    directory is not mistaken for an unknown one; ``ottolytics clean`` passes
    True unless ``--no-sync`` or ``--dry-run``. A failed sync raises StoreError
    (sqlite3.Error as it is)."""
    if sync:
        _sync_first(db, home)
    home = os.path.abspath(otto_home(home))
    now = time.time() if now is None else now
    flags = {"keep_days": keep_days, "keep_last": keep_last, "keep_failed": keep_failed}
    config_path, config = retention.read_config(home)
    result = Plan(home=home, mode="cache" if cache_only else ("runs+cache" if cache else "runs"),
                  forget_missing=forget_missing)
    own = conn is None
    if own:
        store_file = db_path(db, home)
        if not os.path.isdir(home) and not os.path.exists(store_file):
            from ottolytics.store.migrations import StoreError
            raise StoreError(f"{home}: no OTTO_HOME here and no store at {store_file}; "
                             "pass --otto-home DIR or set OTTO_HOME")
        conn = open_for_reading(store_file) if os.path.exists(store_file) else None
    try:
        runs = store_runs(conn, project) if conn is not None else []
        by_project = {}
        for run in runs:
            by_project.setdefault(run.project, []).append(run)
        chosen = []
        for name, project_runs in sorted(by_project.items()):
            ottofile = next((r.ottofile for r in project_runs if r.ottofile), None)
            policy = retention.resolve(name, flags, config, ottofile,
                                       os.path.basename(config_path))
            result.policies[name] = policy
            if cache_only:
                result.kept += len(project_runs)
                continue
            delete, protected = _decide(project_runs, policy, now)
            result.protected += protected
            result.kept += len(project_runs) - len(delete)
            chosen += delete
        refused = refusals(conn, home, [run for run, _why in chosen], forget_missing, now) \
            if chosen else {}
    finally:
        if own and conn is not None:
            conn.close()
    if scan is None:
        scan = disk.scan(home, progress=progress)
    sized = {os.path.normpath(r.path): r for r in scan.run_dirs()}
    doomed = set()
    for run, why in chosen:
        if run.id in refused:
            result.protected.append((run.uid, refused[run.id]))
            result.kept += 1
            continue
        path = _run_path(run, home)
        measured = sized.get(path) if path else None
        size = measured.tree.bytes if measured else (dir_size(path) if path else 0)
        if path and not measured and not os.path.lexists(path):
            why += "; its directory is already gone, so only its row goes"
        result.runs.append(Candidate(run.id, run.uid, run.project, run.status,
                                     run.started_at, path, size, why))
        if path:
            doomed.add(path)
    if cache or cache_only:
        result.cache = _orphans(scan, doomed, runs, project, now, result.cache_recent)
    return result


def _sync_first(db, home):
    """Import the otto runs under *home* into the store at *db*, for plan(sync=True)."""
    from ottolytics.sources.sync import sync
    from ottolytics.store.migrations import StoreError
    try:
        sync(db_path(db, home), otto_home_dir=home, source="otto")
    except (StoreError, OSError) as exc:
        raise StoreError(f"syncing OTTO_HOME before cleaning: {exc}") from exc


# -- which run directories may go ---------------------------------------------------

SHIM_RUNS = ("ottolytics", "runs")
FILES_ELSEWHERE = "not under this OTTO_HOME"


def _run_path(run, home):
    return os.path.normpath(from_stored(run.run_dir, home)) if run.run_dir else None


def _below(path, tree):
    """*path* lies below *tree*, not *tree* itself (core.paths.is_inside)."""
    path, tree = os.path.abspath(path), os.path.abspath(tree)
    return path != tree and is_inside(path, tree)


def shape_refusal(path, home, uid, source, _real=None):
    """Why *path* is not the directory of one run of *source*, or None: otto's
    runs are ``<project-dir>/<unix-ts>`` directly under OTTO_HOME, the runs
    ottolytics records itself ``ottolytics/runs/<run-id>``; no component of
    either may be a symlink. *_real* memoises realpath across calls."""
    real = (lambda p: _real[p] if p in _real else _real.setdefault(p, os.path.realpath(p))) \
        if _real is not None else os.path.realpath
    home = os.path.abspath(home)
    path = os.path.normpath(os.path.abspath(path))
    if not _below(path, home):
        return "its directory is outside OTTO_HOME; left alone"
    rel = os.path.relpath(path, home)
    parts = rel.split(os.sep)
    if source == "otto":
        match = disk.PROJECT_DIR.match(parts[0]) if len(parts) == 2 else None
        ok = (match is not None and parts[0] != SHIM_RUNS[0]
              and parts[1].isascii() and parts[1].isdigit())
        want = "<project-dir>/<unix-ts>"
        if ok and uid != f"otto-{parts[1]}-{match.group('hash')}":
            # the importer names a run otto-<ts>-<hash8> after its own directory
            return (f"its directory {rel!r} is not the directory of its own run "
                    f"(run {uid} would be otto-{parts[1]}-{match.group('hash')}); left alone")
    else:
        ok = len(parts) == 3 and tuple(parts[:2]) == SHIM_RUNS and parts[2] == uid
        want = "/".join(SHIM_RUNS + (str(uid),))
    if not ok:
        return (f"its directory {rel!r} is not the directory of one run (a {source} run's is "
                f"{want}); left alone")
    expected = os.path.join(real(home), *parts[:-1])
    if real(os.path.dirname(path)) != expected:
        return f"its directory {rel!r} lies below a symlink; left alone"
    return None


def youth(path, source, now):
    """Why the directory *path* counts as started within the last hour by its own
    timestamp, or None: an otto run's name (``<unix-ts>``, otto's clock when it
    made it), another run's mtime. A store row's started_at is untrusted: this
    keeps a fresh directory that an old row names."""
    name = os.path.basename(path)
    if source == "otto":
        stamp = int(name) if name.isascii() and name.isdigit() else None
    else:
        try:
            stamp = os.lstat(path).st_mtime
        except OSError:
            stamp = None  # gone: only its row goes
    if stamp is not None and now - stamp < RECENT_S:  # the future counts as young
        return "started within the last hour (by its directory's own timestamp); left alone"
    return None


def _presence(path):
    """'present', 'gone' (the place it was in exists), FILES_ELSEWHERE, or why
    it is no directory."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            parent = os.lstat(os.path.dirname(path))
        except OSError:
            return FILES_ELSEWHERE
        return "gone" if stat.S_ISDIR(parent.st_mode) else FILES_ELSEWHERE
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc}); left alone"
    if not stat.S_ISDIR(st.st_mode):
        return "its directory is a symlink or not a directory; left alone"
    return "present"


def claims(conn, home, leaving_ids):
    """{path: uid} of every directory that a run staying in the store names: its
    own directory, and task files stored outside their run's directory."""
    home = os.path.abspath(home)
    found = {}
    for rid, uid, run_dir in conn.execute(
            "SELECT id, uid, run_dir FROM runs WHERE run_dir IS NOT NULL"):
        if rid not in leaving_ids:
            found.setdefault(os.path.normpath(from_stored(run_dir, home)), uid)
    for rid, uid, *paths in conn.execute(
            "SELECT r.id, r.uid, t.stdout_path, t.stderr_path, t.script_path "
            "FROM tasks t JOIN runs r ON r.id = t.run_id WHERE "
            + " OR ".join(f"t.{c} LIKE '/%' OR t.{c} LIKE '%..%'"
                          for c in ("stdout_path", "stderr_path", "script_path"))):
        if rid in leaving_ids:
            continue
        for p in paths:
            if p and (os.path.isabs(p) or ".." in p.split("/")):
                found.setdefault(os.path.normpath(from_stored(p, home)), uid)
    return found


def _claimed_below(claimed, home):
    """{directory of one run's depth: a uid naming it or a path inside it}."""
    home = os.path.abspath(home)
    real_home = os.path.realpath(home)
    real_tops = {}
    out = {}
    for path, uid in claimed.items():
        if not _below(path, home):
            # a path outside OTTO_HOME may still reach into it through a link
            real = os.path.realpath(path)
            if not _below(real, real_home):
                continue
            parts = os.path.relpath(real, real_home).split(os.sep)
        else:  # a project directory that is a link to another one
            parts = os.path.relpath(path, home).split(os.sep)
            top = real_tops.get(parts[0])
            if top is None:
                real_top = os.path.realpath(os.path.join(home, parts[0]))
                top = real_tops[parts[0]] = (
                    os.path.relpath(real_top, real_home).split(os.sep)
                    if is_inside(real_top, real_home) else None)
            if top is not None:
                parts = top + parts[1:]
        for depth in (2, 3):
            if len(parts) >= depth:
                out.setdefault(os.path.join(home, *parts[:depth]), uid)
    return out


def refusals(conn, home, leaving, forget_missing=False, now=None):
    """{run id: why its directory must stay} for the StoreRuns *leaving*; a run
    not named may go (files and row)."""
    refused = {}
    by_path = {}
    real = {}
    for run in leaving:
        path = _run_path(run, home)
        if path is None:
            continue  # only the store knows it
        why = shape_refusal(path, home, run.uid, run.source, real) \
            or youth(path, run.source, time.time() if now is None else now)
        if why is None:
            presence = _presence(path)
            if presence == FILES_ELSEWHERE:
                why = None if forget_missing else (
                    f"its directory {path} is {FILES_ELSEWHERE} (nor is the directory that "
                    "would hold it): its files are elsewhere; pass --otto-home, or "
                    "--forget-missing to drop the row")
            elif presence not in ("present", "gone"):
                why = presence
        if why:
            refused[run.id] = why
        else:
            by_path.setdefault(path, []).append(run)
    if by_path:
        leaving_ids = {r.id for r in leaving if r.id not in refused}
        taken = _claimed_below(claims(conn, home, leaving_ids), home)
        for path, runs in by_path.items():
            uid = taken.get(path)
            if uid is not None:
                for run in runs:
                    refused[run.id] = (f"its directory is also the directory of run {uid}, "
                                       "which stays (or holds a path of it); left alone")
    return refused


def _orphans(scan, doomed, runs, project, now, recent=None):
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
                if recent is not None:  # held back; listed so the user hears why
                    recent.append(path)
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
    target = os.path.normpath(os.path.join(parent, os.path.basename(path)))
    return target != real_home and is_inside(target, real_home), target


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
    if not _below(real, real_home):
        return None  # _inside reports these
    rel = os.path.relpath(real, real_home)
    if len(rel.split(os.sep)) < 2:
        return "directly below OTTO_HOME, so not a run directory; left alone"
    if os.path.isdir(os.path.join(real, ".cache")):
        return "holds a script cache: a project directory, not a run; left alone"
    store_real = os.path.realpath(store_file)
    if store_real != real and is_inside(store_real, real):
        return "holds the store; left alone"
    return None


JOURNAL_SUFFIX = ".clean-journal"


def journal_path(store_file):
    """Where a clean notes the runs it is deleting, until their rows are gone."""
    return os.path.abspath(store_file) + JOURNAL_SUFFIX


def _write_journal(path, home, candidates, forget_missing):
    import json
    data = {"home": home, "forget_missing": bool(forget_missing),
            "runs": [[c.db_id, c.run_id] for c in candidates]}
    atomic_write(path, json.dumps(data))


def _rows(conn, ids):
    """{db id: StoreRun} of the runs *ids* that still exist."""
    found = {}
    ids = list(ids)
    sql = ("SELECT r.id, r.uid, p.name, r.status, r.started_at, r.run_dir, r.size_bytes, "
           "r.ottofile, r.source FROM runs r JOIN projects p ON p.id = r.project_id "
           "WHERE r.id IN ({})")
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for row in conn.execute(sql.format(",".join("?" * len(chunk))), chunk):
            found[row[0]] = _store_run(row)
    return found


def execute(p, db=None, progress=None):
    """Carry out Plan *p*; returns a Result. Each run is checked again against
    the store as it is now (its row unchanged, its directory one run's and no
    staying run's). The runs to delete go to the journal first; store rows go
    only for runs whose directory is entirely gone, in one transaction after
    the files; then the journal goes."""
    from ottolytics.store.connection import Store
    result = Result()
    store_file = os.path.abspath(db_path(db, p.home))
    journal = journal_path(store_file)
    todo = []
    if p.runs:
        conn = open_for_reading(store_file)
        try:
            rows = _rows(conn, [c.db_id for c in p.runs])
            current = [c for c in p.runs
                       if c.db_id in rows and rows[c.db_id].uid == c.run_id]
            refused = refusals(conn, p.home, [rows[c.db_id] for c in current],
                               p.forget_missing)
        finally:
            conn.close()
        now = time.time()
        for c in current:
            row = rows[c.db_id]
            path = _run_path(row, p.home)
            why = ("still running" if row.status == "running" else
                   "its start time is unknown" if row.started_at is None else
                   "started within the last hour" if now - row.started_at < RECENT_S else
                   refused.get(c.db_id) or (path and _not_a_run_dir(path, p.home, store_file)))
            if why:
                result.errors.append((path or c.run_id, why))
                result.kept.append(c.run_id)
            else:
                todo.append((c, path))
    if todo:
        _write_journal(journal, p.home, [c for c, _path in todo], p.forget_missing)
    gone_ids = []
    for c, path in todo:
        if path:
            freed, errors, gone = remove(path, p.home, protect=[store_file])
            result.freed += freed
            result.errors += errors
        else:
            gone = True  # only the store knew it
        if gone:
            gone_ids.append((c.db_id, c.run_id))
            result.deleted.append(c.run_id)
        else:
            result.kept.append(c.run_id)
        if progress:
            progress(1)
    if gone_ids:
        with Store.open(store_file, create=False) as store:
            store.write(lambda conn: conn.executemany(
                "DELETE FROM runs WHERE id = ? AND uid = ?", gone_ids))
    if todo:
        try:
            os.unlink(journal)
        except FileNotFoundError:
            pass
    for path, _size, _project in p.cache:
        freed, errors, gone = remove(path, p.home, protect=[store_file])
        result.freed += freed
        result.errors += errors
        result.cache_deleted += int(gone)
        if progress:
            progress(1)
    return result


def pending(db=None, home=None):
    """The journal of a clean that was killed midway, as a dict, or None."""
    import json
    path = journal_path(db_path(db, home))
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        from ottolytics.store.migrations import StoreError
        raise StoreError(f"{path}: an interrupted clean's journal is unreadable ({exc}); "
                         "remove it, then run 'ottolytics clean' again") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not isinstance(data.get("home"), str):
        from ottolytics.store.migrations import StoreError
        raise StoreError(f"{path}: not a clean journal; remove it, then run "
                         "'ottolytics clean' again")
    data["path"] = path
    data["runs"] = [(r[0], r[1]) for r in runs if isinstance(r, list) and len(r) == 2
                    and isinstance(r[0], int) and isinstance(r[1], str)]
    return data


def resume(db=None, home=None, progress=None):
    """Finish a clean that was killed midway: delete what is left of the runs
    it was deleting, by the same rules, and their rows. Returns a Result, or
    None when no clean was interrupted."""
    from ottolytics.store.migrations import StoreError
    home = os.path.abspath(otto_home(home))
    data = pending(db, home)
    if data is None:
        return None
    if os.path.realpath(data["home"]) != os.path.realpath(home):
        raise StoreError(f"{data['path']}: a clean of OTTO_HOME {data['home']} was interrupted; "
                         f"finish it with 'ottolytics clean --otto-home {data['home']}' "
                         "(or remove the journal)")
    store_file = db_path(db, home)
    conn = open_for_reading(store_file)
    try:
        rows = _rows(conn, [i for i, _uid in data["runs"]])
    finally:
        conn.close()
    p = Plan(home=home, forget_missing=bool(data.get("forget_missing")))
    for db_id, uid in data["runs"]:
        run = rows.get(db_id)
        if run is not None and run.uid == uid:
            p.runs.append(Candidate(run.id, run.uid, run.project, run.status, run.started_at,
                                    _run_path(run, home), 0, "an interrupted clean"))
    result = execute(p, db, progress=progress)
    try:
        os.unlink(data["path"])
    except FileNotFoundError:
        pass
    return result


@dataclass
class Interrupted:
    """A clean killed midway, as the next clean finds it: *journal* is its
    journal's path; *finished* the Result of finishing it, or None when it was
    only found (a dry run)."""
    journal: str
    finished: "Result | None" = None


def finish_interrupted(db=None, home=None, *, dry_run=False, progress=None):
    """What ``ottolytics clean`` does first: finish a clean that was killed
    midway (resume), or on a *dry_run* only find it, changing nothing. Returns
    an Interrupted, or None when no clean was interrupted. Raises StoreError for
    a journal that is unreadable or of another OTTO_HOME (not on a dry run).

    >>> found = finish_interrupted(db, home)  # doctest: +SKIP
    >>> found and found.finished.deleted
    ['otto-1763650000-1a2b3c4d']
    """
    home = os.path.abspath(otto_home(home))
    if dry_run:
        data = pending(db, home)
        return None if data is None else Interrupted(data["path"])
    result = resume(db, home, progress=progress)
    return None if result is None else Interrupted(journal_path(db_path(db, home)), result)
