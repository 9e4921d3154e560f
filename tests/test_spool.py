"""The recorder degrades to the spool when the store is unusable and replays it later."""

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path


import ottolytics
from ottolytics.store import spool
from ottolytics.store.connection import Store
from conftest import q, run_cli

PY = sys.executable
COMMAND = ("-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")




def warnings_in(stderr):
    return [l for l in stderr.decode().splitlines() if l.startswith("ottolytics: warning")]


def exec_faulty(db, **kw):
    proc = run_cli("--db", db, "exec", "--project", "p", "--task", "t", "--", PY, *COMMAND, **kw)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == b"out\n"
    assert b"err\n" in proc.stderr
    assert len(warnings_in(proc.stderr)) == 1, proc.stderr
    assert "spooled" in warnings_in(proc.stderr)[0]
    return proc


def assert_replayed(db):
    """A later successful open (any command) replays the spooled run exactly once."""
    assert run_cli("--db", db, "doctor").returncode == 0
    assert q(db, "SELECT t.name, t.status, t.exit_code, r.status FROM tasks t "
                 "JOIN runs r ON r.id = t.run_id") == [("t", "failed", 3, "failed")]
    assert run_cli("--db", db, "doctor").returncode == 0  # nothing left, nothing doubled
    assert len(q(db, "SELECT id FROM tasks")) == 1
    assert not spool.pending_files(db)


def test_read_only_db_file(db, make_readonly):
    Store.open(db).close()
    make_writable = make_readonly(db)
    exec_faulty(db)
    assert list((db.parent / "ottolytics.db.spool").glob("*.jsonl"))
    make_writable()
    assert_replayed(db)


def test_read_only_folder(tmp_path, make_readonly, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "ottolytics.db"
    Store.open(db).close()
    monkeypatch.setenv("OTTO_HOME", str(folder))
    make_writable = make_readonly(folder)
    exec_faulty(db)
    # Nothing could be written beside the store: the fallback directory holds it all.
    fallback = Path(spool.spool_dirs(db)[1])
    assert list(fallback.glob("*.jsonl"))
    [log] = fallback.rglob("stderr.log")
    assert log.read_text() == "err\n"
    make_writable()
    assert_replayed(db)
    stored = q(db, "SELECT stderr_path FROM tasks")[0][0]
    assert os.path.isabs(stored) and open(stored).read() == "err\n"


def test_corrupt_db(db):
    db.write_bytes(b"this is not an sqlite database" * 100)
    exec_faulty(db)
    corrupt = db.read_bytes()
    assert corrupt.startswith(b"this is not"), "the corrupt file is never overwritten"
    doctor = run_cli("--db", db, "doctor")
    assert doctor.returncode != 0 and b"move it aside" in doctor.stdout
    db.rename(db.with_name("ottolytics.db.corrupt"))
    assert_replayed(db)


def test_db_locked_past_the_timeout(db):
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        exec_faulty(db, env={"OTTOLYTICS_BUSY_TIMEOUT": "0.2"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_replayed(db)


def test_missing_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    db = blocker / "sub" / "ottolytics.db"
    exec_faulty(db, env={"OTTO_HOME": str(tmp_path / "home")})
    blocker.unlink()
    assert_replayed(db)


# -- the spool itself ---------------------------------------------------------

def _spool_a_run(db, monkeypatch):
    """Record a run while the store is locked, so its events land in the spool."""
    monkeypatch.setenv("OTTOLYTICS_BUSY_TIMEOUT", "0.05")
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    warnings = []
    rec = ottolytics.Recorder(db, warn=warnings.append)
    with rec.run(project="p") as run:
        with run.task("a"):
            pass
        with run.task("b", deps=["a"]) as task:
            task.log("hello\n")
    rec.close()
    holder.execute("ROLLBACK")
    holder.close()
    assert rec.degraded and len(warnings) == 1
    return run.uid


def test_replay_is_exactly_once_even_after_a_crash_before_unlink(db, monkeypatch, tmp_path):
    uid = _spool_a_run(db, monkeypatch)
    [path] = map(Path, spool.pending_files(db))
    saved = tmp_path / "copy.jsonl"
    shutil.copy(path, saved)
    store = Store.open(db)
    files, applied, skipped = spool.replay(store)
    assert (files, skipped) == (1, 0) and applied == 7
    # Simulate dying after the commit but before the unlink: the file is back.
    shutil.copy(saved, path)
    assert spool.replay(store)[1] == 0
    store.close()
    assert q(db, "SELECT uid, status FROM runs") == [(uid, "success")]
    assert q(db, "SELECT name FROM tasks ORDER BY id") == [("a",), ("b",)]
    assert q(db, "SELECT data FROM log_fragments") == [("hello\n",)]
    assert q(db, "SELECT depends_on FROM task_deps") == [("a",)]


def test_truncated_last_line_is_skipped_counted_and_kept(db, monkeypatch):
    _spool_a_run(db, monkeypatch)
    [path] = map(Path, spool.pending_files(db))
    with open(path, "ab") as f:
        f.write(b'{"e": "task_start", "run": "x", "na')  # killed mid-write
    messages = []
    store = Store.open(db)
    files, applied, skipped = spool.replay(store, warn=messages.append)
    store.close()
    assert (files, applied, skipped) == (1, 7, 1)
    assert len(messages) == 1 and "1 events could not be applied" in messages[0]
    [kept] = (path.parent / "quarantine").glob("*")
    assert '"na' in kept.read_text(), "the unreadable line is kept in quarantine"
    assert q(db, "SELECT count(*) FROM tasks") == [(2,)]


def test_files_from_several_processes_replay_in_time_order(db, monkeypatch):
    """run start in one file, its tasks in another, run end in a third."""
    Store.open(db).close()
    d = Path(spool.spool_dirs(db)[0])
    d.mkdir(parents=True)

    def write(name, evs):
        with open(d / name, "w") as f:
            f.write(json.dumps({"spool": 1}) + "\n")
            for ev in evs:
                f.write(json.dumps(ev) + "\n")

    # Names sort the opposite way to time, and all owners are dead pids.
    write("999999003-0-aa.jsonl", [{"e": "run_start", "uid": "R", "project": "p", "at": 1.0}])
    write("999999002-0-bb.jsonl", [
        {"e": "task_start", "run": "R", "tok": "k", "name": "t", "at": 2.0},
        {"e": "task_finish", "tok": "k", "status": "failed", "exit_code": 1, "at": 3.0}])
    write("999999001-0-cc.jsonl", [{"e": "run_finish", "uid": "R", "at": 4.0}])
    store = Store.open(db)
    assert spool.replay(store) == (3, 4, 0)
    store.close()
    assert q(db, "SELECT status, finished_at FROM runs") == [("failed", 4.0)]


def test_files_of_live_writers_are_left_alone(db):
    writer = spool.SpoolWriter(db)
    writer.append({"e": "run_start", "uid": "L", "project": "p", "at": 1.0})
    store = Store.open(db)
    assert spool.replay(store) == (0, 0, 0)
    writer.close()
    assert spool.replay(store) == (1, 1, 0)
    store.close()


def test_a_long_lived_recorder_recovers_when_the_store_comes_back(db, monkeypatch):
    monkeypatch.setattr("ottolytics.record.recorder.RETRY_STORE_EVERY_S", 0.0)
    monkeypatch.setenv("OTTOLYTICS_BUSY_TIMEOUT", "0.05")
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    rec = ottolytics.Recorder(db, warn=lambda m: None)
    run = rec.run(project="p").start()
    task = run.task("a").start()
    assert rec.degraded
    holder.execute("ROLLBACK")
    holder.close()
    task.finish(exit_code=0)  # reconnects, replays its own spool, then writes directly
    run.finish()
    assert not rec.degraded
    rec.close()
    assert q(db, "SELECT name, status FROM tasks") == [("a", "success")]
    assert q(db, "SELECT status FROM runs") == [("success",)]
    assert not spool.pending_files(db)


def _write_spool(db, lines, name="4242-1-abcdef.jsonl"):
    directory = Path(str(db) + ".spool")
    directory.mkdir(exist_ok=True)
    path = directory / name
    header = {"spool": 1, "db": str(db), "pid": 4242, "created": 1.0}
    path.write_text("\n".join(json.dumps(x) for x in [header, *lines]) + "\n")
    return path


def _spooled_run(uid, project, at=1000.0, tok="t1"):
    return [{"e": "run_start", "uid": uid, "project": project, "at": at, "args": ["x"]},
            {"e": "task_start", "run": uid, "name": "t", "at": at, "tok": tok, "attempt": 1},
            {"e": "task_finish", "tok": tok, "status": "success", "at": at + 1, "exit_code": 0},
            {"e": "run_finish", "uid": uid, "at": at + 1}]


def test_a_spooled_name_that_is_not_utf8_replays(db):
    """What an earlier version spooled for ``--project $'p\\xff'`` lands in the store."""
    Store.open(db).close()
    _write_spool(db, _spooled_run("r1", "p\udcff"))
    doctor = run_cli("--db", db, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert q(db, "SELECT p.name, r.status FROM runs r JOIN projects p "
                 "ON p.id = r.project_id") == [("p\\xff", "success")]
    assert not list(Path(str(db) + ".spool").glob("*.failed"))


def test_a_bad_spool_entry_is_quarantined_and_reported_once(db):
    Store.open(db).close()
    good = _spooled_run("good", "p")
    bad = [{"e": "task_finish", "tok": "never-started", "status": "success", "at": 5.0}]
    _write_spool(db, good[:2] + bad + good[2:])
    first = run_cli("--db", db, "doctor")
    assert q(db, "SELECT uid, status FROM runs") == [("good", "success")]
    out = first.stdout.decode()
    assert first.returncode == 1 and "quarantine" in out, out
    warnings = [l for l in first.stderr.decode().splitlines() if "warning" in l]
    assert len(warnings) == 1 and "never-started" in warnings[0], first.stderr
    [kept] = (Path(str(db) + ".spool") / "quarantine").glob("*")
    assert "never-started" in kept.read_text() and "good" not in kept.read_text()
    second = run_cli("--db", db, "doctor")
    assert second.returncode == 0, second.stdout
    assert "quarantine" in second.stdout.decode()  # still mentioned, no longer BAD
    assert q(db, "SELECT count(*) FROM tasks") == [(1,)]
