import asyncio
import sqlite3
import time

import pytest

import ottolytics
from conftest import q




def test_async_with_blocks(db):
    async def main():
        rec = ottolytics.AsyncRecorder()
        async with rec.run(project="etl", params={"day": "mon"}) as run:
            async with run.task("extract"):
                await asyncio.sleep(0)
            async with run.task("load", deps=["extract"]) as task:
                await task.log("rows: 10\n")
            await run.skip_task("report", reason="no data")
        await rec.aclose()
        return run.uid

    uid = asyncio.run(main())
    assert q(db, "SELECT uid, status FROM runs") == [(uid, "success")]
    assert q(db, "SELECT name, status FROM tasks ORDER BY id") == [
        ("extract", "success"), ("load", "success"), ("report", "skipped")]


def test_aclose_twice_is_harmless(db):
    """As Recorder.close: an explicit aclose() inside ``async with`` (whose exit
    closes again) must not raise "cannot schedule new futures after shutdown"."""
    async def main():
        async with ottolytics.AsyncRecorder() as rec:
            async with rec.run(project="etl"):
                pass
            await rec.aclose()
        await rec.aclose()

    asyncio.run(main())
    assert q(db, "SELECT status FROM runs") == [("success",)]


def test_async_exception_and_cancellation(db):
    async def failing():
        rec = ottolytics.AsyncRecorder()
        try:
            async with rec.run(project="etl") as run:
                async with run.task("boom"):
                    raise RuntimeError("bad row 17")
        finally:
            await rec.aclose()

    with pytest.raises(RuntimeError):
        asyncio.run(failing())

    async def cancelled():
        rec = ottolytics.AsyncRecorder()
        async with rec.run(project="etl") as run:
            async with run.task("slow"):
                await asyncio.sleep(10)

    async def main():
        t = asyncio.create_task(cancelled())
        await asyncio.sleep(0.3)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())
    assert q(db, "SELECT name, status FROM tasks ORDER BY id") == [
        ("boom", "failed"), ("slow", "interrupted")]
    assert q(db, "SELECT status FROM runs ORDER BY id") == [("failed",), ("interrupted",)]


def test_event_loop_keeps_running_while_the_store_is_locked(db, monkeypatch):
    """A writer holding the lock stalls recording, never the event loop."""
    monkeypatch.setenv("OTTOLYTICS_BUSY_TIMEOUT", "5")
    ottolytics.Recorder().open()
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    async def main():
        rec = ottolytics.AsyncRecorder()
        await rec.open()
        holder.execute("BEGIN IMMEDIATE")
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        loop.call_later(0.6, lambda: holder.execute("COMMIT"))
        t0 = time.monotonic()
        run = await rec.run(project="etl").start()  # waits for the lock in the thread
        waited = time.monotonic() - t0
        stop = True
        await tick_task
        await run.finish()
        await rec.aclose()
        return ticks, waited

    ticks, waited = asyncio.run(main())
    holder.close()
    assert waited >= 0.5
    assert ticks >= 20, f"the loop ran only {ticks} ticks while the recorder waited"
    assert q(db, "SELECT status FROM runs") == [("success",)]
