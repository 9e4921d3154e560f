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
from concurrent.futures import ThreadPoolExecutor

from ottolytics.record.recorder import Recorder


class AsyncRecorder:
    def __init__(self, db=None, **kwargs):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ottolytics")
        self._sync = Recorder(db, **kwargs)

    @property
    def db(self):
        return self._sync.db

    @property
    def degraded(self):
        return self._sync.degraded

    async def _call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def open(self):
        return await self._call(self._sync.open)

    def run(self, project=None, params=None, **kwargs):
        return AsyncRun(self, self._sync.run(project, params, **kwargs))

    def attach(self, uid):
        return AsyncRun(self, self._sync.attach(uid))

    async def aclose(self):
        await self._call(self._sync.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


class AsyncRun:
    def __init__(self, recorder, run):
        self._rec = recorder
        self._run = run

    @property
    def uid(self):
        return self._run.uid

    id = uid

    @property
    def status(self):
        return self._run.status

    async def start(self, **kwargs):
        await self._rec._call(self._run.start, **kwargs)
        return self

    async def finish(self, status=None, **kwargs):
        await self._rec._call(self._run.finish, status, **kwargs)

    async def set_params(self, params=None, **more):
        await self._rec._call(self._run.set_params, params, **more)

    def task(self, name, deps=None, **meta):
        return AsyncTask(self._rec, self._run.task(name, deps, **meta))

    async def skip_task(self, name, reason=None, deps=None):
        task = await self._rec._call(self._run.skip_task, name, reason, deps)
        return AsyncTask(self._rec, task)

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, exc_type, exc, tb):
        await self._rec._call(self._run.__exit__, exc_type, exc, tb)
        return False


class AsyncTask:
    def __init__(self, recorder, task):
        self._rec = recorder
        self._task = task

    @property
    def name(self):
        return self._task.name

    @property
    def status(self):
        return self._task.status

    async def start(self, **kwargs):
        await self._rec._call(self._task.start, **kwargs)
        return self

    async def finish(self, exit_code=None, **kwargs):
        await self._rec._call(self._task.finish, exit_code, **kwargs)

    async def skip(self, reason=None):
        await self._rec._call(self._task.skip, reason)

    async def log(self, data, stream="stdout"):
        await self._rec._call(self._task.log, data, stream)

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, exc_type, exc, tb):
        await self._rec._call(self._task.__exit__, exc_type, exc, tb)
        return False
