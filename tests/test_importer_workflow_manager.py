import json
import sqlite3


from conftest import q
from ottolytics.sync import sync

SCHEMA = [
    """CREATE TABLE executions (id TEXT PRIMARY KEY, workflow_id TEXT, workflow_name TEXT,
        status TEXT, start_time TEXT, end_time TEXT, exit_code INTEGER, binary_path TEXT,
        created_at TEXT, updated_at TEXT)""",
    "CREATE TABLE execution_params (execution_id TEXT, param_name TEXT, param_value TEXT)",
    """CREATE TABLE execution_logs (execution_id TEXT, sequence INTEGER, timestamp TEXT,
        log_type TEXT, log_data TEXT)""",
]
UUID1 = "6f1c1f9e-2d7a-4c1e-9a53-0d6f5a1b2c3d"
UUID2 = "0a0b0c0d-1111-2222-3333-444455556666"


def make_db(path, executions):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    for sql in SCHEMA:
        conn.execute(sql)
    for ex in executions:
        conn.execute("INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?)", ex["row"])
        conn.executemany("INSERT INTO execution_params VALUES (?,?,?)",
                         [(ex["row"][0], k, v) for k, v in ex.get("params", {}).items()])
        conn.executemany("INSERT INTO execution_logs VALUES (?,?,?,?,?)",
                         [(ex["row"][0], i, ts, kind, data if isinstance(data, str) else
                           json.dumps(data)) for i, (ts, kind, data) in
                          enumerate(ex.get("logs", []), 1)])
    conn.commit()
    conn.close()
    return path


def ts(seconds):
    return f"2026-11-20T10:00:{seconds:02d}Z"


COMPLETED = {
    "row": (UUID1, "research", "Research agent", "Completed", ts(0), ts(50), 0,
            "/opt/wf/research", ts(0), ts(50)),
    "params": {"topic": "sqlite wal", "depth": "3"},
    "logs": [
        (ts(1), "PhaseStarted", {"type": "phase_started", "phase": 0, "name": "plan",
                                 "total_phases": 2}),
        (ts(2), "TaskStarted", {"type": "task_started", "phase": 0, "task_id": "outline",
                                "description": "outline the report"}),
        (ts(3), "TaskProgress", {"type": "task_progress", "task_id": "outline",
                                 "message": "3 sections"}),
        (ts(9), "TaskCompleted", {"type": "task_completed", "task_id": "outline",
                                  "result": "ok"}),
        (ts(10), "PhaseCompleted", {"type": "phase_completed", "phase": 0, "name": "plan"}),
        (ts(11), "TaskStarted", {"type": "task_started", "phase": 1, "task_id": "fetch",
                                 "description": "fetch sources"}),
        (ts(20), "TaskFailed", {"type": "task_failed", "task_id": "fetch",
                                "error": "HTTP 503 from api.example.com"}),
        (ts(21), "RawOutput", {"stream": "stderr", "line": "retrying fetch"}),
        (ts(22), "AgentMessage", {"type": "agent_message", "task_id": "fetch",
                                  "agent_name": "web", "message": "trying mirror"}),
    ],
}
STUCK = {  # says Running, but its binary is not running any more
    "row": (UUID2, "digest", "Daily digest", "Running", ts(30), None, None,
            "/opt/wf/definitely-not-running", ts(30), ts(40)),
    "logs": [(ts(31), "TaskStarted", {"task_id": "collect", "phase": 0, "description": "c"})],
}


def test_round_trip(tmp_path, db):
    src = make_db(tmp_path / "executions.db", [COMPLETED, STUCK])
    report = sync(db, paths=[str(src)])
    assert report.added == {"workflow-manager": 2} and not report.skipped
    runs = q(db, "SELECT r.uid, p.name, r.status, r.finished_at - r.started_at, r.derived "
                 "FROM runs r JOIN projects p ON p.id = r.project_id ORDER BY r.started_at")
    assert runs == [(f"wm-{UUID1}", "Research agent", "success", 50.0, None),
                    (f"wm-{UUID2}", "Daily digest", "interrupted", 10.0,
                     "finished_at,status")]
    assert q(db, "SELECT key, value FROM run_params WHERE run_id = 1 ORDER BY key") == [
        ("depth", "3"), ("exit_code", "0"), ("topic", "sqlite wal"),
        ("workflow_id", "research")]
    tasks = q(db, "SELECT name, status, finished_at - started_at FROM tasks WHERE run_id = 1 "
                  "ORDER BY started_at")
    assert tasks == [("phase:plan", "success", 9.0), ("outline", "success", 7.0),
                     ("fetch", "failed", 9.0)]
    assert q(db, "SELECT tail FROM task_stderr") == [("HTTP 503 from api.example.com",)]
    assert q(db, "SELECT from_status, to_status, reason FROM transitions x JOIN tasks t "
                 "ON t.id = x.task_id WHERE t.name = 'fetch' ORDER BY at") == [
        (None, "running", "fetch sources"), ("running", "failed", "HTTP 503 from api.example.com")]
    frags = q(db, "SELECT stream, data FROM log_fragments WHERE run_id = 1 ORDER BY seq")
    assert frags[1] == ("stderr", "retrying fetch")
    assert json.loads(frags[0][1])["message"] == "3 sections"
    assert q(db, "SELECT name, status FROM tasks WHERE run_id = 2") == [("collect", "interrupted")]


def test_idempotent_and_incremental(tmp_path, db):
    src = make_db(tmp_path / "executions.db", [COMPLETED])
    sync(db, paths=[str(src)])
    again = sync(db, paths=[str(src)])
    assert again.added == {} and again.updated == {} and again.unchanged == {"workflow-manager": 1}
    conn = sqlite3.connect(src)
    conn.execute("INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?)", STUCK["row"])
    conn.commit()
    conn.close()
    third = sync(db, paths=[str(src)])
    assert third.added == {"workflow-manager": 1} and third.unchanged == {"workflow-manager": 1}


def test_bad_input(tmp_path, db):
    bad = dict(COMPLETED, logs=COMPLETED["logs"] + [(ts(23), "TaskProgress", "{not json")])
    odd = {"row": ("x-1", "w", "W", "Exploded", ts(0), None, None, None, ts(0), ts(0))}
    src = make_db(tmp_path / "executions.db", [bad, odd])
    report = sync(db, paths=[str(src)])
    reasons = [r for _s, _p, r in report.skipped]
    assert report.added == {"workflow-manager": 1}
    assert any("invalid JSON" in r for r in reasons)
    assert any("unknown status 'Exploded'" in r for r in reasons)
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
