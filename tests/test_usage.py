"""usage: per-project figures, largest runs, orphans, recommendations, recording."""

import json
import os
import time

from conftest import q
from otto_tree import build, du, synced
from ottolytics.manage.usage import usage


def test_report_on_known_tree(home, db):
    web = build(home, [100, 50, 20, 2], cwd="/src/web")
    api = build(home, [3], cwd="/src/api")
    synced(home, db)
    orphan = web[0].parent / ".cache" / "0000dead.sh"
    orphan.write_text("orphan\n")
    old = time.time() - 30 * 86400
    os.utime(orphan, (old, old))
    (home / "ottolytics.toml").write_text("[retention]\nkeep_last = 1\n")
    r = usage(db, home)
    assert r["total_bytes"] == du(home)
    projects = {p["project"]: p for p in r["projects"]}
    assert set(projects) == {"web", "api"}
    assert projects["web"]["runs"] == 4 and projects["api"]["runs"] == 1
    assert projects["web"]["run_bytes"] == sum(du(x) for x in web)
    assert projects["web"]["orphan_cache_bytes"] == len("orphan\n")
    assert abs(projects["web"]["oldest_run"] - (time.time() - 100 * 86400)) < 120
    assert [x["bytes"] for x in r["largest_runs"]] == sorted(
        (du(x) for x in web + api), reverse=True)
    assert r["orphan_cache_bytes"] == len("orphan\n")
    recs = r["recommendations"]
    assert recs[0].startswith("ottolytics clean would free ") and "(measured now; 2 runs;" in recs[0]
    assert recs[1].startswith("ottolytics clean --cache-only would free 7 B")
    assert recs[2].startswith("ottolytics clean --keep 7 would free ") and "(measured now; 3 runs)" in recs[2]


def test_measured_sizes_are_stored_for_trends(home, db):
    runs = build(home, [10, 5])
    synced(home, db)
    usage(db, home, now=1000.0)
    sizes = dict(q(db, "SELECT run_dir, size_bytes FROM runs"))
    assert sorted(sizes.values()) == sorted(du(r) for r in runs)
    (runs[1] / "big.log").write_bytes(b"x" * 5000)
    r = usage(db, home, now=2000.0)
    assert r["recorded"]["runs_updated"] == 1
    samples = q(db, "SELECT at, project, runs, run_bytes FROM disk_samples ORDER BY at")
    assert [s[:3] for s in samples] == [(1000.0, "web", 2), (2000.0, "web", 2)]
    assert samples[1][3] - samples[0][3] == 5000
    # analysis reads them back to trend disk growth
    from ottolytics import open as open_history
    trend = open_history(db).disk_samples()
    assert list(trend["project"]) == ["web", "web"]
    assert trend["run_bytes"].diff().iloc[-1] == 5000
    assert str(trend["measured_at"].dt.tz) == "UTC" and trend["measured_at"].iloc[0].year == 1970


def test_project_filter_and_no_store(home, db, cli):
    build(home, [5], cwd="/src/web")
    build(home, [5], cwd="/src/api")
    # no store yet: still measures, names projects from their directories
    r = usage(db, home, record=True)
    assert {p["project"] for p in r["projects"]} == {"web", "api"} and "recorded" not in r
    synced(home, db)
    out = json.loads(cli("usage", "--project", "api", "--json").stdout)
    assert [p["project"] for p in out["projects"]] == ["api"]
    assert all(x["project"] == "api" for x in out["largest_runs"])
    table = cli("usage")
    assert table.returncode == 0
    text = table.stdout.decode()
    assert "PROJECT" in text and "largest runs" in text and "orphaned cache" in text


def test_progress_bars_on_a_terminal(home, db):
    """On a terminal usage and clean draw progress (and still finish cleanly)."""
    from test_clean import _on_a_tty
    build(home, list(range(1, 70)))
    synced(home, db)
    code, out = _on_a_tty(["usage"], b"", color=True)
    assert code == 0 and b"largest runs" in out and b"measuring OTTO_HOME" in out
    code, out = _on_a_tty(["clean", "--keep", "30", "--keep-last", "0", "--yes"], b"",
                          color=True)
    assert code == 0 and b"deleted 40 runs" in out and b"deleting" in out  # 30..69 days old


def test_bad_home_and_project_are_one_line_errors(home, tmp_path, cli):
    missing = cli("usage", "--otto-home", tmp_path / "nowhere")
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1
    assert b"no OTTO_HOME here" in missing.stderr
    gone = cli("clean", "--dry-run", "--otto-home", tmp_path / "nowhere")
    assert gone.returncode == 1 and b"no OTTO_HOME here" in gone.stderr
    build(home, [3])
    nope = cli("usage", "--project", "nope")
    assert nope.returncode == 1 and b"--project nope: no such project" in nope.stderr


def test_a_locked_store_is_reported_before_otto_home_is_walked(home, db, monkeypatch):
    import subprocess
    import sys
    import pytest
    from ottolytics.manage import disk
    from conftest import run_cli
    assert run_cli("exec", "--", "true").returncode == 0
    code = (
        "import sqlite3, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
        "c.execute('BEGIN EXCLUSIVE'); c.execute('UPDATE runs SET status = status')\n"
        "c.execute('COMMIT')\n"
        "print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    walked = []
    real_scan = disk.scan
    monkeypatch.setattr(disk, "scan", lambda *a, **k: walked.append(a) or real_scan(*a, **k))
    monkeypatch.setenv("OTTOLYTICS_BUSY_TIMEOUT", "0.5")
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(Exception) as exc:
            usage(db, home)
    finally:
        holder.kill()
        holder.wait()
    assert "locked" in str(exc.value)
    assert walked == []
