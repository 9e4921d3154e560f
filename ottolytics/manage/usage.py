"""``ottolytics usage``: what OTTO_HOME holds, per project, measured now.

Every size here follows the one definition of ``paths.dir_size`` (apparent
bytes of files and links; directories count 0) and is measured now; the sizes
stored in the runs (``size_bytes``) are the recorded ones.

One parallel walk (``disk.scan``) gives the total, each run directory's size,
each project's script cache and the orphaned cache files. The sizes measured
are written back: each known run's ``size_bytes``, and one ``disk_samples``
row per project, so that analysis can trend disk growth over time. The
recommendations come from the same plan ``clean`` would carry out.
Standard library only.
"""

import os
import time

from ottolytics.manage import clean
from ottolytics.manage import disk
from ottolytics.manage.listing import open_for_reading
from ottolytics.core.paths import db_path, from_stored, otto_home


def _project_name(pd, known):
    """A project directory's name for people: the store's, else otto's dir name."""
    names = [known[os.path.normpath(r.path)].project for r in pd.runs
             if os.path.normpath(r.path) in known]
    if names:
        return max(set(names), key=names.count)
    m = disk.PROJECT_DIR.match(pd.name)
    return m.group("name") if m else pd.name


def usage(db=None, home=None, project=None, progress=None, record=True, now=None):
    """The usage report as a dict (see the README for its fields). With *record*,
    the measured sizes are stored (when the store exists and is writable)."""
    home = os.path.abspath(otto_home(home))
    if not os.path.isdir(home):
        from ottolytics.store.migrations import StoreError
        raise StoreError(f"{home}: no OTTO_HOME here; pass --otto-home DIR or set OTTO_HOME")
    now = time.time() if now is None else now
    store_file = db_path(db, home)
    runs = []
    if os.path.exists(store_file):
        # The store first: a locked or unreadable one fails now, not after a long
        # walk; closed during the walk, so its -shm file is not measured.
        conn = open_for_reading(store_file)
        try:
            runs = clean.store_runs(conn)
        finally:
            conn.close()
    scan = disk.scan(home, progress=progress)
    conn = open_for_reading(store_file) if os.path.exists(store_file) else None
    try:
        known = {os.path.normpath(from_stored(r.run_dir, home)): r for r in runs if r.run_dir}
        projects, largest = {}, []
        for pd in scan.projects.values():
            otto_name = _project_name(pd, known) if pd.name != "ottolytics" else None
            orphans = set(pd.orphans()) if pd.cache else set()
            if otto_name:
                row = projects.setdefault(otto_name, _empty(otto_name))
                row["project_dirs"].append(pd.path)
                row["cache_bytes"] += pd.cache_bytes
                row["cache_files"] += len(pd.cache)
                row["orphan_cache_bytes"] += sum(pd.cache[n] for n in orphans)
                row["orphan_cache_files"] += len(orphans)
                row["other_bytes"] += pd.other_bytes
            for r in pd.runs:
                run = known.get(os.path.normpath(r.path))
                name = otto_name or (run.project if run else "(unknown)")
                row = projects.setdefault(name, _empty(name))
                started = run.started_at if run else (
                    float(r.name) if r.name.isdigit() else None)
                row["runs"] += 1
                row["run_bytes"] += r.tree.bytes
                if started is not None and (row["oldest_run"] is None
                                            or started < row["oldest_run"]):
                    row["oldest_run"] = started
                largest.append({"run_id": run.uid if run else None, "project": name,
                                "started_at": started, "bytes": r.tree.bytes, "path": r.path})
        for run in runs:  # store runs with no directory on disk still count as runs
            row = projects.get(run.project)
            if row is not None:
                row["store_runs"] += 1
        largest.sort(key=lambda x: -x["bytes"])
        report = {
            "home": home, "measured_at": now, "total_bytes": scan.total_bytes,
            "entries": scan.entries,
            "projects": sorted((v for k, v in projects.items() if not project or k == project),
                               key=lambda v: -(v["run_bytes"] + v["cache_bytes"])),
            "largest_runs": [x for x in largest if not project or x["project"] == project][:10],
            "orphan_cache_bytes": sum(v["orphan_cache_bytes"] for v in projects.values()
                                      if not project or v["project"] == project),
            "recommendations": _recommend(db, home, scan, conn, now, project),
            "errors": [{"path": path, "error": msg} for path, msg in scan.errors],
        }
    finally:
        if conn is not None:
            conn.close()
    if record and conn is not None:
        report["recorded"] = _record(store_file, known, scan, projects, now)
    return report


def _empty(name):
    return {"project": name, "runs": 0, "store_runs": 0, "run_bytes": 0, "cache_bytes": 0,
            "cache_files": 0, "orphan_cache_bytes": 0, "orphan_cache_files": 0,
            "other_bytes": 0, "oldest_run": None, "project_dirs": []}


def _recommend(db, home, scan, conn, now, project):
    """What clean would free: under the retention in force, its cache, and a
    tighter retention; each figure from the plan clean itself would make."""
    from ottolytics.core.formatting import human_bytes
    out = []
    p = clean.plan(db, home, scan=scan, conn=conn, now=now, project=project)
    if p.runs:
        out.append(f"ottolytics clean would free {human_bytes(p.run_bytes)} (measured now; "
                   f"{len(p.runs)} runs; {_policy_text(p)})")
    orphans = clean.plan(db, home, scan=scan, conn=conn, now=now, project=project,
                         cache_only=True)
    if orphans.cache_bytes:
        out.append(f"ottolytics clean --cache-only would free "
                   f"{human_bytes(orphans.cache_bytes)} of orphaned cache (measured now; "
                   f"{len(orphans.cache)} files)")
    days = min((v.keep_days for v in p.policies.values()), default=None)
    if days and days > 7:
        tighter = clean.plan(db, home, keep_days=7, scan=scan, conn=conn, now=now,
                             project=project)
        if tighter.run_bytes > p.run_bytes:
            out.append(f"ottolytics clean --keep 7 would free {human_bytes(tighter.run_bytes)} "
                       f"(measured now; {len(tighter.runs)} runs)")
    if not out:
        out.append("nothing to clean under the retention in force")
    return out


def _policy_text(p):
    texts = {v.describe() for v in p.policies.values()}
    return texts.pop() if len(texts) == 1 else "per-project retention"


def _record(store_file, known, scan, projects, now):
    """Write the measured sizes; returns how many runs were updated, or an error."""
    from ottolytics.store.connection import Store
    sizes = []
    for r in scan.run_dirs():
        run = known.get(os.path.normpath(r.path))
        if run is not None and run.size_bytes != r.tree.bytes:
            sizes.append((r.tree.bytes, run.id))
    samples = [(now, v["project"], v["runs"], v["run_bytes"], v["cache_bytes"],
                v["orphan_cache_bytes"], v["other_bytes"]) for v in projects.values()]

    def write(conn):
        conn.executemany("UPDATE runs SET size_bytes = ? WHERE id = ?", sizes)
        conn.executemany("INSERT OR REPLACE INTO disk_samples VALUES (?, ?, ?, ?, ?, ?, ?)",
                         samples)
    try:
        with Store.open(store_file, create=False) as store:
            store.write(write)
    except Exception as exc:  # reporting must not fail because a write did
        return {"error": f"{store_file}: sizes not recorded ({exc})"}
    return {"runs_updated": len(sizes), "samples": len(samples)}
