"""Where things live: OTTO_HOME, the store, run directories and spools.

Paths under OTTO_HOME are stored relative to it so a home can be moved or
mounted elsewhere; everything else is stored absolute.

The write path works with plain ``str`` paths and ``os.path``: importing
pathlib alone would cost the shim about 4 ms of its start-up budget.
"""

import os
import sys

from ottolytics.core.errors import Refused
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


def store_home(db=None, home=None) -> str:
    """The directory a store's runs keep their logs under (``ottolytics/runs``),
    and that the relative paths it stores resolve against: *home* when given,
    else the store's own directory (the one rule of the shim, which writes the
    logs there, and of the readers). For the default store,
    ``$OTTO_HOME/ottolytics.db``, that is OTTO_HOME; a store kept elsewhere
    (``--db``, ``$OTTOLYTICS_DB``) keeps its runs' logs beside it."""
    return home if home is not None else os.path.dirname(os.path.abspath(db_path(db)))


def to_stored(path, home=None):
    """Store *path* relative to OTTO_HOME when it lies below it, else absolute."""
    if path is None:
        return None
    p = abspath(str(path))
    base = abspath(otto_home(home))
    if is_inside(p, base):
        return relpath(p, base)
    return p


# -- the one rule of stored paths -------------------------------------------------
#
# A table each: the first row whose condition holds gives the path. Terms: "path"
# (a task's stored script/stdout/stderr path), "run_dir" (its run's stored
# run_dir), "home" (OTTO_HOME, resolved by otto_home). A condition is (test, term)
# with test "null", "absolute" (starts with /) or "blank" (NULL or ''); None always
# holds. A result is a term, None, a rule, or ("join", a, b): os.path.join(a, b),
# b relative, normalizing nothing. _resolve runs a rule in Python, _rule_sql
# compiles it to SQL for the read engine, so the two can't drift (a test holds
# them equal on odd inputs, in DuckDB and SQLite).

RUN_DIR_RULE = (
    (("null", "run_dir"), None),
    (("absolute", "run_dir"), "run_dir"),
    (None, ("join", "home", "run_dir")),
)
TASK_PATH_RULE = (
    (("null", "path"), None),
    (("absolute", "path"), "path"),
    (("blank", "run_dir"), ("join", "home", "path")),
    (None, ("join", RUN_DIR_RULE, "path")),
)

_PY_TESTS = {"null": lambda v: v is None, "absolute": lambda v: v is not None and isabs(v),
             "blank": lambda v: not v}
_SQL_TESTS = {"null": "{0} IS NULL", "absolute": "{0} LIKE '/%'",
              "blank": "({0} IS NULL OR {0} = '')"}


def _is_join(result):
    return isinstance(result, tuple) and len(result) == 3 and result[0] == "join"


def _resolve(result, terms):
    """*result* (a term, None, a join or a rule) in Python over *terms*."""
    if result is None or isinstance(result, str):
        return None if result is None else terms[result]
    if _is_join(result):
        return join(_resolve(result[1], terms), _resolve(result[2], terms))
    for condition, value in result:
        if condition is None or _PY_TESTS[condition[0]](terms[condition[1]]):
            return _resolve(value, terms)
    return None


def _rule_sql(result, columns, home):
    """*result* as SQL over *columns* ({term: SQL}) with *home* a literal."""
    if result is None:
        return "NULL"
    if result == "home":
        return _sql_text(home)
    if isinstance(result, str):
        return columns[result]
    if _is_join(result):
        right = _rule_sql(result[2], columns, home)
        if result[1] == "home":     # known now: one slash, never two
            return f"{_sql_text(join(home, ''))} || {right}"
        return _sql_join(_rule_sql(result[1], columns, home), right)
    cases = []
    for condition, value in result:
        sql = _rule_sql(value, columns, home)
        if condition is None:
            return "CASE " + " ".join(cases) + f" ELSE {sql} END"
        test = _SQL_TESTS[condition[0]].format(columns[condition[1]])
        cases.append(f"WHEN {test} THEN {sql}")
    return "CASE " + " ".join(cases) + " ELSE NULL END"


def from_stored(stored, home=None):
    """Inverse of :func:`to_stored`: an absolute path (str), or None. The rule
    RUN_DIR_RULE; :func:`run_dir_sql` is the same rule in SQL."""
    return _resolve(RUN_DIR_RULE, {"run_dir": stored, "home": otto_home(home)})


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
    """Absolute path of a stored task path; *run_dir_stored* is the run's ``run_dir``.

    The rule TASK_PATH_RULE, which :func:`stored_path_sql` compiles to SQL (both
    join as ``os.path.join`` does and normalize nothing), so a path reads alike
    in ``info``, the frames and the log readers."""
    return _resolve(TASK_PATH_RULE, {"path": stored, "run_dir": run_dir_stored,
                                     "home": otto_home(home)})


def _sql_text(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _sql_join(base, column):
    """SQL for ``os.path.join(base, column)`` with *column* relative: no second
    slash when *base* ends with one."""
    return f"CASE WHEN {base} LIKE '%/' THEN {base} || {column} ELSE {base} || '/' || {column} END"


def run_dir_sql(run_dir, home=None) -> str:
    """SQL over the column *run_dir* computing :func:`from_stored` with *home*
    (RUN_DIR_RULE, compiled)."""
    return _rule_sql(RUN_DIR_RULE, {"run_dir": run_dir}, otto_home(home))


def stored_path_sql(column, run_dir, home=None) -> str:
    """SQL over the columns *column* and *run_dir* computing
    :func:`task_path_from_stored` with *home* (TASK_PATH_RULE, compiled)."""
    return _rule_sql(TASK_PATH_RULE, {"path": column, "run_dir": run_dir}, otto_home(home))


def is_inside(path, tree) -> bool:
    """*path* is *tree* or lies below it, compared as written after normalizing
    (``..`` folded); the one containment rule. Callers that must not be fooled
    by links pass real paths (os.path.realpath)."""
    path, tree = os.path.normpath(str(path)), os.path.normpath(str(tree))
    return path == tree or path.startswith(tree.rstrip(os.sep) + os.sep)


# -- reading the log files that store rows name ------------------------------------
#
# A row's paths are untrusted: the public Recorder API and other tools' databases
# (imported by sync) write them. A log file is read only when
#   * its real path lies inside its own run's directory below the store's home: for
#     an otto run ``<project>-<hash8>/<unix seconds>`` named after the run's own id
#     ``otto-<unix seconds>-<hash8>`` (stored absolute when sync read an OTTO_HOME
#     that is not the store's directory); for any other run ``ottolytics/runs/<run id>``,
#     where the shim and ``ottolytics run start`` keep a run's logs (so never another
#     run's files, nor the store's, nor whatever else lies beside the store);
#   * no component below the run's directory is hidden (``.ssh``, ``.git``...), and
#     it is no store file (a name ending ``-wal``, ``-shm``, ``-journal`` or
#     ``.clean-journal``, a ``.spool`` directory, an SQLite database);
#   * no component below the home is a symlink at the moment it is opened (the path
#     is opened one component at a time with O_NOFOLLOW, from the home's real path);
#   * it is a regular file (opened O_NONBLOCK, then fstat: a FIFO or a device is
#     refused at once instead of blocking).


class LogRefused(Refused):
    """A log path that the read rule refuses; str() is one line naming path and reason."""

    def __init__(self, path, reason):
        self.path, self.reason = path, reason
        super().__init__(f"{_shown(path)}: not read: {reason}")


def _shown(path):
    """*path* for a message: control characters escaped, bounded length."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))
    return text if len(text) <= 300 else text[:300] + "..."


def _is_plain_relative(stored):
    parts = stored.split("/")
    return not isabs(stored) and all(p not in ("", ".", "..") for p in parts)


def _otto_run_shape(run_dir, uid):
    """True when *run_dir* is ``<project>-<hash8>/<unix seconds>`` (relative to the
    store's directory, or absolute: an OTTO_HOME synced into a store kept
    elsewhere) and *uid* is the id sync gives that directory's run,
    ``otto-<unix seconds>-<hash8>``."""
    rest = run_dir[1:] if isabs(run_dir) else run_dir
    parts = rest.split("/")
    if not _is_plain_relative(rest) or len(parts) < 2 or \
            (len(parts) != 2 and not isabs(run_dir)):
        return False
    parts = parts[-2:]
    name, _sep, digest = parts[0].rpartition("-")
    ts = parts[1]
    return (bool(name) and len(digest) == 8 and all(c in "0123456789abcdef" for c in digest)
            and ts.isascii() and ts.isdigit() and uid == f"otto-{ts}-{digest}")


def log_tree(source, run_dir_stored, home, uid=None) -> str | None:
    """The directory a run's log files must lie in, or None when the run has none:
    an otto run whose ``run_dir`` is not its own ``<project>-<hash8>/<unix-ts>``,
    any other run whose id *uid* is no plain file name."""
    base = abspath(str(home))
    if source == "otto":
        if not isinstance(run_dir_stored, str) or not _otto_run_shape(run_dir_stored, uid):
            return None
        return join(base, run_dir_stored)
    if not isinstance(uid, str) or not uid or uid.startswith(".") or "/" in uid \
            or "\0" in uid or os.sep in uid:
        return None
    return join(base, "ottolytics", "runs", uid)


_STORE_SUFFIXES = ("-wal", "-shm", "-journal", ".clean-journal")


def _store_file(parts):
    """Why the path of components *parts* may be one of a store's files, or None."""
    if parts[-1].endswith(_STORE_SUFFIXES) or any(p.endswith(".spool") for p in parts):
        return "a store's file (WAL, journal or spool), never a log"
    return None


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) \
    | getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) \
    | getattr(os, "O_CLOEXEC", 0)


def open_log(path, tree, home):
    """Open the log file at *path* for reading (binary, unbuffered file object),
    if the read rule above allows it; else raise LogRefused."""
    import stat
    if path is None or not isinstance(path, str) or path == "":
        raise LogRefused(path, "no path")
    if "\0" in path:
        raise LogRefused(path, "the path holds a NUL byte")
    if tree is None:
        raise LogRefused(path, "its run has no directory of its own to read logs from "
                         "(an otto run_dir that is not <project>-<hash8>/<unix-ts> of its "
                         "own run id, or a run id that is no plain name)")
    home_real = os.path.realpath(str(home))
    tree_real = os.path.realpath(tree)
    if tree_real == os.sep:
        raise LogRefused(path, "the store's directory is the filesystem root; logs are read "
                         "only below a store kept in a directory of its own")
    if not is_inside(tree_real, home_real):
        raise LogRefused(path, f"its run's directory leads outside {_shown(home_real)}")
    real = os.path.realpath(path)
    if not is_inside(real, tree_real):
        where = "the run's directory" if tree_real != home_real else "the store's directory"
        raise LogRefused(path, f"it lies outside {where} {_shown(tree_real)}")
    if real == home_real or real == tree_real:
        raise LogRefused(path, "not a regular file")
    below = os.path.relpath(real, tree_real).split(os.sep)
    if any(p.startswith(".") for p in below):
        raise LogRefused(path, "it lies in a hidden directory or is a hidden file")
    why = _store_file(below)
    if why:
        raise LogRefused(path, why)
    parts = os.path.relpath(real, home_real).split(os.sep)
    try:
        fd = os.open(home_real, _DIR_FLAGS)
    except OSError as exc:
        raise LogRefused(path, exc.strerror or str(exc)) from None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        nxt = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        os.close(fd)
        fd = nxt
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LogRefused(path, "not a regular file")
        if os.pread(fd, 16, 0) == b"SQLite format 3\0":
            raise LogRefused(path, "an SQLite database, never a log")
    except LogRefused:
        os.close(fd)
        raise
    except OSError as exc:
        os.close(fd)
        import errno
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LogRefused(path, "a component became a symlink while it was opened") \
                from None
        if exc.errno == errno.ENOENT:
            raise FileNotFoundError(exc.errno, exc.strerror, path) from None
        raise LogRefused(path, exc.strerror or str(exc)) from None
    return os.fdopen(fd, "rb", buffering=0)


def open_task_log(stored, run_dir_stored, source, home, uid=None):
    """(absolute path, open file) of a task's stored log path, by the read rule;
    *uid* is the run's id. Raises LogRefused, or FileNotFoundError when the file
    is simply not there."""
    path = task_path_from_stored(stored, run_dir_stored, home)
    tree = log_tree(source, run_dir_stored, home, uid)
    if tree is not None and source == "otto" and isabs(run_dir_stored):
        home = os.path.dirname(os.path.dirname(tree))  # the OTTO_HOME that was synced
    return path, open_log(path, tree, home)


def check_task_log(stored, run_dir_stored, source, home, uid=None):
    """None when the read rule would read the task's log file, else why not (one
    line); a missing file is 'missing'."""
    try:
        _path, f = open_task_log(stored, run_dir_stored, source, home, uid)
    except LogRefused as exc:
        return exc.reason
    except FileNotFoundError:
        return "missing"
    f.close()
    return None


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
    return sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
