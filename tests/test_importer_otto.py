"""The otto importer, against trees written the way otto 1.1.1 writes them
(``ottolytics/otto_layout.py``: otto's write order, names, clocks and otto.db)."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import q, run_cli
from ottolytics.sources.otto import fingerprint
from ottolytics.tools.otto_layout import (
    Task, auto_prune, default_db_path, make_run, otto_db, project_dir, sha8)
from ottolytics.store.liveness import hostname
from ottolytics.sources.sync import sync

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


def otto_db_file():
    """Where otto (and so the fixture writer) put otto.db: ~/.otto/otto.db."""
    return default_db_path()


def task_rows(db, started_at=T0):
    return q(db, "SELECT t.name, t.status, t.derived FROM tasks t JOIN runs r "
                 "ON r.id = t.run_id WHERE r.started_at = ? ORDER BY t.name", started_at)


def skip_reason(db, name, started_at=T0):
    return q(db, "SELECT tr.reason FROM transitions tr JOIN tasks t ON t.id = tr.task_id "
                 "JOIN runs r ON r.id = t.run_id WHERE t.name = ? AND r.started_at = ? "
                 "AND tr.to_status = 'skipped'", name, started_at)[0][0]


@pytest.fixture
def web(home):
    """Two runs of project web and one of a project whose directory is named otto
    (so otto names its directory otto-<hash8>)."""
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
    make_run(home, "/src/otto", T0 + 60, [Task("check", duration=7)])
    return home

def script_hash(task):
    from ottolytics.tools.otto_layout import generated_script
    return sha8(generated_script(task))


def test_round_trip(web, db):
    report = sync(db)
    assert report.added == {"otto": 3} and not report.skipped
    runs = q(db, "SELECT r.uid, p.name, r.status, r.started_at, r.finished_at, r.source, "
                 "r.source_ref, r.host, r.user, r.derived FROM runs r JOIN projects p "
                 "ON p.id = r.project_id ORDER BY r.started_at")
    web_dir = project_dir(web, "/src/web").name
    otto_dir = project_dir(web, "/src/otto").name
    assert otto_dir == f"otto-{sha8('/src/otto')}"
    assert [r[:3] for r in runs] == [
        (f"otto-{T0}-{sha8('/src/web')}", "web", "failed"),
        (f"otto-{T0 + 60}-{sha8('/src/otto')}", "otto", "success"),
        (f"otto-{T0 + 3600}-{sha8('/src/web')}", "web", "success")]
    first = runs[0]
    assert first[3] == T0 and first[4] == T0 + 73  # ends with its last task (e2e: 43 + 30)
    # otto.db's hostname is always NULL: the host is the one holding the files.
    assert first[5:8] == ("otto", f"{web_dir}/{T0}", hostname())
    assert first[8] == "alice"
    assert set(first[9].split(",")) >= {"status", "finished_at", "size_bytes", "host"}
    assert runs[1][6] == f"{otto_dir}/{T0 + 60}"
    first_id, last_id = (q(db, "SELECT id FROM runs WHERE started_at = ?", ts)[0][0]
                         for ts in (T0, T0 + 3600))
    tasks = q(db, "SELECT name, status, started_at, finished_at, exit_code, script_hash, derived "
                  "FROM tasks WHERE run_id = ? ORDER BY name", first_id)
    assert tasks == [
        ("build", "success", T0 + 3, T0 + 43, 0,
         script_hash(Task("build", deps=["lint"])), "script_hash"),
        ("lint", "success", T0, T0 + 3, 0, script_hash(Task("lint")), "script_hash"),
        # otto.db says exit code 1 for every failure: unknown, so not copied.
        ("test:e2e", "failed", T0 + 43, T0 + 73, None,
         script_hash(Task("test:e2e", deps=["build"])), "script_hash"),
        ("test:unit", "success", T0 + 43, T0 + 63, 0,
         script_hash(Task("test:unit", deps=["build"])), "script_hash"),
    ]
    deps = q(db, "SELECT t.name, d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id "
                 "WHERE t.run_id = ? ORDER BY 1", first_id)
    assert deps == [("build", "lint"), ("test:e2e", "build"), ("test:unit", "build")]
    assert "FAILED tests/e2e.py::test_login" in q(db, "SELECT tail FROM task_stderr")[0][0]
    run_dir, out = q(db, "SELECT r.run_dir, t.stdout_path FROM runs r JOIN tasks t "
                         "ON t.run_id = r.id WHERE t.name = 'lint' AND r.id = ?", first_id)[0]
    assert (web / run_dir / out).read_text() == "ok\n"
    assert q(db, "SELECT script_path FROM tasks WHERE run_id = ? AND name = 'build'",
             last_id) == [("tasks/build/script.py",)]
    assert q(db, "SELECT size_bytes FROM runs WHERE id = ?", first_id)[0][0] > 0
    assert q(db, "SELECT name, finished_at - started_at FROM tasks WHERE run_id = ? "
                 "ORDER BY name", last_id) == [("build", 55.0), ("lint", 3.0)]


def test_idempotent(web, db):
    sync(db)
    before = store_digest(db)
    again = sync(db)
    assert again.added == {} and again.updated == {} and again.unchanged == {"otto": 3}
    assert store_digest(db) == before


# -- otto.db where otto keeps it, and as otto writes it ---------------------

def test_otto_db_is_found_in_home_dot_otto_when_otto_home_is_set(home, db, tmp_path):
    """otto ignores OTTO_HOME for otto.db: it stays ~/.otto/otto.db."""
    assert os.environ["OTTO_HOME"] == str(home)
    make_run(home, "/src/web", T0, [Task("lint", duration=3)])
    assert otto_db_file() == Path(os.environ["HOME"]) / ".otto" / "otto.db"
    assert otto_db_file().exists() and not (home / "otto.db").exists()
    sync(db)
    # The start comes from otto.db's row, not from a file time.
    assert task_rows(db) == [("lint", "success", "script_hash")]


def test_otto_db_under_otto_home_and_otto_db_path(home, db, tmp_path, monkeypatch):
    make_run(home, "/src/web", T0, [Task("lint", duration=3)], db_path=home / "otto.db")
    sync(db)
    assert task_rows(db) == [("lint", "success", "script_hash")]
    elsewhere = tmp_path / "custom" / "otto.db"
    monkeypatch.setenv("OTTO_DB_PATH", str(elsewhere))
    make_run(home, "/src/api", T0 + 9, [Task("check", duration=3)])
    assert elsewhere.exists()
    sync(db)
    assert task_rows(db, T0 + 9) == [("check", "success", "script_hash")]


def test_the_writer_writes_otto_db_as_otto_does(home):
    make_run(home, "/src/web", T0, [Task("lint"), Task("build", start=5, deps=["lint"],
                                                      status="failed")])
    make_run(home, "/src/web", T0 + 100, [Task("lint")])
    conn = sqlite3.connect(otto_db_file())
    indexes = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%'")}
    assert indexes == {"idx_runs_timestamp", "idx_runs_status", "idx_runs_project",
                       "idx_tasks_run", "idx_tasks_name", "idx_tasks_status",
                       "idx_tasks_name_run", "idx_projects_name"}
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    # hostname NULL, runs never finalized, args always ["otto"]
    assert conn.execute("SELECT timestamp, status, hostname, args, ended_at FROM runs").fetchall() \
        == [(T0, "running", None, '["otto"]', None), (T0 + 100, "running", None, '["otto"]', None)]
    # a project per ottofile content (these two runs' ottofiles differ)
    assert conn.execute("SELECT name, first_seen, last_seen, run_count FROM projects").fetchall() \
        == [("web", T0, T0, 1), ("web", T0 + 100, T0 + 100, 1)]
    # otto's columns, types and constraints (executor/state/schema.rs)
    columns = {t: [(r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(f"PRAGMA table_info({t})")]
               for t in ("schema_version", "projects", "runs", "tasks")}
    assert columns == {
        "schema_version": [("version", "INTEGER", 0, None, 1),
                           ("applied_at", "INTEGER", 1, None, 0)],
        "projects": [("id", "INTEGER", 0, None, 1), ("hash", "TEXT", 1, None, 0),
                     ("name", "TEXT", 0, None, 0), ("ottofile_path", "TEXT", 0, None, 0),
                     ("first_seen", "INTEGER", 1, None, 0), ("last_seen", "INTEGER", 1, None, 0),
                     ("run_count", "INTEGER", 0, "0", 0)],
        "runs": [("id", "INTEGER", 0, None, 1), ("project_id", "INTEGER", 1, None, 0),
                 ("timestamp", "INTEGER", 1, None, 0), ("status", "TEXT", 1, None, 0),
                 ("duration_seconds", "REAL", 0, None, 0), ("size_bytes", "INTEGER", 0, None, 0),
                 ("ottofile_path", "TEXT", 0, None, 0), ("cwd", "TEXT", 0, None, 0),
                 ("user", "TEXT", 0, None, 0), ("hostname", "TEXT", 0, None, 0),
                 ("args", "TEXT", 0, None, 0), ("ended_at", "INTEGER", 0, None, 0)],
        "tasks": [("id", "INTEGER", 0, None, 1), ("run_id", "INTEGER", 1, None, 0),
                  ("name", "TEXT", 1, None, 0), ("status", "TEXT", 1, None, 0),
                  ("script_hash", "TEXT", 0, None, 0), ("exit_code", "INTEGER", 0, None, 0),
                  ("started_at", "INTEGER", 0, None, 0), ("ended_at", "INTEGER", 0, None, 0),
                  ("duration_seconds", "REAL", 0, None, 0), ("stdout_path", "TEXT", 0, None, 0),
                  ("stderr_path", "TEXT", 0, None, 0), ("script_path", "TEXT", 0, None, 0)]}
    assert [r[2:5] for r in conn.execute("PRAGMA foreign_key_list(tasks)")] == [
        ("runs", "run_id", "id")]
    assert {r[1] for r in conn.execute("PRAGMA index_list(runs)") if r[2]} == {
        "sqlite_autoindex_runs_1"}  # timestamp UNIQUE
    # a task inserted running, then updated; a failure's exit code is 1
    assert conn.execute("SELECT name, status, exit_code, script_hash, started_at, ended_at, "
                        "duration_seconds FROM tasks WHERE run_id = 1 ORDER BY id").fetchall() == [
        ("lint", "completed", 0, None, T0, T0 + 5, 5.0),
        ("build", "failed", 1, None, T0 + 5, T0 + 10, 5.0)]
    conn.close()
    fk = otto_db(otto_db_file())
    assert fk.execute("PRAGMA foreign_keys").fetchone() == (1,)
    fk.close()
    assert (home / ".last_prune").exists()
    build = project_dir(home, "/src/web") / str(T0) / "tasks" / "build"
    # the dependency's output existed: its input link and .env are there
    assert os.readlink(build / "input.lint.json") == "../lint/output.lint.json"
    assert (build / "input.lint.env").exists()
    lint = build.parent / "lint"
    assert sorted(p.name for p in lint.iterdir()) == [
        "builtins.sh", "output.lint.env", "output.lint.json", "script.sh", "stderr.log",
        "stdout.log"]
    assert not (project_dir(home, "/src/web") / "builtins.sh").exists()


def test_project_counters_as_otto_keeps_them(home):
    text = "otto:\n  api: 1\ntasks:\n  lint:\n    action: echo lint\n"
    for i in range(3):
        make_run(home, "/src/web", T0 + i * 100, [Task("lint")], ottofile_content=text)
    conn = sqlite3.connect(otto_db_file())
    assert conn.execute("SELECT name, hash, first_seen, last_seen, run_count "
                        "FROM projects").fetchall() == [("web", sha8(text), T0, T0 + 200, 3)]
    conn.close()


# -- what otto leaves out, recovered where it honestly can be -------------------

def test_an_up_to_date_dependency_leaves_nothing_and_is_recovered_from_the_script(home, db):
    """otto skips it before making its directory, and writes no row; build's script
    still loads its input, so it was in the run, and it did not run."""
    run = make_run(home, "/src/web", T0, [Task("gen", status="skipped"),
                                          Task("build", start=1, deps=["gen"])])
    assert not (run / "tasks" / "gen").exists()
    assert not list((run / "tasks" / "build").glob("input.*"))  # no output, no input link
    assert q(otto_db_file(), "SELECT name FROM tasks") == [("build",)]
    report = sync(db)
    assert not report.skipped
    assert task_rows(db) == [("build", "success", "script_hash"),
                             ("gen", "skipped", "finished_at,started_at,status")]
    assert skip_reason(db, "gen") == "up to date: build depends on it, and it has no task directory"
    assert q(db, "SELECT d.depends_on FROM task_deps d JOIN tasks t ON t.id = d.task_id "
                 "WHERE t.name = 'build'") == [("gen",)]
    assert q(db, "SELECT status FROM runs") == [("success",)]


def test_transitive_skips_from_the_ottofile_while_it_is_unchanged(home, db, tmp_path):
    cwd = tmp_path / "src" / "web"
    tasks = [Task("fetch", status="skipped"), Task("gen", deps=["fetch"], status="skipped"),
             Task("build", start=1, deps=["gen"])]
    make_run(home, cwd, T0, tasks, write_ottofile=True)
    sync(db)
    assert task_rows(db) == [("build", "success", "script_hash"),
                             ("fetch", "skipped", "finished_at,started_at,status"),
                             ("gen", "skipped", "deps,finished_at,started_at,status")]
    assert "tasks" in q(db, "SELECT derived FROM runs")[0][0].split(",")
    assert skip_reason(db, "fetch") == \
        "up to date: gen depends on it, and it has no task directory"
    # The ottofile changed since: the run's graph is no longer known; a new store
    # gets only what the files tell.
    (cwd / "otto.yml").write_text((cwd / "otto.yml").read_text() + "# edited\n")
    other = tmp_path / "other.db"
    sync(other)
    assert task_rows(other) == [("build", "success", "script_hash"),
                                ("gen", "skipped", "finished_at,started_at,status")]
    assert "tasks" not in q(other, "SELECT derived FROM runs")[0][0].split(",")


def test_tui_success_stays_success(home, db):
    """otto --tui makes every task's directory with empty logs first: a task that
    was up to date keeps an empty directory, and the run still succeeded."""
    run = make_run(home, "/src/web", T0, [Task("lint", status="skipped"),
                                          Task("build", start=1, deps=["lint"])], tui=True)
    assert sorted(p.name for p in (run / "tasks" / "lint").iterdir()) == [
        "stderr.log", "stdout.log"]
    sync(db)
    assert q(db, "SELECT status FROM runs") == [("success",)]
    assert task_rows(db) == [("build", "success", "script_hash"),
                             ("lint", "skipped", "finished_at,started_at,status")]
    assert skip_reason(db, "lint") == "up to date: build depends on it, and it never started"


def test_tui_tasks_never_reached_after_a_failure_are_not_failed(home, db):
    make_run(home, "/src/web", T0, [
        Task("lint"), Task("docs", status="skipped"),
        Task("build", start=5, deps=["lint"], status="failed", stderr="boom\n"),
        Task("package", deps=["build"], status="unreached")], tui=True)
    sync(db)
    assert q(db, "SELECT status FROM runs") == [("failed",)]
    assert task_rows(db) == [("build", "failed", "script_hash"),
                             ("docs", "skipped", "finished_at,started_at,status"),
                             ("lint", "success", "script_hash"),
                             ("package", "skipped", "finished_at,started_at,status")]
    assert skip_reason(db, "package") == \
        "never started: up to date, or the run stopped at a failure first"


@pytest.mark.parametrize("skew", [1, 4])
def test_seconds_between_directory_name_and_otto_db_timestamp(home, db, skew):
    """The run directory and otto.db's timestamp are two clock reads (further apart
    when otto waited to open a locked otto.db): a task killed with the run is
    still matched to its otto.db row, and so is interrupted."""
    run = make_run(home, "/src/web", T0, [Task("lint", duration=3),
                                          Task("build", start=3, duration=60, status="running",
                                               deps=["lint"])], clock_skew=skew)
    assert "timestamp: %d\n" % (T0 + skew) in (run / "run.yaml").read_text()
    assert q(otto_db_file(), "SELECT timestamp FROM runs") == [(T0 + skew,)]
    sync(db)
    assert q(db, "SELECT status FROM runs") == [("interrupted",)]
    assert task_rows(db) == [("build", "interrupted", "finished_at,script_hash,status"),
                             ("lint", "success", "script_hash")]
    assert q(db, "SELECT value FROM run_params WHERE key = 'otto_timestamp'") == [
        (str(T0 + skew),)]


def test_two_runs_in_the_same_second(home, db):
    """otto.db keeps only one of them; both are imported, the second from files."""
    make_run(home, "/src/web", T0, [Task("a", duration=9)])
    make_run(home, "/src/api", T0, [Task("b", duration=4)])
    assert q(otto_db_file(), "SELECT count(*) FROM runs") == [(1,)]
    sync(db)
    rows = q(db, "SELECT p.name, t.name, t.derived FROM tasks t JOIN runs r ON r.id = t.run_id "
                 "JOIN projects p ON p.id = r.project_id ORDER BY p.name")
    assert [r[:2] for r in rows] == [("api", "b"), ("web", "a")]
    assert "started_at" in rows[0][2] and "started_at" not in (rows[1][2] or "")


@pytest.mark.parametrize("want", ["all digits", "leading zero"])
def test_numeric_looking_hashes_stay_text(home, db, want):
    """serde_yaml quotes an all-digit hash; a leading-zero one it leaves plain,
    which a YAML 1.1 reader would take for an octal number."""
    def fits(h):  # a leading zero and octal digits only: the worst case for YAML 1.1
        if want == "leading zero":
            return h[0] == "0" and set(h) <= set("01234567")
        return h.isdigit() and h[0] != "0"
    text = next(t for t in (f"tasks: {{}}\n# {i}\n" for i in range(200_000)) if fits(sha8(t)))
    run = make_run(home, "/src/web", T0, [Task("lint")], ottofile_content=text)
    line = next(x for x in (run / "run.yaml").read_text().splitlines() if x.startswith("hash:"))
    assert line == (f"hash: '{sha8(text)}'" if want == "all digits" else f"hash: {sha8(text)}")
    sync(db)
    assert q(db, "SELECT value FROM run_params WHERE key = 'ottofile_hash'") == [(sha8(text),)]


def test_bash_output_env_and_last_prune_are_no_trouble(home, db):
    run = make_run(home, "/src/web", T0, [Task("gen", output={"version": "1.2"}),
                                          Task("build", start=5, deps=["gen"])])
    gen = run / "tasks" / "gen"
    assert "version='1.2'" in (gen / "output.gen.env").read_text()
    assert json.loads((gen / "output.gen.json").read_text()) == {"version": "1.2"}
    assert "OTTO_INPUT_GEN_VERSION='1.2'" in (run / "tasks/build/input.gen.env").read_text()
    assert (home / ".last_prune").is_file()
    report = sync(db)
    assert report.added == {"otto": 1} and not report.skipped


# -- auto-prune: rows go, directories stay ------------------------------------

def _daily_runs(home, days, cwd="/src/web"):
    """One run a day for *days* days, as otto leaves them (auto-prune after each)."""
    runs = []
    for i in range(days):
        runs.append(make_run(home, cwd, T0 + i * 86400, [
            Task("lint", duration=3),
            Task("build", start=3, duration=30, deps=["lint"],
                 status="running" if i == 0 else "success")]))
    return runs


def test_auto_prune_deletes_rows_and_leaves_the_run_directories(home, db):
    runs = _daily_runs(home, 45)
    assert all(r.is_dir() for r in runs)                  # nothing was removed
    stamps = [r[0] for r in q(otto_db_file(), "SELECT timestamp FROM runs ORDER BY 1")]
    assert len(stamps) < 45 and min(stamps) > T0 + 10 * 86400   # the old rows are gone
    assert q(otto_db_file(), "SELECT run_count FROM projects")[0][0] == len(stamps)
    report = sync(db)
    assert report.added == {"otto": 45} and not report.skipped
    old, new = task_rows(db), task_rows(db, T0 + 44 * 86400)
    assert old == [("build", "failed", "finished_at,script_hash,started_at,status"),
                   ("lint", "success", "exit_code,finished_at,script_hash,started_at,status")]
    assert new == [("build", "success", "script_hash"), ("lint", "success", "script_hash")]


def test_rows_pruned_after_import_keep_the_fuller_reading(home, db):
    make_run(home, "/src/web", T0, [Task("lint", duration=3),
                                    Task("build", start=3, status="running", deps=["lint"])],
             prune=False)
    sync(db)
    assert task_rows(db)[0] == ("build", "interrupted", "finished_at,script_hash,status")
    conn = otto_db(otto_db_file())
    assert auto_prune(home, conn, now=T0 + 400 * 86400, keep_last=0) == [T0]
    conn.close()
    again = sync(db)
    assert again.unchanged == {"otto": 1} and not again.updated
    assert task_rows(db)[0] == ("build", "interrupted", "finished_at,script_hash,status")


# -- a run read wrongly before is read again ----------------------------------

def test_a_run_stored_by_an_earlier_importer_is_read_again(home, db):
    """Before, a --tui run whose up-to-date task kept its empty directory came in as
    failed and final; the next sync corrects it."""
    make_run(home, "/src/web", T0, [Task("lint", status="skipped"),
                                    Task("build", start=1, deps=["lint"])], tui=True)
    sync(db)
    conn = sqlite3.connect(db)
    with conn:  # what the earlier importer stored
        conn.execute("UPDATE runs SET status = 'failed'")
        conn.execute("UPDATE tasks SET status = 'failed' WHERE name = 'lint'")
        conn.execute("UPDATE sync_state SET signature = '1790000005.000:2:db', final = 1")
    conn.close()
    report = sync(db)
    assert report.updated == {"otto": 1}
    assert q(db, "SELECT status FROM runs") == [("success",)]
    assert sync(db).unchanged == {"otto": 1}


def test_the_signature_follows_the_source(home, db):
    run = make_run(home, "/src/web", T0, [Task("lint")])
    sync(db)
    sig = q(db, "SELECT signature FROM sync_state")[0][0]
    # otto.db's row changes (a row written late): read again
    conn = otto_db(otto_db_file())
    conn.execute("UPDATE tasks SET ended_at = ended_at + 1")
    conn.close()
    assert sync(db).updated == {"otto": 1}
    sig2 = q(db, "SELECT signature FROM sync_state")[0][0]
    assert sig2 != sig
    # a file appears in a task directory: read again
    (run / "tasks" / "lint" / "artifacts").mkdir()
    os.utime(run / "tasks" / "lint", (T0 + 50, T0 + 50))
    assert fingerprint(str(run)) not in sig2
    assert sync(db).updated == {"otto": 1}
    assert sync(db).unchanged == {"otto": 1}


def test_files_only_when_there_is_no_otto_db(home, db):
    make_run(home, "/src/web", T0, [Task("lint"), Task("build", start=5, status="failed",
                                                      deps=["lint"])], db=False)
    sync(db)
    assert q(db, "SELECT name, status, started_at, finished_at, derived FROM tasks "
                 "ORDER BY name") == [
        ("build", "failed", T0 + 5, T0 + 10, "finished_at,script_hash,started_at,status"),
        ("lint", "success", T0, T0 + 5, "exit_code,finished_at,script_hash,started_at,status")]


def test_incremental_new_run_and_running_run_finishing(home, db):
    make_run(home, "/src/web", T0, [Task("lint")])
    sync(db)
    now = int(time.time())
    run = make_run(home, "/src/web", now - 5, [Task("lint", duration=2),
                                               Task("build", start=2, duration=60,
                                                    status="running", deps=["lint"])])
    report = sync(db)
    assert report.added == {"otto": 1} and report.unchanged == {"otto": 1}
    assert q(db, "SELECT status, finished_at FROM runs ORDER BY started_at DESC LIMIT 1") == [
        ("running", None)]
    assert q(db, "SELECT status FROM tasks WHERE name = 'build' AND started_at > ?", T0 + 100) \
        == [("running",)]
    # otto finishes the build: output appears, the run goes quiet.
    tdir = run / "tasks" / "build"
    (tdir / "output.build.json").write_text("{}")
    old = now - 3600
    for f in list(tdir.iterdir()) + list((run / "tasks" / "lint").iterdir()):
        os.utime(f, (old, old), follow_symlinks=False)
    os.utime(run / "run.yaml", (old, old))
    report = sync(db)
    assert report.updated == {"otto": 1} and report.unchanged == {"otto": 1}
    assert q(db, "SELECT status FROM runs ORDER BY started_at DESC LIMIT 1") == [("success",)]
    assert sync(db).updated == {}


def test_a_run_otto_stopped_writing_becomes_interrupted_at_the_next_sync(home, db):
    now = int(time.time())
    run = make_run(home, "/src/web", now - 5, [Task("build", duration=600, status="running")])
    sync(db)
    assert q(db, "SELECT status FROM runs") == [("running",)]
    old = now - 3600  # nothing written for an hour: otto is gone
    for f in (run / "tasks" / "build").iterdir():
        os.utime(f, (old, old), follow_symlinks=False)
    os.utime(run / "run.yaml", (old, old))
    assert sync(db).updated == {"otto": 1}
    assert q(db, "SELECT status FROM runs") == [("interrupted",)]


def test_run_left_behind_by_a_dead_otto_is_interrupted(home, db):
    make_run(home, "/src/web", T0, [Task("lint"), Task("build", start=5, status="running",
                                                      deps=["lint"])])
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
    run = make_run(web, "/src/web", T0 + 7200, [Task("lint"),
                                               Task("build", start=5, deps=["lint"])])
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
    holder = sqlite3.connect(otto_db_file(), isolation_level=None)
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
    conn = otto_db(otto_db_file())
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


def test_hostile_otto_db_values_do_not_stop_the_sync(web, db):
    conn = otto_db(otto_db_file())
    conn.execute("UPDATE tasks SET started_at = 'soon', ended_at = x'00ff' WHERE name = 'lint'")
    conn.execute("UPDATE runs SET hostname = 42, cwd = 7 WHERE timestamp = ?", (T0 + 60,))
    conn.close()
    report = sync(db)
    assert report.added == {"otto": 3} and not report.skipped
    # lint's times fall back on its files
    assert task_rows(db)[1] == ("lint", "success", "finished_at,script_hash,started_at")


def test_the_ottofile_graph_reads_before_and_after_and_leaves_foreach_alone():
    from ottolytics.sources.otto import _graph
    text = ("tasks:\n  lint:\n    action: echo\n  build:\n    before: [lint]\n"
            "    after: [notify]\n    action: echo\n  notify:\n    action: echo\n")
    # "after: [notify]" on build: notify runs after build
    assert _graph(text) == {"lint": [], "build": ["lint"], "notify": ["build"]}
    assert _graph(text + "  test:\n    foreach: {items: [a, b]}\n    action: echo\n") is None
    assert _graph("not: [a, mapping") is None and _graph("- a list\n") is None


def test_otto_home_at_home_dot_otto_reads_otto_db_once(tmp_path, db, monkeypatch):
    home = Path(os.environ["HOME"]) / ".otto"
    monkeypatch.setenv("OTTO_HOME", str(home))
    make_run(home, "/src/web", T0, [Task("lint", duration=3)])
    assert (home / "otto.db").exists()
    report = sync(db, otto_home_dir=str(home))
    assert report.added == {"otto": 1} and not report.skipped
    assert task_rows(db) == [("lint", "success", "script_hash")]
    assert sync(db, otto_home_dir=str(home)).unchanged == {"otto": 1}


@pytest.mark.parametrize("where", ["outside", "another run"])
def test_a_stderr_log_linked_out_of_its_run_is_not_copied(home, db, tmp_path, where):
    """A new user's report: a task's stderr.log that is a symlink to a file outside
    OTTO_HOME (a secret) was read by sync and its tail stored: grep, failures and
    the MCP then showed it, although `logs` refuses to read that path. sync reads
    a tail by the readers' rule (core.paths.open_log): inside the run's own
    directory, never through a link leaving it."""
    run = make_run(home, "/src/web", T0, [
        Task("build", duration=3, status="failed", stderr="real failure\n")])
    other = make_run(home, "/src/web", T0 + 600, [
        Task("lint", duration=3, status="failed", stderr="the other run's\n")])
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET token\n")
    log = run / "tasks" / "build" / "stderr.log"
    log.unlink()
    log.symlink_to(secret if where == "outside" else other / "tasks" / "lint" / "stderr.log")
    sync(db, otto_home_dir=str(home), source="otto", progress=False)
    tails = [t for (t,) in q(db, "SELECT s.tail FROM task_stderr s JOIN tasks t "
                                 "ON t.id = s.task_id WHERE t.name = 'build'")]
    assert not any("SECRET" in (t or "") or "other run" in (t or "") for t in tails), tails
    assert q(db, "SELECT status FROM tasks WHERE name = 'build'") == [("failed",)]
    proc = run_cli("--db", db, "grep", "SECRET")
    assert b"SECRET" not in proc.stdout


@pytest.mark.parametrize("name", ["99999999999999999999", "253402300800", "\u0661\u0662\u0663"])
def test_a_run_directory_named_past_any_date_is_skipped(home, db, name):
    """A new user's report: a run directory named 99999999999999999999 was
    imported with started_at 1e20, after which history, list, info and usage
    crashed (timestamp out of range) and stats failed in DuckDB. A name is a
    unix timestamp when it is ASCII digits of a second up to 9999-12-31."""
    good = make_run(home, "/src/web", T0, [Task("build", duration=3)])
    odd = good.parent / name
    (odd / "tasks").mkdir(parents=True)
    (odd / "run.yaml").write_bytes((good / "run.yaml").read_bytes())
    report = sync(db, otto_home_dir=str(home), source="otto", progress=False)
    assert q(db, "SELECT started_at FROM runs") == [(T0,)]
    assert any(name in s["path"] and "not a unix timestamp" in s["reason"]
               for s in report.as_dict()["skipped"]), report.as_dict()
    proc = run_cli("--db", db, "history")
    assert proc.returncode == 0, proc.stderr
