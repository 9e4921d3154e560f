import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import q, run_cli
from ottolytics.otto_layout import Task, make_run, otto_db, project_dir, sha8
from ottolytics.sync import sync

T0 = 1_790_000_000  # an old timestamp: these runs are long finished


def store_digest(db):
    conn = sqlite3.connect(db)
    h = hashlib.sha256()
    for table in ("projects", "runs", "tasks", "status_log", "task_deps", "task_stderr",
                  "run_params", "log_fragments"):
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):
            h.update(repr(row).encode())
    conn.close()
    return h.hexdigest()


@pytest.fixture
def web(home):
    """Two runs of project web (new naming) and one of api (old otto-<hash> naming)."""
    make_run(home, "/src/web", T0, [
        Task("lint", duration=3),
        Task("build", start=3, duration=40, deps=["lint"]),
        Task("test:unit", start=43, duration=20, deps=["build"]),
        Task("test:e2e", start=43, duration=30, deps=["build"], status="failed",
             stderr="E   AssertionError: 503 != 200\nFAILED tests/e2e.py::test_login\n"),
    ])
    make_run(home, "/src/web", T0 + 3600, [
        Task("lint", duration=3),
        Task("build", start=3, duration=55, deps=["lint"], python=True),
    ])
    make_run(home, "/src/api", T0 + 60, [Task("check", duration=7)], old_naming=True)
    return home


def test_round_trip(web, db):
    report = sync(db)
    assert report.added == {"otto": 3} and not report.skipped
    runs = q(db, "SELECT r.uid, p.name, r.status, r.started_at, r.finished_at, r.source, "
                 "r.source_ref, r.host, r.user, r.derived FROM runs r JOIN projects p "
                 "ON p.id = r.project_id ORDER BY r.started_at")
    web_dir = project_dir(web, "/src/web").name
    api_dir = project_dir(web, "/src/api", old_naming=True).name
    assert [r[:3] for r in runs] == [
        (f"otto-{T0}-{sha8('/src/web')}", "web", "failed"),
        (f"otto-{T0 + 60}-{sha8('/src/api')}", "api", "success"),  # old naming: name from cwd
        (f"otto-{T0 + 3600}-{sha8('/src/web')}", "web", "success")]
    first = runs[0]
    assert first[3] == T0 and first[4] == T0 + 73  # ends with its last task (e2e: 43 + 30)
    assert first[5:8] == ("otto", f"{web_dir}/{T0}", "build-1")
    assert first[8] == "alice"
    assert set(first[9].split(",")) >= {"status", "finished_at", "size_bytes"}
    assert runs[1][6] == f"{api_dir}/{T0 + 60}"
    first_id, last_id = (q(db, "SELECT id FROM runs WHERE started_at = ?", ts)[0][0]
                         for ts in (T0, T0 + 3600))
    tasks = q(db, "SELECT name, status, started_at, finished_at, exit_code, script_hash, derived "
                  "FROM tasks WHERE run_id = ? ORDER BY name", first_id)
    assert tasks == [
        ("build", "success", T0 + 3, T0 + 43, 0, sha8(f"#!/bin/sh\necho build {T0}\n"),
         "script_hash"),
        ("lint", "success", T0, T0 + 3, 0, sha8(f"#!/bin/sh\necho lint {T0}\n"), "script_hash"),
        # otto.db says exit code 1 for every failure: unknown, so not copied.
        ("test:e2e", "failed", T0 + 43, T0 + 73, None,
         sha8(f"#!/bin/sh\necho test:e2e {T0}\n"), "script_hash"),
        ("test:unit", "success", T0 + 43, T0 + 63, 0,
         sha8(f"#!/bin/sh\necho test:unit {T0}\n"), "script_hash"),
    ]
    deps = q(db, "SELECT t.name, d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id "
                 "WHERE t.run_id = ? ORDER BY 1", first_id)
    assert deps == [("build", "lint"), ("test:e2e", "build"), ("test:unit", "build")]
    assert "FAILED tests/e2e.py::test_login" in q(db, "SELECT tail FROM task_stderr")[0][0]
    # Paths resolve: run_dir under OTTO_HOME, task files under the run.
    run_dir, out = q(db, "SELECT r.run_dir, t.stdout_path FROM runs r JOIN tasks t "
                         "ON t.run_id = r.id WHERE t.name = 'lint' AND r.id = ?", first_id)[0]
    assert (web / run_dir / out).read_text() == "ok\n"
    assert q(db, "SELECT script_path FROM tasks WHERE run_id = ? AND name = 'build'",
             last_id) == [("tasks/build/script.py",)]
    size = q(db, "SELECT size_bytes FROM runs WHERE id = ?", first_id)[0][0]
    assert size > 0
    # Durations, as analysis will see them.
    assert q(db, "SELECT name, finished_at - started_at FROM tasks WHERE run_id = ? "
                 "ORDER BY name", last_id) == [("build", 55.0), ("lint", 3.0)]


def test_idempotent(web, db):
    sync(db)
    before = store_digest(db)
    again = sync(db)
    assert again.added == {} and again.updated == {} and again.unchanged == {"otto": 3}
    assert store_digest(db) == before


def test_files_only_when_there_is_no_otto_db(home, db):
    make_run(home, "/src/web", T0, [Task("lint"), Task("build", start=5, status="failed",
                                                      deps=["lint"])], db=False)
    sync(db)
    assert q(db, "SELECT name, status, started_at, finished_at, derived FROM tasks "
                 "ORDER BY name") == [
        ("build", "failed", T0 + 5, T0 + 10, "finished_at,script_hash,started_at,status"),
        ("lint", "success", T0, T0 + 5, "exit_code,finished_at,script_hash,started_at,status")]


def test_skipped_tasks_are_recovered_from_the_files(home, db):
    make_run(home, "/src/web", T0, [Task("gen", status="skipped"),
                                    Task("build", start=1, deps=["gen"])])
    report = sync(db)
    assert q(db, "SELECT name, status FROM tasks ORDER BY name") == [
        ("build", "success"), ("gen", "skipped")]
    assert q(db, "SELECT to_status, reason FROM transitions t JOIN tasks k ON k.id = t.task_id "
                 "WHERE k.name = 'gen'") == [("skipped", "no task directory in this run")]
    # The dangling input symlink is reported, not fatal.
    assert any("broken symlink" in r for _s, _p, r in report.skipped)


def test_two_runs_in_the_same_second(home, db):
    """otto.db keeps only one of them; both are imported, the second from files."""
    make_run(home, "/src/web", T0, [Task("a", duration=9)])
    make_run(home, "/src/api", T0, [Task("b", duration=4)])
    assert q(home / "otto.db", "SELECT count(*) FROM runs") == [(1,)]
    sync(db)
    rows = q(db, "SELECT p.name, t.name, t.derived FROM tasks t JOIN runs r ON r.id = t.run_id "
                 "JOIN projects p ON p.id = r.project_id ORDER BY p.name")
    assert [r[:2] for r in rows] == [("api", "b"), ("web", "a")]
    assert "started_at" in rows[0][2] and "started_at" not in (rows[1][2] or "")


def test_incremental_new_run_and_running_run_finishing(home, db):
    make_run(home, "/src/web", T0, [Task("lint")])
    sync(db)
    now = int(time.time())
    run = make_run(home, "/src/web", now - 5, [Task("lint", duration=2),
                                               Task("build", start=2, status="running")])
    report = sync(db)
    assert report.added == {"otto": 1} and report.unchanged == {"otto": 1}
    assert q(db, "SELECT status, finished_at FROM runs ORDER BY started_at DESC LIMIT 1") == [
        ("running", None)]
    assert q(db, "SELECT status FROM tasks WHERE name = 'build'") == [("running",)]
    # otto finishes the build: output appears, the run goes quiet.
    tdir = run / "tasks" / "build"
    (tdir / "output.build.json").write_text("{}")
    old = now - 3600
    for f in tdir.iterdir():
        os.utime(f, (old, old), follow_symlinks=False)
    for f in (run / "tasks" / "lint").iterdir():
        os.utime(f, (old, old), follow_symlinks=False)
    os.utime(run / "run.yaml", (old, old))
    report = sync(db)
    assert report.updated == {"otto": 1} and report.unchanged == {"otto": 1}
    assert q(db, "SELECT status FROM runs ORDER BY started_at DESC LIMIT 1") == [("success",)]
    assert q(db, "SELECT count(*) FROM tasks WHERE name = 'build'") == [(1,)]
    assert sync(db).updated == {}


def test_run_left_behind_by_a_dead_otto_is_interrupted(home, db):
    make_run(home, "/src/web", T0, [Task("lint"), Task("build", start=5, status="running")])
    sync(db)
    assert q(db, "SELECT status FROM runs") == [("interrupted",)]
    assert q(db, "SELECT status FROM tasks WHERE name = 'build'") == [("interrupted",)]


# -- bad input: each skipped with a counted warning, the rest imported ---------

def _reasons(report):
    return [(Path(p).name, r) for _s, p, r in report.skipped]


def test_non_numeric_run_directory(web, db):
    (project_dir(web, "/src/web") / "latest").mkdir()
    report = sync(db)
    assert report.added == {"otto": 3}
    assert ("latest", "run directory name is not a unix timestamp") in _reasons(report)


@pytest.mark.parametrize("content,expected", [
    (b"prog: otto\ncwd: /src/web\nuser: al", "lacks"),                 # truncated
    (b"prog: [otto\n  - broken: {", "not valid YAML"),                  # invalid
    (b"prog: otto\ncwd: /src/\xff\xfeweb\ntimestamp: 1\nhash: x\n", "not UTF-8"),
])
def test_bad_run_yaml_skips_that_run_whole(web, db, content, expected):
    bad = make_run(web, "/src/web", T0 + 7200, [Task("lint")])
    (bad / "run.yaml").write_bytes(content)
    report = sync(db)
    assert report.added == {"otto": 3}
    assert any(name == "run.yaml" or expected in r for name, r in _reasons(report))
    assert any(expected in r for _n, r in _reasons(report))
    assert q(db, "SELECT count(*) FROM runs WHERE started_at = ?", T0 + 7200) == [(0,)]
    assert q(db, "SELECT count(*) FROM tasks t JOIN runs r ON r.id = t.run_id "
                 "WHERE r.started_at = ?", T0 + 7200) == [(0,)]


def test_task_name_with_bytes_that_are_not_utf8(web, db):
    bad = make_run(web, "/src/web", T0 + 7200, [Task("lint")])
    os.mkdir(os.path.join(os.fsencode(bad / "tasks"), b"caf\xe9"))
    report = sync(db)
    assert report.added == {"otto": 3}
    assert any("not UTF-8" in r for _n, r in _reasons(report))


def test_broken_and_looping_symlinks(web, db):
    run = make_run(web, "/src/web", T0 + 7200, [Task("lint"), Task("build", deps=["lint"])])
    script = run / "tasks" / "lint" / "script.sh"
    target = os.readlink(script)
    (script.parent / target).resolve().unlink()          # broken: the cache file is gone
    loop = run / "tasks" / "build" / "input.lint.json"
    loop.unlink()
    os.symlink("input.lint.json", loop)                  # looping: points at itself
    report = sync(db)
    assert report.added == {"otto": 4}
    reasons = [r for _n, r in _reasons(report)]
    assert any(r.startswith("broken symlink") for r in reasons)
    assert any(r.startswith("looping symlink") for r in reasons)
    # Both tasks are still there, with what their symlinks' names tell.
    assert q(db, "SELECT t.name, t.script_hash IS NOT NULL FROM tasks t JOIN runs r "
                 "ON r.id = t.run_id WHERE r.started_at = ? ORDER BY t.name", T0 + 7200) == [
        ("build", 1), ("lint", 1)]
    assert q(db, "SELECT d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id "
                 "JOIN runs r ON r.id = t.run_id WHERE r.started_at = ?", T0 + 7200) == [("lint",)]


def test_unreadable_directory(web, db, tmp_path):
    """Real even as root: the sync runs without the capabilities that bypass permissions."""
    bad = project_dir(web, "/src/web") / str(T0 + 3600)
    bad.chmod(0)
    try:
        cmd = [sys.executable, "-m", "ottolytics", "--db", str(db), "sync", "-v"]
        if os.geteuid() == 0:
            if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
                pytest.skip("running as root without setpriv: cannot make a directory "
                            "unreadable to the sync")
            caps = "-dac_override,-dac_read_search"
            cmd = ["setpriv", "--bounding-set", caps, "--inh-caps", caps] + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    finally:
        bad.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "otto: 2 added" in proc.stdout
    assert "unreadable" in proc.stdout and str(T0 + 3600) in proc.stdout


def test_otto_db_locked(web, db):
    holder = sqlite3.connect(web / "otto.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE runs SET status = status")
    try:
        report = sync(db)
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert report.added == {"otto": 3}
    assert any("locked" in r for _n, r in _reasons(report))
    # Imported from the files alone, and not final: the next sync fills in otto.db's times.
    build = ("SELECT t.derived FROM tasks t JOIN runs r ON r.id = t.run_id "
             "WHERE t.name = 'build' AND r.started_at = ?")
    assert "started_at" in q(db, build, T0)[0][0]
    again = sync(db)
    assert again.updated == {"otto": 3}
    assert "started_at" not in (q(db, build, T0)[0][0] or "")


def test_otto_db_of_unknown_schema_version(web, db):
    conn = otto_db(web)
    conn.execute("INSERT INTO schema_version VALUES (9, 0)")
    conn.close()
    report = sync(db)
    assert report.added == {"otto": 3}
    assert any("schema version 9" in r for _n, r in _reasons(report))
    assert sync(db).added == {}  # final all the same: a newer otto.db will not get readable


def test_sync_command_summary_and_json(web, db):
    (project_dir(web, "/src/web") / "notes").mkdir()
    out = run_cli("sync")
    assert out.returncode == 0
    text = out.stdout.decode()
    assert "otto: 3 added, 0 updated, 0 unchanged, 1 skipped" in text
    assert "run with -v" in text
    verbose = run_cli("sync", "-v").stdout.decode()
    assert "otto: 0 added, 0 updated, 3 unchanged, 1 skipped" in verbose
    assert "notes: run directory name is not a unix timestamp" in verbose
    import json
    report = json.loads(run_cli("sync", "--json").stdout)
    assert report["unchanged"] == {"otto": 3} and len(report["skipped"]) == 1
