"""history and list: the quick commands, on known data, as tables and JSON."""

import json

from known_history import RUNS, T0, record
from ottolytics.listing import recent_runs, task_history


def test_recent_runs_filters_and_counts(db):
    record(db)
    runs = recent_runs(db, limit=5)
    assert [r["run_id"] for r in runs] == [f"run{i:03d}" for i in range(RUNS - 1, RUNS - 6, -1)]
    assert runs[0]["tasks"] == 4 and runs[0]["tasks_failed"] == 1  # run 39: test fails
    failed = recent_runs(db, limit=100, status="failed")
    assert {r["run_id"] for r in failed} == {f"run{i:03d}" for i in range(RUNS) if i % 4 == 3}
    assert recent_runs(db, project="nope") == []


def test_task_history_and_its_success_rate(db):
    record(db)
    found = task_history(db, "test", limit=8)
    runs = found["runs"]
    assert [r["run_id"] for r in runs] == [f"run{i:03d}" for i in range(39, 31, -1)]
    assert [r["status"] for r in runs[:4]] == ["failed", "success", "success", "success"]
    assert found["summary"] == {"runs": 8, "successes": 6, "failures": 2, "success_rate": 0.75}
    retried = task_history(db, "test", limit=100)["runs"]
    run5 = next(r for r in retried if r["run_id"] == "run005")
    assert run5["attempts"] == 2 and run5["status"] == "success"  # its last attempt
    assert run5["started_at"] > T0 + 5 * 3600
    assert task_history(db, "nope")["summary"]["success_rate"] is None


def test_history_and_list_commands(db, cli):
    record(db)
    text = cli("history", "-n", "2").stdout.decode().splitlines()
    assert text[0].split() == ["TIMESTAMP", "STATUS", "DURATION", "TASKS", "SIZE", "USER",
                               "PROJECT", "RUN"]
    assert "✗ failed" in text[1] and "run039" in text[1] and len(text) == 3
    one = cli("history", "test", "-n", "4")
    out = one.stdout.decode()
    assert "3 of 4 finished runs succeeded (75%)" in out and "EXIT" in out
    doc = json.loads(cli("history", "test", "-n", "4", "--json").stdout)
    assert doc["summary"]["success_rate"] == 0.75 and len(doc["runs"]) == 4
    lines = cli("history", "--status", "failed", "--jsonl").stdout.decode().splitlines()
    assert len(lines) == RUNS // 4 and all(json.loads(x)["status"] == "failed" for x in lines)
    listed = cli("list", "--limit", "3").stdout.decode().splitlines()
    assert listed[0].split() == ["PROJECT", "TIMESTAMP", "TASKS", "STATUS", "SIZE"]
    assert len(listed) == 4 and listed[1].startswith("web")
    rows = json.loads(cli("list", "--limit", "3", "--project", "web", "--json").stdout)
    assert [r["run_id"] for r in rows] == ["run039", "run038", "run037"]
    assert rows[0]["started_at"].endswith("+00:00")
    assert cli("list", "--limit", "-1").returncode == 2
    assert cli("list", "--limit", "x").returncode == 2   # argparse's message, exit 2
