"""The asyncio recorder: the same API as ``Recorder``, awaitable, never blocking the loop.

All store work runs on one background thread per recorder (so events keep
their order and the SQLite connection stays on one thread); coroutines await
it through ``run_in_executor``, which yields to the loop while it waits.

    rec = ottolytics.AsyncRecorder()
    async with rec.run(project="etl") as run:
        async with run.task("extract") as task:
            await do_work()
"""

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from ottolytics.record.recorder import Recorder

# For type checkers only: importing typing would cost the write path's start-up budget.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ottolytics.record.recorder import Run, Task


class AsyncRecorder:
    """Records runs and tasks from asyncio code, as ``Recorder`` does, off the loop.

    The examples of its methods and handles run inside a coroutine (``await``),
    with ``rec`` an AsyncRecorder, as below.

    Parameters
    ----------
    db : str or path, optional
        The store file (default: ``$OTTOLYTICS_DB``, else ``$OTTO_HOME/ottolytics.db``).
    max_run_age, warn, wait, quiet_spool
        As for ``Recorder``.

    Returns
    -------
    AsyncRecorder
        Use it with ``async with``, or await ``aclose()``.

    Example
    -------
    >>> async def main():
    ...     async with ottolytics.AsyncRecorder("/tmp/example.db") as rec:
    ...         async with rec.run(project="etl") as run:
    ...             async with run.task("extract"):
    ...                 await asyncio.sleep(0)
    >>> asyncio.run(main())
    """

    def __init__(self, db: "str | os.PathLike[str] | None" = None, *,
                 max_run_age: "float | str | None" = None,
                 warn: "Callable[[str], Any] | None" = None, wait: "float | None" = None,
                 quiet_spool: bool = False) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ottolytics")
        self._closed = False
        self._sync = Recorder(db, max_run_age=max_run_age, warn=warn, wait=wait,
                              quiet_spool=quiet_spool)

    @property
    def db(self) -> str:
        """The store file's path."""
        return self._sync.db

    @property
    def degraded(self) -> bool:
        """True while events go to the spool instead of the store."""
        return self._sync.degraded

    async def _call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def open(self) -> bool:
        """Open the store now (it opens on first use otherwise).

        Returns
        -------
        bool
            True when the store is usable, False when events will be spooled.

        Example
        -------
        >>> await rec.open()
        True
        """
        return await self._call(self._sync.open)

    def run(self, project: "str | None" = None, params: "dict[str, Any] | None" = None, *,
            args: "list[str] | None" = None, run_dir: "str | None" = None,
            uid: "str | None" = None, **meta: "Any") -> "AsyncRun":
        """A new run handle; recording starts on ``async with`` or ``await start()``.

        Parameters
        ----------
        project, params, args, run_dir, uid, **meta
            As for ``Recorder.run``.

        Returns
        -------
        AsyncRun

        Example
        -------
        >>> async with rec.run(project="etl", params={"day": "mon"}) as run:
        ...     print(run.uid)
        """
        return AsyncRun(self, self._sync.run(project, params, args=args, run_dir=run_dir,
                                             uid=uid, **meta))

    def attach(self, uid: str) -> "AsyncRun":
        """A handle on a run started elsewhere (``ottolytics run start``), to add tasks.

        Parameters
        ----------
        uid : str
            The run's id.

        Returns
        -------
        AsyncRun
            Leaving its ``async with`` block does not end the run.

        Example
        -------
        >>> run = await rec.run(project="etl").start()
        >>> async with rec.attach(run.uid).task("load"):
        ...     pass
        """
        return AsyncRun(self, self._sync.attach(uid))

    async def aclose(self) -> None:
        """Close the store and stop the background thread; closing again does nothing.

        Returns
        -------
        None

        Example
        -------
        >>> await rec.aclose()
        """
        if self._closed:    # a second aclose (an explicit one, then async with's)
            return
        self._closed = True
        await self._call(self._sync.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> "AsyncRecorder":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncRun:
    """One run of an ``AsyncRecorder``: ``async with rec.run(...) as run``."""

    def __init__(self, recorder: AsyncRecorder, run: "Run") -> None:
        self._rec = recorder
        self._run = run

    @property
    def uid(self) -> str:
        """The run id."""
        return self._run.uid

    id = uid

    @property
    def status(self) -> str:
        """The run's status as this handle knows it."""
        return self._run.status

    async def start(self, at: "float | None" = None) -> "AsyncRun":
        """Start recording the run (``async with`` does it).

        Parameters
        ----------
        at : float, optional
            Unix seconds (default: now).

        Returns
        -------
        AsyncRun
            This handle.

        Example
        -------
        >>> run = await rec.run(project="etl").start()
        >>> await run.finish("success")
        """
        await self._rec._call(self._run.start, at)
        return self

    async def finish(self, status: "str | None" = None, *, reason: "str | None" = None,
                     size_bytes: "int | None" = None, at: "float | None" = None) -> None:
        """End the run (``async with`` does it).

        Parameters
        ----------
        status, reason, size_bytes, at
            As for ``Run.finish``.

        Returns
        -------
        None

        Example
        -------
        >>> run = await rec.run(project="etl").start()
        >>> await run.finish("failed", reason="no input")
        """
        await self._rec._call(self._run.finish, status, reason=reason, size_bytes=size_bytes,
                              at=at)

    async def set_params(self, params: "dict[str, Any] | None" = None, **more: "Any") -> None:
        """Add or change run parameters.

        Parameters
        ----------
        params, **more
            As for ``Run.set_params``.

        Returns
        -------
        None

        Example
        -------
        >>> async with rec.run(project="etl") as run:
        ...     await run.set_params(rows=1200)
        """
        await self._rec._call(self._run.set_params, params, **more)

    def task(self, name: str, deps: "list[str] | None" = None, **meta: "Any") -> "AsyncTask":
        """A task handle; it starts on ``async with`` or ``await start()``.

        Parameters
        ----------
        name, deps, **meta
            As for ``Run.task``.

        Returns
        -------
        AsyncTask

        Example
        -------
        >>> async with rec.run(project="etl") as run:
        ...     async with run.task("load", deps=["extract"]):
        ...         pass
        """
        return AsyncTask(self._rec, self._run.task(name, deps, **meta))

    async def skip_task(self, name: str, reason: "str | None" = None,
                        deps: "list[str] | None" = None) -> "AsyncTask":
        """Record a task that did not run at all (e.g. up to date).

        Parameters
        ----------
        name, reason, deps
            As for ``Run.skip_task``.

        Returns
        -------
        AsyncTask
            Already finished, as skipped.

        Example
        -------
        >>> async with rec.run(project="etl") as run:
        ...     await run.skip_task("lint", reason="up to date")
        """
        task = await self._rec._call(self._run.skip_task, name, reason, deps)
        return AsyncTask(self._rec, task)

    async def __aenter__(self) -> "AsyncRun":
        return await self.start()

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        await self._rec._call(self._run.__exit__, exc_type, exc, tb)
        return False


class AsyncTask:
    """One task attempt of an ``AsyncRun``: ``async with run.task(...) as task``."""

    def __init__(self, recorder: AsyncRecorder, task: "Task") -> None:
        self._rec = recorder
        self._task = task

    @property
    def name(self) -> str:
        """The task's name."""
        return self._task.name

    @property
    def status(self) -> str:
        """The attempt's status as this handle knows it."""
        return self._task.status

    async def start(self, *, status: str = "running", reason: "str | None" = None,
                    at: "float | None" = None) -> "AsyncTask":
        """Start the task attempt (``async with`` does it).

        Parameters
        ----------
        status, reason, at
            As for ``Task.start``.

        Returns
        -------
        AsyncTask
            This handle.

        Example
        -------
        >>> async with rec.run(project="etl") as run:
        ...     task = await run.task("load").start()
        ...     await task.finish(0)
        """
        await self._rec._call(self._task.start, status=status, reason=reason, at=at)
        return self

    async def finish(self, exit_code: "int | None" = None, *, status: "str | None" = None,
                     signal: "int | None" = None, reason: "str | None" = None,
                     stderr_tail: "str | bytes | None" = None, at: "float | None" = None,
                     **resources: "Any") -> None:
        """End the task attempt (``async with`` does it).

        Parameters
        ----------
        exit_code, status, signal, reason, stderr_tail, at, **resources
            As for ``Task.finish``.

        Returns
        -------
        None

        Example
        -------
        >>> async with rec.run(project="etl") as run:
        ...     task = await run.task("load").start()
        ...     await task.finish(2, stderr_tail="KeyError: 'id'")
        """
        await self._rec._call(self._task.finish, exit_code, status=status, signal=signal,
                              reason=reason, stderr_tail=stderr_tail, at=at, **resources)

    async def skip(self, reason: "str | None" = None) -> None:
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
        >>> async with rec.run(project="etl") as run:
        ...     async with run.task("load") as task:
        ...         await task.skip(reason="up to date")
        """
        await self._rec._call(self._task.skip, reason)

    async def log(self, data: "str | bytes", stream: str = "stdout") -> None:
        """Keep a chunk of output in the store's log fragments (batched).

        Parameters
        ----------
        data, stream
            As for ``Task.log``.

        Returns
        -------
        None

        Example
        -------
        >>> async with rec.run(project="etl") as run:
        ...     async with run.task("load") as task:
        ...         await task.log("1200 rows\\n")
        """
        await self._rec._call(self._task.log, data, stream)

    async def __aenter__(self) -> "AsyncTask":
        return await self.start()

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        await self._rec._call(self._task.__exit__, exc_type, exc, tb)
        return False
