"""The Parquet export's incremental path (format 4): what changed is read from the
store's change log, only the chunks holding it are rewritten, every other file is
hard-linked from the previous snapshot."""

import json
import os
import sqlite3

import pandas as pd
import pytest

import ottolytics
from known_history import RUNS, T0, record
from ottolytics.analyze import dataset


def _manifest(out):
    with open(out / "manifest.json") as f:
        return json.load(f)


def _files(out):
    """{path under the snapshot: inode} of the current snapshot's Parquet files."""
    root = out / "snapshots" / _manifest(out)["snapshot"]
    return {os.path.relpath(os.path.join(r, f), root): os.stat(os.path.join(r, f)).st_ino
            for r, _d, fs in os.walk(root) for f in fs if f.endswith(".parquet")}


def _chunk_runs(out):
    """{chunk name: sorted run ids} as the runs files of the current snapshot hold them."""
    found = {}
    for path in _files(out):
        if path.startswith("runs" + os.sep):
            rows = pd.read_parquet(out / "current" / path, columns=["run_id"])
            found[os.path.basename(path)[:-len(".parquet")]] = sorted(rows["run_id"])
    return found


def _sql(db, *statements):
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def _rows(source, frame, run, task=None):
    """*frame* ("runs" or "tasks") of *run* (and *task*) read from *source*."""
    df = getattr(ottolytics.open(source), frame)()
    df = df[df["run_id"].astype(str) == run]
    return df[df["task"].astype(str) == task] if task else df


def _same(out, db):
    """The dataset holds exactly what the store holds, table by table."""
    data, store = ottolytics.open(out), ottolytics.open(db)
    for frame, keys in (("runs", ["run_id"]), ("tasks", ["run_id", "task", "attempt"]),
                        ("params", ["run_id"])):
        got = getattr(data, frame)().sort_values(keys).reset_index(drop=True)
        want = getattr(store, frame)().sort_values(keys).reset_index(drop=True)
        assert got["run_id"].astype(str).tolist() == want["run_id"].astype(str).tolist(), frame
        if frame == "tasks":
            assert got["status"].astype(str).tolist() == want["status"].astype(str).tolist()
            assert got["exit_code"].tolist() == want["exit_code"].tolist()
    assert len(data.transitions()) == len(store.transitions())


def test_a_changed_old_run_rewrites_its_chunk_and_only_it(db, tmp_path):
    out = tmp_path / "dataset"
    record(db, range(0, 20))
    ottolytics.open(db).to_parquet(out)
    record(db, range(20, RUNS))
    second = ottolytics.open(db).to_parquet(out)
    assert second["written"] == 1 and second["unchanged"] == 1   # a second chunk
    chunks = _chunk_runs(out)
    old = next(c for c, runs in chunks.items() if "run003" in runs)
    assert len(chunks) == 2 and len(chunks[old]) == 20
    before = _files(out)
    _sql(db, "UPDATE tasks SET exit_code = 7 WHERE name = 'lint' AND run_id = "
             "(SELECT id FROM runs WHERE uid = 'run003')")
    third = ottolytics.open(db).to_parquet(out)
    assert (third["written"], third["removed"], third["unchanged"]) == (1, 1, 1)
    assert third["rows"]["runs"] == 20   # the old chunk's runs, not the store's
    after = _files(out)
    for path, inode in before.items():   # the other chunk: the same files, linked
        if old not in path:
            assert after[path] == inode
    assert not [p for p in after if old in p]
    lint = _rows(out, "tasks", "run003", "lint")
    assert lint["exit_code"].tolist() == [7]
    _same(out, db)
    assert ottolytics.open(db).to_parquet(out)["written"] == 0   # nothing changed since


def test_a_deleted_run_disappears_from_every_table(db, tmp_path):
    out = tmp_path / "dataset"
    record(db)
    ottolytics.open(db).to_parquet(out)
    _sql(db, "DELETE FROM runs WHERE uid = 'run007'")
    summary = ottolytics.open(db).to_parquet(out)
    assert summary["written"] == 1 and summary["rows"]["runs"] == RUNS - 1
    data = ottolytics.open(out)
    assert "run007" not in set(data.runs()["run_id"].astype(str))
    for frame in (data.tasks(), data.params(), data.transitions()):
        assert "run007" not in set(frame["run_id"].astype(str))
    _same(out, db)


def test_a_running_run_is_rewritten_until_it_finishes(db, tmp_path):
    out = tmp_path / "dataset"
    record(db)
    rec = ottolytics.Recorder(db)
    t = T0 + 100 * 3600
    run = rec.run(project="web", uid="live")
    run.start(at=t)
    task = run.task("build").start(at=t)
    try:
        ottolytics.open(db).to_parquet(out)
        assert _manifest(out)["stores"] and list(_manifest(out)["stores"].values())[0]["open"]
        assert _rows(out, "tasks", "live")["status"].astype(str).tolist() == ["running"]
        # writes to a running run are not in the change log: the export reads it anyway
        task.finish(0, at=t + 5)
        ottolytics.open(db).to_parquet(out)
        assert _rows(out, "tasks", "live")["status"].astype(str).tolist() == ["success"]
        assert _rows(out, "runs", "live")["status"].astype(str).tolist() == ["running"]
        run.finish(at=t + 6)
        summary = ottolytics.open(db).to_parquet(out)
        assert summary["written"] == 1
        assert _rows(out, "runs", "live")["status"].astype(str).tolist() == ["success"]
    finally:
        rec.close()
    assert list(_manifest(out)["stores"].values())[0]["open"] == []
    assert ottolytics.open(db).to_parquet(out)["written"] == 0   # finished: no longer read
    _same(out, db)


def test_another_stores_chunks_are_kept(tmp_path):
    shared = tmp_path / "shared"
    a = record(tmp_path / "a.db", range(0, 20))
    b = record(tmp_path / "b.db", range(20, RUNS))
    _sql(b, "UPDATE runs SET host = 'host-b'")
    ottolytics.open(a).to_parquet(shared)
    ottolytics.open(b).to_parquet(shared)
    theirs = {p: i for p, i in _files(shared).items() if "host=host-b" in p}
    assert theirs
    record(a, [RUNS + 1])
    summary = ottolytics.open(a).to_parquet(shared)
    assert summary["written"] == 1 and summary["rows"]["runs"] == 1
    assert {p: i for p, i in _files(shared).items() if "host=host-b" in p} == theirs
    assert len(ottolytics.open(shared).runs()) == RUNS + 1
    assert len(_manifest(shared)["stores"]) == 2


def test_a_partition_keeps_at_most_max_chunks(db, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "MAX_CHUNKS", 3)
    out = tmp_path / "dataset"
    for i in range(8):
        record(db, [i])
        ottolytics.open(db).to_parquet(out)
        chunks = _chunk_runs(out)
        assert len(chunks) <= 3
        assert sorted(r for runs in chunks.values() for r in runs) == [
            f"run{k:03d}" for k in range(i + 1)]
    _same(out, db)


def test_another_store_at_the_same_path_is_exported_whole(db, tmp_path):
    out = tmp_path / "dataset"
    record(db)
    first = ottolytics.open(db).to_parquet(out)
    os.remove(db)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(str(db) + suffix):
            os.remove(str(db) + suffix)
    record(db, range(0, 10))   # a new store (a new uid), the same host
    summary = ottolytics.open(db).to_parquet(out)
    assert summary["removed"] == first["written"] and summary["rows"]["runs"] == 10
    assert len(ottolytics.open(out).runs()) == 10
    assert len(_manifest(out)["stores"]) == 1


def test_an_export_stopped_before_its_manifest_leaves_the_change_for_the_next(
        db, tmp_path, monkeypatch):
    out = tmp_path / "dataset"
    record(db)
    ottolytics.open(db).to_parquet(out)
    _sql(db, "UPDATE tasks SET exit_code = 9 WHERE name = 'docs' AND run_id = "
             "(SELECT id FROM runs WHERE uid = 'run011')")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "_write_json_atomic", stop)
    with pytest.raises(KeyboardInterrupt):
        ottolytics.open(db).to_parquet(out)
    monkeypatch.undo()
    docs = _rows(out, "tasks", "run011", "docs")
    assert docs["exit_code"].tolist() == [0]   # the previous snapshot, whole
    ottolytics.open(db).to_parquet(out)
    docs = _rows(out, "tasks", "run011", "docs")
    assert docs["exit_code"].tolist() == [9]
    _same(out, db)


def test_rows_are_sorted_by_time_within_each_file(db, tmp_path):
    import pyarrow.parquet as pq
    out = tmp_path / "dataset"
    record(db, range(RUNS - 1, -1, -1))   # recorded newest first
    ottolytics.open(db).to_parquet(out)
    for path in _files(out):
        table = path.split(os.sep)[0]
        column = {"runs": "started_at", "tasks": "run_started_at", "transitions": "at"}.get(table)
        if column:
            values = pq.read_table(out / "current" / path, columns=[column])[column].to_pylist()
            assert values == sorted(values), path


@pytest.mark.parametrize("mirror", ["on", "off"])
def test_text_that_is_not_utf8_stops_the_export_naming_where(db, tmp_path, monkeypatch, mirror):
    from ottolytics.store.migrations import NotUtf8
    monkeypatch.setenv("OTTOLYTICS_MIRROR", mirror)
    out = tmp_path / "dataset"
    record(db)
    ottolytics.open(db).to_parquet(out)
    _sql(db, "UPDATE tasks SET script_hash = CAST(X'70ff' AS TEXT) WHERE id = 3")
    with pytest.raises(NotUtf8, match="tasks.script_hash"):
        ottolytics.open(db).to_parquet(out)
    assert len(ottolytics.open(out).tasks()) == RUNS * 4 + 1   # the previous snapshot


def test_an_export_of_many_batches_and_chunks_holds_the_same_rows(db, tmp_path, monkeypatch):
    """Small batches and chunks (the 10M path: the dependency rows sorted once
    into a file, read a range per batch) give the same dataset as one batch."""
    record(db)
    one = tmp_path / "one"
    ottolytics.open(db).to_parquet(one)
    monkeypatch.setattr(dataset, "BATCH_RUNS", 6)
    monkeypatch.setattr(dataset, "CHUNK_RUNS", 4)
    many = tmp_path / "many"
    summary = ottolytics.open(db).to_parquet(many)
    assert summary["written"] == RUNS // 4
    _same(many, db)
    a, b = ottolytics.open(one), ottolytics.open(many)
    deps = "SELECT run_id, task, attempt, depends_on FROM deps ORDER BY ALL"
    assert a.sql(deps).values.tolist() == b.sql(deps).values.tolist()
    assert len(a.sql(deps)) == RUNS * 3 + 1
    assert b.critical_path("run010")["task"].tolist() == ["lint", "build", "test"]


def test_hive_readers_read_every_chunk_of_a_partition(db, tmp_path):
    import duckdb
    import pyarrow.dataset as ds
    out = tmp_path / "dataset"
    for part in (range(0, 15), range(15, 30), range(30, RUNS)):
        record(db, part)
        ottolytics.open(db).to_parquet(out)
    assert len(_chunk_runs(out)) == 3   # one partition, three files
    tasks = out / "current" / "tasks"
    want = RUNS * 4 + 1
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{tasks}/**/*.parquet', "
                      "hive_partitioning = true)").fetchone()[0] == want
    assert ds.dataset(tasks, format="parquet", partitioning="hive").count_rows() == want
    assert len(pd.read_parquet(tasks)) == want
    polars = pytest.importorskip("polars")
    assert polars.scan_parquet(f"{tasks}/**/*.parquet", hive_partitioning=True).select(
        polars.len()).collect().item() == want
