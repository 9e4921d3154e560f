"""The Python recording API: ``Recorder``, with ``Run`` and ``Task`` handles.

    rec = ottolytics.Recorder()
    with rec.run(project="web", params={"env": "prod"}) as run:
        with run.task("lint"):
            ...
        with run.task("build", deps=["lint"]) as task:
            if up_to_date:
                task.skip(reason="up to date")

Recording never raises into the caller and never changes the outcome of the
code it wraps. When the store is unusable (missing or read-only directory,
read-only or corrupt file, a lock held past every retry) events go to the
spool, one warning line goes to stderr, and the events are replayed at the
next successful open. Standard library only: see the README's "write path".
"""

import numbers
import os
import signal
import sys
import threading
import time

from ottolytics.store import events
from ottolytics.store import liveness
from ottolytics.store import spool
from ottolytics.record.ids import new_run_id, new_token
from ottolytics.core.paths import db_path
from ottolytics.core.values import FIRST_SECOND, LAST_SECOND
from ottolytics.store.statuses import RUN_END_STATUSES, TASK_STATUSES, TERMINAL_TASK
from ottolytics.store.connection import Store, UnknownRun, check_store_path

STDERR_TAIL_BYTES = 4096
LOG_BATCH_BYTES = 64 * 1024
RETRY_STORE_EVERY_S = 5.0

# For type checkers only: importing typing would cost the shim's start-up budget.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_PROCESS = {}
# The sources that importers write (sync.SOURCES, tested equal): clean and the log
# readers trust such a row's run_dir shape, so the public API cannot claim one.
IMPORTED_SOURCES = ("otto", "workflow-manager", "oneshot")


def process_identity():
    """(pid, start time, host, user) of this process, computed once."""
    pid = os.getpid()
    if _PROCESS.get("pid") != pid:  # first call, or after fork
        try:
            import pwd
            user = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            user = os.environ.get("USER") or os.environ.get("LOGNAME")
        _PROCESS.update(pid=pid, start=liveness.process_start_time(pid),
                        host=liveness.hostname(), user=user)
    return _PROCESS["pid"], _PROCESS["start"], _PROCESS["host"], _PROCESS["user"]


def tail_text(data, limit=STDERR_TAIL_BYTES):
    """The last *limit* bytes of *data* (bytes or str) as text, never split mid-character."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    return data[-limit:].decode("utf-8", "ignore")


# _write's answer when events must go to the spool.
_SPOOL = object()


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM while a run is recorded, so that
    ``with`` blocks unwind and mark their run and tasks interrupted."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)


def _check_at(at):
    """*at* as unix seconds (a float), None for now; ValueError, at the call, for
    anything else or a time readers cannot show (rows written from bad arguments
    are bad rows for every reader). Any real number is taken (numpy's too)."""
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, numbers.Real) \
            or not FIRST_SECOND <= float(at) <= LAST_SECOND:
        raise ValueError(f"at={at!r}: give unix seconds (a number within years 1-9999) "
                         f"or None for now")
    return float(at)


def _check_int(name, value, least=-2 ** 63):
    """*value* as an int (any integral number: numpy's too), or None; else
    ValueError naming *name*."""
    if value is None:
        return None
    if not isinstance(value, bool) and isinstance(value, numbers.Integral) \
            and least <= int(value) < 2 ** 63:
        return int(value)
    raise ValueError(f"{name}={value!r}: give an integer"
                     + (" of at least 0" if least == 0 else "") + " or None")


def _check_seconds(name, value):
    """A CPU time: a finite real number of at least 0, as a float, or None."""
    if value is None:
        return None
    if not isinstance(value, bool) and isinstance(value, numbers.Real) \
            and 0 <= float(value) < float("inf"):
        return float(value)
    raise ValueError(f"{name}={value!r}: give a number of seconds (at least 0) or None")


def _check_status(value, allowed):
    if value is not None and value not in allowed:
        raise ValueError(f"status={value!r}: give one of {', '.join(allowed)}")


# the statuses an attempt ends in (finish); pending and running are not ends
_TASK_ENDS = TERMINAL_TASK + ("interrupted",)


def _interruption(exc_type):
    if exc_type is None:
        return False
    if issubclass(exc_type, (KeyboardInterrupt, Terminated)):
        return True
    return exc_type.__name__ == "CancelledError"  # asyncio, without importing it


class Recorder:
    """Records runs and tasks into the store at *db*.

    Recording never raises into the caller: when the store is unusable, events
    go to the spool and are replayed at the next successful open.

    Parameters
    ----------
    db : str or path, optional
        The store file (default: ``$OTTOLYTICS_DB``, else
        ``$OTTO_HOME/ottolytics.db``).
    max_run_age : float or str, optional
        Seconds, or a duration such as ``"24h"``: how long a run recorded on
        another host, or with no recording process, may stay running before
        recovery calls it interrupted (default: ``$OTTOLYTICS_MAX_RUN_AGE``, else
        a day).
    warn : callable, optional
        Called with the one warning line when events are spooled (default: print
        it to stderr).
    wait : float, optional
        Seconds to wait for the store's lock, once, before spooling (default:
        the busy timeout, a few times).
    quiet_spool : bool, default False
        Warn about spooled events only at close, if they are still spooled.

    Returns
    -------
    Recorder
        Use it as a context manager, or call ``close()``. The examples of its
        methods and handles use ``rec``, a Recorder, as below.

    Example
    -------
    >>> rec = ottolytics.Recorder("/tmp/example.db")
    >>> with rec.run(project="web", params={"env": "prod"}) as run:
    ...     with run.task("build") as task:
    ...         task.log("compiling\\n")
    >>> rec.close()
    """

    def __init__(self, db: "str | os.PathLike[str] | None" = None, *,
                 max_run_age: "float | str | None" = None,
                 warn: "Callable[[str], Any] | None" = None, wait: "float | None" = None,
                 quiet_spool: bool = False) -> None:
        self.db = db_path(db)
        check_store_path(self.db)  # no journal, spool or logs made beside /dev/null
        # None: wait for a lock up to the busy timeout, a few times; else wait
        # at most this many seconds, once, and spool (the shim's choice).
        self.wait = wait
        # Say that events were spooled only at close, if they still are (the
        # shim retries the store at the end, so a brief lock needs no warning).
        self._quiet_spool = quiet_spool
        age = max_run_age if max_run_age is not None else os.environ.get("OTTOLYTICS_MAX_RUN_AGE")
        if age is not None and age != "":
            from ottolytics.core.timeutil import parse_duration
            self.max_run_age = parse_duration(age)
        else:
            self.max_run_age = liveness.DEFAULT_MAX_AGE_S
        self._warn_fn = warn or (lambda msg: print(f"ottolytics: warning: {msg}",
                                                   file=sys.stderr, flush=True))
        self._lock = threading.RLock()
        self._store = None
        self._spool = None
        self._opened = False
        self._warned = False
        self._next_retry = 0.0
        self._tokens = {}
        self._spooled_tasks = {}
        self._batch = None
        self.recovered = []
        self.replayed = (0, 0, 0)

    # -- store or spool ---------------------------------------------------

    def _open_store(self):
        store = Store.open(self.db, timeout=self.wait)
        if self.wait is not None:
            store.set_wait(self.wait)
        try:
            self.replayed = spool.replay(store, tokens_out=self._tokens, warn=self._warn_fn)
            self.recovered = liveness.recover_stale(store, self.max_run_age)
        except BaseException:
            store.close()
            raise
        return store

    def open(self) -> bool:
        """Open the store now (it opens on first use otherwise).

        Returns
        -------
        bool
            True when the store is usable, False when events will be spooled.

        Example
        -------
        >>> rec.open()
        True
        """
        with self._lock:
            if not self._opened:
                self._opened = True
                try:
                    self._store = self._open_store()
                except Exception as exc:
                    self._degrade(exc)
            return self._store is not None

    @property
    def degraded(self) -> bool:
        """True while events go to the spool instead of the store."""
        return self._spool is not None

    def _degrade(self, exc):
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._spool is None:
            self._spool = spool.SpoolWriter(self.db)
        self._next_retry = time.monotonic() + RETRY_STORE_EVERY_S
        self._reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def retry_store(self, wait: "float | None" = None) -> None:
        """Try the store again at the next event, replaying this recorder's spool.

        Parameters
        ----------
        wait : float, optional
            Seconds to wait for the lock from now on (default: unchanged).

        Returns
        -------
        None

        Example
        -------
        >>> rec.retry_store(wait=2.0)
        """
        with self._lock:
            self.wait = wait if wait is not None else self.wait
            if self._store is not None and self.wait is not None:
                try:
                    self._store.set_wait(self.wait)
                except Exception:
                    pass
            self._next_retry = 0.0

    def _try_recover_store(self):
        """While spooling, reopen the store now and then and replay our own spool."""
        if time.monotonic() < self._next_retry:
            return
        self._next_retry = time.monotonic() + RETRY_STORE_EVERY_S
        writer = self._spool
        writer.close()
        try:
            store = self._open_store()
        except Exception:
            writer.path = None  # continue in a fresh spool file
            return
        self._spool = None
        self._store = store
        for tok, handle in list(self._spooled_tasks.items()):
            if tok in self._tokens:
                handle._id = self._tokens[tok]
                del self._spooled_tasks[tok]

    def _apply(self, conn, ev):
        return events.apply(self._store, conn, ev, self._tokens)

    def batch(self) -> "_Batch":
        """``with rec.batch():`` applies the events inside in one transaction.

        Handles started inside get their ids when the block ends. The shim
        uses it to write a run's start with its task's start, and the task's
        end with the run's end.

        Returns
        -------
        context manager

        Example
        -------
        >>> with rec.batch():
        ...     run = rec.run(project="web").start()
        ...     task = run.task("build").start()
        >>> task.finish(0); run.finish()
        """
        return _Batch(self)

    def _apply_many(self, conn, evs):
        return [events.apply(self._store, conn, ev, self._tokens) for ev in evs]

    def _write(self, fn, arg):
        """Write through the store if it is usable (reopening it now and then
        while spooling). Returns fn's result, None when the store refused a
        caller's mistake (an unknown run), or _SPOOL when the events must go
        to the spool."""
        if not self._opened:
            self.open()
        if self._spool is not None:
            self._try_recover_store()
        if self._store is None:
            return _SPOOL
        try:
            return self._store.write(fn, arg)
        except UnknownRun as exc:
            self._warn_fn(str(exc))  # the caller's mistake: the store is fine
            return None
        except Exception as exc:
            self._degrade(exc)
            return _SPOOL

    def _to_spool(self, ev, handle):
        if ev["e"] == "task_start":
            ev["tok"] = ev.get("tok") or new_token()
            if handle is not None:
                handle._tok = ev["tok"]
                self._spooled_tasks[ev["tok"]] = handle
        self._spool.append(ev)
        if not self._warned and not self._quiet_spool:
            self._warned = True
            self._warn_fn(f"cannot record to {self.db} ({self._reason}); events are "
                          f"spooled to {self._spool.path} and replayed at the next "
                          "successful open")

    def _recording_failed(self, exc):
        if not self._warned:
            self._warned = True
            self._warn_fn(f"cannot record to {self.db} or spool its events: {exc}")

    def _flush_batch(self, pending):
        with self._lock:
            try:
                ids = self._write(self._apply_many, [ev for ev, _handle in pending])
                if ids is _SPOOL:
                    for ev, handle in pending:
                        self._to_spool(ev, handle)
                elif ids is not None:
                    for (ev, handle), rid in zip(pending, ids):
                        if handle is not None and ev["e"] == "task_start":
                            handle._id = rid
            except Exception as exc:  # recording must never break the caller
                self._recording_failed(exc)

    def emit(self, ev: "dict[str, Any]", handle: "Task | None" = None) -> "int | None":
        """Record one event (the handles call it; a user rarely needs to).

        Parameters
        ----------
        ev : dict
            The event, as ``store/events.py`` defines them (``{"e": "run_start", ...}``).
        handle : Task, optional
            The task handle a ``task_start`` belongs to, to give it its id later.

        Returns
        -------
        int or None
            The row id, or None when the event was spooled or batched.

        Example
        -------
        >>> run = rec.run(project="web").start()
        >>> rec.emit({"e": "params", "run": run.uid, "params": {"env": "prod"}})
        """
        if self._batch is not None:
            if ev["e"] == "task_start":  # later events of the batch refer to it by token
                ev["tok"] = ev.get("tok") or new_token()
            self._batch.append((ev, handle))
            return None
        with self._lock:
            try:
                result = self._write(self._apply, ev)
                if result is not _SPOOL:
                    return result
                self._to_spool(ev, handle)
            except Exception as exc:  # recording must never break the caller
                self._recording_failed(exc)
            return None

    def run_exists(self, uid: str) -> "bool | None":
        """Whether the store has a run with this id.

        Parameters
        ----------
        uid : str
            A run id.

        Returns
        -------
        bool or None
            True or False, or None when the store cannot be read right now.

        Example
        -------
        >>> rec.run_exists("no-such-run")
        False
        """
        with self._lock:
            if not self.open() or self._store is None:
                return None
            try:
                return self._store.conn.execute(
                    "SELECT 1 FROM runs WHERE uid = ?", (uid,)).fetchone() is not None
            except Exception:
                return None

    def close(self) -> None:
        """Close the store (and the spool, warning once if events are still in it).

        Returns
        -------
        None

        Example
        -------
        >>> rec.close()
        """
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._spool is not None:
                if self._quiet_spool and not self._warned and self._spool.path:
                    self._warned = True
                    self._warn_fn(f"cannot record to {self.db} ({self._reason}); events "
                                  f"are spooled to {self._spool.path} and replayed at the "
                                  "next successful open")
                self._spool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- handles ------------------------------------------------------------

    def run(self, project: "str | None" = None, params: "dict[str, Any] | None" = None, *,
            args: "list[str] | None" = None, run_dir: "str | None" = None,
            uid: "str | None" = None, **meta: "Any") -> "Run":
        """A new run handle; recording starts on ``with`` or ``start()``.

        Parameters
        ----------
        project : str, optional
            The project (default: the current directory's name).
        params : dict, optional
            The run's parameters (kept as text, one row per key).
        args : list of str, optional
            The command line (default: ``sys.argv``).
        run_dir : str, optional
            The run's directory, if it has one.
        uid : str, optional
            The run id (default: a new one).
        **meta
            More run columns: ``ottofile``, ``user``, ``host``, ``cwd``,
            ``source_ref``; others are ignored. ``source`` may not name an importer.

        Returns
        -------
        Run

        Example
        -------
        >>> with rec.run(project="etl", params={"day": "2026-11-20"}) as run:
        ...     run.uid
        """
        if meta.get("source") in IMPORTED_SOURCES:  # those rows come from importers only
            raise ValueError(f"source {meta['source']!r} is reserved for 'ottolytics sync'")
        project = project or os.path.basename(os.getcwd()) or "default"
        return Run(self, project, params, args=args, run_dir=run_dir, uid=uid, meta=meta)

    def attach(self, uid: str) -> "Run":
        """A handle on a run started elsewhere (``ottolytics run start``), to add tasks.

        Parameters
        ----------
        uid : str
            The run's id (``$OTTOLYTICS_RUN_ID`` in a script run by ``run start``).

        Returns
        -------
        Run
            Leaving its ``with`` block does not end the run.

        Example
        -------
        >>> uid = rec.run(project="etl").start().uid
        >>> with rec.attach(uid).task("load"):
        ...     pass
        """
        run = Run(self, None, None, uid=uid, meta={})
        run._started = True
        run._owned = False
        return run


class _Batch:
    def __init__(self, recorder):
        self.recorder = recorder

    def __enter__(self):
        self.recorder._batch = []
        return self

    def __exit__(self, *exc):
        pending, self.recorder._batch = self.recorder._batch, None
        if pending:
            self.recorder._flush_batch(pending)
        return False


class Run:
    """One run: ``with rec.run(...) as run`` or ``run.start()`` / ``run.finish()``."""

    def __init__(self, recorder, project, params, *, args=None, run_dir=None, uid=None,
                 meta=None):
        self.recorder = recorder
        self.uid = uid or new_run_id()
        self.project = project
        self.params = dict(params or {})
        self.args = list(sys.argv) if args is None else list(args)
        self.run_dir = run_dir
        self.meta = meta or {}
        self.status = "running"
        self._started = False
        self._finished = False
        self._owned = True
        # False for runs whose recording process exits before the run ends
        # (``ottolytics run start``): no pid is stored, so recovery uses the age.
        self.live = True
        self._attempts = {}  # task name -> attempts so far, for runs we own
        self._saved_sigterm = None

    @property
    def id(self) -> str:
        """The run id (the same as ``uid``)."""
        return self.uid

    def start(self, at: "float | None" = None) -> "Run":
        """Start recording the run (``with`` does it).

        Parameters
        ----------
        at : float, optional
            Unix seconds (default: now).

        Returns
        -------
        Run
            This handle.

        Example
        -------
        >>> run = rec.run(project="etl").start()
        >>> run.finish("success")
        """
        at = _check_at(at)
        if self._started:
            return self
        self._started = True
        pid, pstart, host, user = process_identity()
        ev = {"e": "run_start", "uid": self.uid, "project": self.project,
              "at": time.time() if at is None else at, "args": self.args,
              "user": user, "host": host, "cwd": os.getcwd(), "run_dir": self.run_dir,
              "params": self.params}
        if self.live:
            ev["pid"], ev["pid_started_at"] = pid, pstart
        ev.update({k: v for k, v in self.meta.items() if v is not None})
        self.recorder.emit(ev)
        return self

    def finish(self, status: "str | None" = None, *, reason: "str | None" = None,
               size_bytes: "int | None" = None, at: "float | None" = None) -> None:
        """End the run (``with`` does it).

        Parameters
        ----------
        status : str, optional
            success, failed, interrupted ... (default: derived from its tasks).
        reason : str, optional
            Why, for the run's transition.
        size_bytes : int, optional
            The run directory's size.
        at : float, optional
            Unix seconds (default: now).

        Returns
        -------
        None

        Example
        -------
        >>> run = rec.run(project="etl").start()
        >>> run.finish("failed", reason="the source was empty")
        """
        _check_status(status or None, RUN_END_STATUSES)
        size_bytes = _check_int("size_bytes", size_bytes, least=0)
        at = _check_at(at)
        if self._finished:
            return
        self._finished = True
        ev = {"e": "run_finish", "uid": self.uid, "at": time.time() if at is None else at}
        if status:
            ev["status"] = status
            self.status = status
        if reason:
            ev["reason"] = reason
        if size_bytes is not None:
            ev["size_bytes"] = size_bytes
        self.recorder.emit(ev)

    def set_params(self, params: "dict[str, Any] | None" = None, **more: "Any") -> None:
        """Add or change run parameters, before or after the run started.

        Parameters
        ----------
        params : dict, optional
            Parameters by name.
        **more
            More parameters by name.

        Returns
        -------
        None

        Example
        -------
        >>> with rec.run(project="etl") as run:
        ...     run.set_params({"rows": 1200}, source="s3")
        """
        merged = dict(params or {}, **more)
        self.params.update(merged)
        if self._started:
            self.recorder.emit({"e": "params", "run": self.uid, "params": merged})

    def task(self, name: str, deps: "list[str] | None" = None, **meta: "Any") -> "Task":
        """A task handle; it starts on ``with`` or ``start()``.

        Parameters
        ----------
        name : str
            The task's name; a name started again in the run is its next attempt.
        deps : list of str, optional
            The tasks it waited for.
        **meta
            More task columns: ``script_path``, ``script_hash``, ``stdout_path``,
            ``stderr_path``; others are ignored.

        Returns
        -------
        Task

        Example
        -------
        >>> with rec.run(project="web") as run:
        ...     with run.task("test", deps=["build"], stdout_path="/tmp/test.log"):
        ...         pass
        """
        return Task(self, name, deps, meta)

    def skip_task(self, name: str, reason: "str | None" = None,
                  deps: "list[str] | None" = None, at: "float | None" = None) -> "Task":
        """Record a task that did not run at all (e.g. up to date).

        Parameters
        ----------
        name : str
            The task's name.
        reason : str, optional
            Why it was skipped.
        deps : list of str, optional
            The tasks it depends on.
        at : float, optional
            Unix seconds (default: now).

        Returns
        -------
        Task
            Already finished, as skipped.

        Example
        -------
        >>> with rec.run(project="web") as run:
        ...     run.skip_task("lint", reason="up to date")
        """
        task = Task(self, name, deps, {})
        task.start(status="skipped", reason=reason, at=at)
        return task

    def __enter__(self):
        self.start()
        self._install_sigterm()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._restore_sigterm()
        if _interruption(exc_type):
            self.finish("interrupted", reason=f"{exc_type.__name__} in the recording process")
        elif exc_type is not None:
            self.finish("failed", reason=f"{exc_type.__name__}: {exc}"[:500])
        elif self._owned:
            self.finish()
        return False

    def _install_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                def on_term(signum, frame):
                    raise Terminated()
                self._saved_sigterm = signal.signal(signal.SIGTERM, on_term)
        except (ValueError, OSError):
            self._saved_sigterm = None

    def _restore_sigterm(self):
        if self._saved_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._saved_sigterm)
            except (ValueError, OSError):
                pass
            self._saved_sigterm = None


class Task:
    """One task attempt inside a run."""

    def __init__(self, run, name, deps, meta):
        self.run = run
        self.name = name
        self.deps = list(deps or [])
        self.meta = meta
        self.status = "pending"
        self._id = None
        self._tok = None
        self._started = False
        self._finished = False
        self._logs = []
        self._log_bytes = 0
        self._seq = 0

    def _ref(self, ev):
        if self._id is not None:
            ev["task"] = self._id
        else:
            ev["tok"] = self._tok
        return ev

    def start(self, *, status: str = "running", reason: "str | None" = None,
              at: "float | None" = None) -> "Task":
        """Start the task attempt (``with`` does it).

        Parameters
        ----------
        status : str, default "running"
            The status it starts in (``skipped`` ends it at once).
        reason : str, optional
            Why, for its transition.
        at : float, optional
            Unix seconds (default: now).

        Returns
        -------
        Task
            This handle.

        Example
        -------
        >>> with rec.run(project="web") as run:
        ...     run.task("build").start().finish(0)
        """
        _check_status(status, TASK_STATUSES)
        at = _check_at(at)
        if self._started:
            return self
        self._started = True
        rec = self.run.recorder
        ev = {"e": "task_start", "run": self.run.uid, "name": self.name,
              "at": time.time() if at is None else at, "deps": self.deps, "status": status}
        if reason:
            ev["reason"] = reason
        if not self.run._owned:
            pid, pstart, _host, _user = process_identity()
            ev["pid"], ev["pid_started_at"] = pid, pstart
        else:  # no other process adds tasks to a run we own: count attempts here
            attempt = self.run._attempts.get(self.name, 0) + 1
            self.run._attempts[self.name] = ev["attempt"] = attempt
        if self.meta:
            ev.update({k: v for k, v in self.meta.items() if v is not None})
        self._id = rec.emit(ev, handle=self)
        self._tok = ev.get("tok")
        self.status = status
        if status == "skipped":
            self._finished = True
        return self

    def finish(self, exit_code: "int | None" = None, *, status: "str | None" = None,
               signal: "int | None" = None, reason: "str | None" = None,
               stderr_tail: "str | bytes | None" = None, at: "float | None" = None,
               **resources: "Any") -> None:
        """End the task attempt (``with`` does it).

        Parameters
        ----------
        exit_code : int, optional
            Its exit code.
        status : str, optional
            Default: success when exit_code is 0 or None and no signal killed it,
            else failed.
        signal : int, optional
            The signal that killed it.
        reason : str, optional
            Why, for its transition.
        stderr_tail : str or bytes, optional
            The end of its stderr (the last 4 KiB are kept); failures are grouped by it.
        at : float, optional
            Unix seconds (default: now).
        **resources
            ``cpu_user_s``, ``cpu_system_s``, ``peak_rss_bytes``, ``stdout_path``,
            ``stderr_path``; others are ignored.

        Returns
        -------
        None

        Example
        -------
        >>> with rec.run(project="web") as run:
        ...     run.task("test").start().finish(1, stderr_tail="ImportError: no module x")
        """
        exit_code = _check_int("exit_code", exit_code)
        signal = _check_int("signal", signal)
        _check_status(status, _TASK_ENDS)
        at = _check_at(at)
        for key in ("cpu_user_s", "cpu_system_s"):
            if key in resources:
                resources[key] = _check_seconds(key, resources[key])
        if "peak_rss_bytes" in resources:
            resources["peak_rss_bytes"] = _check_int("peak_rss_bytes",
                                                     resources["peak_rss_bytes"], least=0)
        if self._finished:
            return
        if not self._started:
            self.start()
        self._finished = True
        self.flush_logs()
        if status is None:
            status = "success" if not exit_code and not signal else "failed"
        ev = self._ref({"e": "task_finish", "status": status,
                        "at": time.time() if at is None else at,
                        "exit_code": exit_code, "signal": signal})
        if reason:
            ev["reason"] = reason
        if stderr_tail:
            ev["stderr_tail"] = tail_text(stderr_tail)
        if resources:
            ev.update({k: v for k, v in resources.items() if v is not None})
        self.status = status
        if self._id is None and self._tok is None:
            return  # the start was refused (unknown run), so there is nothing to end
        self.run.recorder.emit(ev)

    def skip(self, reason: "str | None" = None) -> None:
        """Mark this started task skipped (e.g. its outputs are up to date).

        Parameters
        ----------
        reason : str, optional
            Why.

        Returns
        -------
        None

        Example
        -------
        >>> with rec.run(project="web") as run:
        ...     with run.task("build") as task:
        ...         task.skip(reason="up to date")
        """
        self.finish(status="skipped", reason=reason)

    def log(self, data: "str | bytes", stream: str = "stdout") -> None:
        """Keep a chunk of output in the store's log fragments (batched).

        Parameters
        ----------
        data : str or bytes
            The output (bytes are decoded as UTF-8, bad bytes replaced).
        stream : str, default "stdout"
            ``stdout`` or ``stderr``.

        Returns
        -------
        None

        Example
        -------
        >>> with rec.run(project="web") as run:
        ...     with run.task("build") as task:
        ...         task.log("warning: deprecated\\n", stream="stderr")
        """
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        self._seq += 1
        self._logs.append({"stream": stream, "seq": self._seq, "at": time.time(), "data": data})
        self._log_bytes += len(data)
        if self._log_bytes >= LOG_BATCH_BYTES:
            self.flush_logs()

    def flush_logs(self) -> None:
        """Write the log chunks kept so far now (``finish`` does it).

        Returns
        -------
        None

        Example
        -------
        >>> with rec.run(project="web") as run:
        ...     with run.task("build") as task:
        ...         task.log("step 1 done\\n")
        ...         task.flush_logs()
        """
        if self._logs and self._started and (self._id is not None or self._tok is not None):
            ev = self._ref({"e": "logs", "run": self.run.uid, "fragments": self._logs})
            self._logs, self._log_bytes = [], 0
            self.run.recorder.emit(ev)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if self._finished:
            return False
        if _interruption(exc_type):
            self.finish(status="interrupted", reason=f"{exc_type.__name__}")
        elif exc_type is not None:
            import traceback
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.finish(status="failed", reason=f"{exc_type.__name__}: {exc}"[:500],
                        stderr_tail=text)
        else:
            self.finish(exit_code=0)
        return False
