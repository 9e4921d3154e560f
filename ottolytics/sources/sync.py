"""``ottolytics sync``: import the histories that otto, workflow-manager and
oneshot already wrote, incrementally and idempotently.

With no paths it imports otto under OTTO_HOME, plus workflow-manager and
oneshot at their default locations when they exist. A PATH names a source's
location explicitly (an OTTO_HOME, an executions.db, a oneshot directory or
session file); ``--source`` says which kind it is when that is not obvious.
Bad input is skipped with a counted warning and never stops the rest.
"""

import os
import sys
from os.path import expanduser, isdir, isfile, join

from ottolytics.sources.common import Report
from ottolytics.core.paths import otto_home
from ottolytics.store.connection import Store

SOURCES = ("otto", "workflow-manager", "oneshot")


def default_locations(home=None):
    """{source: path} for the sources that exist at their default places."""
    found = {"otto": otto_home(home)}
    # workflow-manager always writes $HOME/.workflow-manager/executions.db (runtime.rs,
    # dirs::home_dir()); it reads no variable to move it.
    wm = join(expanduser("~"), ".workflow-manager", "executions.db")
    if isfile(wm):
        found["workflow-manager"] = wm
    # oneshot keeps its sessions in Path.home()/.oneshot/sessions (session_utils.py);
    # --logs-dir moves them, and then they are synced by PATH.
    oneshot = join(expanduser("~"), ".oneshot", "sessions")
    if isdir(oneshot):
        found["oneshot"] = oneshot
    return found


def guess_source(path):
    """Which importer reads *path*, judged from what it holds; None if unclear."""
    if isfile(path):
        if path.endswith(".db"):
            return "workflow-manager"
        if path.endswith(".json"):
            return "oneshot"
        return None
    if isdir(path):
        from ottolytics.sources.otto import PROJECT_DIR
        try:
            names = os.listdir(path)
        except OSError:
            return None
        if "otto.db" in names or any(PROJECT_DIR.match(n) for n in names):
            return "otto"
        if "executions.db" in names:
            return "workflow-manager"
        from ottolytics.sources.oneshot import SESSION_FILE
        if any(SESSION_FILE.match(n) or n.endswith("-oneshot-log.json") for n in names):
            return "oneshot"
        try:  # ~/.oneshot, or a directory of session directories
            if any(isdir(join(path, n)) and any(SESSION_FILE.match(m) for m in
                                                os.listdir(join(path, n))) for n in names):
                return "oneshot"
        except OSError:
            return None
    return None


class _Progress:
    """A rich progress bar on a terminal, nothing otherwise."""

    def __init__(self, enabled):
        self.bar = None
        self.enabled = enabled

    def start(self, source):
        if not self.enabled:
            return None
        if self.bar is None:
            from rich.progress import Progress
            self.bar = Progress(transient=True)
            self.bar.start()
        task = self.bar.add_task(f"sync {source}", total=None)
        return lambda n=1: self.bar.advance(task, n)

    def stop(self):
        if self.bar is not None:
            self.bar.stop()


def sync(db=None, otto_home_dir=None, source=None, paths=(), progress=None):
    """Run the importers; returns a Report. Raises StoreError if the store is unusable."""
    report = Report()
    if paths:
        targets = []
        for path in paths:
            if not os.path.exists(path):
                report.skip(source or "sync", path, "does not exist")
                continue
            kind = source or guess_source(path)
            if kind is None:
                report.skip("sync", path, "cannot tell which source this is; pass --source")
                continue
            targets.append((kind, path))
    else:
        found = default_locations(otto_home_dir)
        targets = [(k, v) for k, v in found.items() if source in (None, k)]
    bar = _Progress(progress if progress is not None else sys.stderr.isatty())
    store = Store.open(db)
    try:
        for kind, path in targets:
            advance = bar.start(kind)
            if kind == "otto":
                from ottolytics.sources import otto as importer
            elif kind == "workflow-manager":
                from ottolytics.sources import workflow_manager as importer
            else:
                from ottolytics.sources import oneshot as importer
            importer.sync(store, path, report, progress=advance)
    finally:
        bar.stop()
        store.close()
    return report


def summary_lines(report, verbose=False):
    """The human summary: one line per source, then the skipped items (all with -v)."""
    lines = []
    sources = sorted(set(report.added) | set(report.updated) | set(report.unchanged)
                     | {s for s, _p, _r in report.skipped})
    for s in sources:
        skipped = sum(1 for k, _p, _r in report.skipped if k == s)
        lines.append(f"{s}: {report.added.get(s, 0)} added, {report.updated.get(s, 0)} updated, "
                     f"{report.unchanged.get(s, 0)} unchanged, {skipped} skipped")
    if not sources:
        lines.append("nothing to import")
    if report.skipped:
        if verbose:
            lines += [f"  skipped {p}: {r}" for _s, p, r in report.skipped]
        else:
            lines.append(f"{len(report.skipped)} items skipped with a warning; "
                         "run with -v to see them")
    return lines
