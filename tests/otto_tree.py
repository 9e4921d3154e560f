"""OTTO_HOME trees in otto's layout for the usage and clean tests, synced into a store."""

import os
import time
from pathlib import Path

from ottolytics.tools.otto_layout import Task, make_run
from ottolytics.sources.sync import sync

DAY = 86400


def build(home, ages_days, cwd="/src/web", failed=(), shared_script=False):
    """One otto run per age (days before now) of tasks lint -> build; runs whose
    index is in *failed* fail their build. Returns the run directories, oldest first.

    otto.db goes beside the runs, where ``OTTO_DB_PATH=$OTTO_HOME/otto.db`` puts it
    (otto's default is ``~/.otto/otto.db`` whatever OTTO_HOME says), and otto's
    auto-prune is off, as ``retention: auto_prune: false`` sets it: these trees
    are for clean's and usage's own policies."""
    now = int(time.time())
    runs = []
    for i, age in enumerate(sorted(ages_days, reverse=True)):
        ts = now - int(age * DAY)
        script = "#!/bin/sh\necho shared\n" if shared_script else f"#!/bin/sh\necho {i}\n"
        tasks = [Task("lint", script=script),
                 Task("build", start=5, deps=["lint"], script=script.replace("echo", "echo build"),
                      status="failed" if i in failed else "success",
                      stderr="boom\n" if i in failed else "")]
        run = make_run(home, cwd, ts, tasks, db_path=Path(home) / "otto.db", prune=False)
        runs.append(run)
    old = time.time() - 30 * DAY
    for run in runs:  # caches are old unless a test says otherwise
        for f in (run.parent / ".cache").iterdir():
            os.utime(f, (old, old), follow_symlinks=False)
    return runs


def synced(home, db):
    report = sync(db, otto_home_dir=str(home), source="otto")
    assert not report.as_dict().get("skipped"), report.as_dict()
    return db


def du(path):
    """Bytes below *path* as ottolytics counts them: the apparent size of every
    file and symlink (a link as itself, never followed); directories count 0,
    so the figure is the same on every filesystem. (``du -sb`` adds each
    directory's own size.) Computed here independently of ottolytics."""
    path = str(path)
    if not os.path.isdir(path) or os.path.islink(path):
        return os.lstat(path).st_size
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            total += os.lstat(os.path.join(root, name)).st_size
    return total
