import json
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
    current = out / "current"
    assert os.readlink(current) == os.path.join("snapshots", summary["snapshot"])
    files = sorted(os.path.relpath(os.path.join(r, f), current)
                   for r, _d, fs in os.walk(current) for f in fs)
    assert files[0] == "_runs.arrow"   # the writer's index: which chunk holds each run
    files = files[1:]
    assert files and all(f.split(os.sep)[0] in ("runs", "tasks", "transitions", "params") and
                         f.split(os.sep)[1].startswith("date=") and
                         f.split(os.sep)[2].startswith("host=") and f.endswith(".parquet")
                         for f in files)
    import json
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["snapshot"] == summary["snapshot"] and manifest["version"] == 1
    assert sum(e[2] for e in manifest["files"]["tasks"]) == RUNS * 4 + 1
    import pyarrow.parquet as pq
    meta = pq.ParquetFile(os.path.join(current, files[0])).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_read_back_with_duckdb_pyarrow_and_pandas(exported):
    db, out, _summary = exported
    h = ottolytics.open(db)
    src = norm(h.tasks(), ["run_id", "task", "attempt"])
    glob = os.path.join(out, "current", "tasks", "**", "*.parquet")
    via_duck = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").arrow().read_all().to_pandas()
    via_arrow = ds.dataset(os.path.join(out, "current", "tasks"), format="parquet",
                           partitioning="hive").to_table().to_pandas()
    via_pandas = pd.read_parquet(os.path.join(out, "current", "tasks"))
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
    assert type(data).__name__ == "History" and type(data._source).__name__ == "ParquetSource"
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
    runs = out / "current" / "runs"
    stamps = {os.path.relpath(os.path.join(r, f), runs): os.stat(os.path.join(r, f)).st_ino
              for r, _d, fs in os.walk(runs) for f in fs}
    record(db, [RUNS + 200])  # one new run, days later: a partition of its own
    third = ottolytics.open(db).to_parquet(out)
    assert third["written"] == 1 and third["rows"]["runs"] == 1
    for path, inode in stamps.items():  # carried into the new snapshot as hard links
        assert os.stat(runs / path).st_ino == inode, "an unchanged partition was rewritten"
    assert len(ottolytics.open(out).runs()) == RUNS + 1


def test_readers_never_see_half_a_file(exported):
    db, out, _summary = exported
    stop = threading.Event()
    seen, errors = [], []

    def reader():
        while not stop.is_set():
            try:
                seen.append(len(pd.read_parquet(out / "current" / "tasks")))
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
    import json
    manifest = json.load(open(shared / "manifest.json"))
    assert {host for _d, host, _s in manifest["partitions"]} == {os.uname().nodename, "host-b"}
    ottolytics.open(a).to_parquet(shared)   # host a again: host-b's partitions stay
    assert len(ottolytics.open(shared).runs()) == RUNS
    assert merged.success_rate(by="task", freq=None).set_index("task").loc["test", "failures"] == 11


# -- hostile partition values and killed exports ---------------------------------

HOSTS = ["x=y", "ci%2Frunner", "a/b", "café", "sp ace", "q?#*:", "..", "null", "NULL",
         "back\\slash", "tab\there", "[x]{y}^'\"", "__HIVE_DEFAULT_PARTITION__", "unknown"]


def _set_hosts(db, hosts):
    import sqlite3
    conn = sqlite3.connect(db)
    ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id")]
    for i, rid in enumerate(ids):
        conn.execute("UPDATE runs SET host = ? WHERE id = ?", (hosts[i % len(hosts)], rid))
    conn.commit()
    conn.close()


def _hive_dir(out, table):
    return os.path.join(out, "current", table)


def test_partition_values_read_back_exactly_in_every_reader(db, tmp_path):
    record(db)
    _set_hosts(db, HOSTS)
    out = tmp_path / "dataset"
    ottolytics.open(db).to_parquet(out)
    want = sorted(ottolytics.open(db).runs()["host"].astype(str))
    assert sorted(set(want)) == sorted(HOSTS)
    assert sorted(ottolytics.open(out).runs()["host"].astype(str)) == want
    assert sorted(ottolytics.open(out).tasks()["host"].astype(str)) == sorted(
        ottolytics.open(db).tasks()["host"].astype(str))
    runs = _hive_dir(out, "runs")
    via_duck = duckdb.sql(
        f"SELECT host FROM read_parquet('{runs}/**/*.parquet', hive_partitioning = true, "
        f"hive_types = {{'host': VARCHAR}})").fetchall()
    assert sorted(h for (h,) in via_duck) == want
    import pyarrow as pa
    hive = ds.partitioning(pa.schema([("date", pa.string()), ("host", pa.string())]),
                           flavor="hive")
    via_arrow = ds.dataset(runs, format="parquet", partitioning=hive).to_table()
    polars = pytest.importorskip("polars")
    via_polars = polars.scan_parquet(
        f"{runs}/**/*.parquet", hive_partitioning=True,
        hive_schema={"date": polars.String, "host": polars.String}).collect()
    # Hive's own null marker reads back as null in pyarrow and polars, whatever the
    # escaping (they compare after decoding); every other value comes back exactly.
    marker = "__HIVE_DEFAULT_PARTITION__"
    expect = sorted(None if h == marker else h for h in want if h != marker) + [None] * want.count(marker)
    for got in (via_arrow["host"].to_pylist(), via_polars["host"].to_list()):
        assert sorted(h for h in got if h is not None) == sorted(h for h in want if h != marker)
        assert got.count(None) == want.count(marker)


def _synth_store(path, runs=800):
    from ottolytics.tools.synth import synthesize
    synthesize(path, runs, 8, seed=3, days=20)
    return path


def _mark(db, k):
    """Put marker *k* into every partition of every table: a full rewrite whose
    tables say which export they came from."""
    import sqlite3
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET size_bytes = ?", (k,))
    conn.execute("UPDATE tasks SET cpu_user_s = ?", (float(k),))
    conn.execute("UPDATE run_params SET value = ?", (str(k),))
    conn.commit()
    conn.close()


def _state(source):
    """(marker, counts) of what a reader sees; a marker set of more than one
    value, or counts that disagree with the store's, is a mix of two exports."""
    con = duckdb.connect()
    if isinstance(source, str):   # an external Hive reader on DIR/current
        def src(t):
            return (f"read_parquet('{source}/{t}/**/*.parquet', hive_partitioning = true, "
                    f"hive_types = {{'date': VARCHAR, 'host': VARCHAR}})")
        marks = (con.sql(f"SELECT DISTINCT size_bytes FROM {src('runs')}").fetchall(),
                 con.sql(f"SELECT DISTINCT cpu_user_s FROM {src('tasks')}").fetchall(),
                 con.sql(f"SELECT DISTINCT value FROM {src('params')}").fetchall())
        counts = tuple(con.sql(f"SELECT count(*) FROM {src(t)}").fetchone()[0]
                       for t in ("runs", "tasks", "transitions", "params"))
        marks = {int(float(v)) for rows in marks for (v,) in rows}
    else:   # ottolytics.open(DIR) or the store itself
        h = source
        marks = set(h.sql("SELECT DISTINCT CAST(size_bytes AS BIGINT) AS m FROM runs UNION "
                          "SELECT DISTINCT CAST(cpu_user_s AS BIGINT) FROM tasks")["m"])
        counts = tuple(int(h.sql(f"SELECT count(*) AS n FROM {view}")["n"][0])
                       for view in ("runs", "tasks", "transitions"))
    return marks, counts


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX signals")
def test_a_killed_export_leaves_the_previous_dataset_or_the_new_one(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time
    store = _synth_store(tmp_path / "store.db")
    out = tmp_path / "dataset"
    _mark(store, 1)
    ottolytics.open(store).to_parquet(out)
    full = _state(ottolytics.open(store))[1]
    assert _state(ottolytics.open(out)) == ({1}, full)
    assert _state(str(out / "current"))[1][:3] == full
    committed, rng, kills = 1, random.Random(13), 0
    cmd = [sys.executable, "-m", "ottolytics", "--db", str(store), "export", "parquet", str(out)]

    def writing(proc):
        """Wait until the export has begun its new snapshot; seconds it took."""
        t0, before = time.monotonic(), set(os.listdir(out / "snapshots"))
        while proc.poll() is None and not any(
                n.endswith(".tmp") for n in set(os.listdir(out / "snapshots")) - before):
            time.sleep(0.005)
        return time.monotonic() - t0

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    writing(proc)
    t0 = time.monotonic()
    assert proc.wait() == 0
    span = time.monotonic() - t0   # how long the writing part of an export takes
    for k in range(2, 7):
        _mark(store, k)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        writing(proc)   # kill it while it writes: anywhere from its first file to its end
        time.sleep(rng.uniform(0, span))
        proc.send_signal(signal.SIGKILL)
        killed = proc.wait() == -signal.SIGKILL
        kills += killed
        marks, counts = _state(ottolytics.open(out))
        assert counts == full and marks in ({committed}, {k}), (k, marks, counts)
        outside = _state(str(out / "current"))
        assert outside[1][:3] == full and outside[0] in ({committed}, {k}), (k, outside)
        committed = marks.pop()
    assert kills >= 3, "too few exports were killed mid-way to show anything"
    # The next export finishes the job and sweeps what the killed ones left.
    subprocess.run(cmd, check=True, capture_output=True)
    assert _state(ottolytics.open(out)) == ({6}, full)
    left = [os.path.join(r, n) for r, ds_, fs in os.walk(out) for n in ds_ + fs
            if n.endswith(".tmp")]
    assert not left
    assert len(os.listdir(out / "snapshots")) <= 2   # the new one and the one before


def test_a_link_left_behind_by_a_kill_is_brought_up_to_date_by_the_next_export(
        tmp_path, monkeypatch):
    """An export killed between its manifest and its link leaves ``current`` on the
    snapshot before: the next export points it at the manifest's snapshot before it
    writes anything, so a Hive reader of DIR/current sees what was committed or what
    is being written, never an older export (CI saw {1} after exports 2-4)."""
    from ottolytics.analyze import dataset
    store = _synth_store(tmp_path / "store.db", runs=60)
    out = tmp_path / "dataset"
    for k in (1, 2):
        _mark(store, k)
        ottolytics.open(store).to_parquet(out)
    first = sorted(os.listdir(out / "snapshots"))[0]
    committed = json.loads((out / "manifest.json").read_text())["snapshot"]
    assert first != committed
    os.unlink(out / "current")   # export 2 killed after its manifest, before its link
    os.symlink(os.path.join("snapshots", first), out / "current")
    assert _state(str(out / "current"))[0] == {1}

    def killed(*_a, **_k):
        raise KeyboardInterrupt   # export 3 killed before its manifest
    monkeypatch.setattr(dataset, "_write_json_atomic", killed)
    _mark(store, 3)
    with pytest.raises(KeyboardInterrupt):
        ottolytics.open(store).to_parquet(out)
    assert os.readlink(out / "current") == os.path.join("snapshots", committed)
    assert _state(str(out / "current"))[0] == {2}
    monkeypatch.undo()
    ottolytics.open(store).to_parquet(out)
    assert _state(str(out / "current"))[0] == {3}
    assert _state(ottolytics.open(out))[0] == {3}


def test_an_export_sweeps_the_temporary_files_a_killed_one_left(db, tmp_path):
    """A kill during the manifest's write leaves core.files.atomic_write's hidden
    temporary file (.NAME.PID.RANDOM.tmp; older versions' manifest.json.RANDOM.tmp,
    the link's current.RANDOM.tmp); the next export removes them."""
    record(db)
    out = tmp_path / "dataset"
    ottolytics.open(db).to_parquet(out)
    left = [".manifest.json.4242.0123456789ab.tmp", "manifest.json.0123abcd.tmp",
            "current.0123abcd.tmp"]
    for name in left:
        (out / name).write_text("{")
    ottolytics.open(db).to_parquet(out)
    assert not set(left) & set(os.listdir(out))
    assert len(ottolytics.open(out).runs()) == RUNS


def test_an_interrupted_first_export_is_not_a_dataset(db, tmp_path):
    record(db)
    out = tmp_path / "dataset"
    ottolytics.open(db).to_parquet(out)
    os.remove(out / "manifest.json")   # as if killed before the manifest was written
    with pytest.raises(Exception, match="export again"):
        ottolytics.open(out).runs()
    ottolytics.open(db).to_parquet(out)
    assert len(ottolytics.open(out).runs()) == RUNS


@pytest.mark.parametrize("step", ["_write_json_atomic", "_point_current"])
def test_an_export_stopped_between_its_last_steps(db, tmp_path, monkeypatch, step):
    """Stopped after the new snapshot is renamed (before the manifest), or after
    the manifest (before the link): each reader still sees one whole export."""
    from ottolytics.analyze import dataset as parquet
    record(db, range(0, 20))
    out = tmp_path / "dataset"
    first = ottolytics.open(db).to_parquet(out)["snapshot"]
    record(db, range(20, RUNS))

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(parquet, step, stop)
    with pytest.raises(KeyboardInterrupt):
        ottolytics.open(db).to_parquet(out)
    monkeypatch.undo()
    expect = 20 if step == "_write_json_atomic" else RUNS
    assert len(ottolytics.open(out).runs()) == expect
    assert os.readlink(out / "current").endswith(first)   # the link still names a whole one
    assert len(pd.read_parquet(out / "current" / "runs")) == 20
    before = json.load(open(out / "manifest.json"))["snapshot"]
    last = ottolytics.open(db).to_parquet(out)["snapshot"]
    assert len(ottolytics.open(out).runs()) == len(pd.read_parquet(out / "current" / "runs")) == RUNS
    # Swept: the unnamed snapshot and the older ones; kept: the new one and the
    # one before it (for readers that opened it).
    assert sorted(os.listdir(out / "snapshots")) == sorted({before, last})
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_spark_reads_the_partition_values_back_exactly(db, tmp_path):
    import shutil
    if shutil.which("java") is None:
        pytest.skip("no java (apt-get install default-jre-headless)")
    pyspark_sql = pytest.importorskip("pyspark.sql", reason="pyspark not installed")
    record(db)
    _set_hosts(db, HOSTS)
    out = tmp_path / "dataset"
    ottolytics.open(db).to_parquet(out)
    spark = (pyspark_sql.SparkSession.builder.master("local[1]").appName("ottolytics-test")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
             .getOrCreate())
    try:
        rows = spark.read.parquet(str(out / "current" / "runs")).select("host").collect()
    finally:
        spark.stop()
    assert sorted(r["host"] for r in rows) == sorted(ottolytics.open(db).runs()["host"].astype(str))


def test_a_dataset_of_the_older_layout_is_rewritten_and_its_tree_removed(db, tmp_path):
    record(db)
    out = tmp_path / "dataset"
    legacy = out / "runs" / "date=2026-09-21" / "host=h"
    legacy.mkdir(parents=True)
    ottolytics.open(db).runs().head(3).to_parquet(legacy / "data_0.parquet")
    (out / "_signatures").mkdir()
    (out / "_signatures" / "h.json").write_text("{}")
    with pytest.raises(Exception, match="older ottolytics.*export again"):
        ottolytics.open(out)
    ottolytics.open(db).to_parquet(out)
    assert sorted(os.listdir(out)) == [".lock", "current", "manifest.json", "snapshots"]
    assert len(ottolytics.open(out).runs()) == RUNS


def test_a_snapshot_that_does_not_match_its_manifest_is_refused(exported):
    _db, out, summary = exported
    extra = out / "snapshots" / summary["snapshot"] / "runs" / "date=2030-01-01" / "host=x"
    extra.mkdir(parents=True)
    (extra / "data_0.parquet").write_bytes(b"")
    with pytest.raises(Exception, match="does not match its manifest"):
        ottolytics.open(out)


def test_an_export_recovers_when_the_manifest_names_a_missing_snapshot(exported):
    import shutil
    db, out, summary = exported
    shutil.rmtree(out / "snapshots" / summary["snapshot"])
    with pytest.raises(Exception, match="does not match its manifest"):
        ottolytics.open(out)
    again = ottolytics.open(db).to_parquet(out)
    assert again["unchanged"] == 0 and len(ottolytics.open(out).runs()) == RUNS


def test_a_host_too_long_for_a_file_name_is_shortened_not_fatal(db, tmp_path):
    record(db)
    long_host = "h" * 300 + "=é"   # a store row is untrusted: no 255-byte limit there
    _set_hosts(db, ["ok", long_host])
    out = tmp_path / "dataset"
    ottolytics.open(db).to_parquet(out)
    hosts = ottolytics.open(out).runs()["host"].astype(str)
    assert (hosts == "ok").sum() == RUNS // 2
    short = set(hosts[hosts != "ok"])
    assert len(short) == 1 and len(short.pop().encode()) < 255
    assert ottolytics.open(db).to_parquet(out)["written"] == 0   # still incremental


def test_a_format_2_dataset_of_day_partitions_is_read_then_rewritten_as_months(db, tmp_path):
    """Format 2 cut a partition a day; this version reads such a dataset (a day
    sorts after its month, so the month pruning of since keeps it) and its next
    export rewrites this host's partitions as months."""
    import shutil
    record(db)
    out = tmp_path / "dataset"
    ottolytics.open(db).to_parquet(out)
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["format"] == 4
    assert all(len(d) == 7 for d, _h, _s in manifest["partitions"])   # YYYY-MM
    # Make it a format 2 dataset: each month's one chunk moved to a day of that
    # month as data_0.parquet, the manifest without chunks, stores nor index.
    root = out / "snapshots" / manifest["snapshot"]
    for table, entries in manifest["files"].items():
        for i, (month, host, rows, chunk) in enumerate(entries):
            day = month + "-15"
            new = root / table / f"date={day}" / f"host={host}"
            new.mkdir(parents=True, exist_ok=True)
            shutil.move(root / table / f"date={month}" / f"host={host}" / f"{chunk}.parquet",
                        new / "data_0.parquet")
            shutil.rmtree(root / table / f"date={month}")
            entries[i] = [day, host, rows]
    os.remove(root / "_runs.arrow")
    manifest["partitions"] = [[d + "-15", h, "v2:old"] for d, h, _s in manifest["partitions"]]
    manifest["format"] = 2
    del manifest["chunks"], manifest["stores"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    store = ottolytics.open(db)
    assert len(ottolytics.open(out).runs()) == RUNS
    since = store.runs()["started_at"].sort_values().iloc[RUNS // 2]
    assert len(ottolytics.open(out, since=since).runs()) == len(ottolytics.open(db, since=since).runs())
    summary = ottolytics.open(db).to_parquet(out)
    manifest = json.load(open(out / "manifest.json"))
    assert manifest["format"] == 4 and summary["removed"] == summary["written"] > 0
    assert all(len(d) == 7 for d, _h, _s in manifest["partitions"])
    assert len(ottolytics.open(out).runs()) == RUNS


def test_an_export_never_touches_a_directory_that_is_not_a_dataset(db, tmp_path, cli):
    """A new user's report: `export parquet DIR` into a directory of their own
    deleted DIR/snapshots/* and wrote over DIR/manifest.json. Now a non-empty
    directory without a manifest is refused in one line, untouched."""
    record(db)
    mine = tmp_path / "mine"
    (mine / "snapshots" / "keepme").mkdir(parents=True)
    (mine / "snapshots" / "keepme" / "data.csv").write_text("x")
    (mine / "snapshots" / "important.tmp").write_text("y")
    (mine / "notes.txt").write_text("z")
    before = sorted(str(p.relative_to(mine)) for p in mine.rglob("*"))
    proc = cli("--db", db, "export", "parquet", mine)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "not an ottolytics dataset" in err and "empty directory" in err
    assert sorted(str(p.relative_to(mine)) for p in mine.rglob("*")) == before
    assert (mine / "snapshots" / "keepme" / "data.csv").read_text() == "x"


def test_an_export_to_a_file_is_one_line(db, tmp_path, cli):
    record(db)
    target = tmp_path / "a-file"
    target.write_text("mine")
    proc = cli("--db", db, "export", "parquet", target)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "Errno" not in err and "not a directory" in err
    assert target.read_text() == "mine"


def test_an_export_leaves_what_it_did_not_make_in_a_dataset(exported, cli):
    """Inside a dataset only the export's own snapshots and leftovers are swept."""
    db, out, _summary = exported
    foreign = out / "snapshots" / "notes"
    foreign.mkdir()
    (foreign / "a.txt").write_text("kept")
    (out / "snapshots" / "readme.txt").write_text("kept")
    record(db, range(40, 42))
    assert cli("--db", db, "export", "parquet", out).returncode == 0
    assert (foreign / "a.txt").read_text() == "kept"
    assert (out / "snapshots" / "readme.txt").read_text() == "kept"
    assert len([p for p in (out / "snapshots").iterdir()
                if p.name[:6].isdigit()]) <= 2  # its own old snapshots still go


def test_a_first_export_into_an_empty_directory_or_its_own_leftovers_works(db, tmp_path, cli):
    record(db)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("--db", db, "export", "parquet", empty).returncode == 0


@pytest.mark.parametrize("command", [["stats"], ["failures"], ["export", "prometheus", "m.prom"]])
def test_a_directory_that_is_neither_store_nor_dataset_says_pass_the_store(
        db, home, tmp_path, cli, command):
    """A new user's report: `--db OTTO_HOME stats` said to export a dataset into
    OTTO_HOME; `history` said the right thing (pass the store file)."""
    record(db)
    proc = cli("--db", home, *command, cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "is a directory" in err and str(db) in err and "export again" not in err
    with pytest.raises(Exception, match="is a directory"):
        ottolytics.open(home)


def test_an_empty_directory_or_a_killed_first_export_says_what_it_is(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="an empty directory"):
        ottolytics.open(empty)
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / ".lock").write_text("")
    (killed / ".spill-x.tmp").mkdir()
    with pytest.raises(Exception, match="no complete export yet"):
        ottolytics.open(killed)


def test_each_file_is_in_time_order_nulls_last(db, tmp_path):
    """Rows within a file are sorted by time (a run's start, then the task's),
    ties broken by the store's keys, unknown times last: the order readers
    prune row groups by. A run recorded last but started first comes first."""
    import sqlite3

    import pyarrow.parquet as pq
    from known_history import T0
    record(db)
    conn = sqlite3.connect(db)
    last = conn.execute("SELECT id FROM runs WHERE uid = 'run039'").fetchone()[0]
    shift = 39 * 3600 + 100  # run039 now starts 100 s before run000
    conn.execute("UPDATE runs SET started_at = started_at - ?, finished_at = finished_at - ? "
                 "WHERE id = ?", (shift, shift, last))
    conn.execute("UPDATE tasks SET started_at = started_at - ?, finished_at = finished_at - ? "
                 "WHERE run_id = ?", (shift, shift, last))
    conn.execute("UPDATE tasks SET started_at = NULL WHERE name = 'docs' AND run_id = "
                 "(SELECT id FROM runs WHERE uid = 'run010')")
    conn.commit()
    conn.close()
    out = tmp_path / "dataset"
    ottolytics.open(db).to_parquet(out)
    files = {t: sorted((out / "current" / t).rglob("*.parquet"))
             for t in ("runs", "tasks", "transitions")}
    assert all(len(f) == 1 for f in files.values())  # one month, one host: one file each

    def key(v):  # ascending, nulls last
        return (v is None, v if v is not None else 0)

    runs = pq.read_table(files["runs"][0]).to_pylist()
    assert runs[0]["run_id"] == "run039" and runs[0]["started_at"].timestamp() == T0 - 100
    assert [key(r["started_at"]) for r in runs] == sorted(key(r["started_at"]) for r in runs)
    tasks = pq.read_table(files["tasks"][0]).to_pylist()
    assert tasks[0]["run_id"] == "run039"
    pairs = [(key(t["run_started_at"]), key(t["started_at"])) for t in tasks]
    assert pairs == sorted(pairs)
    run10 = [t for t in tasks if t["run_id"] == "run010"]
    assert run10[-1]["task"] == "docs" and run10[-1]["started_at"] is None
    at = [key(r["at"]) for r in pq.read_table(files["transitions"][0]).to_pylist()]
    assert at == sorted(at)
