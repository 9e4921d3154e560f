"""Which stores this process has open through Python's sqlite3, so that DuckDB's
own SQLite never touches one of them at the same time.

Python's sqlite3 and DuckDB's sqlite scanner each carry their own SQLite, and
POSIX locks do not separate two libraries within one process: a recorder
writing a WAL store while DuckDB reads it in the same process crashed with
SIGBUS. Every connection the write path opens is registered here; the read
path takes a consistent snapshot instead of attaching a registered file, and
holds ``lock`` while DuckDB has a store attached, so no new connection opens
meanwhile. Standard library only.
"""

import os
import sqlite3
import threading
from urllib.parse import unquote

lock = threading.RLock()
_open = {}  # real path -> number of open sqlite3 connections


def _key(path):
    return os.path.realpath(str(path))


def is_open(path):
    """True while this process has a sqlite3 connection to *path*."""
    with lock:
        return _open.get(_key(path), 0) > 0


class TrackedConnection(sqlite3.Connection):
    """A sqlite3 connection that registers its store while it is open."""

    def __init__(self, path, *args, **kwargs):
        super().__init__(path, *args, **kwargs)
        if kwargs.get("uri") and str(path).startswith("file:"):
            # the URI's path, percent-escapes undone (store.connection escapes %?#)
            path = unquote(str(path)[5:].split("?", 1)[0])
        self._tracked = _key(path)
        with lock:
            _open[self._tracked] = _open.get(self._tracked, 0) + 1

    def close(self):
        key, self._tracked = getattr(self, "_tracked", None), None
        try:
            super().close()
        finally:
            if key is not None:
                with lock:
                    _open[key] -= 1
                    if _open[key] <= 0:
                        del _open[key]
