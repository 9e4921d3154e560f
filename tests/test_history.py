import os
import sqlite3
import subprocess
import sys
import threading

import pandas as pd
import pytest

import ottolytics
from ottolytics.analyze import duck
from ottolytics.store import inprocess
from ottolytics.analyze.history import RUN_COLUMNS, TASK_COLUMNS, TRANSITION_COLUMNS
from known_history import RUNS, T0, record


@pytest.fixture
def known(db):
    return record(db)


def test_frames_columns_and_types(known):
    h = ottolytics.open(known)
    runs, tasks = h.runs(), h.tasks()
    assert list(runs.columns) == RUN_COLUMNS and list(tasks.columns) == TASK_COLUMNS
    assert len(runs) == RUNS and len(tasks) == RUNS * 4 + 1
    assert runs["run_id"].tolist()[:2] == ["run039", "run038"]  # newest first
    for frame, cols in ((runs, ("started_at", "finished_at")),
                        (tasks, ("started_at", "finished_at", "run_started_at"))):
        for c in cols:
            assert str(frame[c].dt.tz) == "UTC"
    assert list(runs["status"].cat.categories) == ["running", "success", "failed", "interrupted"]
    assert list(tasks["status"].cat.categories) == [
        "pending", "running", "success", "failed", "skipped", "interrupted"]
    lint = tasks[tasks.task == "lint"]
    assert (lint["duration_s"] == 1.0).all() and lint["duration_s"].dtype == "float64"
    assert str(tasks["exit_code"].dtype) == "Int64"
    first = runs.set_index("run_id").loc["run000"]
    assert first["started_at"] == pd.Timestamp(T0, unit="s", tz="UTC")
    assert first["project"] == "web" and first["status"] == "success"
    assert runs.set_index("run_id").loc["run003", "status"] == "failed"
    assert runs.set_index("run_id").loc["run005", "status"] == "success"  # the retry passed
    t = h.transitions()
    assert list(t.columns) == TRANSITION_COLUMNS
    assert len(t) == 2 * RUNS + 2 * (RUNS * 4 + 1)


def test_filters_push_down(known):
    h = ottolytics.open(known, since=T0 + 30 * 3600, project="web")
    assert len(h.runs()) == 10 and len(h.tasks()) == 40
    assert set(ottolytics.open(known, task="test", status="failed").tasks()["run_id"]) == {
        f"run{i:03d}" for i in range(RUNS) if i % 4 == 3} | {"run005"}
    assert ottolytics.open(known, until=T0 + 3600).runs()["run_id"].tolist() == ["run000"]
    assert len(ottolytics.open(known, project="nope").tasks()) == 0

    # Read directly, SQLite runs the WHERE: fewer rows cross into DuckDB. Through
    # the mirror, the same clauses filter its views.
    def rows_read(history):
        src = history._source
        sql = src._rel("s0", "tasks", src._tasks_where(history.filters))
        return history._query(lambda r: f"SELECT count(*) AS n FROM {sql}")["n"][0], sql
    from ottolytics.analyze.history import History
    from ottolytics.analyze.sources.sqlite import SqliteSource
    direct = History(SqliteSource([known]))
    all_rows, plain = rows_read(direct)
    few, pushed = rows_read(direct.with_filters(since=T0 + 30 * 3600, project="web"))
    assert (all_rows, few) == (RUNS * 4 + 1, 40)
    assert "s0.tasks" in plain and "sqlite_query" in pushed and "started_at >=" in pushed
    mirrored, clauses = rows_read(h)
    assert mirrored == 40 and "s0_tasks" in clauses and "started_at >=" in clauses
    since = ottolytics.open(known, since="30d")  # relative durations work too
    assert since.filters["since"] > 0


def test_params_are_wide_without_multiplying_rows(known):
    h = ottolytics.open(known)
    wide = h.params()
    assert list(wide.columns) == ["run_id", "branch", "env"] and len(wide) == RUNS
    assert wide.set_index("run_id").loc["run001", "branch"] == "dev"
    runs = h.runs(params=True)
    assert len(runs) == RUNS and {"params.branch", "params.env"} <= set(runs.columns)


def test_sql_over_the_views(known):
    h = ottolytics.open(known)
    df = h.sql("SELECT task, count(*) AS n FROM tasks GROUP BY task ORDER BY task")
    assert df.to_dict("list") == {"task": ["build", "docs", "lint", "test"],
                                  "n": [40, 40, 40, 41]}
    assert h.sql("SELECT count(*) AS n FROM params")["n"][0] == 2 * RUNS
    assert h.sql("SELECT count(*) AS n FROM transitions WHERE reason IS NOT NULL")["n"][0] >= 0


def test_several_stores_read_as_one(tmp_path):
    a = record(tmp_path / "a.db", range(0, 20))
    b = record(tmp_path / "b.db", range(20, RUNS))
    both = record(tmp_path / "all.db")
    split, whole = ottolytics.open([a, b]), ottolytics.open(both)

    def norm(df, keys):
        return df.sort_values(keys).reset_index(drop=True).drop(
            columns=[c for c in ("run_dir", "stdout_path", "stderr_path", "script_path")
                     if c in df])
    pd.testing.assert_frame_equal(norm(split.runs(), ["run_id"]), norm(whole.runs(), ["run_id"]))
    keys = ["run_id", "task", "attempt"]
    pd.testing.assert_frame_equal(norm(split.tasks(), keys), norm(whole.tasks(), keys))
    pd.testing.assert_frame_equal(
        split.success_rate(by="task", freq="W").sort_values(["period", "task"]).reset_index(
            drop=True),
        whole.success_rate(by="task", freq="W").sort_values(["period", "task"]).reset_index(
            drop=True))
    pd.testing.assert_frame_equal(split.failure_groups().drop(columns=["last_run_id"]),
                                  whole.failure_groups().drop(columns=["last_run_id"]))


def test_logs_fragments_and_files(db, home):
    rec = ottolytics.Recorder(db)
    with rec.run(project="p", uid="frag") as run:
        with run.task("gen") as t:
            t.log("one\n")
            t.log("two\n", stream="stderr")
    rec.close()
    logs = ottolytics.open(db).logs("frag")
    assert logs[["task", "stream", "text"]].values.tolist() == [
        ["gen", "stdout", "one\n"], ["gen", "stderr", "two\n"]]
    from conftest import run_cli
    run_cli("exec", "--task", "say", "--", sys.executable, "-c",
            "import sys; print('hello'); print('oops', file=sys.stderr)")
    run_id = ottolytics.open(db, task="say").tasks()["run_id"][0]
    lines = ottolytics.open(db).logs(run_id)
    assert lines[["task", "stream", "text"]].values.tolist() == [
        ["say", "stdout", "hello"], ["say", "stderr", "oops"]]
    assert ottolytics.open(db).grep("oop")[["task", "stream", "line", "text"]].values.tolist() == [
        ["say", "stderr", 1, "oops"]]


def test_reading_while_this_process_records(db):
    """A recorder thread writes the WAL store while History reads it, in one process."""
    import asyncio
    record(db, range(0, 5))
    errors, counts = [], []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                counts.append(len(ottolytics.open(db).tasks()))
            except Exception as exc:  # a crash would take the process down instead
                errors.append(exc)

    async def writer():
        rec = ottolytics.AsyncRecorder(db)
        async with rec.run(project="live") as run:
            assert inprocess.is_open(db)
            for i in range(60):
                async with run.task(f"t{i}"):
                    await asyncio.sleep(0.005)
        await rec.aclose()

    thread = threading.Thread(target=reader)
    thread.start()
    asyncio.run(writer())
    stop.set()
    thread.join()
    assert not errors and counts and counts == sorted(counts)
    assert len(ottolytics.open(db).tasks()) == 5 * 4 + 60
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_extension_loads_offline_and_explains_failures(tmp_path, monkeypatch):
    code = ("import duckdb, ottolytics.analyze.duck as d; c = d.connect(); "
            "print(c.execute(\"select current_setting('autoinstall_known_extensions'), "
            "current_setting('autoload_known_extensions')\").fetchone()); "
            "print(c.execute(\"select install_path from duckdb_extensions() "
            "where extension_name = 'sqlite_scanner'\").fetchone()[0] or d.extension_path())")
    env = dict(os.environ, HOME=str(tmp_path), http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9")  # nowhere to download from
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "(False, False)" in out.stdout and "duckdb_extension_sqlite_scanner" in out.stdout
    assert not (tmp_path / ".duckdb").exists(), "nothing was installed into ~/.duckdb"
    monkeypatch.setattr(duck.duckdb, "__version__", "9.9.9")
    with pytest.raises(duck.ReadError, match=r"pip install 'duckdb-extension-sqlite-scanner==9.9.9'"):
        duck.extension_path()


def test_missing_store_and_newer_store_errors(tmp_path, db):
    with pytest.raises(duck.ReadError, match="no store here"):
        ottolytics.open(tmp_path / "nothing.db")
    record(db, range(1))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="newer ottolytics"):
        ottolytics.open(db)


def test_a_history_left_open_is_closed_at_exit(tmp_path, db):
    """A History nobody closed (a notebook, a script) is closed when the interpreter
    exits, before teardown: DuckDB is never finalized half torn down, and the
    snapshot of a store this process records into (a copy of the whole store) is
    not left in the temporary directory."""
    record(db, range(0, 3))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = ("import sys, ottolytics\n"
            "from ottolytics.store.connection import connect\n"
            "recording = connect(sys.argv[1])\n"        # so History reads a snapshot
            "h = ottolytics.open(sys.argv[1])\n"
            "print(len(h.runs()), len(h.with_filters(status='failed').tasks()))\n")
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(scratch)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert os.listdir(scratch) == []


def test_filtered_reads_survive_many_threads(tmp_path):
    """A filtered read sends several sqlite_query scans of one store into one
    statement; DuckDB 1.5.5's sqlite scanner gives them all the one SQLite
    connection of the transaction, and parallel pipelines used it from two
    threads at once: a SIGSEGV now and then (in grep, in CI), within seconds with
    8 threads. Such statements run on one thread."""
    import shutil
    sample = tmp_path / "sample.db"
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "data", "sample",
                             "ottolytics.db"), sample)
    code = ("import sys, time, ottolytics\n"
            "h = ottolytics.open(sys.argv[1], project='etl')\n"
            "h.sql('SET threads = 16')\n"
            "end = time.monotonic() + 20\n"
            "n = 0\n"
            "while time.monotonic() < end:\n"
            "    h.grep('Error', max_matches=5)\n"
            "    h.sql('SELECT task, count(*) FROM tasks GROUP BY task')\n"
            "    n += 1\n"
            "print(n)\n")
    out = subprocess.run([sys.executable, "-c", code, str(sample)], capture_output=True,
                         text=True, timeout=300,  # the direct read, not the mirror
                         env={**os.environ, "OTTOLYTICS_MIRROR": "off"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout) > 10
