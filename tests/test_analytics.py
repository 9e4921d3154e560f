import math

import pandas as pd
import pytest

import ottolytics
from ottolytics.analyze.analytics import normalize, signature
from known_history import REGRESSION_AT, RUNS, T0, record


@pytest.fixture
def h(db):
    return ottolytics.open(record(db))


def test_success_rate(h):
    df = h.success_rate(by="task", freq=None).set_index("task")
    assert df.loc["test", ["runs", "total", "successes", "failures", "skips"]].tolist() == [
        40, 41, 30, 11, 0]
    assert df.loc["test", "rate"] == pytest.approx(30 / 41)
    assert df.loc["lint", "rate"] == 1.0
    runs = h.success_rate(by="project", freq=None).iloc[0]
    assert (runs["runs"], runs["successes"], runs["failures"]) == (40, 30, 10)
    weekly = h.success_rate(by=["project", "task"], freq="W")
    assert weekly["total"].sum() == RUNS * 4 + 1 and weekly["period"].dt.day_of_week.eq(0).all()
    with pytest.raises(ValueError, match="freq"):
        h.success_rate(freq="fortnight")


def test_duration_stats_and_trend(h):
    df = h.duration_stats(by="task").set_index("task")
    assert df.loc["lint", ["count", "mean", "p50", "max"]].tolist() == [40, 1.0, 1.0, 1.0]
    assert df.loc["docs", "p95"] == pytest.approx(2.0)
    builds = sorted((10.0 if i < 20 else 20.0) + (i % 3) * 0.1 for i in range(RUNS))
    assert df.loc["build", "p50"] == pytest.approx(pd.Series(builds).quantile(0.5))
    assert df.loc["build", "p90"] == pytest.approx(pd.Series(builds).quantile(0.9))
    trend = h.duration_trend("build", freq="D")
    assert trend["count"].sum() == RUNS
    assert trend["p50"].iloc[0] < 11 and trend["p50"].iloc[-1] > 19


def test_flaky(h):
    df = h.flaky(window=RUNS).set_index("task")
    assert list(df.index) == ["test"]
    row = df.loc["test"]
    assert (row["runs"], row["failed_runs"], row["flips"], row["retry_passes"]) == (40, 10, 19, 1)
    assert row["flip_rate"] == pytest.approx(19 / 39)
    assert row["score"] == pytest.approx((19 / 39 + 1 / 40) / 3)
    short = h.flaky(window=4).set_index("task").loc["test"]
    assert (short["runs"], short["flips"]) == (4, 1)  # runs 36..39: S S S F


def test_flaky_window_counts_runs_when_the_latest_ones_had_many_attempts(db):
    """The latest rows of a task may all be attempts of its last run or two; the
    window still holds *window* runs (the exact way, for that task alone)."""
    from ottolytics.record.recorder import Recorder
    rec = Recorder(db)
    for i in range(6):  # six runs of flaky-test: S F S, then two runs of 5 attempts
        t = T0 + i * 100
        run = rec.run(project="p", uid=f"r{i}").start(at=t)
        attempts = 5 if i >= 4 else 1
        for a in range(attempts):
            code = 0 if (a == attempts - 1 and i != 1) else 1
            run.task("flaky-test").start(at=t + a).finish(code, at=t + a + 0.5)
        run.task("steady").start(at=t + 10).finish(1 if i == 5 else 0, at=t + 11)
        run.finish(at=t + 20)
    rec.close()
    with ottolytics.open(db) as h:
        for window, runs, failed, retries in [(2, 2, 0, 2), (3, 3, 0, 2), (5, 5, 1, 2),
                                              (6, 6, 1, 2), (50, 6, 1, 2)]:
            row = h.flaky(window=window).set_index("task").loc["flaky-test"]
            assert (row["runs"], row["failed_runs"], row["retry_passes"]) == \
                (runs, failed, retries), window
        steady = h.flaky(window=3).set_index("task").loc["steady"]
        assert (steady["runs"], steady["failed_runs"], steady["flips"]) == (3, 1, 1)


@pytest.mark.parametrize("n", [1, 5, 30, 39, 40, 1000])
def test_latest_successes_are_each_tasks_last_n(db, n):
    """regressions' rows (each task's last n successes, found from counts per
    week) are those of a plain ranking of every success, for tasks with more
    successes than n, fewer (a weekly job), and both in one history."""
    from ottolytics.analyze.analytics import _latest_successes
    from ottolytics.record.recorder import Recorder
    record(db)
    rec = Recorder(db)
    for i in range(6):  # a weekly deploy: six successes over six weeks, before and after
        t = T0 - 3 * 7 * 86400 + i * 7 * 86400
        run = rec.run(project="ops", uid=f"deploy{i}").start(at=t)
        run.task("deploy").start(at=t).finish(0, at=t + 60 + i)
        run.finish(at=t + 100)
    rec.close()
    with ottolytics.open(db) as h:
        got = _latest_successes(h, n)
        plain = h._query(lambda r: f"""
            SELECT project, task, run_id, started_at, duration_s FROM (
                SELECT *, row_number() OVER (PARTITION BY project, task
                                             ORDER BY started_at DESC) AS k
                FROM ({r.facts(need=['project', 'run_id'])})
                WHERE status = 'success' AND duration_s IS NOT NULL)
            WHERE k <= {n} ORDER BY project, task, started_at, run_id""")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), plain.reset_index(drop=True))
    assert set(got["task"]) == {"lint", "build", "docs", "test", "deploy"}


def test_failures_and_groups_merge_messages_differing_in_numbers_and_paths(h):
    f = h.failures()
    assert len(f) == 11 and f["stderr_tail"].notna().all()
    assert set(f["exit_code"].dropna()) == {1, 2}
    groups = h.failure_groups()
    assert groups["count"].tolist() == [10, 1]
    top = groups.iloc[0]
    assert top["tasks"] == "test" and top["message"].startswith("Error: connection refused")
    assert top["first_seen"] < top["last_seen"]
    assert normalize("at 2026-01-01T10:00:00Z pid 12 /tmp/tmpab/x 0xdeadbeef") == \
        "at <time> pid <n> <tmp> <hex>"
    assert signature("failed after 12 s in /tmp/a1/b") == signature("failed after 3 s in /tmp/zz")
    assert signature("failed: disk full") != signature("failed: timeout")


def test_regression_found_at_the_planted_run(h):
    df = h.regressions()
    assert df["task"].tolist() == ["build"]
    row = df.iloc[0]
    assert row["run_id"] == f"run{REGRESSION_AT:03d}" and row["direction"] == "slower"
    assert row["median_before"] == pytest.approx(10.1, abs=0.11)
    assert row["median_after"] == pytest.approx(20.1, abs=0.11)
    assert row["p_value"] < 1e-3


def test_no_regression_in_noise(tmp_path):
    import random
    from ottolytics.record.recorder import Recorder
    rng = random.Random(3)
    db = tmp_path / "noise.db"
    rec = Recorder(db)
    for i in range(300):
        run = rec.run(project="p", uid=f"n{i}").start(at=1e9 + i * 60)
        d = math.exp(rng.gauss(math.log(30), 0.35))
        run.task("build").start(at=1e9 + i * 60).finish(0, at=1e9 + i * 60 + d)
        run.finish(at=1e9 + i * 60 + d)
    rec.close()
    assert ottolytics.open(db).regressions().empty


def test_critical_path_and_compare(h):
    path = h.critical_path("run010")
    assert path["task"].tolist() == ["lint", "build", "test"]
    assert path["duration_s"].tolist() == pytest.approx([1.0, 10.1, 5.0])
    assert path["waited_s"].iloc[1:].tolist() == pytest.approx([0.0, 0.0])
    diff = h.compare("run010", "run025").set_index("task")
    assert diff.loc["build", "delta_s"] == pytest.approx(10.0)
    assert not diff["status_changed"].any()
    failed = h.compare("run002", "run003").set_index("task")
    assert failed.loc["test", "status_changed"] and failed.loc["test", "status_b"] == "failed"
    with pytest.raises(KeyError, match="nope: no such run"):
        h.critical_path("nope")  # RunNotFound is a KeyError


def test_disk(db, home):
    from conftest import run_cli
    import sys
    for n in (1000, 5000):
        run_cli("exec", "--project", "p", "--", sys.executable, "-c", f"print('x' * {n})")
    h = ottolytics.open(db)
    usage = h.disk_usage().iloc[0]
    assert usage["project"] == "p" and usage["runs"] == 2 and usage["run_bytes"] > 6000
    largest = h.largest_runs(1)
    assert largest["size_bytes"].iloc[0] > 5000
    growth = h.disk_growth("D")
    assert growth["total_bytes"].iloc[-1] == usage["run_bytes"]


def test_disk_usage_reports_runs_versus_cache(home, db):
    from ottolytics.tools.otto_layout import Task, make_run, project_dir
    from ottolytics.sources.sync import sync
    make_run(home, "/src/web", 1_790_000_000, [Task("a", stdout="x" * 3000), Task("b")])
    sync(db)
    usage = ottolytics.open(db).disk_usage().iloc[0]
    cache = project_dir(home, "/src/web") / ".cache"
    expected = sum(f.stat().st_size for f in cache.iterdir())
    assert usage["project"] == "web" and usage["cache_bytes"] == expected > 0
    assert usage["run_bytes"] > 3000


def test_failure_message_is_the_line_that_names_the_error():
    from ottolytics.analyze.signatures import message as _message
    pytest_tail = ("E   redis.exceptions.TimeoutError: Timeout connecting to redis\n"
                   "FAILED tests/test_s.py::test_x[3] - TimeoutError\n"
                   "========= 1 failed, 216 passed in 43.0s =========\n")
    assert _message(pytest_tail) == "FAILED tests/test_s.py::test_x[3] - TimeoutError"
    assert _message("collecting...\nError: refused\n\n") == "Error: refused"
    assert _message("step 1\nstep 2\n") == "step 2"   # nothing reads like an error
    assert _message("") == ""


def _tailless(db):
    """Failures that kept no stderr: three of deploy with exit 3, one killed by
    signal 9, and two of lint, exit 3 and exit 4."""
    from ottolytics.record.recorder import Recorder
    rec = Recorder(db)
    t0 = 1_790_500_000.0
    for i, (task, code, sig) in enumerate([("deploy", 3, None), ("deploy", 3, None),
                                           ("deploy", None, 9), ("deploy", 3, None),
                                           ("lint", 3, None), ("lint", 4, None)]):
        run = rec.run(project="web", uid=f"bare{i}")
        run.start(at=t0 + i * 60)
        t = run.task(task).start(at=t0 + i * 60)
        if sig is None:
            t.finish(code, at=t0 + i * 60 + 5)
        else:
            t.finish(None, signal=sig, at=t0 + i * 60 + 5)
        run.finish(at=t0 + i * 60 + 6)


def test_failures_without_a_stderr_tail_are_grouped_by_task_and_exit(db):
    _tailless(db)
    h = ottolytics.open(db)
    assert len(h.failures()) == 6
    by_task = {(r.tasks, r.message): r.count for r in h.failure_groups().itertuples()}
    assert by_task == {("deploy", "exit code 3, no stderr kept"): 3,
                       ("deploy", "killed by signal 9, no stderr kept"): 1,
                       ("lint", "exit code 3, no stderr kept"): 1,
                       ("lint", "exit code 4, no stderr kept"): 1}
    assert h.failure_groups()["signature"].str.fullmatch("[0-9a-f]{12}").all()


@pytest.mark.parametrize("mirror", ["on", "off"])
def test_failure_groups_are_the_same_through_the_mirror_and_a_direct_read(db, monkeypatch,
                                                                         mirror):
    """Grouped in SQL over the mirror's stored signatures, or over the frame
    failures() signs in Python (a direct read): the same groups, and a tailless
    failure's signature is sha1("no stderr\0<task>\0<message>")[:12] either way."""
    import hashlib
    _tailless(db)
    record(db, range(8))
    monkeypatch.setenv("OTTOLYTICS_MIRROR", mirror)
    with ottolytics.open(db) as h:
        groups = h.failure_groups()
        failed = h.failures()
    assert groups["count"].sum() == len(failed)
    bare = groups[groups["message"].str.endswith("no stderr kept")]
    for row in bare.itertuples():
        assert row.signature == hashlib.sha1(
            f"no stderr\0{row.tasks}\0{row.message}".encode()).hexdigest()[:12]
    tails = groups[~groups["message"].str.endswith("no stderr kept")]
    assert set(tails["signature"]) == set(failed["signature"].dropna())
    top = tails.iloc[0]
    assert top["tasks"] == "test" and top["count"] == 2 and top["exit_codes"] == "1"
    assert top["last_run_id"] == "run007"
    assert list(groups.columns) == ["signature", "count", "tasks", "projects", "first_seen",
                                    "last_seen", "message", "last_run_id", "exit_codes"]
    assert str(groups["first_seen"].dt.tz) == "UTC"


def test_normalize_skipping_patterns_changes_nothing():
    """normalize skips a pattern whose required characters the text lacks; the
    result is that of every pattern applied in turn, for texts built from the
    pieces the patterns look for (a non-ASCII digit too)."""
    import random
    from ottolytics.analyze import signatures as analytics

    def every_pattern(text):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        result = "\n".join(lines[-analytics.SIGNATURE_LINES:])
        for pattern, replacement in analytics._NORMALIZE:
            result = pattern.sub(replacement, result)
        return result
    pieces = list("0123456789abcdefABx-:/ \t\n.Z+T_٣") + [
        "/tmp", "/var/tmp/", "/var/folders/", "/dev/shm", "/private", "0x", "  ",
        "2026-01-02T10:11:12Z", "12:34:56", "deadbeef1", "123e4567-e89b-12d3-a456-426614174000"]
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        assert normalize(text) == every_pattern(text), repr(text)


# -- found by review: each of these failed before its fix ------------------------

@pytest.mark.parametrize("mirror", ["on", "off"])
def test_failure_groups_with_no_failures_is_an_empty_frame(db, monkeypatch, tmp_path, mirror):
    """Through a direct read or a dataset, the empty frame of failures() reached
    DuckDB with a DOUBLE signature: "Cannot mix values of type DOUBLE and VARCHAR"."""
    record(db, range(3))  # runs 0-2: no failure
    monkeypatch.setenv("OTTOLYTICS_MIRROR", mirror)
    with ottolytics.open(db) as h:
        assert h.failures().empty
        groups = h.failure_groups()
        h.to_parquet(tmp_path / "ds")
    with ottolytics.open(tmp_path / "ds") as d:
        from_dataset = d.failure_groups()
    for frame in (groups, from_dataset):
        assert frame.empty
        assert list(frame.columns) == ["signature", "count", "tasks", "projects", "first_seen",
                                       "last_seen", "message", "last_run_id", "exit_codes"]


@pytest.mark.parametrize("mirror", ["on", "off"])
def test_a_group_without_exit_codes_has_an_empty_list_of_them(db, monkeypatch, mirror):
    """exit_codes was null (shown as nan, and the MCP tool's int() failed on it)
    for a group whose failures had no exit code (killed by a signal)."""
    _tailless(db)
    monkeypatch.setenv("OTTOLYTICS_MIRROR", mirror)
    with ottolytics.open(db) as h:
        groups = h.failure_groups()
    killed = groups[groups["message"] == "killed by signal 9, no stderr kept"]
    assert killed["exit_codes"].tolist() == [""]
    assert groups["exit_codes"].notna().all()


def test_regressions_read_task_names_with_a_nul(db):
    """A task name with a NUL was written into the SQL as a literal, which
    DuckDB's parser cut at the NUL: regressions() raised ParserException."""
    import sqlite3
    record(db)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET name = 'bu' || char(0) || 'ild' WHERE name = 'build'")
    conn.commit()
    conn.close()
    with ottolytics.open(db) as h:
        found = h.regressions()
    assert found["task"].tolist() == ["bu\0ild"]
    assert found["run_id"].tolist() == [f"run{REGRESSION_AT:03d}"]


def test_flaky_counts_a_run_whose_start_is_unknown(db):
    """A run with no start (a text start_at, read as null) was left out of its
    tasks' windows by the quick path, and counted by the exact one."""
    import sqlite3
    record(db, range(8))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET started_at = 'unknown' WHERE uid = 'run003'")  # failed test
    conn.commit()
    conn.close()
    with ottolytics.open(db) as h:
        row = h.flaky(window=20).set_index("task").loc["test"]
    assert (row["runs"], row["failed_runs"]) == (8, 2)


def test_flaky_leaves_out_tasks_that_never_passed(db, tmp_path):
    """A new user's report: tasks that failed in every run of their window were
    listed by `ottolytics flaky` with score 0, against its definition (tasks
    that both passed and failed) and its own empty message."""
    from ottolytics import Recorder
    from conftest import run_cli
    rec = Recorder(db)
    for i in range(6):
        with rec.run(project="p", uid=f"r{i}") as run:
            run.task("always-fails").start(at=T0 + i * 60).finish(1, at=T0 + i * 60 + 1)
            run.task("never-fails").start(at=T0 + i * 60).finish(0, at=T0 + i * 60 + 1)
            run.task("retry-passes").start(at=T0 + i * 60).finish(1, at=T0 + i * 60 + 1)
            run.task("retry-passes").start(at=T0 + i * 60 + 2).finish(0, at=T0 + i * 60 + 3)
    rec.close()
    with ottolytics.open(db) as h:
        assert list(h.flaky()["task"]) == ["retry-passes"]
        assert list(h.with_filters(task="always-fails").flaky()["task"]) == []
    out = run_cli("--db", db, "flaky", "--task", "always-fails")
    assert out.returncode == 0 and b"no flaky tasks" in out.stdout, out


@pytest.mark.parametrize("freq", [None, "D", "W", "M"])
def test_task_success_rate_equals_counting_the_task_frame(db, freq):
    """success_rate counts task attempts in two steps (grouped by status, then
    pivoted); every figure equals counting h.tasks() with pandas."""
    record(db)
    with ottolytics.open(db) as h:
        got = h.success_rate(by=("project", "task"), freq=freq)
        t = h.tasks()
    keys = ["project", "task"]
    if freq:
        t["period"] = t["started_at"].dt.tz_localize(None).dt.to_period(
            {"D": "D", "W": "W-SUN", "M": "M"}[freq]).dt.start_time.dt.tz_localize("UTC")
        keys = ["period"] + keys
    status = t["status"].astype(str)
    want = t.assign(runs=t["attempt"] == 1, successes=status == "success",
                    failures=status == "failed", skips=status == "skipped",
                    interrupted=status == "interrupted", total=1).groupby(keys).agg(
        runs=("runs", "sum"), total=("total", "sum"), successes=("successes", "sum"),
        failures=("failures", "sum"), skips=("skips", "sum"),
        interrupted=("interrupted", "sum")).reset_index()
    got = got.set_index(keys).sort_index()
    want = want.set_index(keys).sort_index()
    for col in ("runs", "total", "successes", "failures", "skips", "interrupted"):
        assert got[col].astype("int64").tolist() == want[col].astype("int64").tolist(), col
    rate = want["successes"] / (want["successes"] + want["failures"]).replace(0, float("nan"))
    # (the keys compared as text: pandas 2 makes the pandas side's periods ns, 3 us)
    assert [tuple(map(str, k)) if isinstance(k, tuple) else str(k) for k in got.index] == \
        [tuple(map(str, k)) if isinstance(k, tuple) else str(k) for k in want.index]
    pd.testing.assert_series_equal(got["rate"].astype(float), rate.astype(float),
                                   check_names=False, check_index=False)


@pytest.mark.parametrize("filters", [{}, {"project": "web"}, {"task": "test"},
                                     {"since": T0 + 3 * 3600}])
def test_failure_groups_frames_are_equal_through_the_mirror_and_a_direct_read(
        db, monkeypatch, filters):
    """Over the mirror the groups are made from lean rows and their last runs
    named after (run keys); the frame equals the direct read's, every column."""
    _tailless(db)
    record(db, range(12))
    frames = {}
    for mode in ("on", "off"):
        monkeypatch.setenv("OTTOLYTICS_MIRROR", mode)
        with ottolytics.open(db, **filters) as h:
            frames[mode] = h.failure_groups()
    assert len(frames["on"]) > 0
    pd.testing.assert_frame_equal(frames["on"], frames["off"])
