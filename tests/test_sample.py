"""The sample generator: its planted stories, and data/sample reproduced exactly."""

import os
import re
import sqlite3
from pathlib import Path

import pytest

import ottolytics
from ottolytics.tools.sample import BUMP_DATE, FIX_DATE, REGRESSION_DATE, generate

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "data" / "sample"
OTTO_PATH = re.compile(r"'[^']*/([^/']+-[0-9a-f]{8}/)")
WALL_CLOCK = {"schema_migrations": {"applied_at"}, "sync_state": {"synced_at"},
              "store_info": {"value"}}  # store_info.uid: made at random once per store


def _tables(db, home):
    """Every table's rows, sorted; wall-clock columns out, the home's path neutral."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        keep = [c for c in cols if c not in WALL_CLOCK.get(table, ())]
        rows = conn.execute(f"SELECT {', '.join(keep)} FROM {table}").fetchall()
        # otto.db holds absolute paths of wherever the sample was generated
        out[table] = sorted(OTTO_PATH.sub(r"'<home>/\1", repr(r).replace(str(home), "<home>"))
                            for r in rows)
    conn.close()
    return out


def _files(home):
    found = {}
    for path in sorted(Path(home).rglob("*")):
        rel = str(path.relative_to(home))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_file() and not rel.endswith((".db", "-wal", "-shm")):
            found[rel] = ("file", path.read_bytes())
    return found


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "home"
    generate(out)
    return out


def test_the_seed_reproduces_data_sample_exactly(fresh):
    assert COMMITTED.is_dir(), "data/sample is missing: run ottolytics sample data/sample"
    assert _files(fresh) == _files(COMMITTED)
    for db in ("ottolytics.db", "otto.db"):
        assert _tables(fresh / db, fresh) == _tables(COMMITTED / db, COMMITTED), db
    size = sum(p.stat().st_size for p in COMMITTED.rglob("*") if p.is_file())
    assert size < 3_000_000  # a few MB at most


def test_another_seed_gives_another_history(tmp_path, fresh):
    generate(tmp_path / "other", seed=7)
    assert _tables(tmp_path / "other" / "ottolytics.db", tmp_path / "other") != _tables(
        fresh / "ottolytics.db", fresh)


def test_the_planted_stories_are_found(fresh):
    h = ottolytics.open(fresh / "ottolytics.db")
    runs = h.runs()
    assert runs["project"].nunique() >= 3
    assert (runs["started_at"].max() - runs["started_at"].min()).days >= 90
    reg = h.regressions()
    top = reg.iloc[0]
    assert (top["project"], top["task"], top["direction"]) == ("api", "build", "slower")
    assert abs((top["changed_at"] - REGRESSION_DATE).total_seconds()) < 86400
    flaky = h.flaky()
    assert ("web", "test:integration") in set(zip(flaky["project"].head(2), flaky["task"].head(2)))
    burst = h.with_filters(since=BUMP_DATE.timestamp(), until=FIX_DATE.timestamp())
    groups = burst.failure_groups()
    top = groups.iloc[0]
    assert "ImportError (pandas 3.0.0)" in top["message"] and top["count"] >= 5  # the burst
    before = h.with_filters(project=["etl"], until=BUMP_DATE.timestamp()).failure_groups()
    assert not before["message"].str.contains("ImportError").any()
    assert (runs["status"] == "interrupted").sum() == 1
    tasks = h.tasks()
    assert (tasks["status"] == "skipped").sum() > 100
    assert (tasks.groupby(["run_id", "task"])["attempt"].max() > 1).any()   # retries
    assert tasks["task"].str.startswith("test:").any()                      # foreach suites
    params = h.params()
    assert set(params["trigger"].dropna()) == {"nightly", "push"}  # otto runs have none


def test_otto_project_as_otto_leaves_it(fresh):
    """mobile is written as otto writes it: auto-prune deleted the otto.db rows of
    its old runs and left every directory (and so every cache file) in place; sync
    imports all of them, the old ones from their files."""
    from ottolytics.manage.usage import usage
    report = usage(fresh / "ottolytics.db", fresh, record=False)
    mobile = next(p for p in report["projects"] if p["project"] == "mobile")
    assert mobile["runs"] == 31 and mobile["orphan_cache_bytes"] == 0
    assert not (fresh / ".last_prune").exists() or (fresh / ".last_prune").is_file()
    conn = sqlite3.connect(fresh / "otto.db")
    rows = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    hosts = conn.execute("SELECT DISTINCT hostname FROM runs").fetchall()
    conn.close()
    assert 10 <= rows < 31 and hosts == [(None,)]
    h = ottolytics.open(fresh / "ottolytics.db")
    runs = h.with_filters(project=["mobile"]).runs().sort_values("started_at")
    assert len(runs) == 31 and set(runs["status"]) <= {"success", "failed"}
    tasks = h.with_filters(project=["mobile"]).tasks()
    lint = tasks[tasks["task"] == "lint"]
    assert (lint["status"] == "skipped").sum() >= 3          # up to date: no trace but build's
    assert set(tasks.loc[tasks["status"] == "failed", "task"]) <= {"test:unit", "test:ui"}
    assert runs["size_bytes"].iloc[-1] > 2 * runs["size_bytes"].iloc[0]   # logs grow


def test_the_sample_does_not_depend_on_the_host_that_makes_it(tmp_path, monkeypatch, fresh):
    """otto.db's hostname is NULL, so sync takes the host it runs on; the sample
    names the mac mini that ran mobile, wherever it is generated."""
    import ottolytics.sources.otto as otto_importer
    monkeypatch.setattr(otto_importer, "hostname", lambda: "somewhere-else")
    generate(tmp_path / "elsewhere")
    assert _tables(tmp_path / "elsewhere" / "ottolytics.db", tmp_path / "elsewhere") == \
        _tables(fresh / "ottolytics.db", fresh)


def test_the_sample_ignores_the_users_own_otto_db(tmp_path, monkeypatch, fresh):
    """Generating the sample where a real otto has written ~/.otto/otto.db (and
    OTTO_DB_PATH points elsewhere) gives the same sample."""
    from ottolytics.tools.otto_layout import Task, make_run
    user = tmp_path / "user"
    monkeypatch.setenv("HOME", str(user))
    make_run(tmp_path / "real-otto-home", "/src/mobile", 1_795_140_900, [Task("lint")],
             db_path=user / ".otto" / "otto.db")
    monkeypatch.setenv("OTTO_DB_PATH", str(user / ".otto" / "otto.db"))
    generate(tmp_path / "here")
    assert _tables(tmp_path / "here" / "ottolytics.db", tmp_path / "here") == \
        _tables(fresh / "ottolytics.db", fresh)
