import hashlib
import sqlite3

import pytest

from ottolytics.store.migrations import CURRENT_VERSION
from ottolytics.tools.synth import synthesize


def digest(path):
    conn = sqlite3.connect(path)
    h = hashlib.sha256()
    for table in ("projects", "runs", "tasks", "transitions", "task_deps", "task_stderr",
                  "run_params"):
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
            h.update(repr(row).encode())
    conn.close()
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = (tmp_path / n for n in ("a.db", "b.db", "c.db"))
    synthesize(a, runs=300, tasks_per_run=8, seed=7)
    synthesize(b, runs=300, tasks_per_run=8, seed=7)
    synthesize(c, runs=300, tasks_per_run=8, seed=8)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_contents_are_a_realistic_history(tmp_path):
    path = tmp_path / "s.db"
    summary = synthesize(path, runs=2000, tasks_per_run=10, seed=1, days=30)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (CURRENT_VERSION,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    n_tasks = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    assert summary["tasks"] == n_tasks >= 2000 * 9
    statuses = dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY 1"))
    assert {"success", "failed", "skipped"} <= set(statuses)
    assert statuses["success"] > statuses["failed"] > 0
    assert conn.execute("SELECT count(*) FROM tasks WHERE attempt = 2").fetchone()[0] > 0
    assert conn.execute("SELECT count(DISTINCT project_id) FROM runs").fetchone()[0] >= 3
    assert conn.execute("SELECT count(DISTINCT host) FROM runs").fetchone()[0] >= 3
    span = conn.execute("SELECT max(started_at) - min(started_at) FROM runs").fetchone()[0]
    assert 29 * 86400 < span <= 30 * 86400
    # Dependency chain: build depends on lint, test on build.
    deps = set(conn.execute("SELECT t.name, d.depends_on FROM task_deps d "
                            "JOIN tasks t ON t.id = d.task_id"))
    assert ("build", "lint") in deps and ("test", "build") in deps
    # Two status changes for every task that ran and every run; one for a skip.
    skipped = statuses["skipped"]
    assert conn.execute("SELECT count(*) FROM transitions").fetchone()[0] == \
        2 * (n_tasks - skipped) + skipped + 2 * 2000
    assert conn.execute("SELECT count(*) FROM transitions WHERE to_status = 'skipped' "
                        "AND reason IN ('up to date', 'dependency failed')").fetchone() == (skipped,)
    # Failures carry a stderr tail; durations are positive and log-normal-ish.
    assert conn.execute("SELECT count(*) FROM tasks t LEFT JOIN task_stderr s "
                        "ON s.task_id = t.id WHERE t.status = 'failed' "
                        "AND s.tail IS NULL").fetchone() == (0,)
    med = sorted(r[0] for r in conn.execute(
        "SELECT finished_at - started_at FROM tasks WHERE name = 'build' "
        "AND status = 'success'"))
    assert 30 < med[len(med) // 2] < 60
    conn.close()


def test_refuses_to_overwrite_without_force(tmp_path, cli):
    path = tmp_path / "s.db"
    assert cli("synth", path, "--runs", "5", "--tasks-per-run", "3").returncode == 0
    again = cli("synth", path, "--runs", "5", "--tasks-per-run", "3")
    assert again.returncode == 2 and b"--force" in again.stderr
    assert cli("synth", path, "--runs", "5", "--tasks-per-run", "3", "--force").returncode == 0
    assert cli("synth", path, "--runs", "0", "--tasks-per-run", "3").returncode == 2
    recent = tmp_path / "recent.db"
    assert cli("synth", recent, "--runs", "5", "--tasks-per-run", "2", "--end", "now").returncode == 0
    conn = sqlite3.connect(recent)
    import time
    assert conn.execute("SELECT max(started_at) FROM runs").fetchone()[0] > time.time() - 91 * 86400
    conn.close()
    assert cli("synth", tmp_path / "x.db", "--runs", "5", "--tasks-per-run", "2",
               "--end", "someday").returncode == 2


def test_synth_onto_a_directory_is_one_line_and_leaves_nothing(tmp_path, cli):
    target = tmp_path / "somedir"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    proc = cli("synth", target, "--runs", "3", "--tasks-per-run", "2", "--force")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and "is a directory" in err
    assert not list(tmp_path.glob("*.synth-*")) and (target / "keep.txt").read_text() == "mine"


def test_synth_removes_its_temporary_file_when_it_fails(tmp_path, monkeypatch):
    from ottolytics.tools import synth

    def boom(*args):
        raise RuntimeError("interrupted half way")
    monkeypatch.setattr(synth, "_generate", boom)
    with pytest.raises(RuntimeError):
        synth.synthesize(tmp_path / "s.db", runs=3, tasks_per_run=2)
    assert not list(tmp_path.glob("s.db*"))


@pytest.mark.parametrize("args", [["--runs", "10000000000", "--tasks-per-run", "5"],
                                  ["--runs", "1000000", "--tasks-per-run", "1000"]])
def test_synth_past_its_bound_is_refused_before_anything_is_made(tmp_path, cli, args):
    """A new user's report: `synth --runs 10000000000` used 24 GB of memory until
    the kernel killed it, leaving its temporary file. Past MAX_TASKS tasks it is
    refused at once, in one line, with exit 2."""
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "s.db"
    proc = cli("synth", out, *args, timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "at most" in err and list(folder.iterdir()) == []
    from ottolytics.tools.synth import MAX_TASKS, synthesize
    with pytest.raises(ValueError, match="at most"):
        synthesize(out, runs=MAX_TASKS + 1, tasks_per_run=1)
