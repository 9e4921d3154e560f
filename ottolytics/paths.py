"""Where things live: OTTO_HOME, the store, run directories and spools.

Paths under OTTO_HOME are stored relative to it so a home can be moved or
mounted elsewhere; everything else is stored absolute.
"""

import hashlib
import os
import tempfile
from pathlib import Path

DB_FILENAME = "ottolytics.db"


def otto_home(override=None) -> Path:
    """OTTO_HOME as otto resolves it: the override, ``$OTTO_HOME``, or ``~/.otto``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("OTTO_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".otto"


def db_path(db=None, home=None) -> Path:
    """The store: ``--db``, then ``$OTTOLYTICS_DB``, then ``$OTTO_HOME/ottolytics.db``."""
    if db:
        return Path(db).expanduser()
    env = os.environ.get("OTTOLYTICS_DB")
    if env:
        return Path(env).expanduser()
    return otto_home(home) / DB_FILENAME


def to_stored(path, home=None):
    """Store *path* relative to OTTO_HOME when it lies below it, else absolute."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_absolute():
        p = Path.cwd() / p
    base = otto_home(home)
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


def from_stored(stored, home=None):
    """Inverse of :func:`to_stored`: an absolute path, or None."""
    if stored is None:
        return None
    p = Path(stored)
    return p if p.is_absolute() else otto_home(home) / p


def runs_root(home=None) -> Path:
    """Directory holding the run directories that ottolytics itself creates."""
    return otto_home(home) / "ottolytics" / "runs"


def safe_component(name: str) -> str:
    """Turn a project or task name into one safe path component."""
    cleaned = "".join(c if (c.isalnum() or c in "-_.:@+") else "_" for c in name)
    cleaned = cleaned.lstrip(".") or "_"
    return cleaned[:120]


def spool_dirs(db: Path):
    """Candidate spool directories for *db*, in order of preference.

    The first sits beside the store; the fallbacks are per-user state and temp
    directories keyed by the store's absolute path, for when the store's own
    directory is missing or read-only.
    """
    db = Path(os.path.abspath(db))
    key = hashlib.sha1(str(db).encode()).hexdigest()[:12]
    dirs = [db.parent / (db.name + ".spool")]
    explicit = os.environ.get("OTTOLYTICS_SPOOL_DIR")
    if explicit:
        dirs.append(Path(explicit) / key)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    dirs.append(Path(state) / "ottolytics" / "spool" / key)
    dirs.append(Path(tempfile.gettempdir()) / f"ottolytics-{os.getuid()}" / "spool" / key)
    return dirs
