"""The one tree of errors ottolytics raises on purpose. Standard library only.

Every error's ``str()`` is one line that names the file or argument and says
what to do. ``exit_code`` is what the command line exits with: the CLI's main
maps an error to its code and its line in one place, so each command raises
rather than deciding (codes as docs/cli.md lists them: 1 the store is unusable,
a run or log not found or refused, 2 bad arguments).

    OttolyticsError                 exit 1
    ├── UsageError (ValueError)     exit 2: a bad argument or option
    ├── ConfigError (ValueError)    a setting in a file can't be used (retention.PolicyError)
    ├── StoreError                  the store can't be used (migrations: SchemaTooNew,
    │   │                           NotAStore, Unreadable, StoreLocked, NotUtf8;
    │   │                           connection: StoreBusy)
    │   └── ReadError               the read path can't work (DuckDB's sqlite scanner)
    ├── NotFound (KeyError)         something named does not exist
    │   └── RunNotFound (StoreError too)   RUN matched no run, or several
    │                               (old names: runinfo.RunNotFound, connection.UnknownRun)
    ├── Busy                        another process held a lock past the wait (files.FileLock)
    └── Refused                     a request refused for safety (paths.LogRefused; the
                                    MCP server's answers)
"""


class OttolyticsError(Exception):
    """Base of every error ottolytics raises on purpose; ``str()`` is one line
    that says what to do, ``exit_code`` what the CLI exits with."""

    exit_code = 1

    def __str__(self):  # KeyError, one base of NotFound, would quote the message
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class UsageError(OttolyticsError, ValueError):
    """A bad argument or option value (the CLI exits 2)."""

    exit_code = 2


class ConfigError(OttolyticsError, ValueError):
    """A setting in a configuration file can't be used; the message names the
    file and the key."""


class StoreError(OttolyticsError):
    """The store cannot be used; the message says which file and what to do."""


class ReadError(StoreError):
    """The read path cannot work; the message says what to install or fix."""


class NotFound(OttolyticsError, KeyError):
    """Something named (a run, a task, a project) does not exist."""


class RunNotFound(NotFound, StoreError):
    """RUN matched no run, or more than one; the message says which and what to
    do. A KeyError too, as the History's run methods raised before they resolved
    ids, and a StoreError, as the store raised for an unknown run."""


class Busy(OttolyticsError):
    """Another process held a lock this needs for longer than it waits
    (``OTTOLYTICS_LOCK_WAIT``, core.files.FileLock); the message names the lock,
    the process holding it and what to do."""


class Refused(OttolyticsError):
    """A request refused, for safety or because it can't be answered (a log file
    outside its run's tree, a bad argument to an MCP tool)."""
