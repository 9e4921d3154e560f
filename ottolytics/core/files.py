"""Writing a file so that a reader sees the old one or the new one, whole: the
one definition, used by the weekly report's CSV, the Prometheus textfile,
clean's journal and the Parquet dataset's manifest. Standard library only."""

import os


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
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
    return text


class FileLock:
    """An exclusive lock on the file *path* (made if missing) while the block runs,
    for writers that take turns: flock, released when the descriptor closes (also
    when the process dies). None where the platform has no fcntl."""

    def __init__(self, path):
        self.path, self.fd = path, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
