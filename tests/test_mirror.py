"""The columnar mirror of a store (analyze/sources/mirror.py) and the change log
that keeps it up to date (schema v4): never a stale answer, the same answers as a
direct read, no copy of the store in a process that records, and safe when the
cache cannot be written."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

import ottolytics
from ottolytics.analyze import duck
from ottolytics.analyze.history import History
from ottolytics.analyze.sources import mirror as mirror_mod
from ottolytics.analyze.sources.mirror import MirrorSource
from ottolytics.analyze.sources.sqlite import SqliteSource
from ottolytics.record.recorder import Recorder
from ottolytics.store import inprocess

from known_history import T0, record

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "ottolytics.db"


def _sample(tmp_path):
    path = tmp_path / "sample.db"
    shutil.copy(SAMPLE, path)
    return path


def _same(a, b):
    """Frames equal up to row order (and float rounding: a filtered direct read
    sends REAL values through SQLite's text, 15 significant digits)."""
    def ordered(df):
        df = df.copy()
        for column in df.columns:
            if pd.api.types.is_datetime64_any_dtype(df[column]):
                df[column] = (df[column] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        keys = [repr(tuple(str(v) for v in row)) for row in df.itertuples(index=False)]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        return df.iloc[order].reset_index(drop=True)
    pd.testing.assert_frame_equal(ordered(a), ordered(b), check_exact=False, rtol=0,
                                  atol=1e-4)


def _changes(db):
    conn = sqlite3.connect(db)
    try:
        return [r for (r,) in conn.execute("SELECT run_id FROM changes ORDER BY seq")]
    finally:
        conn.close()


# -- the change log ------------------------------------------------------------

def test_the_change_log_names_sealed_runs_and_nothing_while_they_run(db):
    rec = Recorder(db)
    run = rec.run(project="p", uid="r1").start(at=T0)
    assert _changes(db) == [1]                # a new run
    task = run.task("build").start(at=T0)
    task.finish(0, at=T0 + 1)
    assert _changes(db) == [1]                # its tasks while it runs: nothing
    run.finish(at=T0 + 2)
    assert _changes(db) == [1]                # its own end is not a change
    other = rec.run(project="p", uid="r2").start(at=T0 + 10)
    assert _changes(db) == [1, 2]
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("UPDATE tasks SET exit_code = 3 WHERE run_id = 1")
    conn.commit()
    assert _changes(db) == [2, 1]             # a sealed run's task changed: moved last
    conn.execute("INSERT INTO task_deps(task_id, depends_on) SELECT id, 'x' FROM tasks "
                 "WHERE run_id = 1")
    conn.execute("INSERT INTO run_params(run_id, key, value) VALUES (2, 'k', 'v')")
    conn.commit()
    assert _changes(db) == [1, 2] or _changes(db) == [2, 1]
    before = conn.execute("SELECT seq FROM sqlite_sequence").fetchone()[0]
    conn.execute("DELETE FROM runs WHERE id = 1")
    conn.commit()
    assert _changes(db)[-1] == 1
    assert conn.execute("SELECT seq FROM sqlite_sequence").fetchone()[0] > before
    conn.close()
    other.finish(at=T0 + 20)
    rec.close()


def test_a_new_store_has_an_id_of_its_own(tmp_path):
    a, b = record(tmp_path / "a.db", range(1)), record(tmp_path / "b.db", range(1))
    uids = []
    for path in (a, b):
        conn = sqlite3.connect(path)
        uids.append(conn.execute("SELECT value FROM store_info WHERE key = 'uid'").fetchone()[0])
        conn.close()
    assert len(set(uids)) == 2 and all(len(u) == 32 for u in uids)


# -- the mirror's answers --------------------------------------------------------

QUESTIONS = {
    "runs": lambda h: h.runs(params=True),
    "tasks": lambda h: h.tasks(),
    "transitions": lambda h: h.transitions(),
    "params": lambda h: h.params(),
    "success_rate": lambda h: h.success_rate(by="task", freq="W"),
    "duration_stats": lambda h: h.duration_stats(),
    "flaky": lambda h: h.flaky(),
    "failures": lambda h: h.failures(),
    "failure_groups": lambda h: h.failure_groups(),
    "regressions": lambda h: h.regressions(),
    "disk_usage": lambda h: h.disk_usage(),
    "critical_path": lambda h: h.critical_path(h.resolve("latest")),
    "deps": lambda h: h.sql("SELECT * FROM deps"),
    "logs": lambda h: h.sql("SELECT count(*) AS n FROM tasks WHERE stdout_path IS NOT NULL"),
}


@pytest.mark.parametrize("bulk", [False, True], ids=["python", "duckdb"])
def test_the_mirror_answers_as_the_store_does(tmp_path, monkeypatch, bulk):
    """Whichever way the first copy is made (Python's sqlite3 for a small store,
    DuckDB's scanner for a big one), every question gets the direct read's answer,
    whole and filtered."""
    if bulk:
        monkeypatch.setattr(mirror_mod, "BULK_TASKS", 0)
    db = _sample(tmp_path)
    direct = History(SqliteSource([db]))
    mirrored = ottolytics.open(db)
    assert isinstance(mirrored._source, MirrorSource)
    for name, ask in QUESTIONS.items():
        _same(ask(mirrored), ask(direct))
    for f in ({"project": "api", "since": "2026-10-01"}, {"status": "failed"},
              {"task": ["build", "lint"], "until": "2026-10-15"}):
        _same(mirrored.with_filters(**f).tasks(), direct.with_filters(**f).tasks())
        _same(mirrored.with_filters(**f).runs(), direct.with_filters(**f).runs())
    run = direct.runs()["run_id"].iloc[3]
    assert mirrored.resolve(run[:10]) == run
    direct.close()
    mirrored.close()


def _mirror_dir(h):
    return h._source.mirrors[0].dir


def test_never_stale_as_runs_come_change_and_go(db, monkeypatch):
    """New runs, runs still running, a finished run changed, runs deleted: the
    same History and a fresh open() see each at once; sealing and compaction
    (made to happen often here) change nothing in the answers."""
    monkeypatch.setattr(mirror_mod, "SEAL_ROWS", 10)
    monkeypatch.setattr(mirror_mod, "MAX_SEGMENTS", 3)
    record(db, range(0, 4))
    h = ottolytics.open(db)
    assert len(h.runs()) == 4
    rec = Recorder(db)
    for i in range(4, 16):
        record_one(rec, i)
        assert len(h.runs()) == i + 1
        assert len(ottolytics.open(db).runs()) == i + 1
    running = rec.run(project="web", uid="live").start(at=T0 + 99 * 3600)
    running.task("long").start(at=T0 + 99 * 3600)
    assert h.runs().set_index("run_id").loc["live", "status"] == "running"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("UPDATE tasks SET exit_code = 7 WHERE run_id = (SELECT id FROM runs "
                 "WHERE uid = 'run002') AND name = 'lint'")
    conn.execute("DELETE FROM runs WHERE uid IN ('run000', 'run001')")
    conn.commit()
    conn.close()
    tasks = h.tasks()
    assert not tasks["run_id"].isin(["run000", "run001"]).any()
    lint = tasks[(tasks["run_id"] == "run002") & (tasks["task"] == "lint")]
    assert lint["exit_code"].tolist() == [7]
    running.finish(at=T0 + 100 * 3600)
    assert h.runs().set_index("run_id").loc["live", "status"] != "running"
    state = json.loads(Path(_mirror_dir(h), "state.json").read_text())
    assert state["segments"], "the rows were sealed into files"
    direct = History(SqliteSource([db]))
    for name in ("runs", "tasks", "transitions", "success_rate", "deps"):
        _same(QUESTIONS[name](h), QUESTIONS[name](direct))
        _same(QUESTIONS[name](ottolytics.open(db)), QUESTIONS[name](direct))
    rec.close()


def record_one(rec, i):
    t = T0 + i * 3600
    run = rec.run(project="web", uid=f"run{i:03d}").start(at=t)
    run.task("lint").start(at=t).finish(0, at=t + 1)
    run.task("build", deps=["lint"]).start(at=t + 1).finish(i % 3, at=t + 5)
    run.finish(at=t + 6)


def test_a_store_replaced_at_the_same_path_is_copied_again(tmp_path):
    db = record(tmp_path / "s.db", range(0, 6))
    assert len(ottolytics.open(db).runs()) == 6
    os.unlink(db)
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{db}{extra}"):
            os.unlink(f"{db}{extra}")
    record(db, range(10, 12))
    assert sorted(ottolytics.open(db).runs()["run_id"]) == ["run010", "run011"]


def test_a_damaged_state_is_made_again(db):
    record(db, range(0, 3))
    h = ottolytics.open(db)
    assert len(h.tasks()) == 12
    folder = _mirror_dir(h)
    h.close()
    Path(folder, "state.json").write_text("{not json")
    assert len(ottolytics.open(db).tasks()) == 12
    for name in os.listdir(folder):
        if name.startswith("tasks-"):
            os.unlink(os.path.join(folder, name))   # a file it names is gone
    assert len(ottolytics.open(db).tasks()) == 12


def test_no_room_for_the_files_still_answers(db, monkeypatch):
    monkeypatch.setattr(mirror_mod, "SEAL_ROWS", 5)
    record(db, range(0, 3))

    def full(path, rows):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(mirror_mod, "_write", full)
    h = ottolytics.open(db)
    assert len(h.tasks()) == 12
    record(db, range(3, 5))
    assert len(h.tasks()) == 20


def test_off_or_unwritable_cache_reads_the_store_directly(db, monkeypatch, tmp_path):
    record(db, range(0, 2))
    monkeypatch.setenv("OTTOLYTICS_MIRROR", "off")
    assert type(ottolytics.open(db)._source) is SqliteSource
    monkeypatch.delenv("OTTOLYTICS_MIRROR")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory would be")
    monkeypatch.setenv("OTTOLYTICS_CACHE", str(blocked))
    h = ottolytics.open(db)
    assert type(h._source) is SqliteSource and len(h.tasks()) == 8
    monkeypatch.setenv("OTTOLYTICS_CACHE", str(tmp_path / "cache"))
    h = ottolytics.open(db)
    assert isinstance(h._source, MirrorSource) and len(h.tasks()) == 8
    assert str(tmp_path / "cache") in _mirror_dir(h)


def test_odd_rows_are_read_not_refused(db):
    """Rows another program wrote with the wrong types (SQLite keeps whatever it is
    given) read as the frames' types: a number in text as that number, the rest null."""
    record(db, range(0, 2))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET exit_code = 'boom', peak_rss_bytes = '12.0', "
                 "cpu_user_s = 'x' WHERE name = 'lint'")
    conn.commit()
    conn.close()
    lint = ottolytics.open(db, task="lint").tasks()
    assert lint["exit_code"].isna().all()
    assert lint["peak_rss_bytes"].tolist() == [12, 12]


def test_text_that_is_not_utf8_is_one_line(db):
    record(db, range(0, 2))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET script_hash = CAST(x'ff00ff' AS TEXT) WHERE name = 'lint'")
    conn.commit()
    conn.close()
    from ottolytics.store.migrations import NotUtf8
    with pytest.raises(NotUtf8, match="tasks.script_hash"):
        ottolytics.open(db).tasks()


# -- reading in a process that records (issue 17) ----------------------------------

def test_a_recording_process_reads_without_copying_the_store(db, tmp_path, monkeypatch):
    """A process that has the store open for recording reads it through the
    mirror: no snapshot (a whole copy of the store) is ever taken, and DuckDB's
    own SQLite never opens the file."""
    record(db, range(0, 4))
    rec = Recorder(db)
    run = rec.run(project="web", uid="now").start(at=T0 + 50 * 3600)
    assert inprocess.is_open(db)

    def no_snapshot(*args):
        raise AssertionError("the store was copied")
    monkeypatch.setattr(duck.Stores, "_snapshot", no_snapshot)
    attached = []
    real_connect = duck.connect

    def watch(scanner=True):
        con = real_connect(scanner)
        attached.append(con)
        return con
    monkeypatch.setattr(duck, "connect", watch)
    h = ottolytics.open(db)
    assert len(h.runs()) == 5
    run.task("t").start(at=T0 + 50 * 3600).finish(0, at=T0 + 50 * 3600 + 1)
    assert len(h.tasks()) == 17
    for con in attached:
        assert con.execute("SELECT count(*) FROM duckdb_databases() WHERE type = 'sqlite'"
                           ).fetchone()[0] == 0
    run.finish()
    rec.close()


def test_first_copy_of_a_big_store_in_a_recording_process_is_made_by_a_child(
        db, monkeypatch):
    record(db, range(0, 3))
    monkeypatch.setattr(mirror_mod, "BULK_TASKS", 0)
    children = []
    real = mirror_mod._copy_in_child

    def child(path, root):
        children.append(path)
        return real(path, root)
    monkeypatch.setattr(mirror_mod, "_copy_in_child", child)
    rec = Recorder(db)
    rec.run(project="web", uid="now").start(at=T0 + 90 * 3600)
    h = ottolytics.open(db)
    assert len(h.runs()) == 4
    assert children == [str(db)]
    rec.close()


WRITER = """
import sys, time
from ottolytics.record.recorder import Recorder
rec = Recorder(sys.argv[1])
end = time.monotonic() + float(sys.argv[2])
i = 0
while time.monotonic() < end:
    run = rec.run(project="other", uid=f"w{i}").start()
    run.task("t").start().finish(i % 2)
    run.finish()
    i += 1
    time.sleep(0.002)
rec.close()
print(i)
"""


def test_record_and_read_in_one_loop_while_another_process_writes(db, monkeypatch):
    """A thousand times: record a task here, then open and ask; another process
    writes the same store all along. No crash (SIGBUS was the old risk), every
    answer counts what was committed before it, and the store stays whole."""
    monkeypatch.setattr(mirror_mod, "SEAL_ROWS", 2000)  # seals a few times in the loop
    record(db, range(0, 2))
    other = subprocess.Popen([sys.executable, "-c", WRITER, str(db), "600"],
                             stdout=subprocess.PIPE, text=True)
    try:
        rec = Recorder(db)
        run = rec.run(project="here", uid="loop").start()
        h = ottolytics.open(db)
        last_other = 0
        for i in range(1000):
            run.task(f"t{i}").start().finish(0)
            mine = h.with_filters(project="here").tasks()
            assert len(mine) == i + 1
            if i % 100 == 0:
                fresh = ottolytics.open(db)
                n = len(fresh.with_filters(project="other").runs())
                assert n >= last_other
                last_other = n
                fresh.close()
        run.finish()
        rec.close()
    finally:
        other.terminate()
        other.wait(timeout=60)
    assert last_other > 0, "the other process wrote meanwhile"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    direct = History(SqliteSource([db]))
    _same(ottolytics.open(db).tasks(), direct.tasks())


def test_two_processes_keep_one_mirror(db, monkeypatch):
    """Processes that read the same store share its mirror, taking turns to write
    it (.lock); each answers from the state it loaded, whole."""
    monkeypatch.setattr(mirror_mod, "SEAL_ROWS", 5)
    record(db, range(0, 10))
    code = ("import sys, ottolytics\n"
            "from ottolytics.analyze.sources import mirror\n"
            "mirror.SEAL_ROWS = 5\n"
            "for _ in range(20):\n"
            "    assert len(ottolytics.open(sys.argv[1]).tasks()) >= 40\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db)]) for _ in range(2)]
    rec = Recorder(db)
    for i in range(10, 30):
        record_one(rec, i)
    rec.close()
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    _same(ottolytics.open(db).tasks(), History(SqliteSource([db])).tasks())


def test_a_big_clean_is_sealed_and_compacted_away(db, monkeypatch):
    """Deleting many runs masks them, then the masks go into the state and the
    files are compacted without them: later opens do not carry them."""
    monkeypatch.setattr(mirror_mod, "MAX_CHANGED", 5)
    monkeypatch.setattr(mirror_mod, "MAX_DEAD", 8)
    record(db, range(0, 30))
    h = ottolytics.open(db)
    assert len(h.runs()) == 30
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM runs WHERE uid < 'run020'")
    conn.commit()
    conn.close()
    assert len(h.runs()) == 10 and len(h.tasks()) == 40
    state = json.loads(Path(_mirror_dir(h), "state.json").read_text())
    assert state["dead"] == {} and len(state["segments"]) == 1, "compacted"
    _same(ottolytics.open(db).tasks(), History(SqliteSource([db])).tasks())


def test_an_older_copy_put_back_is_not_answered_from_the_newer_files(db, monkeypatch,
                                                                        tmp_path):
    """A backup of the same store (same uid) copied back over it, whose change log
    has since caught up with the mirror's position: its history differs, so the
    mirror is made again instead of answering from the newer files."""
    monkeypatch.setattr(mirror_mod, "SEAL_ROWS", 5)
    record(db, range(0, 5))
    backup = tmp_path / "backup.db"
    conn = sqlite3.connect(db)
    conn.execute(f"VACUUM INTO '{backup}'")
    conn.close()
    record(db, range(5, 10))
    with ottolytics.open(db) as h:
        assert len(h.runs()) == 10                     # sealed with runs 5-9 in its files
    shutil.copyfile(backup, db)                        # the same file, older content
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{db}{extra}"):
            os.unlink(f"{db}{extra}")
    rec = Recorder(db)
    for i in range(20, 32):
        record_one(rec, i)
    rec.close()
    runs = sorted(ottolytics.open(db).runs()["run_id"])
    assert runs == sorted([f"run{i:03d}" for i in range(0, 5)] +
                          [f"run{i:03d}" for i in range(20, 32)])


@pytest.mark.parametrize("bulk", [False, True], ids=["python", "duckdb"])
def test_failures_read_the_signatures_the_mirror_stored(tmp_path, monkeypatch, bulk):
    """Each stderr tail is signed once, when the mirror copies it: a later
    question normalizes nothing, and the signatures are the ones failures
    computes from the tails themselves."""
    from ottolytics.analyze import signatures
    if bulk:
        monkeypatch.setattr(mirror_mod, "BULK_TASKS", 0)
    db = _sample(tmp_path)
    with ottolytics.open(db) as h:
        h.failures()  # the mirror is made
    calls = []
    real = signatures.normalize
    monkeypatch.setattr(signatures, "normalize", lambda text: calls.append(1) or real(text))
    signatures.signed.cache_clear()
    with ottolytics.open(db) as h:
        got = h.failures()
    assert calls == []
    assert got["stderr_tail"].notna().any()
    for tail, sig, msg in zip(got["stderr_tail"], got["signature"], got["message"]):
        if isinstance(tail, str) and tail:
            assert sig == signatures.signature(tail) and msg == signatures.message(tail)
        else:
            assert sig is None or pd.isna(sig)
            assert msg == ""


def test_a_history_over_the_mirror_does_not_load_the_sqlite_scanner(tmp_path, monkeypatch):
    """Loading the scanner took a tenth of a second of every open(); the mirror
    reads its store through Python's sqlite3 and needs it only for a big first
    copy (a connection of its own). A direct read still loads it."""
    db = _sample(tmp_path)
    loaded = ("SELECT count(*) FROM duckdb_extensions() "
              "WHERE loaded AND extension_name = 'sqlite_scanner'")
    with ottolytics.open(db) as h:
        assert len(h.failures()) and len(h.runs())
        assert h._con.execute(loaded).fetchone()[0] == 0
    monkeypatch.setenv("OTTOLYTICS_MIRROR", "off")
    with ottolytics.open(db) as h:
        assert len(h.runs())
        assert h._con.execute(loaded).fetchone()[0] == 1


def test_a_locked_store_is_the_one_line_error_through_the_mirror(tmp_path, monkeypatch):
    """Over the mirror, a store held locked by another process raised sqlite3's
    bare 'database is locked' to a library user (the CLI alone translated it),
    also when a kept answer's check read the store first."""
    from ottolytics.store.migrations import StoreLocked
    db = _sample(tmp_path)
    plain = sqlite3.connect(db)
    plain.execute("PRAGMA journal_mode = DELETE")  # a writer then locks out readers
    plain.commit()
    monkeypatch.setenv("OTTOLYTICS_BUSY_TIMEOUT", "0.2")
    with ottolytics.open(db) as h:
        h.flaky()
        plain.execute("BEGIN EXCLUSIVE")
        try:
            for keep in (True, False):
                h.keep_answers = keep
                with pytest.raises(StoreLocked) as caught:
                    h.flaky()
                assert "\n" not in str(caught.value)
                assert "OTTOLYTICS_BUSY_TIMEOUT" in str(caught.value)
        finally:
            plain.rollback()
        assert len(h.flaky()) > 0  # once released, answered again
    plain.close()


def test_the_largest_integer_beside_text_reads_as_itself(db):
    """A new user's report: exit_code 9223372036854775807 (the largest INTEGER)
    in one row and 'oops' in another made stats, failures and h.tasks() fail with
    "Could not convert 9.223372036854776e+18 with type float": the text made the
    column be coerced, and the coercion went through a float, which rounds
    2**63 - 1 up to 2**63. Integers are kept exact."""
    record(db, range(0, 2))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET exit_code = 'oops' WHERE name = 'lint'")
    conn.execute("UPDATE tasks SET exit_code = 9223372036854775807 WHERE name = 'docs'")
    conn.execute("UPDATE tasks SET peak_rss_bytes = '-9223372036854775808' WHERE name = 'docs'")
    conn.commit()
    conn.close()
    tasks = ottolytics.open(db).tasks()
    docs = tasks[tasks["task"] == "docs"]
    assert docs["exit_code"].tolist() == [2 ** 63 - 1] * 2
    assert docs["peak_rss_bytes"].tolist() == [-2 ** 63] * 2
    assert tasks[tasks["task"] == "lint"]["exit_code"].isna().all()
