"""One size, one definition (issue 14): what sync records, what usage and the
library measure, what clean plans and what it frees agree, and each figure says
whether it was measured now or recorded earlier."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import q
from otto_tree import build, du, synced

import ottolytics
from ottolytics.manage import clean
from ottolytics.core.paths import dir_size
from ottolytics.manage.usage import usage

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


def test_du_helper_counts_files_and_links_not_directories(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_bytes(b"x" * 10)
    os.symlink("f", tmp_path / "d" / "e" / "link")       # a link counts as itself: 1 byte
    os.symlink(tmp_path / "d", tmp_path / "dirlink")     # never followed
    assert du(tmp_path) == 10 + 1 + len(str(tmp_path / "d")) == dir_size(tmp_path)


def test_sync_usage_and_the_library_give_a_run_the_same_size(home, db):
    runs = build(home, [3, 2])
    (runs[0] / "tasks" / "build" / "artifacts" / "deep").mkdir(parents=True)
    (runs[0] / "tasks" / "build" / "artifacts" / "deep" / "a.bin").write_bytes(b"a" * 777)
    synced(home, db)
    recorded = dict(q(db, "SELECT run_dir, size_bytes FROM runs"))
    report = usage(db, home, record=False)
    measured = {os.path.relpath(r["path"], home): r["bytes"] for r in report["largest_runs"]}
    assert recorded == measured == {os.path.relpath(r, home): du(r) for r in runs}
    lib = ottolytics.open(db).disk_usage().set_index("project").loc["web"]
    [row] = report["projects"]
    assert lib["run_bytes"] == row["run_bytes"] == sum(du(r) for r in runs)
    assert lib["recorded_bytes"] == sum(recorded.values())
    assert lib["cache_bytes"] == row["cache_bytes"]


def test_exec_records_the_size_usage_measures(home, db, cli):
    assert cli("exec", "--project", "p", "--", sys.executable, "-c",
               "print('x' * 3000)").returncode == 0
    [(run_dir, recorded)] = q(db, "SELECT run_dir, size_bytes FROM runs")
    assert recorded == du(home / run_dir) > 3000
    lib = ottolytics.open(db).disk_usage().iloc[0]
    assert lib["run_bytes"] == lib["recorded_bytes"] == recorded


@pytest.fixture
def sample(tmp_path, monkeypatch):
    home = tmp_path / "sample"
    shutil.copytree(SAMPLE, home, symlinks=True)
    monkeypatch.setenv("OTTO_HOME", str(home))
    return home


def test_on_the_sample_the_plan_frees_what_clean_then_frees(sample, cli):
    report = json.loads(cli("usage", "--json").stdout)
    planned = json.loads(cli("clean", "--dry-run", "--json", "--no-sync").stdout)["plan"]
    assert planned["runs"] and planned["bytes"] <= du(sample)
    from ottolytics.core.formatting import human_bytes
    assert report["recommendations"][0].startswith(
        f"ottolytics clean would free {human_bytes(planned['bytes'])} (measured now; "
        f"{len(planned['runs'])} runs")
    out = cli("clean", "--yes", "--json", "--no-sync")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"]["freed_bytes"] == planned["bytes"]


def test_every_size_printed_says_measured_or_recorded(sample, cli):
    text = cli("clean", "--dry-run", "--no-sync").stdout.decode()
    assert "measured now" in text and "SIZE NOW" in text
    assert "only their rows go" in text           # the sample's CI runs have no directory
    text = cli("usage").stdout.decode()
    assert "measured now" in text.splitlines()[0]
    text = cli("info", "latest").stdout.decode()
    assert "size (recorded)" in text


def test_clean_into_a_store_whose_otto_home_is_elsewhere_keeps_the_rows(home, db, tmp_path,
                                                                          cli):
    runs = build(home, [100, 90, 80])
    synced(home, db)
    elsewhere = tmp_path / "empty-home"
    elsewhere.mkdir()
    out = cli("--db", db, "clean", "--otto-home", elsewhere, "--keep", "30", "--keep-last", "0",
              "--no-sync", "--yes")
    assert out.returncode == 0, out.stderr
    assert b"their files are elsewhere" in out.stderr and b"--forget-missing" in out.stderr
    assert len(q(db, "SELECT uid FROM runs")) == 3 and all(r.exists() for r in runs)
    from ottolytics.manage.clean import plan
    p = plan(db, elsewhere, keep_days=30, keep_last=0)
    assert sorted(p.files_elsewhere) == sorted(u for (u,) in q(db, "SELECT uid FROM runs"))
    forget = plan(db, elsewhere, keep_days=30, keep_last=0, forget_missing=True)
    assert forget.files_elsewhere == []
    out = cli("--db", db, "clean", "--otto-home", elsewhere, "--keep", "30", "--keep-last", "0",
              "--no-sync", "--yes", "--forget-missing")
    assert out.returncode == 0 and q(db, "SELECT count(*) FROM runs") == [(0,)]
    assert all(r.exists() for r in runs)    # the files were never this home's to delete
