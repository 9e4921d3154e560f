import json
import os

from conftest import q
from ottolytics.sync import sync

DEAD_PID = 999_999_999


def session(directory, oneshot_id, state, history, log_lines=(), **extra):
    directory.mkdir(parents=True, exist_ok=True)
    data = {"version": 1, "oneshot_id": oneshot_id, "state": state, "iteration_count": 2,
            "max_iterations": 5, "created_at": history[0][1] if history else None,
            "updated_at": history[-1][1] if history else None,
            "history": [{"state": s, "ts": t, "pid": DEAD_PID, "reason": r}
                        for s, t, r in history],
            "worker_result": None, "auditor_result": None,
            "metadata": {"project": "docs-site"}, "variables": {"branch": "main"}}
    data.update(extra)
    (directory / "oneshot.json").write_text(json.dumps(data))
    if log_lines:
        (directory / f"{oneshot_id}-oneshot-log.json").write_text(
            "\n".join(l if isinstance(l, str) else json.dumps(l) for l in log_lines) + "\n")
    return directory


HISTORY = [("CREATED", 100.0, None), ("WORKER_EXECUTING", 101.0, None),
           ("AUDITOR_EXECUTING", 160.0, None), ("REITERATION_PENDING", 170.0, "missing tests"),
           ("WORKER_EXECUTING", 171.0, None), ("AUDITOR_EXECUTING", 230.0, None),
           ("COMPLETED", 245.0, "approved")]


def test_round_trip(tmp_path, db):
    root = tmp_path / "oneshot"
    session(root / "a", "s-1", "COMPLETED", HISTORY,
            [{"ts": 101.5, "event": "worker_started"}, {"ts": 231.0, "event": "audit"}])
    session(root / "b", "s-2", "WORKER_EXECUTING", HISTORY[:2])  # its process is gone
    report = sync(db, paths=[str(root)])
    assert report.added == {"oneshot": 2} and not report.skipped
    assert q(db, "SELECT r.uid, p.name, r.status, r.started_at, r.finished_at FROM runs r "
                 "JOIN projects p ON p.id = r.project_id ORDER BY r.uid") == [
        ("oneshot-s-1", "docs-site", "success", 100.0, 245.0),
        ("oneshot-s-2", "docs-site", "interrupted", 100.0, 101.0)]
    assert q(db, "SELECT name, attempt, status, started_at, finished_at FROM tasks "
                 "WHERE run_id = 1 ORDER BY started_at") == [
        ("worker", 1, "success", 101.0, 160.0), ("auditor", 1, "success", 160.0, 170.0),
        ("worker", 2, "success", 171.0, 230.0), ("auditor", 2, "success", 230.0, 245.0)]
    assert q(db, "SELECT reason FROM transitions x JOIN tasks t ON t.id = x.task_id "
                 "WHERE t.name = 'auditor' AND x.to_status = 'success' ORDER BY at") == [
        ("asked for another iteration",), ("approved",)]
    # The history is the run's status log, with oneshot's own state names.
    reasons = [r[0] for r in q(db, "SELECT reason FROM transitions WHERE run_id = 1 "
                                   "AND task_id IS NULL ORDER BY at")]
    assert reasons[0] == "CREATED" and reasons[3] == "REITERATION_PENDING: missing tests"
    assert q(db, "SELECT count(*) FROM log_fragments WHERE run_id = 1") == [(2,)]
    assert q(db, "SELECT key, value FROM run_params WHERE run_id = 1 AND key = 'branch'") == [
        ("branch", "main")]
    assert q(db, "SELECT name, status FROM tasks WHERE run_id = 2") == [("worker", "interrupted")]


def test_idempotent_and_incremental(tmp_path, db):
    root = tmp_path / "oneshot"
    live = session(root / "live", "s-9", "WORKER_EXECUTING", HISTORY[:2])
    data = json.loads((live / "oneshot.json").read_text())
    for h in data["history"]:
        h["pid"] = os.getpid()  # this test process: alive
    (live / "oneshot.json").write_text(json.dumps(data))
    sync(db, paths=[str(root)])
    assert q(db, "SELECT status FROM runs") == [("running",)]
    assert sync(db, paths=[str(root)]).unchanged == {"oneshot": 1}
    data["state"] = "COMPLETED"
    data["history"] += [{"state": "AUDITOR_EXECUTING", "ts": 160.0, "pid": os.getpid()},
                        {"state": "COMPLETED", "ts": 170.0, "pid": os.getpid()}]
    data["updated_at"] = 170.0
    (live / "oneshot.json").write_text(json.dumps(data))
    assert sync(db, paths=[str(root)]).updated == {"oneshot": 1}
    assert q(db, "SELECT status, finished_at FROM runs") == [("success", 170.0)]
    assert sync(db, paths=[str(root)]).unchanged == {"oneshot": 1}


def test_bad_input(tmp_path, db):
    root = tmp_path / "oneshot"
    session(root / "good", "s-1", "COMPLETED", HISTORY,
            ['{"ts": 101.5, "event": "ok"}', '{"ts": 102, "event": "trunc', "not json at all"])
    (root / "trunc").mkdir()
    (root / "trunc" / "oneshot.json").write_text('{"oneshot_id": "s-2", "state": "COMP')
    (root / "latin1").mkdir()
    (root / "latin1" / "oneshot.json").write_bytes(b'{"oneshot_id": "s-3", "state": "\xe9"}')
    report = sync(db, paths=[str(root)])
    reasons = [r for _s, _p, r in report.skipped]
    assert report.added == {"oneshot": 1}
    assert sum("invalid JSON; line skipped" in r for r in reasons) == 2
    assert any("not valid JSON" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)
    assert q(db, "SELECT count(*) FROM log_fragments") == [(1,)]
