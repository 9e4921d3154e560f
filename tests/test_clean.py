"""clean: retention, and every safety rule, each with a test that catches its violation."""

import json
import os
import sqlite3
import time

import pytest
from conftest import q
from otto_tree import DAY, build, du, synced
from ottolytics.manage import clean
from ottolytics.record.recorder import Recorder


def _uids(db):
    return {r[0] for r in q(db, "SELECT uid FROM runs")}


def test_plan_applies_keep_days_keep_last_and_keep_failed(home, db):
    runs = build(home, [100, 90, 50, 40, 20, 10, 5, 3], failed={1, 2})
    synced(home, db)
    p = clean.plan(db, home, keep_days=30, keep_last=2, keep_failed=60)
    doomed = {c.path for c in p.runs}
    # 100 and 90 days old: beyond every rule (90 failed, but older than 60 days);
    # 50 days old failed: kept by keep_failed; 40 days old success: deleted.
    assert doomed == {str(runs[0]), str(runs[1]), str(runs[3])}
    assert p.kept == 5
    reasons = {c.path: c.reason for c in p.runs}
    assert "failed" in reasons[str(runs[1])] and "30 days" in reasons[str(runs[3])]
    assert all(c.bytes == du(c.path) for c in p.runs)  # sizes as measured, like du -sb


def test_dry_run_deletes_nothing(home, db, cli):
    build(home, [100, 90, 80])
    synced(home, db)
    before = du(home)
    out = cli("clean", "--keep", "0", "--keep-last", "0", "--cache", "--dry-run")
    assert out.returncode == 0 and b"dry run: nothing deleted" in out.stdout
    assert b"3 runs" in out.stdout
    assert du(home) == before and len(_uids(db)) == 3
    plan = json.loads(cli("clean", "--keep", "0", "--keep-last", "0", "--dry-run",
                          "--json").stdout)
    assert plan["dry_run"] is True and len(plan["plan"]["runs"]) == 3
    assert du(home) == before


def test_without_yes_and_without_a_tty_it_prints_the_plan_and_exits_2(home, db, cli):
    build(home, [100, 90])
    synced(home, db)
    before = du(home)
    out = cli("clean", "--keep", "0", "--keep-last", "0")
    assert out.returncode == 2
    assert b"runs to delete" in out.stdout and b"pass --yes" in out.stderr
    assert du(home) == before and len(_uids(db)) == 2


def _on_a_tty(args, answer, color=False):
    """Run the CLI with stdin and stdout on a pseudo-terminal, answering *answer*;
    NO_COLOR is set unless *color*."""
    import pty
    import subprocess
    import sys
    env = dict(os.environ, NO_COLOR="1")
    if color:
        del env["NO_COLOR"]
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "ottolytics", *args], stdin=follower,
                            stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = b""
    deadline = time.time() + 60
    sent = False
    while time.time() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if not sent and b"[y/N]" in out:
            os.write(leader, answer + b"\n")
            sent = True
    proc.wait(timeout=60)
    os.close(leader)
    return proc.returncode, out


def test_on_a_tty_it_asks_and_only_yes_deletes(home, db):
    build(home, [100, 90])
    synced(home, db)
    code, out = _on_a_tty(["clean", "--keep", "0", "--keep-last", "0"], b"n")
    assert b"[y/N]" in out and b"nothing deleted" in out and code == 1
    assert len(_uids(db)) == 2
    code, out = _on_a_tty(["clean", "--keep", "0", "--keep-last", "0"], b"y")
    assert code == 0 and b"deleted 2 runs" in out
    assert _uids(db) == set()


def test_freed_bytes_are_measured_and_store_matches_the_disk(home, db, cli):
    runs = build(home, [100, 90, 2, 1])
    synced(home, db)
    before = du(home)
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--yes", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["result"]
    assert result["freed_bytes"] == before - du(home)
    assert not runs[0].exists() and not runs[1].exists() and runs[2].exists()
    assert len(result["deleted_runs"]) == 2 and len(_uids(db)) == 2
    # everything attached to the deleted runs went with them
    assert q(db, "SELECT count(*) FROM tasks WHERE run_id NOT IN (SELECT id FROM runs)") == [(0,)]


def test_a_symlink_to_a_file_outside_otto_home_survives(home, db, tmp_path, cli):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    outside_dir = tmp_path / "precious-dir"
    outside_dir.mkdir()
    (outside_dir / "inner.txt").write_text("keep me too")
    runs = build(home, [100, 2])
    os.symlink(outside, runs[0] / "tasks" / "lint" / "link-to-file")
    os.symlink(outside_dir, runs[0] / "tasks" / "lint" / "link-to-dir")
    synced(home, db)
    assert cli("clean", "--keep", "30", "--keep-last", "0", "--yes").returncode == 0
    assert not runs[0].exists()
    assert outside.read_text() == "keep me"
    assert (outside_dir / "inner.txt").read_text() == "keep me too"


def test_a_run_directory_outside_otto_home_is_never_deleted(home, db, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "run"
    (elsewhere / "logs").mkdir(parents=True)
    (elsewhere / "logs" / "out.log").write_text("x")
    rec = Recorder(db)
    run = rec.run(project="api", uid="outside-run", run_dir=str(elsewhere))
    run.start(at=time.time() - 100 * DAY)
    run.finish(at=time.time() - 100 * DAY + 5)
    rec.close()
    p = clean.plan(db, home, keep_days=1, keep_last=0)
    assert p.runs == [] and p.kept == 1
    assert any(r == "outside-run" and "outside OTTO_HOME" in why for r, why in p.protected)
    clean.execute(p, db)
    assert (elsewhere / "logs" / "out.log").exists() and "outside-run" in _uids(db)
    # a plan made by hand is checked again when it is carried out
    p.runs.append(clean.Candidate(q(db, "SELECT id FROM runs")[0][0], "outside-run", "api",
                                  "success", 0, str(elsewhere), 0, "by hand"))
    result = clean.execute(p, db)
    assert (elsewhere / "logs" / "out.log").exists()
    assert result.kept == ["outside-run"] and "outside-run" in _uids(db)
    assert any("outside OTTO_HOME" in msg for _p, msg in result.errors)


def test_running_and_recent_runs_survive_any_policy(home, db):
    rec = Recorder(db)
    old = rec.run(project="api", uid="still-running")
    old.start(at=time.time() - 100 * DAY)        # running, 100 days old, recorder alive
    young = rec.run(project="api", uid="young")
    young.start(at=time.time() - 600)
    young.finish(at=time.time() - 500)
    done = rec.run(project="api", uid="old-done")
    done.start(at=time.time() - 100 * DAY)
    done.finish(at=time.time() - 100 * DAY + 1)
    p = clean.plan(db, home, keep_days=0, keep_last=0, keep_failed=0)
    assert [c.run_id for c in p.runs] == ["old-done"]
    assert dict(p.protected) == {"still-running": "still running",
                                 "young": "started within the last hour"}
    clean.execute(p, db)
    assert _uids(db) == {"still-running", "young"}
    rec.close()


def test_a_referenced_cache_file_survives_and_orphans_go(home, db, cli):
    runs = build(home, [100, 90, 1])
    synced(home, db)
    cache = runs[0].parent / ".cache"
    kept_ref = os.path.basename(os.readlink(runs[2] / "tasks" / "lint" / "script.sh"))
    doomed_ref = os.path.basename(os.readlink(runs[0] / "tasks" / "lint" / "script.sh"))
    stray = cache / "deadbeef.sh"
    stray.write_text("#!/bin/sh\n")
    old = time.time() - 30 * DAY
    os.utime(stray, (old, old))
    fresh = cache / "cafecafe.sh"      # written minutes ago: an otto may be about to use it
    fresh.write_text("#!/bin/sh\n")
    # --cache-only: no runs go, so only files no run at all references
    plan = json.loads(cli("clean", "--cache-only", "--dry-run", "--json").stdout)["plan"]
    assert plan["runs"] == []
    assert {os.path.basename(c["path"]) for c in plan["cache"]} == {"deadbeef.sh"}
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--cache", "--yes")
    assert out.returncode == 0, out.stderr
    assert (cache / kept_ref).exists()                  # referenced by the kept run
    assert not (cache / doomed_ref).exists()            # only the deleted runs used it
    assert not stray.exists() and fresh.exists()


def test_store_and_otto_db_files_are_never_deleted(home, db, cli):
    runs = build(home, [100, 90])
    synced(home, db)
    trap = runs[0] / "tasks" / "lint" / "ottolytics.db-wal"
    trap.write_text("not really a wal")
    otto_db = home / "otto.db"
    assert otto_db.exists()
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--yes", "--json")
    result = json.loads(out.stdout)["result"]
    assert trap.exists() and otto_db.exists() and db.exists()
    assert any(e["path"] == str(trap) for e in result["errors"])
    # that run could not be removed entirely, so the store keeps it; the other went
    assert result["runs_kept_after_errors"] == [f"otto-{runs[0].name}-{runs[0].parent.name[-8:]}"]
    assert len(_uids(db)) == 1 and out.returncode == 1


def test_permission_errors_are_reported_per_path_and_the_rest_goes_on(
        home, db, cli, make_readonly):
    runs = build(home, [100, 90, 80])
    synced(home, db)
    locked = runs[1] / "tasks" / "build"
    make_readonly(locked)
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--yes", "--json")
    assert out.returncode == 1
    result = json.loads(out.stdout)["result"]
    assert any(e["path"].startswith(str(locked)) for e in result["errors"])
    assert not runs[0].exists() and not runs[2].exists() and runs[1].exists()
    assert len(result["deleted_runs"]) == 2 and len(_uids(db)) == 1
    table = cli("clean", "--keep", "30", "--keep-last", "0", "--yes")  # the same, as text
    assert table.returncode == 1 and str(locked).encode() in table.stderr
    assert b"kept 1 runs in the store" in table.stdout


def test_retention_from_ottolytics_toml_and_project_override(home, db, cli):
    build(home, [100, 50, 20], cwd="/src/web")
    build(home, [100, 50, 20], cwd="/src/api")
    synced(home, db)
    (home / "ottolytics.toml").write_text(
        "[retention]\nkeep_days = 60\nkeep_last = 0\n\n"
        "[retention.projects.api]\nkeep_days = 10\n")
    plan = json.loads(cli("clean", "--dry-run", "--json").stdout)["plan"]
    by_project = {}
    for r in plan["runs"]:
        by_project[r["project"]] = by_project.get(r["project"], 0) + 1
    assert by_project == {"web": 1, "api": 3}
    assert plan["policies"]["api"]["sources"]["keep_days"].endswith("[retention.projects.api]")
    # a flag beats both
    plan = json.loads(cli("clean", "--dry-run", "--json", "--keep", "200").stdout)["plan"]
    assert plan["runs"] == []


def test_bad_flags_and_config_are_one_line_errors(home, db, cli):
    build(home, [1])
    synced(home, db)
    bad = cli("clean", "--keep", "-1")
    assert bad.returncode == 2 and b"--keep -1" in bad.stderr
    (home / "ottolytics.toml").write_text("[retention]\nkeep_last = 'many'\n")
    out = cli("clean", "--dry-run")
    assert out.returncode == 1
    assert out.stderr.decode().count("\n") == 1 and b"keep_last" in out.stderr
    (home / "ottolytics.toml").write_text("[retention\n")
    out = cli("clean", "--dry-run")
    assert out.returncode == 1 and b"ottolytics.toml" in out.stderr


def test_project_filter_only_touches_that_project(home, db, cli):
    web = build(home, [100, 90], cwd="/src/web")
    api = build(home, [100, 90], cwd="/src/api")
    synced(home, db)
    assert cli("clean", "--keep", "1", "--keep-last", "0", "--project", "api",
               "--yes").returncode == 0
    assert all(r.exists() for r in web) and not any(r.exists() for r in api)


@pytest.mark.parametrize("bogus", ["", "PROJECT", "PROJECT/.cache/.."])
def test_a_store_row_naming_a_project_or_home_as_run_dir_is_refused(home, db, bogus):
    runs = build(home, [100, 90])
    synced(home, db)
    project_dir = runs[0].parent.name
    run_dir = bogus.replace("PROJECT", project_dir) if bogus else "."
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET run_dir = ? WHERE run_dir LIKE ?", (run_dir, f"%/{runs[0].name}"))
    conn.commit()
    conn.close()
    before = du(home)
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert [c.path for c in p.runs] == [str(runs[1])]
    assert len(p.protected) == 1 and "left alone" in p.protected[0][1]
    result = clean.execute(p, db)
    assert runs[0].exists() and (runs[0].parent / ".cache").exists()
    assert not result.errors and len(result.deleted) == 1 and not runs[1].exists()
    assert du(home) < before and len(_uids(db)) == 1


# -- a run directory goes only if it has the shape of one run (issue 13) ------------

def _shim_run(db, home, uid, age_s, files=("tasks/t/stdout.log",)):
    """A run recorded the way the shim records it: its directory is ottolytics/runs/<uid>."""
    from ottolytics.core.paths import to_stored
    from ottolytics.record.shim import run_dir_for
    path = run_dir_for(uid, str(home))
    for f in files:
        os.makedirs(os.path.dirname(os.path.join(path, f)), exist_ok=True)
        with open(os.path.join(path, f), "w") as handle:
            handle.write("x" * 100)
    rec = Recorder(db)
    run = rec.run(project="shim", uid=uid, run_dir=to_stored(path, str(home)))
    run.start(at=time.time() - age_s)
    run.finish(at=time.time() - age_s + 1)
    rec.close()
    os.utime(path, (time.time() - age_s + 1,) * 2)  # as old as the run, like a real one
    return path


def _old_row(db, uid, run_dir, project="hostile", source=None):
    rec = Recorder(db)
    run = rec.run(project=project, uid=uid, run_dir=run_dir)
    run.start(at=time.time() - 100 * DAY)
    run.finish(at=time.time() - 100 * DAY + 1)
    rec.close()
    if source:  # as if an importer had written it
        conn = sqlite3.connect(db)
        conn.execute("UPDATE runs SET source = ? WHERE uid = ?", (source, uid))
        conn.commit()
        conn.close()


def test_a_row_naming_the_shim_runs_root_deletes_no_shim_run(home, db, cli):
    young = _shim_run(db, home, "0000000000young1", 1)          # a second old
    old = _shim_run(db, home, "00000000000old01", 100 * DAY)     # a run clean may delete
    _old_row(db, "hostile-root", "ottolytics/runs")
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert {c.run_id for c in p.runs} == {"00000000000old01"}
    assert all(c.bytes == du(c.path) and c.bytes > 0 for c in p.runs)
    assert any(r == "hostile-root" and "not the directory of one run" in why
               for r, why in p.protected)
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--no-sync", "--yes")
    assert out.returncode == 0, out.stderr
    assert os.path.isdir(young) and not os.path.exists(old)
    assert "hostile-root" in _uids(db) and "0000000000young1" in _uids(db)


def test_a_row_naming_the_script_cache_leaves_it_alone(home, db):
    runs = build(home, [100, 2])
    synced(home, db)
    cache = runs[0].parent / ".cache"
    before = sorted(os.listdir(cache))
    _old_row(db, "hostile-cache", f"{runs[0].parent.name}/.cache")
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert [c.path for c in p.runs] == [str(runs[0])]
    result = clean.execute(p, db)
    assert sorted(os.listdir(cache)) == before and not runs[0].exists()
    assert "hostile-cache" in _uids(db) and not result.errors


@pytest.mark.parametrize("project_dir", ["web-1a2b3c4d", "..web-1a2b3c4d"])
def test_a_run_directory_holding_a_script_cache_is_left_alone(home, db, project_dir):
    # a name starting with '..' lies inside OTTO_HOME like any other (core.paths.is_inside)
    ts = int(time.time() - 100 * DAY)
    run_dir = home / project_dir / str(ts)
    (run_dir / ".cache").mkdir(parents=True)
    (run_dir / ".cache" / "script.sh").write_text("#!/bin/sh\n")
    _old_row(db, f"otto-{ts}-1a2b3c4d", f"{project_dir}/{ts}", project="web", source="otto")
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert [c.path for c in p.runs] == [str(run_dir)]
    result = clean.execute(p, db)
    assert (run_dir / ".cache" / "script.sh").exists()
    assert result.errors == [(str(run_dir), "holds a script cache: a project directory, not a "
                                            "run; left alone")]


def test_an_old_row_sharing_a_recent_runs_directory_leaves_its_files(home, db):
    runs = build(home, [100, 2])
    synced(home, db)
    recent_files = sorted(str(p) for p in runs[1].rglob("*"))
    _old_row(db, "hostile-share", f"{runs[1].parent.name}/{runs[1].name}", project="web",
             source="otto")
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert [c.path for c in p.runs] == [str(runs[0])]
    assert any(r == "hostile-share" and "not the directory of its own run" in why
               for r, why in p.protected)
    clean.execute(p, db)
    assert sorted(str(p) for p in runs[1].rglob("*")) == recent_files
    assert not runs[0].exists() and "hostile-share" in _uids(db)


def _forged_otto_row(db, uid, run_dir):
    """A row as an importer would write it (the Recorder API refuses source='otto')."""
    _old_row(db, uid, run_dir, source="otto")


def test_an_otto_row_naming_another_runs_directory_deletes_nothing(home, db, cli):
    """Review item 2: a forged old otto row whose run_dir is a fresh run directory
    (not in the store, no run.yaml yet) must not get it deleted: the row's uid does
    not name that directory, and the directory's own timestamp is recent."""
    fresh = home / "p-12345678" / str(int(time.time()))
    (fresh / "tasks" / "t").mkdir(parents=True)
    (fresh / "tasks" / "t" / "stdout.log").write_text("mine\n")
    rel = f"p-12345678/{fresh.name}"
    _forged_otto_row(db, "evil", rel)                      # any uid
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert p.runs == []
    assert any(r == "evil" and "not the directory of its own run" in why
               for r, why in p.protected)
    # the uid forged too: the directory's name and mtime say it is minutes old
    _forged_otto_row(db, f"otto-{fresh.name}-12345678", rel)
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert p.runs == []
    assert any(r == f"otto-{fresh.name}-12345678" and "within the last hour" in why
               for r, why in p.protected)
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--no-sync", "--yes")
    assert out.returncode == 0, out.stderr
    assert (fresh / "tasks" / "t" / "stdout.log").read_text() == "mine\n"


def test_a_directory_touched_within_the_hour_is_kept_whatever_its_row_says(home, db):
    """The young-run guard reads the directory's mtime too, for every source."""
    old = _shim_run(db, home, "00000000000old02", 100 * DAY)
    os.utime(old, None)                                    # written to just now
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert p.runs == [] and any("within the last hour" in why for _r, why in p.protected)
    os.utime(old, (time.time() - 100 * DAY,) * 2)
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert [c.run_id for c in p.runs] == ["00000000000old02"]
    os.utime(old, None)                                    # touched between plan and execute
    result = clean.execute(p, db)
    assert os.path.isdir(old) and result.kept == ["00000000000old02"]


def test_a_kept_row_naming_a_path_inside_an_old_run_keeps_that_run(home, db):
    runs = build(home, [100, 2])
    synced(home, db)
    rec = Recorder(db)  # a young run whose directory lies inside the old one
    run = rec.run(project="web", uid="nested",
                  run_dir=f"{runs[0].parent.name}/{runs[0].name}/tasks")
    run.start(at=time.time() - 60)
    run.finish(at=time.time() - 50)
    rec.close()
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    assert p.runs == [] and any("also the directory of" in why for _r, why in p.protected)
    clean.execute(p, db)
    assert runs[0].exists()


# -- a killed clean converges (issue 13) ----------------------------------------------

_KILLED_CLEAN = """
import os, signal, sys
from ottolytics.cli import main as cli
from ottolytics.store import connection as store
real = store.Store.write
def write(self, fn, *args):
    if sys._getframe(1).f_code.co_name == "execute":  # files gone, rows not yet
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, fn, *args)
store.Store.write = write
sys.exit(cli.main(sys.argv[1:]))
"""


def _killed_clean(*args):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _KILLED_CLEAN, "clean", *args],
                         capture_output=True, timeout=60)
    assert out.returncode == -9, out.stderr


def test_a_killed_clean_is_finished_by_the_next_clean(home, db, cli):
    runs = build(home, [100, 90, 2])
    synced(home, db)
    _killed_clean("--keep", "30", "--keep-last", "0", "--no-sync", "--yes")
    assert not runs[0].exists() and not runs[1].exists()
    assert len(_uids(db)) == 3                  # the store still lists them
    out = cli("clean", "--dry-run", "--no-sync")
    assert b"interrupted" in out.stderr and len(_uids(db)) == 3  # a dry run changes nothing
    # a milder policy deletes nothing of its own, but finishes what was started
    out = cli("clean", "--keep", "365", "--no-sync", "--yes")
    assert out.returncode == 0, out.stderr
    assert b"finished an interrupted clean: deleted 2 runs" in out.stdout
    assert len(_uids(db)) == 1 and runs[2].exists()
    assert not os.path.exists(clean.journal_path(str(db)))


def test_doctor_reports_and_finishes_a_killed_clean(home, db, cli):
    runs = build(home, [100, 90, 2])
    synced(home, db)
    _killed_clean("--keep", "30", "--keep-last", "0", "--no-sync", "--yes")
    assert len(_uids(db)) == 3
    out = cli("doctor")
    assert out.returncode == 0, out.stdout
    assert b"interrupted clean" in out.stdout and b"2 runs" in out.stdout
    assert len(_uids(db)) == 1 and runs[2].exists()
    out = cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["clean"]["ok"] and "none" in checks["clean"]["detail"]


def test_finish_interrupted_only_finds_on_a_dry_run_and_finishes_otherwise(home, db):
    runs = build(home, [100, 90, 2])
    synced(home, db)
    assert clean.finish_interrupted(db, home) is None
    assert clean.finish_interrupted(db, home, dry_run=True) is None
    old = q(db, "SELECT id, uid FROM runs ORDER BY started_at")[:2]
    journal = clean.journal_path(str(db))
    with open(journal, "w") as f:
        json.dump({"home": str(home), "runs": [list(r) for r in old]}, f)
    found = clean.finish_interrupted(db, home, dry_run=True)
    assert found.journal == journal and found.finished is None
    assert len(_uids(db)) == 3 and os.path.exists(journal) and runs[0].exists()
    found = clean.finish_interrupted(db, home)
    assert found.journal == journal
    assert sorted(found.finished.deleted) == sorted(uid for _id, uid in old)
    assert not runs[0].exists() and not runs[1].exists() and runs[2].exists()
    assert len(_uids(db)) == 1 and not os.path.exists(journal)


def test_a_journal_naming_a_young_run_deletes_nothing(home, db):
    runs = build(home, [100, 0.001])
    synced(home, db)
    young = q(db, "SELECT id, uid FROM runs ORDER BY started_at DESC")[0]
    with open(clean.journal_path(str(db)), "w") as f:
        json.dump({"home": str(home), "runs": [list(young)]}, f)
    result = clean.resume(db, home)   # the journal is input too: every rule applies again
    assert result.deleted == [] and result.kept == [young[1]]
    assert runs[1].exists() and young[1] in _uids(db)
    assert not os.path.exists(clean.journal_path(str(db)))


def test_a_run_whose_directory_otto_already_removed_loses_its_row(home, db):
    import shutil
    runs = build(home, [100, 90, 2])
    synced(home, db)
    shutil.rmtree(runs[0])            # otto's own clean-up; the project directory stays
    p = clean.plan(db, home, keep_days=30, keep_last=0)
    reasons = {c.path: c.reason for c in p.runs}
    assert "already gone" in reasons[str(runs[0])] and "already gone" not in reasons[str(runs[1])]
    result = clean.execute(p, db)
    assert len(result.deleted) == 2 and len(_uids(db)) == 1 and not result.errors


def test_cache_only_with_only_fresh_orphans_says_they_are_held_back(home, db, cli):
    runs = build(home, [100, 90])
    synced(home, db)
    cache = runs[0].parent / ".cache"
    for name in ("cafecafe.sh", "beefbeef.sh"):   # orphans written minutes ago
        (cache / name).write_text("#!/bin/sh\n")
    out = cli("clean", "--cache-only", "--dry-run")
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr
    assert "nothing to delete" in text
    assert "2 orphaned cache files" in text and "last hour" in text, text
    assert (cache / "cafecafe.sh").exists()


def test_plan_syncs_first_only_when_asked(home, db):
    """Sync-first is the library's (plan(sync=True)); the CLI passes it. By default
    the plan is of what the store holds."""
    runs = build(home, [100, 90])
    assert not clean.plan(db, home, keep_days=30, keep_last=0).runs
    p = clean.plan(db, home, keep_days=30, keep_last=0, sync=True)
    assert {c.path for c in p.runs} == {str(r) for r in runs}
    assert len(_uids(db)) == 2


def test_the_cli_syncs_through_the_library_unless_no_sync(home, db, cli):
    build(home, [100, 90])
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--no-sync", "--yes")
    assert out.returncode == 0 and b"nothing to delete" in out.stdout
    out = cli("clean", "--keep", "30", "--keep-last", "0", "--yes")
    assert out.returncode == 0, out.stderr
    assert b"deleted 2 runs" in out.stdout


def test_clean_and_usage_keep_a_run_of_unknown_start(tmp_path, cli):
    """A review's finding: a run whose started_at is text (rows are untrusted) made
    `usage` and `clean --dry-run` fail with a traceback (float - str), while
    history showed it. Its age is unknown, so clean never deletes it by age: it
    is kept, with the reason."""
    import json
    import sqlite3
    from ottolytics.tools.synth import synthesize
    db = tmp_path / "s.db"
    home = tmp_path / "otto-home-empty"
    home.mkdir()
    synthesize(db, runs=50, tasks_per_run=2, seed=1, days=400)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET started_at = 'x' WHERE id = 10")
    conn.execute("UPDATE runs SET size_bytes = 'big' WHERE id = 11")
    conn.commit()
    uid = conn.execute("SELECT uid FROM runs WHERE id = 10").fetchone()[0]
    conn.close()
    for args in (["usage", "--otto-home", home, "--plain"],
                 ["clean", "--dry-run", "--no-sync", "--keep", "1", "--keep-last", "1", "--keep-failed", "1",
                  "--otto-home", home, "--json"]):
        proc = cli("--db", db, *args)
        text = (proc.stdout + proc.stderr).decode()
        assert proc.returncode == 0 and "Traceback" not in text, text
    plan = json.loads(proc.stdout)
    assert uid not in json.dumps(plan.get("runs", plan)), plan
