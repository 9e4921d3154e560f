"""The public API used as docs/python-api.md and docs/recording.md show it; mypy
must accept it (tests/test_typing.py). Not a test module: it is only type-checked."""

import asyncio
from datetime import date, datetime, timezone

import pandas as pd

import ottolytics
from ottolytics import plots


def analyse(db: str) -> None:
    h: ottolytics.History = ottolytics.open(db, since="30d", project="web")
    hosts: list[str] = ["host-a.db", "host-b.db"]
    ottolytics.open(hosts, home="/srv/otto").close()
    with ottolytics.open(["host-a.db", "host-b.db"], since=datetime(2026, 11, 1, tzinfo=timezone.utc)) as both:
        week: ottolytics.History = both.with_filters(project=["api", "web"], status="failed")
        frames: list[pd.DataFrame] = [week.runs(params=True), week.tasks(), week.transitions(),
                                      week.params(), week.logs("latest", task="build")]
    rates: pd.DataFrame = h.success_rate(by="task", freq="W-FRI")
    h.success_rate(by=["project", "task"], freq=None)
    h.duration_stats(by="task")
    h.duration_trend("build", freq="MS", project="api")
    h.flaky(window=20)
    h.failures(since="7d")
    h.failures(since=date(2026, 11, 1))
    h.failure_groups(since=1795000000.0)
    h.regressions("build", window=12, min_ratio=1.25, max_p=1e-4, max_points=500)
    h.critical_path("latest")
    h.compare("abc123", "latest")
    h.disk_usage(), h.largest_runs(n=3), h.disk_growth(freq="ME"), h.disk_samples()
    h.grep("ImportError", project="etl", max_matches=2)
    h.sql("SELECT task, count(*) FROM tasks GROUP BY task")
    run_id: str = h.resolve("latest")
    summary: dict = h.to_parquet("/tmp/ottolytics-parquet")
    h.weekly_report("2026-W46")
    plots.success_heatmap(h, freq="W").savefig("/tmp/heatmap.png")
    h.close()
    print(rates, frames, run_id, summary)


def record(db: str) -> None:
    rec = ottolytics.Recorder(db, max_run_age="24h")
    usable: bool = rec.open()
    with rec.run(project="web", params={"env": "prod"}) as run:
        run.set_params(branch="main")
        with run.task("lint"):
            pass
        with run.task("build", deps=["lint"]) as task:
            task.log(b"compiling\n", stream="stderr")
            task.finish(0, cpu_user_s=1.5)
        run.skip_task("deploy", reason="not on main")
    exists: bool | None = rec.run_exists(run.uid)
    rec.close()
    print(usable, exists)


async def record_async(db: str) -> None:
    async with ottolytics.AsyncRecorder(db, wait=1.0) as rec:
        async with rec.run(project="etl") as run:
            async with run.task("extract") as task:
                await task.log("rows: 10\n")
            await run.skip_task("report", reason="no data")
        usable: bool = await rec.open()
        print(usable, run.uid)


asyncio.run(record_async("x.db"))
