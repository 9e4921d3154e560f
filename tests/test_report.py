import os
import csv
import io
from datetime import date, datetime

import pytest

import ottolytics
from ottolytics.export.report import COLUMNS, _cell, last_complete_week, parse_week, to_csv_text
from known_history import record
from conftest import run_cli

WEEK = "2026-W39"  # the known history's 40 runs: 2026-09-21 to 09-23 (UTC)


@pytest.fixture
def h(db, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    return ottolytics.open(record(db))


def test_weekly_report_frame(h):
    df = h.weekly_report(WEEK)
    assert list(df.columns) == COLUMNS
    test = df.set_index("task").loc["test"]
    assert (test["runs"], test["successes"], test["failures"], test["skips"]) == (40, 30, 11, 0)
    assert test["success_rate"] == pytest.approx(30 / 41)
    assert test["top_failure_count"] == 10
    assert test["top_failure_message"].startswith("Error: connection refused")
    assert test["flaky_score"] > 0
    assert df["week"].unique().tolist() == [WEEK]
    assert df["week_start"][0].startswith("2026-09-21T00:00:00")
    prev = h.weekly_report("2026-W40")
    assert prev.empty and list(prev.columns) == COLUMNS


def test_week_rules():
    assert parse_week("2026-W47") == date(2026, 11, 16)
    with pytest.raises(ValueError, match="ISO week"):
        parse_week("last week")
    assert last_complete_week(datetime(2026, 11, 22, 12)) == date(2026, 11, 9)  # a Sunday
    assert last_complete_week(datetime(2026, 11, 23, 0, 5)) == date(2026, 11, 16)


def test_csv_format_and_formula_neutralisation():
    import pandas as pd
    df = pd.DataFrame({"task": ["=cmd|'/c calc'!A1", "+1", "-x", "@sum", "\ttab", "ok, \"q\""],
                       "rate": [0.5, -0.25, 1.0, float("nan"), 3.0, 2.0],
                       "when": ["2026-11-16T00:00:00+00:00"] * 6})
    text = to_csv_text(df)
    assert text.endswith("\r\n") and "\r\n" in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["task", "rate", "when"]
    assert [r[0] for r in rows[1:]] == ["'=cmd|'/c calc'!A1", "'+1", "'-x", "'@sum", "'\ttab",
                                        'ok, "q"']
    assert [r[1] for r in rows[1:]] == ["0.5", "-0.25", "1.0", "", "3.0", "2.0"]
    assert _cell(-3) == "-3"  # numbers are never neutralised


def test_cli_writes_atomically_and_header_only_when_empty(h, db, tmp_path):
    out = tmp_path / "r.csv"
    proc = run_cli("report", "weekly", "--week", WEEK, "--out", out)
    assert proc.returncode == 0
    rows = list(csv.reader(open(out, encoding="utf-8", newline="")))
    assert rows[0] == COLUMNS and len(rows) == 5
    empty = tmp_path / "empty.csv"
    proc = run_cli("report", "weekly", "--week", "2030-W01", "--out", empty)
    assert proc.returncode == 0 and b"header only" in proc.stdout
    assert empty.read_bytes() == (",".join(COLUMNS) + "\r\n").encode()
    assert not list(tmp_path.glob(".*.tmp"))
    import json
    data = json.loads(run_cli("report", "weekly", "--week", WEEK, "--json").stdout)
    assert len(data) == 4 and data[0]["week"] == WEEK
    lines = run_cli("report", "weekly", "--week", WEEK, "--jsonl").stdout.splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["project"] == "web"
    bad = run_cli("report", "weekly", "--week", "soon")
    assert bad.returncode == 2 and b"ISO week" in bad.stderr


def test_out_naming_a_directory_is_one_line_and_writes_nothing(h, db, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    for out in (folder, str(folder) + os.sep):
        proc = run_cli("report", "weekly", "--week", WEEK, "--out", out, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        err = proc.stderr.decode()
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert "is a directory" in err
        assert os.listdir(folder) == [] and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert not [n for n in os.listdir("/") if n.endswith(".tmp") and "reports" in n]


def test_out_in_a_missing_directory_is_one_line_and_creates_nothing(h, db, tmp_path):
    out = tmp_path / "nonexistent" / "dir" / "x.csv"
    proc = run_cli("report", "weekly", "--week", WEEK, "--out", out)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "does not exist" in err
    assert not (tmp_path / "nonexistent").exists()


def test_write_csv_replaces_the_file_whole(tmp_path):
    from ottolytics.export.report import write_csv
    import pandas as pd
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "r.csv"
    path.write_text("old")
    write_csv(pd.DataFrame({"a": [1, 2]}), path)
    assert path.read_bytes() == b"a\r\n1\r\n2\r\n"
    assert os.listdir(tmp_path / "out") == ["r.csv"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "no" / "r.csv")


def test_default_week_without_runs_says_which_week_has_them(h, db):
    # The known history ran in 2026-W39; today's last complete week is later.
    proc = run_cli("report", "weekly", env={"TZ": "UTC"})
    assert proc.returncode == 0
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1, err
    assert "no runs in" in err[0] and "last complete week" in err[0]
    assert "--week 2026-W39" in err[0]
    assert proc.stdout.decode() == ",".join(COLUMNS) + "\r\n"


def test_weekly_gives_the_frame_and_says_why_a_week_is_empty(h, db, monkeypatch):
    from ottolytics.export.report import weekly, week_label
    df, hint = weekly(h, WEEK)
    assert hint is None and df.equals(h.weekly_report(WEEK))
    df, hint = weekly(h, "2026-W40")
    assert df.empty and list(df.columns) == COLUMNS and hint == "no runs that week"
    df, hint = weekly(h)  # the known history ran before the last complete week
    assert df.empty and hint == (f"no runs in {week_label(last_complete_week())}, the last "
                                 f"complete week; the newest runs are in {WEEK}: pass --week "
                                 f"{WEEK}")
    empty = ottolytics.open(db).with_filters(project="no such project")
    assert weekly(empty)[1].endswith("; the store has no runs")
    with pytest.raises(ValueError, match="ISO week"):
        weekly(h, "last week")
