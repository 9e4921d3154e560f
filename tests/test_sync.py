import json
import os
import sqlite3

from conftest import q
from ottolytics.tools.otto_layout import Task, make_run
from ottolytics.sources.sync import _Progress, default_locations, guess_source, summary_lines, sync
from ottolytics.sources.common import Report


def test_default_locations_pick_up_the_sources_that_exist(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_locations() == {"otto": str(home)}
    (tmp_path / ".workflow-manager").mkdir()
    sqlite3.connect(tmp_path / ".workflow-manager" / "executions.db").close()
    (tmp_path / ".oneshot" / "sessions").mkdir(parents=True)
    assert set(default_locations()) == {"otto", "workflow-manager", "oneshot"}


def test_guess_source(home, tmp_path):
    make_run(home, "/src/web", 1_790_000_000, [Task("a")])
    assert guess_source(str(home)) == "otto"
    db = tmp_path / "executions.db"
    sqlite3.connect(db).close()
    assert guess_source(str(db)) == "workflow-manager"
    session = tmp_path / "s"
    session.mkdir()
    (session / "oneshot_2026-07-14_10-00-00.json").write_text("{}")
    assert guess_source(str(session)) == "oneshot"
    assert guess_source(str(session / "oneshot_2026-07-14_10-00-00.json")) == "oneshot"
    (tmp_path / "x.txt").write_text("")
    assert guess_source(str(tmp_path / "x.txt")) is None


def test_unknown_or_missing_paths_are_reported_not_fatal(tmp_path, db):
    (tmp_path / "x.txt").write_text("")
    report = sync(db, paths=[str(tmp_path / "x.txt"), str(tmp_path / "gone.db")])
    reasons = [r for _s, _p, r in report.skipped]
    assert "cannot tell which source this is; pass --source" in reasons
    assert "does not exist" in reasons


def test_source_filter_and_cli_errors(home, db, cli):
    make_run(home, "/src/web", 1_790_000_000, [Task("a")])
    assert sync(db, source="oneshot").added == {}
    assert sync(db, source="otto").added == {"otto": 1}
    bad = cli("sync", "--source", "jenkins")
    assert bad.returncode == 2 and b"invalid choice" in bad.stderr
    unusable = cli("--db", "/proc/nope/ottolytics.db", "sync")
    assert unusable.returncode == 1 and unusable.stderr.decode().startswith("ottolytics: error:")


def test_summary_lines():
    report = Report()
    report.count("added", "otto", 3)
    report.skip("otto", "/h/web-1/latest", "run directory name is not a unix timestamp")
    assert summary_lines(report) == ["otto: 3 added, 0 updated, 0 unchanged, 1 skipped",
                                     "1 items skipped with a warning; run with -v to see them"]
    assert summary_lines(report, verbose=True)[-1] == \
        "  skipped /h/web-1/latest: run directory name is not a unix timestamp"
    assert summary_lines(Report()) == ["nothing to import"]


def test_progress_bar_only_when_enabled():
    off = _Progress(False)
    assert off.start("otto") is None
    on = _Progress(True)
    advance = on.start("otto")
    advance(2)
    assert on.bar is not None and on.bar.tasks[0].completed == 2
    on.stop()


def test_imported_runs_show_in_history(home, db, cli):
    make_run(home, "/src/web", 1_790_000_000, [Task("a"), Task("b", status="failed")])
    assert cli("sync").returncode == 0
    runs = json.loads(cli("history", "--json").stdout)
    assert runs[0]["project"] == "web" and runs[0]["status"] == "failed"
    assert runs[0]["tasks_success"] == 1 and runs[0]["tasks_failed"] == 1
    assert q(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_run_stored_as_final_is_read_again_when_its_source_changed(db):
    """Any source: what an early or wrong read stored as final is corrected later."""
    from ottolytics.sources.common import known, needs_writing, save_runs
    from ottolytics.store.connection import Store

    def run(signature, status, finished):
        return {"source": "any", "ref": "r1", "uid": "any-r1", "project": "p",
                "status": status, "started_at": 100.0, "finished_at": finished,
                "signature": signature, "final": True,
                "tasks": [{"name": "t", "status": status, "started_at": 100.0,
                           "finished_at": finished}]}

    store = Store.open(db)
    try:
        first = Report()
        save_runs(store, [run("a", "failed", 100.0)], first)
        assert first.added == {"any": 1}
        seen = known(store.conn, "any")
        assert seen == {"r1": ("a", True)}
        same = Report()
        assert not needs_writing(seen, run("a", "failed", 100.0), same)
        assert same.unchanged == {"any": 1}
        changed = run("b", "success", 130.0)
        assert needs_writing(seen, changed, Report())
        again = Report()
        save_runs(store, [changed], again)
        assert again.updated == {"any": 1}
    finally:
        store.close()
    assert q(db, "SELECT status, finished_at FROM runs") == [("success", 130.0)]
    assert q(db, "SELECT name, status FROM tasks") == [("t", "success")]
    assert q(db, "SELECT signature, final FROM sync_state") == [("b", 1)]


# -- review item 5: a FIFO where a file is expected is skipped, never waited on -------

def _sync_cli(db, *args):
    """`ottolytics --db DB sync ARGS` in a subprocess: a read that blocks on a FIFO
    fails the test after 30 s instead of hanging the suite."""
    import subprocess
    from conftest import run_cli
    try:
        out = run_cli("--db", db, "sync", "-v", *args, timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"sync {args} blocked on a FIFO") from None
    assert out.returncode == 0, out.stderr
    return out.stdout.decode() + out.stderr.decode()


def test_a_fifo_session_file_is_skipped(tmp_path, db):
    import os
    sessions = tmp_path / "s"
    sessions.mkdir()
    os.mkfifo(sessions / "oneshot_2026-11-30_10-00-00.json")
    out = _sync_cli(db, sessions)
    assert "not a regular file" in out and "oneshot_2026-11-30_10-00-00.json" in out


def test_a_fifo_given_as_a_workflow_manager_database_is_skipped(tmp_path, db):
    import os
    os.mkfifo(tmp_path / "executions.db")
    out = _sync_cli(db, "--source", "workflow-manager", tmp_path / "executions.db")
    assert "not a regular file" in out


def test_fifos_in_an_otto_home_are_skipped_and_the_rest_is_imported(home, db):
    import os
    good = make_run(home, "/src/web", 1_790_000_000, [Task("a")], db_path=home / "otto.db")
    bad = make_run(home, "/src/web", 1_790_000_100, [Task("a")], db_path=home / "otto.db")
    failed = make_run(home, "/src/api", 1_790_000_200, [Task("b", status="failed")],
                      db=False)
    os.unlink(bad / "run.yaml")
    os.mkfifo(bad / "run.yaml")
    os.unlink(failed / "tasks" / "b" / "stderr.log")
    os.mkfifo(failed / "tasks" / "b" / "stderr.log")   # read for the failure's tail
    os.utime(failed / "tasks" / "b" / "stderr.log", (1_790_000_210,) * 2)  # otto is done
    os.unlink(home / "otto.db")
    os.mkfifo(home / "otto.db")
    out = _sync_cli(db, "--source", "otto", home)
    assert out.count("not a regular file") >= 3, out
    uids = {u for (u,) in q(db, "SELECT uid FROM runs")}
    assert any(u.startswith(f"otto-{good.name}-") for u in uids)
    assert any(u.startswith(f"otto-{failed.name}-") for u in uids)
    assert not any(u.startswith(f"otto-{bad.name}-") for u in uids)


def test_a_store_kept_elsewhere_resolves_the_synced_homes_paths(tmp_path, cli):
    """Review item 9: `--db /elsewhere/store.db sync HOME` stored run_dir relative to
    HOME but readers resolve it against the store's directory: info showed paths
    that do not exist and `logs` found no output."""
    import json as _json
    home3, other = tmp_path / "home3", tmp_path / "other"
    run = make_run(home3, "/src/mobile", 1_795_141_200,
                   [Task("build", status="failed", stderr="link error\n")],
                   db_path=home3 / "otto.db")
    store = other / "store.db"
    out = cli("--db", store, "sync", home3)
    assert out.returncode == 0, out.stderr
    info = _json.loads(cli("--db", store, "info", "1795141200", "--json").stdout)
    assert info["run_dir"] == str(run)
    assert os.path.isfile(info["tasks"][0]["stderr_path"])
    assert info["tasks"][0]["refused"] == {}
    logs = cli("--db", store, "logs", "1795141200", "build", "--stream", "stderr")
    assert logs.returncode == 0 and logs.stdout.decode() == "link error\n", logs
    # a second sync changes nothing; a store beside the home keeps relative paths
    assert "0 added, 0 updated, 1 unchanged" in cli("--db", store, "sync", home3).stdout.decode()
    cli("--db", home3 / "ottolytics.db", "sync", home3)
    assert q(home3 / "ottolytics.db", "SELECT run_dir FROM runs") == [
        (f"{run.parent.name}/{run.name}",)]


def test_a_store_synced_before_the_fix_is_corrected_by_the_next_sync(tmp_path, cli):
    home3, other = tmp_path / "home3", tmp_path / "other"
    run = make_run(home3, "/src/mobile", 1_795_141_200, [Task("build")],
                   db_path=home3 / "otto.db")
    store = other / "store.db"
    cli("--db", store, "sync", home3)
    conn = sqlite3.connect(store)  # as the importer stored it before: relative to HOME
    conn.execute("UPDATE runs SET run_dir = ?", (f"{run.parent.name}/{run.name}",))
    conn.commit()
    conn.close()
    out = cli("--db", store, "sync", home3)
    assert "1 updated" in out.stdout.decode(), out.stdout
    assert q(store, "SELECT run_dir FROM runs") == [(str(run),)]
