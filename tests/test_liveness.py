import os
import sqlite3
import subprocess
import sys
import time

from ottolytics.store import liveness
from ottolytics.record.recorder import Recorder
from ottolytics.store.connection import Store


def test_pid_alive_for_self_and_dead_and_zombie():
    me = os.getpid()
    assert liveness.pid_alive(me, liveness.process_start_time(me))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.5)  # exited but not reaped: a zombie
    assert not liveness.pid_alive(proc.pid)
    proc.wait()
    assert not liveness.pid_alive(proc.pid)


def test_pid_reuse_is_detected_by_start_time():
    me = os.getpid()
    started = liveness.process_start_time(me)
    assert liveness.pid_alive(me, started)
    assert not liveness.pid_alive(me, started - 3600)  # "same pid, another process"


def _insert_running(db, uid, pid, pid_started_at, host, started_at):
    conn = sqlite3.connect(db)
    conn.execute("INSERT OR IGNORE INTO projects(id, name, created_at) VALUES (1, 'p', 0)")
    rid = conn.execute(
        "INSERT INTO runs(uid, project_id, status, started_at, host, pid, pid_started_at) "
        "VALUES (?, 1, 'running', ?, ?, ?, ?)",
        (uid, started_at, host, pid, pid_started_at)).lastrowid
    conn.execute("INSERT INTO tasks(run_id, name, status, started_at) VALUES (?, 't', "
                 "'running', ?)", (rid, started_at))
    conn.commit()
    conn.close()


def test_recover_marks_dead_local_and_old_foreign_runs(db):
    Store.open(db).close()
    now = time.time()
    here = liveness.hostname()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    _insert_running(db, "dead", proc.pid, now - 5, here, now - 10)
    me = os.getpid()
    _insert_running(db, "alive", me, liveness.process_start_time(me), here, now - 10)
    _insert_running(db, "foreign-old", 1, None, "elsewhere", now - 48 * 3600)
    _insert_running(db, "foreign-new", 1, None, "elsewhere", now - 60)
    store = Store.open(db)
    marked = liveness.recover_stale(store, max_age_s=24 * 3600)
    store.close()
    assert {(m[0], m[1]) for m in marked} == {("dead", "t"), ("dead", None),
                                              ("foreign-old", "t"), ("foreign-old", None)}
    conn = sqlite3.connect(db)
    status = dict(conn.execute("SELECT uid, status FROM runs"))
    assert status == {"dead": "interrupted", "alive": "running",
                      "foreign-old": "interrupted", "foreign-new": "running"}
    reasons = [r[0] for r in conn.execute(
        "SELECT reason FROM transitions WHERE to_status = 'interrupted' AND task_id IS NULL")]
    assert any(f"process {proc.pid}" in r and "gone" in r for r in reasons)
    assert any("no live recorder" in r for r in reasons)
    conn.close()


def test_recorder_open_recovers(db):
    Store.open(db).close()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    _insert_running(db, "dead", proc.pid, None, liveness.hostname(), time.time())
    rec = Recorder(db)
    rec.open()
    assert ("dead", None) in [(m[0], m[1]) for m in rec.recovered]
