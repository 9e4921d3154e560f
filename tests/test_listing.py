"""history and list: the quick commands, on known data, as tables and JSON."""

import json

from known_history import RUNS, T0, record
from ottolytics.manage.listing import recent_runs, task_history


def test_recent_runs_filters_and_counts(db):
    record(db)
    runs = recent_runs(db, limit=5)
    assert [r["run_id"] for r in runs] == [f"run{i:03d}" for i in range(RUNS - 1, RUNS - 6, -1)]
    assert runs[0]["tasks"] == 4 and runs[0]["tasks_failed"] == 1  # run 39: test fails
    failed = recent_runs(db, limit=100, status="failed")
    assert {r["run_id"] for r in failed} == {f"run{i:03d}" for i in range(RUNS) if i % 4 == 3}
    assert recent_runs(db, project="nope") == []


def test_task_history_and_its_success_rate(db):
    record(db)
    found = task_history(db, "test", limit=8)
    runs = found["runs"]
    assert [r["run_id"] for r in runs] == [f"run{i:03d}" for i in range(39, 31, -1)]
    assert [r["status"] for r in runs[:4]] == ["failed", "success", "success", "success"]
    assert found["summary"] == {"runs": 8, "successes": 6, "failures": 2, "success_rate": 0.75}
    retried = task_history(db, "test", limit=100)["runs"]
    run5 = next(r for r in retried if r["run_id"] == "run005")
    assert run5["attempts"] == 2 and run5["status"] == "success"  # its last attempt
    assert run5["started_at"] > T0 + 5 * 3600
    assert task_history(db, "nope")["summary"]["success_rate"] is None


def test_history_and_list_commands(db, cli):
    record(db)
    text = cli("history", "-n", "2").stdout.decode().splitlines()
    assert text[0].split() == ["TIMESTAMP", "STATUS", "DURATION", "TASKS", "SIZE", "USER",
                               "PROJECT", "RUN"]
    assert "✗ failed" in text[1] and "run039" in text[1] and len(text) == 3
    one = cli("history", "test", "-n", "4")
    out = one.stdout.decode()
    assert "3 of 4 finished runs succeeded (75%)" in out and "EXIT" in out
    doc = json.loads(cli("history", "test", "-n", "4", "--json").stdout)
    assert doc["summary"]["success_rate"] == 0.75 and len(doc["runs"]) == 4
    lines = cli("history", "--status", "failed", "--jsonl").stdout.decode().splitlines()
    assert len(lines) == RUNS // 4 and all(json.loads(x)["status"] == "failed" for x in lines)
    listed = cli("list", "--limit", "3").stdout.decode().splitlines()
    assert listed[0].split() == ["PROJECT", "TIMESTAMP", "TASKS", "STATUS", "SIZE"]
    assert len(listed) == 4 and listed[1].startswith("web")
    rows = json.loads(cli("list", "--limit", "3", "--project", "web", "--json").stdout)
    assert [r["run_id"] for r in rows] == ["run039", "run038", "run037"]
    assert rows[0]["started_at"].endswith("Z")
    assert cli("list", "--limit", "-1").returncode == 2
    assert cli("list", "--limit", "x").returncode == 2   # argparse's message, exit 2


def test_unknown_status_or_project_is_an_error_not_an_empty_history(db, cli):
    record(db)
    for argv in (["history", "--status", "nope"], ["history", "test", "--status", "nope"]):
        proc = cli(*argv)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1 and "--status nope" in err
        assert "success" in err and proc.stdout == b""
    for argv in (["history", "--project", "nope"], ["history", "test", "--project", "nope"],
                 ["list", "--project", "nope"]):
        proc = cli(*argv)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and err.count("\n") == 1, err
        assert "--project nope: no such project" in err and "web" in err
    # a known project with no runs matching the other filters is still an empty answer
    ok = cli("history", "--project", "web", "--status", "interrupted")
    assert ok.returncode == 0 and b"no runs" in ok.stdout


def test_history_since_takes_durations_dates_and_times(db, cli):
    from datetime import datetime, timezone
    record(db)

    def ids(*argv):
        proc = cli("history", "-n", "100", *argv, "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        return [r["run_id"] for r in (doc["runs"] if isinstance(doc, dict) else doc)]
    cut = T0 + 30 * 3600 - 1
    iso = datetime.fromtimestamp(cut, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids("--since", iso) == [f"run{i:03d}" for i in range(39, 29, -1)]
    offset = datetime.fromtimestamp(cut, timezone.utc).astimezone().isoformat()
    assert ids("--since", offset) == ids("--since", iso)
    day = datetime.fromtimestamp(T0 + 39 * 3600, timezone.utc).strftime("%Y-%m-%d")
    midnight = datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp()
    assert ids("--since", day) == [f"run{i:03d}" for i in range(RUNS - 1, -1, -1)
                                   if T0 + i * 3600 >= midnight]
    assert ids("test", "--since", iso) == [f"run{i:03d}" for i in range(39, 29, -1)]
    assert ids("--since", "7d") == []          # the known history is from 2026-09
    bad = cli("history", "--since", "soon")
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1
    assert b"--since" in bad.stderr


def test_since_bare_number_is_unix_seconds_and_nonsense_exits_2(db, cli):
    record(db)

    def ids(*argv):
        proc = cli(*argv, "--json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        return [r["run_id"] for r in (doc["runs"] if isinstance(doc, dict) else doc)]
    cut = int(T0 + 30 * 3600 - 1)
    assert ids("history", "-n", "100", "--since", str(cut)) == \
        [f"run{i:03d}" for i in range(39, 29, -1)]
    for argv in (["history"], ["history", "test"], ["flaky"], ["failures"],
                 ["grep", "x"], ["stats"]):
        for bad in ("nan", "inf", "-inf", "-5", "1e300d"):
            proc = cli(*argv, f"--since={bad}")
            err = proc.stderr.decode()
            assert proc.returncode == 2 and err.count("\n") == 1, (argv, bad, err)
            assert "--since" in err and "SELECT" not in err and "Traceback" not in err


def test_huge_counts_exit_2_with_one_line(db, cli):
    record(db)
    for argv in (["history", "-n", "100000000000000000000"], ["list", "--limit",
                 "100000000000000000000"], ["history", "test", "-n", "100000000000000000000"],
                 ["history", "-n=100000000000000000000"]):
        proc = cli(*argv)
        err = proc.stderr.decode()
        assert proc.returncode == 2 and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err and "100000000000000000000" in err
    ok = cli("history", "-n", "1000000000", "--json")
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == RUNS


def test_no_match_on_a_store_with_runs_says_the_filters_matched_nothing(db, cli):
    record(db)
    for argv, shows in ((["history", "-n", "0"], "-n 0"),
                        (["history", "--since", "7d"], "--since 7d"),
                        (["history", "--project", "web", "--status", "interrupted"],
                         "--status interrupted"),
                        (["list", "--limit", "0"], "--limit 0")):
        proc = cli(*argv)
        out = proc.stdout.decode()
        assert proc.returncode == 0 and "no runs recorded yet" not in out, (argv, out)
        assert "no runs match" in out and shows in out, (argv, out)


def test_no_runs_recorded_yet_only_when_the_store_has_none(db, cli, tmp_path):
    import sqlite3
    record(db, indexes=range(1))
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM tasks")
    conn.execute("DELETE FROM runs")
    conn.commit()
    conn.close()
    proc = cli("history", "--since", "7d")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == "no runs recorded yet"


def test_reading_notes_name_the_spool_and_runs_whose_recorder_is_gone(db):
    import sqlite3
    import time
    import ottolytics
    from ottolytics.manage.listing import reading_notes
    rec = ottolytics.Recorder(db)
    for i in range(5):
        rec.run(project="p", uid=f"stale{i}").start(at=time.time() - 3 * 86400 + i)
    rec.run(project="p", uid="alive").start()   # this process records it: alive
    rec.close()
    runs = recent_runs(db)
    assert reading_notes(db, [r for r in runs if r["run_id"] == "alive"]) == []
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET pid = NULL WHERE uid LIKE 'stale%'")
    conn.commit()
    conn.close()
    spool = db.parent / f"{db.name}.spool"
    spool.mkdir(exist_ok=True)
    (spool / "1-1-abcdef.jsonl").write_text('{"spool": 1}\n')
    notes = reading_notes(db, recent_runs(db))
    assert notes[0] == ("1 spool file of events not yet in the store; the next recording or "
                        "'ottolytics doctor' replays them")
    named = {n.split(" ")[1] for n in notes[1:4]}
    assert len(named) == 3 and named <= {f"stale{i}" for i in range(5)}
    assert all("stored as running, but still running after 24 h" in n for n in notes[1:4])
    assert notes[4:] == ["2 more such runs"]
    assert reading_notes(db, recent_runs(db), spool=False) == notes[1:]


def test_unknown_project_names_the_projects_the_store_has(db):
    import ottolytics
    from ottolytics.manage.listing import unknown_project
    rec = ottolytics.Recorder(db)
    for i in range(12):
        with rec.run(project=f"p{i:02d}"):
            pass
    rec.close()
    assert unknown_project(db, "p03") is None
    assert unknown_project(db, "nope") == ("nope: no such project in the store; it has "
                                           + ", ".join(f"p{i:02d}" for i in range(10))
                                           + " and 2 more")
