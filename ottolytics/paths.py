"""Where things live: OTTO_HOME, the store, run directories and spools.

Paths under OTTO_HOME are stored relative to it so a home can be moved or
mounted elsewhere; everything else is stored absolute.

The write path works with plain ``str`` paths and ``os.path``: importing
pathlib alone would cost the shim about 4 ms of its start-up budget.
"""

import os
import sys
from os.path import abspath, expanduser, isabs, join, relpath

DB_FILENAME = "ottolytics.db"


def otto_home(override=None) -> str:
    """OTTO_HOME as otto resolves it: the override, ``$OTTO_HOME``, or ``~/.otto``."""
    if override:
        return expanduser(str(override))
    env = os.environ.get("OTTO_HOME")
    if env:
        return expanduser(env)
    return join(expanduser("~"), ".otto")


def db_path(db=None, home=None) -> str:
    """The store: ``--db``, then ``$OTTOLYTICS_DB``, then ``$OTTO_HOME/ottolytics.db``."""
    if db:
        return expanduser(str(db))
    env = os.environ.get("OTTOLYTICS_DB")
    if env:
        return expanduser(env)
    return join(otto_home(home), DB_FILENAME)


def to_stored(path, home=None):
    """Store *path* relative to OTTO_HOME when it lies below it, else absolute."""
    if path is None:
        return None
    p = abspath(str(path))
    base = abspath(otto_home(home))
    if p == base or p.startswith(base.rstrip(os.sep) + os.sep):
        return relpath(p, base)
    return p


def from_stored(stored, home=None):
    """Inverse of :func:`to_stored`: an absolute path (str), or None."""
    if stored is None:
        return None
    return stored if isabs(stored) else join(otto_home(home), stored)


def task_path_to_stored(path, run_dir=None, home=None):
    """Store a task's file path compactly.

    Inside OTTO_HOME and with a run directory: relative to the run directory
    (``tasks/build/stdout.log``), which is both short and relocatable. Else as
    :func:`to_stored` does.
    """
    if path is None:
        return None
    stored = to_stored(path, home)
    if run_dir is None or isabs(stored):
        return stored
    return relpath(abspath(str(path)), abspath(str(run_dir)))


def task_path_from_stored(stored, run_dir_stored=None, home=None):
    """Absolute path of a stored task path; *run_dir_stored* is the run's ``run_dir``."""
    if stored is None:
        return None
    if isabs(stored):
        return stored
    if run_dir_stored:
        return os.path.normpath(join(from_stored(run_dir_stored, home), stored))
    return join(otto_home(home), stored)


def dir_size(path) -> int:
    """The size of *path*, by the one definition every size in ottolytics uses:
    the apparent size (``st_size``) of every file and symlink below it, a link
    counting as itself and never followed; directories themselves count 0, so
    a run has the same size on every filesystem. 0 when *path* is missing."""
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    if st.st_mode & 0o170000 != 0o040000:
        return st.st_size
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_mode & 0o170000 == 0o040000:
                    stack.append(entry.path)
                else:
                    total += st.st_size
    return total


def runs_root(home=None) -> str:
    """Directory holding the run directories that ottolytics itself creates."""
    return join(otto_home(home), "ottolytics", "runs")


def safe_component(name: str) -> str:
    """Turn a project or task name into one safe path component."""
    cleaned = "".join(c if (c.isalnum() or c in "-_.:@+") else "_" for c in name)
    cleaned = cleaned.lstrip(".") or "_"
    return cleaned[:120]


def spool_dirs(db):
    """Candidate spool directories for *db* (str paths), in order of preference.

    The first sits beside the store; the fallbacks are per-user state and temp
    directories keyed by the store's absolute path, for when the store's own
    directory is missing or read-only.
    """
    db = abspath(str(db))
    key = sha1_hex(db)[:12]
    dirs = [db + ".spool"]
    explicit = os.environ.get("OTTOLYTICS_SPOOL_DIR")
    if explicit:
        dirs.append(join(explicit, key))
    state = os.environ.get("XDG_STATE_HOME") or join(expanduser("~"), ".local", "state")
    dirs.append(join(state, "ottolytics", "spool", key))
    tmp = os.environ.get("TMPDIR") or "/tmp"
    dirs.append(join(tmp, f"ottolytics-{os.getuid()}", "spool", key))
    return dirs


def sha1_hex(text: str) -> str:
    """SHA-1 of *text*; the builtin module avoids hashlib's OpenSSL start-up cost."""
    try:
        from _sha1 import sha1
    except ImportError:
        from hashlib import sha1
    return sha1(text.encode()).hexdigest()


def sha256_hex(text: str) -> str:
    """SHA-256 of *text*, without hashlib's start-up cost where a builtin exists."""
    try:
        if sys.version_info >= (3, 12):
            from _sha2 import sha256
        else:
            from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    return sha256(text.encode()).hexdigest()
