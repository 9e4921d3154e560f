"""oneshot sessions as oneshot really writes them (see oneshot_files.py)."""

import json
import os
import time

import pytest

from conftest import q
from oneshot_files import Session
from ottolytics.sources import oneshot as importer
from ottolytics.sources.sync import default_locations, guess_source, sync

T0 = 1_784_041_200.25  # 2026-07-14 15:00:00.25 UTC: 10:00 in Chicago (CDT, UTC-5)
HOUR = 3600.0


@pytest.fixture(autouse=True)
def chicago(monkeypatch):
    """A local clock that is not UTC, so oneshot's utcnow().timestamp() shift shows."""
    monkeypatch.setenv("TZ", "America/Chicago")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A HOME of our own, with a project directory that oneshot runs in."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def retried(home, cwd, t0=T0):
    """Worker, auditor asks again, worker, auditor approves: COMPLETED."""
    s = Session(home, cwd, t0)
    s.worker(t0 + 1, [(t0 + 2, "Starting work"), (t0 + 40, {"type": "say", "text": "edited"})],
             t0 + 60)
    s.auditor(t0 + 60.01, [(t0 + 70, {"verdict": "retry"})], t0 + 75, "retry")
    s.worker(t0 + 75.01, [(t0 + 80, "Starting work"), (t0 + 130, {"type": "result"})], t0 + 140)
    s.auditor(t0 + 140.01, [(t0 + 150, {"verdict": "done"})], t0 + 155, "done")
    s.save(t0 + 155.002)
    return s


def test_the_files_are_named_and_shifted_as_oneshot_writes_them(user):
    s = retried(user, user / "web")
    assert s.path.name == "oneshot_2026-07-14_10-00-00.json"  # local time
    assert s.log_path == user / "web" / "2026-07-14_10-00-00-oneshot-log.json"
    data = json.loads(s.path.read_text())
    assert data["created_at"] == "2026-07-14T15:00:00.250000"
    # ts is the UTC wall clock read as Chicago time: 5 hours late.
    assert data["history"][0] == {"state": "WORKER_EXECUTING", "ts": T0 + 1 + 5 * HOUR}


def test_plain_sync_and_directory_paths_find_real_sessions(user, db, tmp_path):
    retried(user, user / "web")
    retried(user, user / "api", T0 + 2 * HOUR)
    assert default_locations()["oneshot"] == str(user / ".oneshot" / "sessions")
    assert sync(db).added == {"oneshot": 2}
    for path in (user / ".oneshot", user / ".oneshot" / "sessions"):
        assert guess_source(str(path)) == "oneshot"
        assert sync(tmp_path / f"{path.name}.db", paths=[str(path)]).added == {"oneshot": 2}
    one = next((user / ".oneshot" / "sessions").iterdir())
    assert sync(tmp_path / "one.db", paths=[str(one)]).added == {"oneshot": 1}


def test_history_times_are_corrected_and_marked_derived(user, db):
    retried(user, user / "web")
    assert sync(db).added == {"oneshot": 1}
    assert q(db, "SELECT r.uid, p.name, r.cwd, r.status, r.started_at, r.finished_at, r.derived "
                 "FROM runs r JOIN projects p ON p.id = r.project_id") == [
        ("oneshot-oneshot_2026-07-14_10-00-00", "web", str(user / "web"), "success",
         T0, pytest.approx(T0 + 155.002, abs=1e-6), None)]
    tasks = q(db, "SELECT name, attempt, status, started_at, finished_at, derived FROM tasks "
                  "ORDER BY started_at")
    expected = [("worker", 1, 1, 60), ("auditor", 1, 60.01, 75),
                ("worker", 2, 75.01, 140), ("auditor", 2, 140.01, 155)]
    assert [(n, a, s, d) for n, a, s, _b, _e, d in tasks] == [
        (n, a, "success", "finished_at,started_at") for n, a, _b, _e in expected]
    for (_n, _a, _s, start, end, _d), (_n2, _a2, b, e) in zip(tasks, expected):
        assert start == pytest.approx(T0 + b, abs=1e-5) and end == pytest.approx(T0 + e, abs=1e-5)
    assert q(db, "SELECT reason FROM status_log x JOIN tasks t ON t.id = x.task_id "
                 "WHERE t.name = 'auditor' AND x.to_status = 'success' ORDER BY at") == [
        ("asked for another iteration",), ("approved",)]
    reasons = [r for r, in q(db, "SELECT reason FROM status_log WHERE task_id IS NULL ORDER BY at")]
    assert reasons[:2] == ["WORKER_EXECUTING", "AUDIT_PENDING"] and reasons[-1] == "COMPLETED"
    assert q(db, "SELECT key, value FROM run_params ORDER BY key") == [
        ("executor_type", "cline"), ("iteration_count", "1"), ("max_iterations", "3"),
        ("task", "write the docs")]


def test_activity_log_lines_become_fragments_of_their_iteration(user, db):
    retried(user, user / "web")
    sync(db)
    rows = q(db, "SELECT t.name, t.attempt, f.stream, f.at, f.data FROM log_fragments f "
                 "JOIN tasks t ON t.id = f.task_id ORDER BY f.seq")
    assert [(n, a, s, at - T0) for n, a, s, at, _d in rows] == [
        ("worker", 1, "event", 2), ("worker", 1, "event", 40), ("auditor", 1, "event", 70),
        ("worker", 2, "event", 80), ("worker", 2, "event", 130), ("auditor", 2, "event", 150)]
    assert json.loads(rows[2][4]) == {"timestamp": T0 + 70, "data": {"verdict": "retry"},
                                      "executor": "auditor", "is_heartbeat": False}


def test_session_log_path_named_on_the_command_line(user, db, tmp_path):
    s = Session(user, user / "web", T0, session_log="logs/run.json")
    (user / "web" / "logs").mkdir()
    s.worker(T0 + 1, [(T0 + 5, "Starting work")], T0 + 10)
    s.auditor(T0 + 11, [(T0 + 12, {"verdict": "done"})], T0 + 13)
    assert s.log_path == user / "web" / "logs" / "run.json"
    sync(db)
    assert q(db, "SELECT count(*) FROM log_fragments WHERE task_id IS NOT NULL") == [(2,)]


def test_a_live_session_is_running_and_a_silent_one_interrupted(user, db, monkeypatch):
    now = time.time()
    live = Session(user, user / "web", now - 100)
    live.worker(now - 99, [(now - 30, "Starting work")])
    dead = Session(user, user / "api", now - 5000)
    dead.worker(now - 4999, [(now - 4000, "Starting work")])  # then kill -9
    assert sync(db).added == {"oneshot": 2}
    assert q(db, "SELECT cwd, status, finished_at, derived FROM runs ORDER BY started_at") == [
        (str(user / "api"), "interrupted", now - 4000, "finished_at,status"),
        (str(user / "web"), "running", None, "status")]
    assert q(db, "SELECT t.status FROM tasks t JOIN runs r ON r.id = t.run_id "
                 "ORDER BY r.started_at") == [("interrupted",), ("running",)]
    # Silent past its inactivity timeout (300 s): the next sync says interrupted.
    monkeypatch.setattr(importer, "_now", lambda: now + 400)
    assert sync(db).updated == {"oneshot": 1}
    assert q(db, "SELECT status, finished_at FROM runs WHERE cwd = ?", str(user / "web")) == [
        ("interrupted", now - 30)]
    # It was alive after all: it writes again, and the next sync follows.
    live.log("worker", [(now + 401, {"type": "say"})])
    live.set_state("AUDIT_PENDING", now + 402)
    monkeypatch.setattr(importer, "_now", lambda: now + 403)
    assert sync(db).updated == {"oneshot": 1}
    assert q(db, "SELECT status FROM runs WHERE cwd = ?", str(user / "web")) == [("running",)]
    assert sync(db).unchanged.get("oneshot") == 2


def test_ctrl_c_crash_and_rejection(user, db):
    a = Session(user, user / "a", T0)
    a.worker(T0 + 1, [(T0 + 2, "Starting work")], T0 + 3)
    a.interrupt(T0 + 4)
    b = Session(user, user / "b", T0 + 10)
    b.worker(T0 + 11, [(T0 + 12, "Starting work")], T0 + 13, "crash")
    b.recover(T0 + 14)
    c = Session(user, user / "c", T0 + 20)
    c.worker(T0 + 21, (), T0 + 22)
    c.auditor(T0 + 23, [(T0 + 24, {"verdict": "impossible"})], T0 + 25, "impossible")
    sync(db)
    assert q(db, "SELECT r.cwd, r.status, r.derived, t.name, t.status FROM runs r "
                 "JOIN tasks t ON t.run_id = r.id ORDER BY r.started_at, t.started_at") == [
        (str(user / "a"), "interrupted", None, "worker", "success"),
        (str(user / "b"), "failed", None, "worker", "failed"),
        (str(user / "c"), "failed", None, "worker", "success"),
        (str(user / "c"), "failed", None, "auditor", "success")]


def test_incremental_until_final(user, db, monkeypatch):
    monkeypatch.setattr(importer, "_now", lambda: T0 + 50)
    s = Session(user, user / "web", T0)
    s.worker(T0 + 1, [(T0 + 20, "Starting work")])
    assert sync(db).added == {"oneshot": 1}
    assert sync(db).unchanged.get("oneshot") == 1
    s.log("worker", [(T0 + 30, {"type": "say"})])
    assert sync(db).updated == {"oneshot": 1}
    assert q(db, "SELECT count(*) FROM log_fragments") == [(2,)]
    s.set_state("AUDIT_PENDING", T0 + 40)
    s.auditor(T0 + 41, [(T0 + 45, {"verdict": "done"})], T0 + 46)
    assert sync(db).updated == {"oneshot": 1}
    assert q(db, "SELECT status, finished_at FROM runs") == [
        ("success", pytest.approx(T0 + 46, abs=1e-6))]
    assert sync(db).unchanged.get("oneshot") == 1


def test_bad_input(user, db):
    s = retried(user, user / "web")
    with open(s.log_path, "a") as f:
        f.write('{"timestamp": 17, "data": "trunc\nnot json at all\n')
    sessions = s.path.parent
    (sessions / "oneshot_2026-07-14_11-00-00.json").write_text('{"oneshot_id": "x", "state": "COMP')
    (sessions / "oneshot_2026-07-14_12-00-00.json").write_bytes(
        b'{"oneshot_id": "y", "state": "\xe9"}')
    (sessions / "oneshot_2026-07-14_13-00-00.json").write_text(
        '{"oneshot_id": "z", "state": "DANCING", "created_at": "2026-07-14T15:00:00"}')
    report = sync(db)
    reasons = [r for _s, _p, r in report.skipped]
    assert report.added == {"oneshot": 1}
    assert sum("invalid JSON; line skipped" in r for r in reasons) == 2
    assert any("not valid JSON" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)
    assert any("unknown state 'DANCING'" in r for r in reasons)
    assert q(db, "SELECT count(*) FROM log_fragments") == [(6,)]


def test_a_log_path_that_is_not_a_regular_file_is_not_read(user, db):
    s = Session(user, user / "web", T0, session_log="/dev/zero")
    s.worker(T0 + 1, (), T0 + 2)
    s.auditor(T0 + 3, (), T0 + 4)
    report = sync(db)
    assert report.added == {"oneshot": 1}
    assert [r for _s, _p, r in report.skipped] == ["activity log is not a regular file"]


def test_log_lines_of_quick_iterations_go_to_their_own_attempt(user, db):
    s = Session(user, user / "web", T0)
    s.worker(T0 + 0.01, [(T0 + 0.3, "Starting work"), (T0 + 0.6, {"type": "result"})], T0 + 1)
    s.auditor(T0 + 1.01, [(T0 + 1.3, {"verdict": "retry"})], T0 + 1.5, "retry")
    s.worker(T0 + 1.51, [(T0 + 1.8, "Starting work")], T0 + 2.1)
    s.auditor(T0 + 2.11, [(T0 + 2.8, {"verdict": "done"})], T0 + 3)
    sync(db)
    assert q(db, "SELECT t.name, t.attempt FROM log_fragments f JOIN tasks t ON t.id = f.task_id "
                 "ORDER BY f.seq") == [("worker", 1), ("worker", 1), ("auditor", 1),
                                       ("worker", 2), ("auditor", 2)]


def test_the_offset_without_a_time_in_the_session_name(user, db, tmp_path):
    """A session resumed with --session from a file without an id: oneshot keeps
    oneshot_id null, names the log oneshot-log.json; the offset then comes from
    the last state change against updated_at."""
    s = Session(user, user / "web", T0, sessions_dir=tmp_path / "mine")
    s.data["oneshot_id"] = None
    s.data["metadata"].pop("session_log_path", None)
    s.worker(T0 + 1, [(T0 + 2, "Starting work")], T0 + 3)
    s.auditor(T0 + 4, (), T0 + 5)
    assert (user / "web" / "oneshot-log.json").exists()
    moved = tmp_path / "mine" / "oneshot_resumed.json"
    s.path.rename(moved)
    sync(db, paths=[str(moved)])
    assert q(db, "SELECT uid FROM runs") == [("oneshot-oneshot_resumed",)]
    assert [(n, round(b - T0, 3)) for n, b in q(db, "SELECT name, started_at FROM tasks")] == [
        ("worker", 1), ("auditor", 4)]
    assert q(db, "SELECT count(*) FROM log_fragments WHERE task_id IS NOT NULL") == [(1,)]


def test_a_finished_session_that_is_resumed_is_read_again(user, db, monkeypatch):
    s = retried(user, user / "web")
    assert sync(db).added == {"oneshot": 1}
    monkeypatch.setattr(importer, "_now", lambda: T0 + 1100)
    s.resume(T0 + 1000, task="and the changelog")
    s.worker(T0 + 1001, [(T0 + 1050, "Starting work")])
    assert sync(db).updated == {"oneshot": 1}
    assert q(db, "SELECT status, finished_at FROM runs") == [("running", None)]
    assert q(db, "SELECT name, attempt, status FROM tasks ORDER BY started_at DESC LIMIT 1") == [
        ("worker", 3, "running")]
    assert q(db, "SELECT value FROM run_params WHERE key = 'task'") == [("and the changelog",)]


FALL_BACK = 1_793_505_600.5  # 2026-11-01 04:00 UTC: 23:00 CDT; Chicago falls back at 07:00 UTC


def dst_session(home):
    s = Session(home, home / "web", FALL_BACK)
    s.worker(FALL_BACK + 1, (), FALL_BACK + 2 * HOUR)
    s.auditor(FALL_BACK + 2 * HOUR + 1, (), FALL_BACK + 4 * HOUR)
    return s


def test_times_across_a_daylight_saving_switch_in_the_same_zone(user, db):
    s = dst_session(user)
    # created in CDT (UTC-5), but the UTC wall clock read as Chicago time is
    # already past the switch: every ts is 6 hours late.
    assert s.data["history"][0]["ts"] == FALL_BACK + 1 + 6 * HOUR
    sync(db)
    assert [(round(b - FALL_BACK, 3), round(e - FALL_BACK, 3)) for b, e in q(
        db, "SELECT started_at, finished_at FROM tasks ORDER BY started_at")] == [
        (1, 2 * HOUR), (2 * HOUR + 1, 4 * HOUR)]


def test_times_read_in_another_zone_carry_the_offset_at_creation(user, db, monkeypatch):
    dst_session(user)
    retried(user, user / "api")  # in July: no switch
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    sync(db)
    # The documented bound: one hour off, where the offset oneshot's clock
    # applied differs from the session's offset at its creation.
    assert [(round(b - FALL_BACK, 3), round(e - FALL_BACK, 3)) for b, e in q(
        db, "SELECT t.started_at, t.finished_at FROM tasks t JOIN runs r ON r.id = t.run_id "
        "WHERE r.cwd = ? ORDER BY t.started_at", str(user / "web"))] == [
        (1 + HOUR, 3 * HOUR), (3 * HOUR + 1, 5 * HOUR)]
    assert q(db, "SELECT round(t.started_at - r.started_at, 3) FROM tasks t JOIN runs r "
                 "ON r.id = t.run_id WHERE r.cwd = ? ORDER BY t.started_at LIMIT 1",
             str(user / "api")) == [(1.0,)]


def test_a_markdown_activity_log_is_reported_not_read(user, db):
    s = Session(user, user / "web", T0, session_log="run.md")
    s.worker(T0 + 1, [(T0 + 2, "Starting work")], T0 + 3)
    s.auditor(T0 + 4, [(T0 + 5, "done")], T0 + 6)
    assert s.log_path.read_text().startswith("`10:00:02` **[worker]** Starting work\n\n")
    report = sync(db)
    assert report.added == {"oneshot": 1}
    assert [r for _s, _p, r in report.skipped] == ["activity log in markdown form: not read"]
    assert q(db, "SELECT count(*) FROM log_fragments") == [(0,)]


def test_hostile_values_are_skipped_not_fatal(user, db):
    s = retried(user, user / "web")
    data = json.loads(s.path.read_text())
    data["history"][1]["state"] = ["AUDIT_PENDING"]
    data["history"][2]["ts"] = "soon"
    data["metadata"]["initial_timeout"] = True
    s.path.write_text(json.dumps(data))
    with open(s.log_path, "a") as f:
        f.write('{"timestamp": NaN, "data": "x", "executor": "worker", "is_heartbeat": false}\n')
        f.write('{"timestamp": 1e300, "data": "x", "executor": ["worker"]}\n')
    sessions = s.path.parent
    (sessions / "oneshot_2026-13-45_99-00-00.json").write_text(json.dumps(
        dict(data, oneshot_id="oneshot_2026-13-45_99-00-00", created_at="9999-12-31T23:59:59")))
    (sessions / "oneshot_2026-07-14_11-00-00.json").write_text(json.dumps(
        dict(data, oneshot_id="oneshot_2026-07-14_11-00-00", state={"x": 1})))
    report = sync(db)
    # the two lines of the wrong shape are skipped with their reason, by each of the
    # two sessions that read the log; the session dated 9999 finds none of its time
    assert sorted(r for _s, _p, r in report.skipped) == [
        "6 lines outside the session's time (another session's); skipped"] + [
        "not an activity-log line (keys are not timestamp, data, executor, is_heartbeat); "
        "line skipped"] * 2 + [
        "not an activity-log line (timestamp is not a unix time); line skipped"] * 2 + [
        "unknown state {'x': 1}"]
    assert report.added == {"oneshot": 2}
    assert q(db, "SELECT count(*) FROM log_fragments WHERE at IS NULL") == [(0,)]


def test_a_session_log_path_naming_another_file_imports_none_of_it(user, db, tmp_path):
    """Review item 4: metadata.session_log_path can name any file. Only lines of
    oneshot's activity-log shape ({timestamp, data, executor, is_heartbeat}) inside
    the session's window are imported; the rest is skipped, counted, with a reason."""
    creds = tmp_path / "x" / "creds.json"
    creds.parent.mkdir()
    creds.write_text(json.dumps({"aws_secret_access_key": "TOP-SECRET-creds"}) + "\n"
                     + json.dumps({"timestamp": T0 + 5, "token": "TOP-SECRET-ts"}) + "\n"
                     + json.dumps({"timestamp": "soon", "data": "TOP-SECRET-str",
                                   "executor": "cline", "is_heartbeat": False}) + "\n"
                     + json.dumps({"timestamp": True, "data": "TOP-SECRET-bool",
                                   "executor": "cline", "is_heartbeat": False}) + "\n"
                     + json.dumps({"timestamp": T0 + 5, "data": "TOP-SECRET-hb",
                                   "executor": "cline", "is_heartbeat": "no"}) + "\n"
                     + json.dumps({"timestamp": T0 - 10 * HOUR, "data": "TOP-SECRET-old",
                                   "executor": "cline", "is_heartbeat": False}) + "\n"
                     + json.dumps({"timestamp": T0 + 5, "data": "in the window",
                                   "executor": "worker", "is_heartbeat": False}) + "\n")
    s = Session(user, user / "web", T0, session_log=str(creds))
    s.worker(T0 + 1, (), T0 + 10)
    s.auditor(T0 + 11, (), T0 + 13)
    report = sync(db)
    assert report.added == {"oneshot": 1}
    data = [d for (d,) in q(db, "SELECT data FROM log_fragments")]
    assert len(data) == 1 and json.loads(data[0])["data"] == "in the window"
    assert not any("TOP-SECRET" in d for d in data)
    reasons = [r for _s, _p, r in report.skipped]
    assert sum("not an activity-log line" in r for r in reasons) == 5, reasons
    assert sum("outside the session's time" in r for r in reasons) == 1, reasons
