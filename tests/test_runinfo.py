"""info RUN: resolving RUN, the tasks with paths, stderr tails and dependency order."""

import json
import time

import pytest

from known_history import record
from otto_tree import build, synced
from ottolytics.manage.runinfo import RunNotFound, dependency_order, run_info


def test_latest_uid_and_prefix(db):
    record(db)
    assert run_info(db, "latest")["run_id"] == "run039"
    info = run_info(db, "run005")
    assert info["run_id"] == "run005" and info["project"] == "web"
    assert info["params"] == {"branch": "dev", "env": "ci"}


def test_unknown_and_ambiguous_refs(db):
    record(db)
    with pytest.raises(RunNotFound, match="ambiguous"):
        run_info(db, "run03")
    with pytest.raises(RunNotFound, match="no such run"):
        run_info(db, "zzz-nothing")


def test_tasks_paths_tails_and_order(db):
    record(db)
    info = run_info(db, "run007")  # 7 % 4 == 3: test fails
    assert info["order"] == ["lint", "build", "docs", "test"]
    tasks = {t["task"]: t for t in info["tasks"]}
    assert tasks["test"]["status"] == "failed" and tasks["test"]["exit_code"] == 1
    assert "connection refused" in tasks["test"]["stderr_tail"]
    assert tasks["build"]["stderr_tail"] is None and tasks["build"]["depends_on"] == ["lint"]
    retried = run_info(db, "run005")["tasks"]
    assert [(t["task"], t["attempt"]) for t in retried if t["task"] == "test"] == [
        ("test", 1), ("test", 2)]


def test_otto_runs_by_timestamp_with_absolute_paths(home, db):
    runs = build(home, [3, 1])
    synced(home, db)
    info = run_info(db, runs[0].name)
    assert info["run_dir"] == str(runs[0]) and info["source"] == "otto"
    assert run_info(db, f"otto-{runs[0].name}")["run_id"] == info["run_id"]  # a unique prefix
    lint = next(t for t in info["tasks"] if t["task"] == "lint")
    assert lint["stdout_path"] == str(runs[0] / "tasks" / "lint" / "stdout.log")
    assert lint["script_path"] == str(runs[0] / "tasks" / "lint" / "script.sh")
    failed_build = build(home, [0.5], cwd="/src/api", failed={0})[0]
    synced(home, db)
    b = next(t for t in run_info(db, "latest")["tasks"] if t["task"] == "build")
    assert b["status"] == "failed" and b["stderr_tail"].strip() == "boom"
    assert run_info(db, failed_build.name)["run_dir"] == str(failed_build)
    with pytest.raises(RunNotFound):
        run_info(db, str(int(time.time()) - 10 * 86400))


def test_dependency_order_breaks_cycles_and_ignores_outsiders():
    tasks = [{"task": "b", "depends_on": ["a"], "started_at": 1},
             {"task": "a", "depends_on": ["c"], "started_at": 2},
             {"task": "c", "depends_on": ["a"], "started_at": 0},
             {"task": "d", "depends_on": ["elsewhere"], "started_at": 5}]
    # d first (its only dependency is outside the run); the a <-> c cycle is broken
    # at c, the earliest started; then a, then b.
    assert dependency_order(tasks) == ["d", "c", "a", "b"]


def test_info_command(db, cli):
    record(db)
    text = cli("info", "run007").stdout.decode()
    assert "dependency order: lint -> build -> docs -> test" in text
    assert "stderr tail:" in text and "connection refused" in text
    doc = json.loads(cli("info", "latest", "--json").stdout)
    assert doc["run_id"] == "run039" and doc["started_at"].endswith("Z")
    assert len(doc["tasks"]) == 4 and doc["order"][0] == "lint"
    missing = cli("info", "nope-nope")
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1
    assert b"no such run" in missing.stderr


def test_paths_resolve_against_the_store_directory_not_the_environment(home, db, tmp_path,
                                                                      monkeypatch):
    runs = build(home, [2])
    synced(home, db)
    monkeypatch.setenv("OTTO_HOME", str(tmp_path / "elsewhere"))
    info = run_info(db, "latest")
    assert info["run_dir"] == str(runs[0])
    assert info["tasks"][0]["stdout_path"].startswith(str(runs[0]))


def test_an_ambiguous_prefix_long_enough_asks_for_more_not_for_4_characters(db):
    record(db)
    with pytest.raises(RunNotFound) as exc:
        run_info(db, "run0")            # 4 characters, ten runs
    msg = str(exc.value)
    assert "ambiguous" in msg and "give more of the id" in msg
    assert "at least 4" not in msg
    with pytest.raises(RunNotFound) as exc:
        run_info(db, "ru")              # too short, and ambiguous
    assert "at least 4 characters" in str(exc.value)


def test_task_output_is_what_the_store_kept_and_names_the_tasks_it_lacks(db):
    """The library call behind the MCP tool get_task_logs."""
    from ottolytics.manage.runinfo import TaskNotFound, task_output
    record(db)
    out = task_output(db, "run007", "test")
    assert out["source"] == "store (last 4 KiB of stderr)" and out["attempt"] == 1
    assert "connection refused to 10.0.0.7" in out["text"] and out["run_id"] == "run007"
    retried = task_output(db, "run005", "test", attempt=1)
    assert retried["attempt"] == 1 and "expected 3 got 4" in retried["text"]
    assert task_output(db, "run005", "lint", stream="stdout")["source"] is None
    with pytest.raises(TaskNotFound, match="its tasks are build, docs, lint, test"):
        task_output(db, "run007", "deploy")
    with pytest.raises(RunNotFound, match="no such run"):
        task_output(db, "nope-nope", "test")
    with pytest.raises(ValueError, match="stream="):
        task_output(db, "run007", "test", stream="/etc/passwd")


def test_info_gives_the_command_line_as_a_list_too(db, cli):
    """`args` is the stored JSON text (as before); `argv` is that list, decoded, so
    a script need not parse JSON inside JSON. Not a list of strings (an imported
    or hostile row): null."""
    import sqlite3
    from ottolytics import Recorder
    rec = Recorder(db)
    with rec.run(project="web", uid="argv1", args=["make", "test", "a b"]) as run:
        run.task("t").start().finish(0)
    rec.close()
    doc = json.loads(cli("info", "argv1", "--json").stdout)
    assert doc["argv"] == ["make", "test", "a b"]
    assert json.loads(doc["args"]) == ["make", "test", "a b"]  # unchanged
    conn = sqlite3.connect(db)
    for bad in ("not json", '{"a": 1}', "[1, 2]", None):
        conn.execute("UPDATE runs SET args = ? WHERE uid = 'argv1'", (bad,))
        conn.commit()
        assert run_info(db, "argv1")["argv"] is None
    conn.close()


@pytest.mark.parametrize("stored", ["[" * 5000 + "]" * 5000, '["\\ud800"]', '["ok", "\\udfff x"]'])
def test_argv_of_a_hostile_args_row_is_null_not_a_crash(db, stored):
    """A review: deeply nested JSON raised RecursionError (info printed a
    traceback) and an escaped lone surrogate decoded to text no UTF-8 encoder
    takes (the MCP server's get_run failed). Both are null; args stays as stored."""
    import sqlite3
    from ottolytics import Recorder
    from ottolytics.mcp.server import HistoryTools
    rec = Recorder(db)
    with rec.run(project="web", uid="hostile") as run:
        run.task("t").start().finish(0)
    rec.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET args = ? WHERE uid = 'hostile'", (stored,))
    conn.commit()
    conn.close()
    info = run_info(db, "hostile")
    assert info["argv"] is None and info["args"] == stored
    doc = HistoryTools(db).get_run("hostile")
    json.dumps(doc).encode("utf-8")  # what a client is sent can be sent


def test_an_empty_run_reference_says_it_is_empty(db, cli):
    """A new user's report: get_run with run_id '' answered 'ambiguous, matches
    over 100 runs'."""
    record(db)
    with pytest.raises(RunNotFound, match="RUN is empty"):
        run_info(db, "  ")
    out = cli("info", "")
    assert out.returncode == 1 and b"RUN is empty" in out.stderr


def test_info_shows_the_signal_that_killed_a_task(db, cli):
    """A new user's report: a task killed by a signal had an empty EXIT column."""
    out = cli("exec", "--task", "killed", "--", "sh", "-c", "kill -TERM $$")
    assert out.returncode == 143
    text = cli("info", "latest", "--plain").stdout.decode()
    assert "signal 15" in text, text
