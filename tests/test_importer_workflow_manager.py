"""sync from an executions.db written the way workflow-manager writes it (tests/wm_db.py)."""

import json
import os
import sqlite3
import sys
import time

import pytest

import wm_db as wm
from conftest import q
from ottolytics.sources.common import Report, save_runs
from ottolytics.sources import workflow_manager
from ottolytics.sources.timestamps import to_unix
from ottolytics.store.connection import Store
from ottolytics.sources.sync import sync

T0 = 1_795_165_200.0  # 2026-11-20 10:00 +01:00, well in the past
GONE = "/opt/wf/definitely-not-running"


def research(path, at=T0, binary=GONE):
    """A completed run: two phases, a task that fails, raw output on both streams."""
    ex = wm.Execution(path, "research", "Research agent", binary,
                      {"objective": "sqlite wal", "batch_size": "3"}, at)
    ex.line(at + 0.2, "stderr", wm.phase_started(0, "Analyze Codebase", 2))
    ex.line(at + 0.3, "stderr", wm.task_started(0, "analyze", "Analyzing codebase"))
    ex.line(at + 9.0, "stdout", "[Phase 0] Analysis saved to: ./OUTPUT/a.yaml")
    ex.line(at + 9.1, "stderr", wm.task_completed("analyze", "Saved to ./OUTPUT/a.yaml"))
    ex.line(at + 9.1, "stderr", wm.state_file_created(0, "./OUTPUT/a.yaml", "Codebase analysis"))
    ex.line(at + 9.1, "stderr", wm.phase_completed(0, "Analyze Codebase"))
    ex.line(at + 9.2, "stderr", wm.phase_started(1, "Execute Research", 2))
    ex.line(at + 9.3, "stderr", wm.task_started(1, "fetch", "Fetching sources"))
    ex.line(at + 20.0, "stderr", wm.agent_message("fetch", "web", "trying mirror"))
    ex.line(at + 31.0, "stderr", wm.task_failed("fetch", "HTTP 503 from the API"))
    ex.line(at + 31.1, "stderr", "thread 'main' panicked")
    ex.line(at + 31.2, "stderr", wm.phase_failed(1, "Execute Research", "fetch failed"))
    ex.finish(at + 31.5, 1)
    return ex


def test_schema_times_and_sequences_are_workflow_managers(tmp_path):
    db = wm.create(tmp_path / "executions.db")
    ex = research(db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone() == (2,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    start, end = conn.execute("SELECT start_time, end_time FROM executions").fetchone()
    assert start == ex.start_time and start.startswith("2026-11-20T10:00:00.0000")
    assert start.endswith("+01:00") and len(start.split(".")[1]) == 9 + 6
    seqs = [r[0] for r in conn.execute("SELECT sequence FROM execution_logs ORDER BY sequence")]
    assert seqs[0] == 0 and seqs == list(range(len(seqs)))
    conn.close()


def test_round_trip(tmp_path, db):
    src = wm.create(tmp_path / "executions.db")
    ex = research(src)
    report = sync(db, paths=[str(src)])
    assert report.added == {"workflow-manager": 1} and not report.skipped
    runs = q(db, "SELECT r.uid, p.name, r.status, r.started_at, r.finished_at - r.started_at, "
                 "r.derived FROM runs r JOIN projects p ON p.id = r.project_id")
    uid, project, status, started, duration, derived = runs[0]
    assert (uid, project, status, derived) == (f"wm-{ex.id}", "Research agent", "failed", None)
    assert started == pytest.approx(T0, abs=1e-5)  # +01:00 and 9 digits read right
    assert duration == pytest.approx(31.5, abs=1e-3)
    assert q(db, "SELECT key, value FROM run_params ORDER BY key") == [
        ("batch_size", "3"), ("exit_code", "1"), ("objective", "sqlite wal"),
        ("workflow_id", "research")]
    tasks = q(db, "SELECT name, status FROM tasks ORDER BY started_at, id")
    assert tasks == [("phase:Analyze Codebase", "success"), ("analyze", "success"),
                     ("phase:Execute Research", "failed"), ("fetch", "failed")]
    assert q(db, "SELECT tail FROM task_stderr t JOIN tasks k ON k.id = t.task_id "
                 "WHERE k.name = 'fetch'") == [("HTTP 503 from the API",)]
    assert q(db, "SELECT from_status, to_status, reason FROM transitions x JOIN tasks t "
                 "ON t.id = x.task_id WHERE t.name = 'fetch' ORDER BY at") == [
        (None, "running", "Fetching sources"), ("running", "failed", "HTTP 503 from the API")]
    frags = q(db, "SELECT stream, seq, data FROM log_fragments ORDER BY seq")
    assert [(s, d) for s, _q, d in frags if s != "event"] == [
        ("stdout", "[Phase 0] Analysis saved to: ./OUTPUT/a.yaml"),
        ("stderr", "thread 'main' panicked")]
    events = [json.loads(d) for s, _q, d in frags if s == "event"]
    assert [e["type"] for e in events] == ["StateFileCreated", "AgentMessage"]
    assert frags[0][1] == 2  # the source's sequence, from 0


def test_a_task_time_comes_from_the_flushes_not_the_flush_time(tmp_path, db):
    """Lines wait in a batch until a flush: a 58.8 s task came in as 0 s."""
    src = wm.create(tmp_path / "executions.db")
    ex = wm.Execution(src, "plan", "Task planner", GONE, {}, T0)
    # Waits in the batch (under 5 s since the parser started) until 59.8 s.
    ex.line(T0 + 1.0, "stderr", wm.task_started(0, "overview", "Overview"))
    ex.line(T0 + 59.8, "stderr", wm.task_completed("overview"))      # flushes both
    ex.line(T0 + 60.0, "stderr", wm.task_started(0, "expand", "Expand"))    # waits...
    ex.line(T0 + 90.6, "stderr", wm.task_completed("expand"))        # flushes at 90.6
    ex.line(T0 + 91.0, "stderr", wm.task_started(0, "review", "Review"))    # waits...
    ex.line(T0 + 121.6, "stderr", wm.task_progress("review", "half"))  # flushes
    ex.line(T0 + 122.0, "stderr", wm.task_completed("review"))       # waits until 151
    ex.line(T0 + 151.0, "stderr", wm.task_progress("review", "cleanup"))  # flushes
    ex.finish(T0 + 152.0, 0)
    stamps = [to_unix(t) for (t,) in sqlite3.connect(src).execute(
        "SELECT timestamp FROM execution_logs ORDER BY sequence")]
    assert stamps[1] - stamps[0] < 0.001  # start and end flushed together
    sync(db, paths=[str(src)])
    got = {n: (s, f - s, d) for n, s, f, d in q(
        db, "SELECT name, started_at, finished_at, derived FROM tasks")}
    truth = {"overview": (T0 + 1.0, 58.8), "expand": (T0 + 60.0, 30.6),
             "review": (T0 + 91.0, 31.0)}
    for name, (start, duration) in truth.items():
        assert got[name][0] == pytest.approx(start, abs=FLUSH_HALF)
        assert got[name][1] == pytest.approx(duration, abs=2 * FLUSH_HALF), name
    # Times taken at a flush that the line triggered are exact; the others derived.
    assert got["overview"][2] == "started_at"
    assert got["expand"][2] == "started_at"
    assert got["review"][2] == "finished_at,started_at"


FLUSH_HALF = workflow_manager.FLUSH_AFTER_S / 2


def test_a_fast_burst_is_flushed_every_50_lines(tmp_path, db):
    src = wm.create(tmp_path / "executions.db")
    ex = wm.Execution(src, "echo", "Simple echo", GONE, {}, T0)
    ex.line(T0 + 0.5, "stderr", wm.task_started(0, "echo", "Echo"))
    for i in range(120):
        ex.line(T0 + 0.6 + i * 0.001, "stdout", f"line {i}")
    ex.line(T0 + 39.9, "stdout", "done")  # flushes the last 20 with it
    ex.line(T0 + 40.0, "stderr", wm.task_completed("echo"))
    ex.finish(T0 + 40.1, 0)
    sync(db, paths=[str(src)])
    ats = [a for (a,) in q(db, "SELECT at FROM log_fragments ORDER BY seq")]
    assert len(ats) == 121 and ats == sorted(ats)
    assert all(abs(a - (T0 + 0.6 + i * 0.001)) <= FLUSH_HALF + 0.01
               for i, a in enumerate(ats[:120]))
    assert ats[120] == pytest.approx(T0 + 39.9, abs=1e-3)
    # The 50th and 100th lines triggered their flushes: exact.
    assert ats[49] == pytest.approx(T0 + 0.6 + 0.049, abs=1e-4)
    (s, f), = q(db, "SELECT started_at, finished_at FROM tasks")
    assert f == pytest.approx(T0 + 40.0, abs=1e-3) and abs(s - (T0 + 0.5)) <= FLUSH_HALF


def test_a_restarted_manager_means_interrupted(tmp_path, db):
    """The restart rewrites Running as Failed, end = start, no exit code."""
    src = wm.create(tmp_path / "executions.db")
    ex = wm.Execution(src, "research", "Research agent", GONE, {}, T0)
    ex.line(T0 + 0.1, "stderr", wm.phase_started(0, "Analyze Codebase", 2))
    ex.line(T0 + 12.0, "stderr", wm.task_started(0, "analyze", "Analyzing"))  # flushed
    ex.line(T0 + 13.0, "stderr", wm.task_progress("analyze", "lost"))  # dies with it
    # The manager quits; the first sync sees a Running execution, binary gone.
    first = sync(db, paths=[str(src)])
    assert first.added == {"workflow-manager": 1}
    before = q(db, "SELECT status, finished_at - started_at, derived FROM runs")
    assert before == [("interrupted", pytest.approx(12.0, abs=1e-3), "finished_at,status")]
    wm.restart(src, T0 + 3600)
    row = sqlite3.connect(src).execute(
        "SELECT status, end_time = start_time, exit_code FROM executions").fetchone()
    assert row == ("Failed", 1, None)
    second = sync(db, paths=[str(src)])
    assert second.updated == {"workflow-manager": 1}
    after = q(db, "SELECT status, finished_at - started_at, derived FROM runs")
    assert after == before  # not failed with zero duration
    assert q(db, "SELECT name, status, started_at - ?, derived FROM tasks ORDER BY id",
             T0) == [
        ("phase:Analyze Codebase", "interrupted", pytest.approx(2.5, abs=1e-3),
         "finished_at,started_at,status"),
        ("analyze", "interrupted", pytest.approx(12.0, abs=1e-3), "finished_at,status")]
    assert q(db, "SELECT reason FROM transitions WHERE task_id IS NULL AND "
                 "to_status = 'interrupted'") == [("the manager restarted while this ran",)]
    assert q(db, "SELECT final FROM sync_state") == [(1,)]
    assert sync(db, paths=[str(src)]).unchanged == {"workflow-manager": 1}


def test_failed_and_killed_stay_failed(tmp_path, db):
    src = wm.create(tmp_path / "executions.db")
    failed = wm.Execution(src, "a", "A", GONE, {}, T0)
    failed.finish(T0 + 5, 2)
    killed = wm.Execution(src, "b", "B", GONE, {}, T0 + 10)
    killed.finish(T0 + 17, None)  # a signal: no exit code, but end after start
    sync(db, paths=[str(src)])
    assert q(db, "SELECT p.name, r.status, r.finished_at - r.started_at, r.derived FROM runs r "
                 "JOIN projects p ON p.id = r.project_id ORDER BY p.name") == [
        ("A", "failed", pytest.approx(5, abs=1e-3), None),
        ("B", "failed", pytest.approx(7, abs=1e-3), None)]


def test_a_sync_before_the_last_flush_reads_the_run_again(tmp_path, db, monkeypatch):
    """Completed is written at the exit; the parsers' last batches may come later."""
    src = wm.create(tmp_path / "executions.db")
    now = time.time()
    ex = wm.Execution(src, "plan", "Task planner", GONE, {}, now - 30)
    for i in range(8):
        ex.line(now - 29 + i * 0.1, "stdout", f"fragment {i}")  # all wait in the batch
    ex.line(now - 2, "stderr", wm.task_started(0, "t", "T"))
    ex.line(now - 1, "stderr", wm.task_completed("t"))
    ex.exit(now, 0)
    early = sync(db, paths=[str(src)])
    assert early.added == {"workflow-manager": 1}
    assert q(db, "SELECT status FROM runs") == [("success",)]
    assert q(db, "SELECT final FROM sync_state") == [(0,)]
    assert q(db, "SELECT COUNT(*) FROM log_fragments") == [(0,)]
    ex.close("stdout", now + 0.01)
    ex.close("stderr", now + 0.01)
    late = sync(db, paths=[str(src)])
    assert late.updated == {"workflow-manager": 1}
    assert q(db, "SELECT COUNT(*) FROM log_fragments") == [(8,)]
    assert q(db, "SELECT name, status FROM tasks") == [("t", "success")]
    assert sync(db, paths=[str(src)]).unchanged == {"workflow-manager": 1}
    # Once past the time a last flush can take, it is stored as final, once.
    monkeypatch.setattr(workflow_manager, "FLUSH_GRACE_S", 0.0)
    assert sync(db, paths=[str(src)]).updated == {"workflow-manager": 1}
    assert q(db, "SELECT final FROM sync_state") == [(1,)]
    assert sync(db, paths=[str(src)]).unchanged == {"workflow-manager": 1}


def test_a_running_execution_is_read_again_as_it_goes(tmp_path, db):
    src = wm.create(tmp_path / "executions.db")
    alive = os.path.realpath(sys.executable)  # this very process
    ex = wm.Execution(src, "echo", "Simple echo", alive, {}, T0)
    ex.line(T0 + 0.1, "stderr", wm.task_started(0, "echo", "Echo"))
    ex.line(T0 + 6.0, "stderr", wm.task_progress("echo", "one"))
    assert sync(db, paths=[str(src)]).added == {"workflow-manager": 1}
    assert q(db, "SELECT status, finished_at FROM runs") == [("running", None)]
    ex.line(T0 + 12.0, "stderr", wm.task_progress("echo", "two"))
    assert sync(db, paths=[str(src)]).updated == {"workflow-manager": 1}
    assert q(db, "SELECT COUNT(*) FROM log_fragments") == [(2,)]
    ex.line(T0 + 13.0, "stderr", wm.task_completed("echo"))
    ex.finish(T0 + 13.5, 0)
    assert sync(db, paths=[str(src)]).updated == {"workflow-manager": 1}
    assert q(db, "SELECT status FROM runs") == [("success",)]


def test_a_run_imported_wrongly_as_final_is_corrected(tmp_path, db):
    """What an earlier ottolytics stored, final: the restart pattern as failed, 0 s."""
    src = wm.create(tmp_path / "executions.db")
    ex = wm.Execution(src, "research", "Research agent", GONE, {}, T0)
    ex.line(T0 + 7.0, "stderr", wm.task_started(0, "analyze", "Analyzing"))
    wm.restart(src, T0 + 60)
    store = Store.open(db)
    try:
        save_runs(store, [{
            "source": "workflow-manager", "ref": ex.id, "uid": f"wm-{ex.id}",
            "project": "Research agent", "status": "failed", "started_at": T0,
            "finished_at": T0, "signature": "old", "final": True}], Report())
    finally:
        store.close()
    assert q(db, "SELECT status, finished_at - started_at FROM runs") == [("failed", 0.0)]
    report = sync(db, paths=[str(src)])
    assert report.updated == {"workflow-manager": 1}
    assert q(db, "SELECT status, finished_at - started_at FROM runs") == [
        ("interrupted", pytest.approx(7.0, abs=1e-3))]


def test_default_location_is_home_workflow_manager(tmp_path, db, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WORKFLOW_MANAGER_DB", raising=False)
    src = wm.create(tmp_path / ".workflow-manager" / "executions.db")
    research(src)
    assert sync(db).added == {"workflow-manager": 1}


def test_bad_input(tmp_path, db):
    src = wm.create(tmp_path / "executions.db")
    research(src)
    odd = wm.Execution(src, "w", "W", GONE, {}, T0)
    wm.update_execution(src, odd.id, "Exploded", None, None, wm.rfc3339(wm.ns(T0)))
    conn = wm.connect(src)  # corrupt rows the schema lets through
    conn.execute("INSERT INTO execution_logs (execution_id, sequence, timestamp, log_type, "
                 "log_data) VALUES (?, 99, ?, 'TaskProgress', '{not json')",
                 (odd.id, wm.rfc3339(wm.ns(T0))))
    conn.close()
    report = sync(db, paths=[str(src)])
    reasons = [r for _s, _p, r in report.skipped]
    assert report.added == {"workflow-manager": 1}
    assert any("unknown status 'Exploded'" in r for r in reasons)
    wm.update_execution(src, odd.id, "Completed", wm.rfc3339(wm.ns(T0 + 1)), 0,
                        wm.rfc3339(wm.ns(T0 + 1)))
    report = sync(db, paths=[str(src)])
    assert any("invalid JSON" in r for _s, _p, r in report.skipped)
    assert report.added == {"workflow-manager": 1}
    # Not a workflow-manager database at all, and a locked one: skipped, not a crash.
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    report = sync(db, source="workflow-manager", paths=[str(other)])
    assert any("not a workflow-manager database" in r for _s, _p, r in report.skipped)
    holder = sqlite3.connect(src, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE executions SET status = status")
    try:
        report = sync(db, paths=[str(src)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert any(r.startswith("locked") for _s, _p, r in report.skipped)


def test_the_last_lines_before_the_exit(tmp_path, db):
    """An end-of-stream write and a line's own write look alike at the exit: the
    last line is put at that write, and marked derived."""
    src = wm.create(tmp_path / "executions.db")
    ex = wm.Execution(src, "plan", "Task planner", GONE, {}, T0)
    ex.line(T0 + 6.0, "stderr", wm.phase_started(0, "Overview", 1))   # its own write
    ex.line(T0 + 6.5, "stderr", wm.task_started(0, "overview", "Overview"))  # waits
    ex.line(T0 + 40.0, "stderr", wm.task_completed("overview"))       # its own write
    ex.line(T0 + 49.9, "stderr", wm.phase_completed(0, "Overview"))   # its own, at the exit
    ex.finish(T0 + 50.2, 0)
    sync(db, paths=[str(src)])
    got = q(db, "SELECT name, started_at - ?, finished_at - ?, derived FROM tasks ORDER BY id",
            T0, T0)
    assert got == [
        ("phase:Overview", pytest.approx(6.0, abs=1e-3), pytest.approx(49.9, abs=1e-3),
         "finished_at"),
        ("overview", pytest.approx(8.5, abs=1e-3), pytest.approx(40.0, abs=1e-3),
         "started_at")]


def test_an_unreadable_start_time_skips_the_execution(tmp_path, db):
    """Review item 13: start_time='garbage' was imported at created_at (the sync time
    in a row written with SQLite's default), not skipped, not marked derived."""
    src = wm.create(tmp_path / "executions.db")
    good = wm.Execution(src, "a", "A", GONE, {}, T0)
    good.finish(T0 + 5, 0)
    bad = wm.Execution(src, "b", "B", GONE, {}, T0 + 10)
    bad.finish(T0 + 17, 0)
    conn = wm.connect(src)
    conn.execute("UPDATE executions SET start_time = 'garbage', created_at = "
                 "CURRENT_TIMESTAMP WHERE id = ?", (bad.id,))
    conn.close()
    report = sync(db, paths=[str(src)])
    assert report.added == {"workflow-manager": 1}
    assert [r for _s, _p, r in report.skipped] == [
        "start_time 'garbage' is not a time; execution skipped"]
    assert q(db, "SELECT p.name FROM runs r JOIN projects p ON p.id = r.project_id") == [("A",)]


def test_an_end_before_the_start_is_clamped_and_marked_derived(tmp_path, db):
    """end_time before start_time: no negative duration is stored; the end is taken
    as the start (or the last log flush after it) and marked derived."""
    src = wm.create(tmp_path / "executions.db")
    ex = wm.Execution(src, "a", "A", GONE, {}, T0)
    ex.finish(T0 + 5, 0)
    wm.update_execution(src, ex.id, "Completed", wm.rfc3339(wm.ns(T0 - 3600)), 0,
                        wm.rfc3339(wm.ns(T0 + 5)))
    sync(db, paths=[str(src)])
    (started, finished, derived), = q(db, "SELECT started_at, finished_at, derived FROM runs")
    assert finished >= started and "finished_at" in derived.split(",")
    assert all(f is None or f >= s for s, f in q(db, "SELECT started_at, finished_at FROM tasks"))
