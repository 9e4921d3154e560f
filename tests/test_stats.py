"""stats: overall figures, the busiest tasks and a task's weekly trend, on known data."""

import json

import pytest

from known_history import RUNS, T0, record
from ottolytics import open as open_history
from ottolytics.analyze.stats import stats


@pytest.fixture
def h(db):
    record(db)
    return open_history(db)


def test_overall_and_top(h):
    s = stats(h, n=3)
    o = s["overall"].iloc[0]
    assert o["runs"] == RUNS and o["tasks"] == RUNS * 4 + 1
    assert o["failures"] == RUNS // 4 and o["success_rate"] == pytest.approx(0.75)
    top = s["top"]
    assert len(top) == 3 and top.iloc[0]["task"] == "test" and top.iloc[0]["total"] == RUNS + 1
    t = top.iloc[0]
    assert t["failed"] == RUNS // 4 + 1 and t["success"] == RUNS - RUNS // 4
    build = stats(h, n=10)["top"].set_index("task").loc["build"]
    assert build["avg_duration_s"] == pytest.approx(15.1, abs=0.1)


def test_task_trend_by_week(h):
    trend = stats(h, task="build")["trend"]
    assert trend["runs"].sum() == RUNS and (trend["failed"] == 0).all()
    # 40 hourly runs: at most two ISO weeks; durations 10 s, then 20 s from run 20 on
    assert 1 <= len(trend) <= 2 and (trend["week"].dt.day_of_week == 0).all()
    assert trend["p95_duration_s"].max() > 19.9 and trend["p50_duration_s"].min() >= 10


def test_stats_command(db, cli):
    record(db)
    text = cli("stats", "--since", "", "-n", "2").stdout.decode()
    assert f"all time: {RUNS} runs, {RUNS * 4 + 1} tasks" in text
    assert "busiest: test" in text and "SUCCESS RATE" in text
    doc = json.loads(cli("stats", "build", "--since", "", "--json").stdout)
    assert doc["overall"]["runs"] == RUNS and {r["task"] for r in doc["top"]} >= {"build"}
    assert sum(r["runs"] for r in doc["trend"]) == RUNS
    recent = json.loads(cli("stats", "--json").stdout)   # default: the last 30 days
    assert recent["overall"]["runs"] == 0   # the known history is from 2026-09
    assert cli("stats", "--since", "soon").returncode == 2


def test_stats_since_takes_dates_and_times(db, cli):
    from datetime import datetime, timezone
    record(db)
    cut = T0 + 30 * 3600 - 1
    for since in (datetime.fromtimestamp(cut, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  datetime.fromtimestamp(cut, timezone.utc).isoformat()):
        proc = cli("stats", "--since", since, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["overall"]["runs"] == 10
    day = cli("stats", "--since", "2026-09-01")
    assert day.returncode == 0 and f"since 2026-09-01: {RUNS} runs".encode() in day.stdout


def test_each_figure_alone_matches_the_combined_call(h):
    from ottolytics.analyze.stats import overall, task_trend, top_tasks
    s = stats(h, task="build", n=4)
    assert overall(h).equals(s["overall"])
    assert top_tasks(h, 4).equals(s["top"])
    assert task_trend(h, "build").equals(s["trend"])


def test_task_summary_of_a_task_that_always_failed_has_a_flip_rate_of_0(db):
    """A review: flaky() now leaves such a task out (it is broken, not flaky), and
    task_summary (the MCP tool task_stats) then gave null for its flip rate and
    score, as if unknown; they are 0, as before."""
    from ottolytics import Recorder
    from ottolytics.analyze.stats import task_summary
    rec = Recorder(db)
    for i in range(5):
        with rec.run(project="p", uid=f"r{i}") as run:
            run.task("broken").start(at=1_790_000_000 + i).finish(1, at=1_790_000_000 + i + 0.5)
            run.task("fine").start(at=1_790_000_000 + i).finish(0, at=1_790_000_000 + i + 0.5)
    rec.close()
    with open_history(db) as h:
        broken, fine = task_summary(h, "broken"), task_summary(h, "fine")
    assert (broken["flip_rate"], broken["flaky_score"], broken["retry_passes"]) == (0.0, 0.0, 0)
    assert (fine["flip_rate"], fine["flaky_score"]) == (0.0, 0.0)
