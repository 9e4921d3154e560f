"""Stores other programs wrote into, and files that are not stores (review-1 items 1, 6, 15).

Text that is not UTF-8 in a row never disables the store nor gets it called
damaged; an empty file given as --db is left alone by every read; doctor's
verdict on another program's database is one line.
"""

import json
import os
import sqlite3

import pytest

from conftest import q

READS = [("history",), ("list",), ("info", "latest"), ("usage",)]
DUCK_READS = [("stats",), ("flaky",), ("failures",), ("grep", "x"),
              ("export", "parquet", "OUT")]


def _store_with_bad_name(db, cli):
    assert cli("exec", "--project", "web", "--", "sh", "-c", "echo x; exit 1").returncode != 0
    assert cli("exec", "--project", "web", "--", "true").returncode == 0
    conn = sqlite3.connect(db)
    conn.execute("UPDATE projects SET name = CAST(X'70ff' AS TEXT)")
    conn.commit()
    conn.close()


def _one_line(out):
    text = (out.stdout + out.stderr).decode(errors="replace")
    assert "Traceback" not in text, text
    return text


@pytest.mark.parametrize("cmd", READS)
def test_quick_reads_show_bytes_that_are_not_utf8_escaped(db, cli, cmd):
    _store_with_bad_name(db, cli)
    out = cli(*cmd)
    text = _one_line(out)
    assert out.returncode == 0, text
    assert "damaged" not in text and "aside" not in text
    assert "p\\xff" in text, text


def test_history_json_keeps_the_escaped_bytes(db, cli):
    _store_with_bad_name(db, cli)
    out = cli("history", "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()] \
        if not out.stdout.lstrip().startswith(b"[") else json.loads(out.stdout)
    assert "p\\xff" in {r["project"] for r in rows}


@pytest.mark.parametrize("cmd", DUCK_READS)
def test_analysis_reads_say_in_one_line_where_the_bad_text_is(db, cli, cmd, tmp_path):
    _store_with_bad_name(db, cli)
    cmd = tuple(str(tmp_path / "out") if c == "OUT" else c for c in cmd)
    out = cli(*cmd)
    text = _one_line(out)
    if out.returncode == 0:  # read correctly, with the bytes escaped
        assert "p\\xff" in text, text
        return
    assert out.returncode == 1, text
    assert text.count("\n") == 1, text
    assert "not UTF-8" in text and "projects.name" in text and "ottolytics doctor" in text
    assert "damaged" not in text and "aside" not in text and "--since" not in text


def test_logs_never_trips_over_bad_text(db, cli):
    _store_with_bad_name(db, cli)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET name = CAST(X'6cff' AS TEXT)")
    conn.commit()
    conn.close()
    out = cli("logs", "latest")
    text = _one_line(out)
    assert "damaged" not in text and "codec" not in text


def test_mcp_tools_read_bad_text_escaped(db, cli):
    _store_with_bad_name(db, cli)
    from ottolytics.mcp.server import HistoryTools
    tools = HistoryTools(db)
    got = tools.list_execution_history()
    assert r'"p\\xff"' in json.dumps(got, ensure_ascii=False)


def test_doctor_finds_bad_text_and_rewrites_it_escaped(db, cli):
    _store_with_bad_name(db, cli)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET name = CAST(X'61fe62' AS TEXT)")
    conn.commit()
    conn.close()
    out = cli("doctor")
    text = out.stdout.decode()
    assert out.returncode == 0, text
    assert "not UTF-8" in text and "projects.name: 1" in text and "tasks.name: 2" in text
    assert "rewrote 3" in text, text
    assert q(db, "SELECT name FROM projects") == [("p\\xff",)]
    assert {r[0] for r in q(db, "SELECT name FROM tasks")} == {"a\\xfeb"}
    again = cli("doctor").stdout.decode()
    assert "rewrote" not in again
    assert cli("stats").returncode == 0


def test_doctor_leaves_a_value_whose_escape_is_taken(db, cli):
    _store_with_bad_name(db, cli)
    assert cli("exec", "--project", "p\\xff", "--", "true").returncode == 0
    out = cli("doctor")
    text = out.stdout.decode()
    assert out.returncode == 1, text
    assert "projects.name" in text and "already" in text
    assert q(db, "SELECT count(*) FROM projects WHERE CAST(name AS BLOB) = X'70ff'") == [(1,)]


def test_the_api_cannot_store_text_that_is_not_utf8(db, tmp_path, monkeypatch):
    """sqlite3 refuses a str that is not UTF-8 (lone surrogates, as os.fsdecode
    makes of such bytes): whatever the recorder does with it, the store holds
    only UTF-8."""
    from ottolytics.store.migrations import invalid_text
    from ottolytics.record.recorder import Recorder
    monkeypatch.setenv("OTTOLYTICS_SPOOL_DIR", str(tmp_path / "spool"))
    with Recorder(db=db).run(project="ok") as run:
        pass
    try:
        with Recorder(db=db).run(project="x\udcff") as run:
            pass
    except Exception:
        pass
    conn = sqlite3.connect(db)
    try:
        assert invalid_text(conn) == {}  # refused (spooled), or stored escaped
        assert ("ok",) in conn.execute("SELECT name FROM projects").fetchall()
    finally:
        conn.close()


# -- item 6: an empty file is not a store, and reading leaves it alone --------------

EMPTY_READS = [("history",), ("list",), ("info", "latest"), ("stats",), ("usage",),
               ("doctor",), ("clean", "--dry-run"), ("export", "parquet", "OUT"),
               ("flaky",), ("failures",)]


@pytest.mark.parametrize("cmd", EMPTY_READS)
def test_reads_leave_an_empty_file_alone(tmp_path, cli, cmd):
    (tmp_path / "d").mkdir()
    empty = tmp_path / "d" / "e.db"
    empty.write_bytes(b"")
    cmd = tuple(str(tmp_path / "out") if c == "OUT" else c for c in cmd)
    out = cli("--db", empty, *cmd)
    text = _one_line(out)
    assert out.returncode == 1, text
    assert text.count("\n") == 1, text
    assert "empty" in text and "not" in text and "store" in text, text
    assert empty.stat().st_size == 0
    assert sorted(os.listdir(tmp_path / "d")) == ["e.db"]


def test_an_empty_sqlite_database_is_not_made_a_store_by_reading(tmp_path, cli):
    bare = tmp_path / "bare.db"
    conn = sqlite3.connect(bare)
    conn.execute("VACUUM")
    conn.close()
    before = bare.read_bytes()
    out = cli("--db", bare, "history")
    text = _one_line(out)
    assert out.returncode == 1 and "not an ottolytics store" in text, text
    assert bare.read_bytes() == before


def test_recording_into_an_empty_file_makes_it_a_store(tmp_path, cli):
    empty = tmp_path / "e.db"
    empty.write_bytes(b"")
    assert cli("--db", empty, "exec", "--", "true").returncode == 0
    assert q(empty, "SELECT count(*) FROM runs") == [(1,)]


# -- item 15: doctor's verdict on another program's database ------------------------

def _otto_like_db(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, cwd TEXT)")
    conn.execute("INSERT INTO runs(cwd) VALUES ('/src')")
    conn.commit()
    conn.close()


def test_doctor_on_another_programs_database_says_so_once(tmp_path, cli):
    otto = tmp_path / "otto.db"
    _otto_like_db(otto)
    out = cli("--db", otto, "doctor")
    text = out.stdout.decode()
    assert out.returncode == 1
    assert text.count("\n") == 1, text
    assert "not an ottolytics store" in text and "ok " not in text and "mv " not in text


@pytest.mark.parametrize("keep", [50, 100, 4096 + 10])
def test_doctor_on_a_truncated_foreign_database_is_coherent(tmp_path, cli, keep):
    otto = tmp_path / "otto.db"
    _otto_like_db(otto)
    with open(otto, "r+b") as f:
        f.truncate(keep)
    out = cli("--db", otto, "doctor")
    text = out.stdout.decode()
    assert out.returncode == 1
    assert text.count("\n") == 1, text
    assert "not an ottolytics store" in text or "not recognisably" in text, text
    assert "aside" not in text and "mv " not in text and "ok " not in text


def test_a_read_of_a_truncated_foreign_database_never_advises_moving_it(tmp_path, cli):
    otto = tmp_path / "otto.db"
    _otto_like_db(otto)
    with open(otto, "r+b") as f:
        f.truncate(4096 + 10)
    out = cli("--db", otto, "history")
    text = _one_line(out)
    assert out.returncode == 1 and text.count("\n") == 1, text
    assert "not an ottolytics store" in text and "aside" not in text


def test_doctor_json_reports_bad_text_it_could_not_rewrite(db, cli, make_readonly):
    _store_with_bad_name(db, cli)
    make_readonly(db)
    out = cli("doctor", "--json")
    assert "Traceback" not in out.stderr.decode(), out.stderr
    assert out.stdout.strip(), out.stderr
    report = json.loads(out.stdout)
    text = [c for c in report["checks"] if c["name"] == "text"]
    assert text and text[0]["ok"] is False and text[0]["value"] == 1
    assert "projects.name: 1" in text[0]["detail"]


def test_mcp_analysis_tools_say_where_the_bad_text_is(db, cli):
    _store_with_bad_name(db, cli)
    from ottolytics.store.migrations import NotUtf8
    from ottolytics.mcp.server import HistoryTools
    with pytest.raises(NotUtf8, match=r"projects\.name.*ottolytics doctor"):
        HistoryTools(db).failure_groups()


ODD_ROWS = {  # a new user's report: each crashed history, list or info with a traceback
    "text start": "UPDATE runs SET started_at = 'yesterday' WHERE uid = 'r2'",
    "text size": "UPDATE runs SET size_bytes = 'big' WHERE uid = 'r2'",
    "no such project": "UPDATE runs SET project_id = 999 WHERE uid = 'r2'",
    "end past any date": "UPDATE runs SET finished_at = 1e308 WHERE uid = 'r2'",
    "start past any date": "UPDATE runs SET started_at = 1e20 WHERE uid = 'r2'",
    "text task start": "UPDATE tasks SET started_at = 'x' WHERE run_id = "
                       "(SELECT id FROM runs WHERE uid = 'r2')",
    "text exit code": "UPDATE tasks SET exit_code = 'x' WHERE run_id = "
                      "(SELECT id FROM runs WHERE uid = 'r2')",
}


@pytest.mark.parametrize("odd", sorted(ODD_ROWS))
def test_quick_reads_show_a_row_of_odd_values_without_a_traceback(db, cli, odd):
    """Rows another program wrote (text in a number column, a time past any date,
    a run whose project row is gone) are shown, with '-' (null in JSON) for what
    is no number or no date: history, list, info and their --json never fail."""
    from ottolytics.record.recorder import Recorder
    rec = Recorder(db)
    for uid in ("r1", "r2", "r3"):
        with rec.run(project="web", uid=uid) as run:
            with run.task("build"):
                pass
    rec.close()
    conn = sqlite3.connect(db)
    conn.execute(ODD_ROWS[odd])
    conn.commit()
    conn.close()
    for args in (("history",), ("history", "--json"), ("list",), ("info", "r2"),
                 ("info", "r2", "--json"), ("history", "build"), ("history", "build", "--json")):
        proc = cli(*args)
        text = _one_line(proc)
        assert proc.returncode == 0, (args, text)
        if args[0] == "history" and "build" not in args:
            assert "r2" in text, (args, text)
    doc = json.loads(cli("info", "r2", "--json").stdout)
    if "start" in odd and "task" not in odd:
        assert doc["started_at"] is None and doc["duration_s"] is None
    if odd == "text size":
        assert doc["size_bytes"] is None
    if odd == "text exit code":
        assert doc["tasks"][0]["exit_code"] is None
    if odd == "no such project":
        assert doc["project"] is None


@pytest.mark.parametrize("mirror", ["on", "off"])
@pytest.mark.parametrize("cmd", [("stats",), ("report", "weekly", "--week", "2026-W47"),
                                 ("export", "prometheus", "OUT"), ("failures",), ("flaky",),
                                 ("regressions",), ("export", "parquet", "DATASET")])
def test_analysis_reads_a_time_past_any_date_as_unknown(db, cli, cmd, tmp_path, mirror,
                                                        monkeypatch):
    """A new user's report: a run started at 1e20 (synced from a directory named
    so, or written by hand) made stats and export prometheus fail in DuckDB,
    "Epoch seconds out of range". The read engine's one conversion of unix
    seconds (sources/base.ts) reads a time outside 0001-9999 as unknown, also
    over the mirror's dictionary-encoded columns, where DuckDB converts every
    value of the dictionary whatever a CASE around the conversion says (a
    review's finding: a store of two runs did not show it)."""
    from ottolytics.tools.synth import synthesize
    monkeypatch.setenv("OTTOLYTICS_MIRROR", mirror)
    synthesize(db, runs=200, tasks_per_run=5, seed=1, days=20)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET started_at = 1e20 WHERE id = 200")
    conn.execute("UPDATE tasks SET started_at = -1e300 WHERE run_id = 199")
    conn.execute("UPDATE tasks SET started_at = 1e20, finished_at = 1e20 + 5 "
                 "WHERE run_id = 198")
    conn.commit()
    conn.close()
    args = [str(tmp_path / "m.prom") if a == "OUT" else str(tmp_path / "ds")
            if a == "DATASET" else a for a in cmd]
    proc = cli(*args)
    text = _one_line(proc)
    assert proc.returncode == 0, text
    import ottolytics
    h = ottolytics.open(db)
    tasks = h.tasks()
    count = lambda where: q(db, f"SELECT count(*) FROM tasks WHERE {where}")[0][0]  # noqa: E731
    assert len(tasks) == count("1")
    assert tasks["started_at"].isna().sum() == count("run_id IN (198, 199)")
    assert tasks["run_started_at"].isna().sum() == count("run_id = 200")
    assert tasks["duration_s"].abs().max() < 1e6
    h.success_rate(by="task", freq="W")
    h.duration_trend(tasks["task"].iloc[0], freq="D")


def test_weekly_report_counts_a_task_of_unknown_start_in_its_runs_week(db, cli):
    """A new user's report: a task whose started_at is text (read as unknown) made
    `report weekly` fail with pandas' "Cannot mask with non-boolean array
    containing NA / NaN values", as exit 2 (bad arguments). Such a task counts in
    its run's week."""
    from ottolytics.record.recorder import Recorder
    from known_history import T0
    rec = Recorder(db)
    for i, uid in enumerate(("r1", "r2")):
        run = rec.run(project="web", uid=uid).start(at=T0 + i * 3600)
        run.task("build").start(at=T0 + i * 3600).finish(0, at=T0 + i * 3600 + 5)
        run.finish(at=T0 + i * 3600 + 6)
    rec.close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE tasks SET started_at = 'x' WHERE run_id = "
                 "(SELECT id FROM runs WHERE uid = 'r2')")
    conn.commit()
    conn.close()
    proc = cli("report", "weekly", "--week", "2026-W39", "--json")
    assert proc.returncode == 0, _one_line(proc)
    rows = json.loads(proc.stdout)
    assert [(r["task"], r["runs"]) for r in rows] == [("build", 2)]
