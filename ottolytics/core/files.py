"""Writing a file so that a reader sees the old one or the new one, whole: the
one definition, used by the weekly report's CSV, the Prometheus textfile,
clean's journal and the Parquet dataset's manifest. Standard library only."""

import os
import stat


def fsync_file(path):
    """fsync the file *path*: its bytes are on disk before a rename makes it visible."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    """fsync the directory *path*, so a rename in it survives a crash; quietly
    nothing where the file system cannot open or sync a directory."""
    try:
        fd = os.open(path or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data, encoding="utf-8"):
    """Replace *path* with *data* (``str``, encoded as *encoding*, or ``bytes``)
    atomically: a hidden temporary file in the same directory (``.NAME.….tmp``,
    created with the umask's mode like any new file), fsync, rename over *path*,
    fsync the directory. On any failure the temporary file is removed and *path*
    is as it was. The directory must exist. Returns *path* as given, as a str."""
    text = str(path)
    folder, name = os.path.split(os.path.abspath(text))
    if isinstance(data, str):
        data = data.encode(encoding)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _refuse_special(os.path.join(folder, name), text)  # (again: it may have changed)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
    return text


def output_path(path, example):
    """The absolute path of a file an export is to write at *path* (the weekly
    report's CSV, the Prometheus textfile): the one rule for both. A directory,
    or a path in a directory that does not exist, raises IsADirectoryError or
    FileNotFoundError with one line that says what to give instead (*example*:
    a file name to suggest inside a directory); nothing is created."""
    text = str(path)
    full = os.path.abspath(text)
    if os.path.isdir(full) or text.endswith((os.sep, "/")):
        raise IsADirectoryError(f"{text}: is a directory; give a file name such as "
                                f"{os.path.join(text, example)}")
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: directory does not exist; create it first "
                                f"(mkdir -p {folder})")
    _refuse_special(full, text)
    writable(folder)
    return full


def _refuse_special(full, text):
    """FileExistsError, one line, when *full* is there and not a regular file: the
    file is replaced by a rename, so a link, a FIFO or a device would become a
    regular file (`/dev/stdout` broken for the machine)."""
    try:
        mode = os.lstat(full).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "a special file"
        raise FileExistsError(f"{text}: is {what}, not a regular file; give a regular "
                              f"file or a new name (an export replaces the file whole)")


def writable(folder):
    """Raise PermissionError, in one line that says what to do, unless new files
    can be made in the directory *folder* (read-only file system, no permission,
    immutable)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{folder}: cannot write there (read-only or not "
                              f"permitted); choose a directory you can write to")


LOCK_WAIT_S = 600.0  # how long a lock is waited for, unless OTTOLYTICS_LOCK_WAIT says


def lock_wait():
    """Seconds to wait for a lock: ``$OTTOLYTICS_LOCK_WAIT`` (a number, 0 for not
    at all), else LOCK_WAIT_S."""
    text = os.environ.get("OTTOLYTICS_LOCK_WAIT", "").strip()
    try:
        value = float(text) if text else LOCK_WAIT_S
    except ValueError:
        return LOCK_WAIT_S
    return value if value == value and value >= 0 else LOCK_WAIT_S


class FileLock:
    """An exclusive lock on the file *path* (made if missing) while the block runs,
    for writers that take turns: flock, released when the descriptor closes (also
    when the process dies). None where the platform has no fcntl.

    A lock another process holds is waited for *wait* seconds (None: lock_wait(),
    ten minutes unless ``OTTOLYTICS_LOCK_WAIT`` says), then ``Busy`` is raised:
    one line naming *what* was to be done, the lock file and the process holding
    it (its pid is written into the file while held), with *hint* appended. A
    holder that is merely slow is waited for; one that is stuck (stopped, hung
    on a network file system) no longer makes every later writer wait for ever."""

    def __init__(self, path, wait=None, what=None, hint=None):
        self.path, self.fd, self._owned = path, None, False
        self.wait, self.what, self.hint = wait, what, hint

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        import stat
        import time
        try:  # never through a link: the pid written below would land in its target
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError:
            if os.path.islink(self.path):
                from ottolytics.core.errors import Refused
                raise Refused(f"{self.path}: is a symbolic link, not a lock file; remove it "
                              f"(ottolytics makes its own)") from None
            raise
        try:
            info = os.fstat(fd)
            # the pid is written only into a lock file of its own: a regular file
            # with one name (a hard link's other name would get it too)
            self._owned = stat.S_ISREG(info.st_mode) and info.st_nlink == 1
            wait = lock_wait() if self.wait is None else self.wait
            deadline, pause = time.monotonic() + wait, 0.01
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                if time.monotonic() >= deadline:
                    raise self._busy(wait, self._holder(fd))
                time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 0.25)
            if self._owned:  # who holds it, for a process that waits in vain
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:  # (an interrupted wait too: the descriptor is closed)
            os.close(fd)
            raise
        self.fd = fd
        return self

    def _holder(self, fd):
        if not self._owned:
            return None
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _busy(self, wait, pid):
        from ottolytics.core.errors import Busy
        who = f"another process (pid {pid})" if pid else "another process"
        return Busy(f"{self.what or self.path}: {who} has held the lock {self.path} for "
                    f"over {wait:g} s; wait for it to end or stop it"
                    + (f", {self.hint}" if self.hint else "")
                    + " (OTTOLYTICS_LOCK_WAIT sets how many seconds to wait)")

    def __exit__(self, *exc):
        if self.fd is not None:
            if self._owned:
                try:  # no stale pid for the next process that waits
                    os.ftruncate(self.fd, 0)
                except OSError:
                    pass
            os.close(self.fd)  # closing releases the lock
            self.fd = None
