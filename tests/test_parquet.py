import os
import threading

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

import ottolytics
from known_history import RUNS, record


def norm(df, keys):
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype) or out[c].dtype == object:
            out[c] = out[c].astype("str")
    drop = [c for c in ("date",) if c in out]
    return out.drop(columns=drop).sort_values(keys).reset_index(drop=True)


@pytest.fixture
def exported(db, tmp_path):
    record(db)
    out = tmp_path / "dataset"
    summary = ottolytics.open(db).to_parquet(out)
    return db, out, summary


def test_layout_and_summary(exported):
    _db, out, summary = exported
    assert summary["rows"] == {"runs": RUNS, "tasks": RUNS * 4 + 1, "transitions": 402,
                               "params": 2 * RUNS}
    files = sorted(os.path.relpath(os.path.join(r, f), out)
                   for r, _d, fs in os.walk(out) for f in fs if f.endswith(".parquet"))
    assert files and all(f.split(os.sep)[1].startswith("date=") and
                         f.split(os.sep)[2].startswith("host=") for f in files)
    import pyarrow.parquet as pq
    meta = pq.ParquetFile(os.path.join(out, files[0])).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_read_back_with_duckdb_pyarrow_and_pandas(exported):
    db, out, _summary = exported
    h = ottolytics.open(db)
    src = norm(h.tasks(), ["run_id", "task", "attempt"])
    glob = os.path.join(out, "tasks", "**", "*.parquet")
    via_duck = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").arrow().read_all().to_pandas()
    via_arrow = ds.dataset(os.path.join(out, "tasks"), format="parquet",
                           partitioning="hive").to_table().to_pandas()
    via_pandas = pd.read_parquet(os.path.join(out, "tasks"))
    for frame in (via_duck, via_arrow, via_pandas):
        got = norm(frame[src.columns.tolist()], ["run_id", "task", "attempt"])
        assert len(got) == len(src)
        for column in ("run_id", "task", "attempt", "status", "exit_code", "project", "host"):
            assert got[column].astype(str).tolist() == src[column].astype(str).tolist(), column
        assert got["duration_s"].tolist() == pytest.approx(src["duration_s"].tolist())
        assert (pd.to_datetime(got["started_at"], utc=True) == src["started_at"]).all()


def test_open_on_the_dataset_gives_the_same_answers(exported):
    db, out, _summary = exported
    store, data = ottolytics.open(db), ottolytics.open(out)
    assert type(data).__name__ == "ParquetHistory"
    pd.testing.assert_frame_equal(norm(data.runs(), ["run_id"]), norm(store.runs(), ["run_id"]),
                                  check_dtype=False)
    keys = ["period", "task"]
    pd.testing.assert_frame_equal(
        data.success_rate(by="task", freq="W").sort_values(keys).reset_index(drop=True),
        store.success_rate(by="task", freq="W").sort_values(keys).reset_index(drop=True),
        check_dtype=False)
    pd.testing.assert_frame_equal(data.failure_groups(), store.failure_groups(),
                                  check_dtype=False)
    assert data.critical_path("run010")["task"].tolist() == ["lint", "build", "test"]
    assert data.regressions()["run_id"].tolist() == store.regressions()["run_id"].tolist()
    assert len(data.params()) == RUNS
    assert len(ottolytics.open(out, task="test", status="failed").tasks()) == 11


def test_incremental_rewrites_only_changed_partitions(exported):
    db, out, summary = exported
    again = ottolytics.open(db).to_parquet(out)
    assert again["written"] == 0 and again["unchanged"] == summary["written"]
    stamps = {os.path.join(r, f): os.stat(os.path.join(r, f)).st_mtime_ns
              for r, _d, fs in os.walk(out / "runs") for f in fs}
    record(db, [RUNS + 200])  # one new run, days later: a partition of its own
    third = ottolytics.open(db).to_parquet(out)
    assert third["written"] == 1 and third["rows"]["runs"] == 1
    for path, stamp in stamps.items():
        assert os.stat(path).st_mtime_ns == stamp, "an unchanged partition was rewritten"
    assert len(ottolytics.open(out).runs()) == RUNS + 1


def test_readers_never_see_half_a_file(exported):
    db, out, _summary = exported
    stop = threading.Event()
    seen, errors = [], []

    def reader():
        while not stop.is_set():
            try:
                seen.append(len(pd.read_parquet(out / "tasks")))
            except Exception as exc:  # a partial file would fail to parse
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(RUNS + 1, RUNS + 6):
        record(db, [i])
        ottolytics.open(db).to_parquet(out)
    stop.set()
    thread.join()
    assert not errors and seen and seen == sorted(seen)


def test_hosts_merge_in_one_shared_dataset(tmp_path):
    shared = tmp_path / "shared"
    a = record(tmp_path / "a.db", range(0, 20))
    b = record(tmp_path / "b.db", range(20, RUNS))
    import sqlite3
    conn = sqlite3.connect(b)
    conn.execute("UPDATE runs SET host = 'host-b'")
    conn.commit()
    conn.close()
    ottolytics.open(a).to_parquet(shared)
    ottolytics.open(b).to_parquet(shared)
    merged = ottolytics.open(shared)
    assert len(merged.runs()) == RUNS
    assert sorted(os.listdir(shared / "_signatures")) == sorted(
        [f"{h}.json" for h in {os.uname().nodename, "host-b"}])
    assert merged.success_rate(by="task", freq=None).set_index("task").loc["test", "failures"] == 11
