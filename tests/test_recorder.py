import os
import subprocess
import sys
import textwrap

import pytest

import ottolytics
from conftest import q
from ottolytics.store.migrations import CURRENT_VERSION
from ottolytics.record.recorder import Recorder




def test_with_blocks_record_runs_tasks_deps_params_and_transitions(db):
    rec = ottolytics.Recorder()
    with rec.run(project="web", params={"env": "prod", "n": 3}) as run:
        with run.task("lint"):
            pass
        with run.task("build", deps=["lint"]) as task:
            task.skip(reason="up to date")
    rec.close()
    assert q(db, "SELECT r.uid, p.name, r.status FROM runs r JOIN projects p "
                 "ON p.id = r.project_id") == [(run.uid, "web", "success")]
    assert q(db, "SELECT name, attempt, status, exit_code FROM tasks ORDER BY id") == [
        ("lint", 1, "success", 0), ("build", 1, "skipped", None)]
    assert q(db, "SELECT depends_on FROM task_deps") == [("lint",)]
    assert q(db, "SELECT key, value FROM run_params ORDER BY key") == [
        ("env", "prod"), ("n", "3")]
    assert q(db, "SELECT t.name, x.from_status, x.to_status, x.reason FROM transitions x "
                 "LEFT JOIN tasks t ON t.id = x.task_id "
                 "ORDER BY x.at, x.from_status IS NOT NULL") == [
        (None, None, "running", None),
        ("lint", None, "running", None), ("lint", "running", "success", None),
        ("build", None, "running", None), ("build", "running", "skipped", "up to date"),
        (None, "running", "success", None)]
    started, finished = q(db, "SELECT started_at, finished_at FROM runs")[0]
    assert finished >= started and isinstance(started, float)


def test_exception_marks_task_and_run_failed_and_reraises(db):
    rec = ottolytics.Recorder()
    with pytest.raises(ValueError, match="disk on fire"):
        with rec.run(project="web") as run:
            with run.task("deploy"):
                raise ValueError("disk on fire")
    assert q(db, "SELECT status FROM tasks") == [("failed",)]
    assert q(db, "SELECT status FROM runs") == [("failed",)]
    tail = q(db, "SELECT tail FROM task_stderr")[0][0]
    assert "ValueError: disk on fire" in tail and "Traceback" in tail


def test_keyboard_interrupt_marks_interrupted(db):
    rec = ottolytics.Recorder()
    with pytest.raises(KeyboardInterrupt):
        with rec.run(project="web") as run:
            with run.task("test"):
                raise KeyboardInterrupt
    assert q(db, "SELECT status FROM tasks") == [("interrupted",)]
    assert q(db, "SELECT status FROM runs") == [("interrupted",)]


def test_sigterm_marks_interrupted_and_exits_143(tmp_path, db):
    script = textwrap.dedent(f"""
        import os, signal, ottolytics
        rec = ottolytics.Recorder({str(db)!r})
        with rec.run(project="web") as run:
            with run.task("long"):
                os.kill(os.getpid(), signal.SIGTERM)
                import time; time.sleep(5)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert proc.returncode == 143
    assert q(db, "SELECT status FROM tasks") == [("interrupted",)]
    assert q(db, "SELECT status FROM runs") == [("interrupted",)]


def test_explicit_start_and_finish(db):
    rec = ottolytics.Recorder()
    run = rec.run(project="api").start()
    t1 = run.task("compile").start()
    t1.finish(exit_code=2, stderr_tail=b"x" * 10000 + b"error: boom")
    t2 = run.task("compile").start()  # a retry: attempt 2
    t2.finish(exit_code=0)
    run.finish()
    assert q(db, "SELECT name, attempt, status, exit_code FROM tasks ORDER BY id") == [
        ("compile", 1, "failed", 2), ("compile", 2, "success", 0)]
    # The last attempt decides: the retry succeeded, so the run did.
    assert q(db, "SELECT status FROM runs") == [("success",)]
    tail = q(db, "SELECT tail FROM task_stderr")[0][0]
    assert tail.endswith("error: boom") and len(tail.encode()) == 4096


def test_skip_task_without_running_it_and_explicit_run_status(db):
    rec = ottolytics.Recorder()
    run = rec.run(project="api").start()
    run.skip_task("docs", reason="no changes", deps=["build"])
    run.finish("failed", reason="cancelled by CI")
    assert q(db, "SELECT status, started_at = finished_at FROM tasks") == [("skipped", 1)]
    assert q(db, "SELECT to_status, reason FROM transitions WHERE task_id IS NULL "
                 "ORDER BY at") == [("running", None), ("failed", "cancelled by CI")]


def test_log_fragments_are_batched(db):
    rec = ottolytics.Recorder()
    with rec.run(project="api") as run:
        with run.task("gen") as task:
            for i in range(5):
                task.log(f"line {i}\n")
            task.log(b"err\n", stream="stderr")
    rows = q(db, "SELECT stream, seq, data FROM log_fragments ORDER BY seq")
    assert [r[2] for r in rows] == [f"line {i}\n" for i in range(5)] + ["err\n"]
    assert rows[-1][0] == "stderr"


def test_finishing_twice_keeps_the_first(db):
    rec = ottolytics.Recorder()
    run = rec.run(project="api").start()
    task = run.task("x").start()
    task.finish(exit_code=1)
    task._finished = False  # force a second finish through the API
    task.finish(exit_code=0)
    assert q(db, "SELECT status, exit_code FROM tasks") == [("failed", 1)]


def test_attach_to_unknown_run_warns_and_does_not_degrade(db):
    warnings = []
    rec = ottolytics.Recorder(warn=warnings.append)
    rec.open()
    run = rec.attach("does-not-exist")
    with run.task("x"):
        pass
    assert not rec.degraded
    assert any("no run with id 'does-not-exist'" in w for w in warnings)


def test_recorder_import_is_light():
    code = ("import sys, ottolytics; r = ottolytics.Recorder; import ottolytics.record.recorder; "
            "heavy = [m for m in ('pandas', 'duckdb', 'pyarrow', 'matplotlib', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_schema_version_recorded(db):
    ottolytics.Recorder().open()
    assert q(db, "PRAGMA user_version") == [(CURRENT_VERSION,)]


def test_transitions_view_shows_implied_and_logged_changes(db):
    """A plain task stores no status_log rows; a recovered one logs its whole path."""
    from ottolytics.store.events import set_task_status
    rec = ottolytics.Recorder()
    run = rec.run(project="api").start()
    plain = run.task("plain").start()
    plain.finish(exit_code=0)
    late = run.task("late").start()
    tid = late._id
    # Recovery (another process) decides the task is gone...
    conn = __import__("sqlite3").connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    set_task_status(conn, tid, 1, "running", "interrupted", 123.0, "process is gone")
    conn.execute("COMMIT")
    conn.close()
    # ...then the real finish arrives and wins.
    late.finish(exit_code=0)
    run.finish()
    rec.close()
    assert q(db, "SELECT count(*) FROM status_log WHERE task_id = 1") == [(0,)]
    assert q(db, "SELECT from_status, to_status, reason FROM transitions WHERE task_id = 1 "
                 "ORDER BY at") == [(None, "running", None), ("running", "success", None)]
    rows = q(db, "SELECT from_status, to_status, reason FROM status_log WHERE task_id = ? "
                 "ORDER BY id", tid)
    assert rows == [(None, "running", None), ("running", "interrupted", "process is gone"),
                    ("interrupted", "success", None)]
    assert q(db, "SELECT count(*) FROM transitions WHERE task_id = ?", tid) == [(3,)]
    assert q(db, "SELECT status FROM tasks WHERE id = ?", tid) == [("success",)]


def test_batch_applies_events_in_one_transaction(db):
    rec = ottolytics.Recorder()
    rec.open()
    statements = []
    rec._store.conn.set_trace_callback(statements.append)
    with rec.batch():
        run = rec.run(project="api").start()
        task = run.task("a").start()
        task.finish(exit_code=3)  # refers to a task started in the same batch
        run.finish()
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert task._id is not None
    assert q(db, "SELECT name, status, exit_code FROM tasks") == [("a", "failed", 3)]
    assert q(db, "SELECT status FROM runs") == [("failed",)]


@pytest.mark.parametrize("source", ["otto", "workflow-manager", "oneshot"])
def test_the_recorder_api_refuses_an_importers_source(db, source):
    """Review item 2: importers write their rows through importers.write_run; a
    Recorder run claiming to be one could name another run's directory for clean."""
    from ottolytics.record.recorder import IMPORTED_SOURCES
    from ottolytics.sources.sync import SOURCES
    assert source in SOURCES and set(IMPORTED_SOURCES) == set(SOURCES)
    rec = Recorder(db)
    with pytest.raises(ValueError, match="reserved for 'ottolytics sync'"):
        rec.run(project="evil", source=source, run_dir="p-12345678/1795000000")
    rec.close()
    assert not os.path.exists(db) or not q(db, "SELECT uid FROM runs")


@pytest.mark.parametrize("call", [
    lambda run: run.task("a").start().finish("x"),
    lambda run: run.task("a").start().finish(1.5),
    lambda run: run.task("a").start().finish(True),
    lambda run: run.task("a").start().finish(2 ** 63),
    lambda run: run.task("a").start().finish(0, status="bogus"),
    lambda run: run.task("a").start().finish(1, signal="KILL"),
    lambda run: run.task("a").start().finish(0, at=float("nan")),
    lambda run: run.task("a").start().finish(0, at=1e20),
    lambda run: run.task("a").start(at="yesterday"),
    lambda run: run.task("a").start(status="bogus"),
    lambda run: run.finish("bogus"),
    lambda run: run.finish(at=float("inf")),
    lambda run: run.finish(size_bytes="big"),
    lambda run: run.finish("running"),
    lambda run: run.task("a").start().finish(0, status="pending"),
    lambda run: run.task("a").start().finish(0, status="running"),
    lambda run: run.task("a").start().finish(0, peak_rss_bytes=2 ** 64),
    lambda run: run.task("a").start().finish(0, peak_rss_bytes="x"),
    lambda run: run.task("a").start().finish(0, cpu_user_s="x"),
    lambda run: run.task("a").start().finish(0, cpu_system_s=float("nan")),
])
def test_bad_arguments_are_refused_at_the_call_and_nothing_is_stored(tmp_path, call):
    """A new user's report: finish(exit_code="x") or 1.5 were stored as text and a
    real; status="bogus" or exit_code=2**63 sent the recorder to the spool for the
    rest of the process, and doctor quarantined the events. Bad arguments raise
    ValueError at the call, and the recorder goes on recording into the store."""
    db = tmp_path / "s.db"
    rec = Recorder(db)
    run = rec.run(project="api").start()
    with pytest.raises(ValueError):
        call(run)
    with run.task("b"):
        pass
    run.finish()
    rec.close()
    assert not list(tmp_path.glob("*.spool/*"))
    assert q(db, "SELECT typeof(exit_code) FROM tasks "
                 "WHERE typeof(exit_code) NOT IN ('integer', 'null')") == []
    assert ("b", "success") in q(db, "SELECT name, status FROM tasks")
    assert q(db, "SELECT status FROM runs") in ([("success",)], [("failed",)], [("interrupted",)])


def test_numpy_numbers_are_taken_as_the_numbers_they_are(tmp_path):
    """A review's finding: the argument checks refused numpy integers (an exit
    code from a numpy array, a time from pandas), which before them were stored
    as 8-byte blobs. Any integral number is an integer, any real a float."""
    np = pytest.importorskip("numpy")
    db = tmp_path / "s.db"
    rec = Recorder(db)
    run = rec.run(project="api").start(at=np.int64(1_790_000_000))
    run.task("a").start(at=np.float64(1_790_000_001.5)).finish(
        np.int64(3), signal=np.int32(9), at=np.int64(1_790_000_003),
        peak_rss_bytes=np.uint64(1024), cpu_user_s=np.float32(0.5), cpu_system_s=np.int8(1))
    run.finish(size_bytes=np.int64(10), at=1_790_000_004)
    rec.close()
    assert q(db, "SELECT typeof(started_at), started_at FROM runs") == [("real", 1_790_000_000.0)]
    assert q(db, "SELECT exit_code, signal, typeof(exit_code), started_at, finished_at, "
                 "peak_rss_bytes, cpu_user_s, cpu_system_s FROM tasks") == [
        (3, 9, "integer", 1_790_000_001.5, 1_790_000_003.0, 1024, 0.5, 1.0)]
    assert q(db, "SELECT size_bytes FROM runs") == [(10,)]
