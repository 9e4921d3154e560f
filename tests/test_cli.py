import json
import subprocess
import sys

import pytest

from ottolytics import __version__

HEAVY = ("pandas", "duckdb", "pyarrow", "matplotlib", "numpy")


def test_version_and_help(cli):
    v = cli("--version")
    assert v.returncode == 0 and v.stdout.decode().strip() == f"ottolytics {__version__}"
    h = cli("--help")
    assert h.returncode == 0
    for command in ("exec", "run", "history", "doctor", "synth"):
        assert command.encode() in h.stdout


def test_no_command_prints_help_and_exits_2(cli):
    proc = cli()
    assert proc.returncode == 2 and b"usage:" in proc.stdout


@pytest.mark.parametrize("argv", [
    ["exec", "--", "true"],
    ["run", "start"],
    ["history", "-n", "5"],
    ["history", "true", "--json"],
    ["history", "--since", "2026-01-01T00:00Z", "--project", "nope"],
    ["list", "--limit", "5"],
    ["info", "latest"],
    ["usage"],
    ["clean", "--dry-run"],
    ["doctor"],
])
def test_write_path_and_quick_commands_import_nothing_heavy(argv, db):
    code = ("import sys\nfrom ottolytics.cli.main import main\ncode = main(sys.argv[1:])\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    subprocess.run([sys.executable, "-m", "ottolytics", "exec", "--", "true"], check=True)
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_history_table_and_json(db, cli):
    for code in (0, 1):
        cli("exec", "--project", "web", "--task", "build", "--", sys.executable, "-c",
            f"raise SystemExit({code})")
    table = cli("history", "-n", "5")
    assert table.returncode == 0
    lines = table.stdout.decode().splitlines()
    assert lines[0].split() == ["TIMESTAMP", "STATUS", "DURATION", "TASKS", "SIZE", "USER",
                                "PROJECT", "RUN"]
    assert "✗ failed" in lines[1] and "✓ success" in lines[2]  # newest first
    runs = json.loads(cli("history", "--json").stdout)
    assert [r["status"] for r in runs] == ["failed", "success"]
    first = runs[0]
    assert set(first) >= {"run_id", "project", "status", "started_at", "finished_at",
                          "duration_s", "tasks", "tasks_success", "tasks_failed",
                          "tasks_skipped", "tasks_interrupted", "tasks_running",
                          "tasks_pending"}
    assert first["project"] == "web" and first["tasks"] == 1 and first["tasks_failed"] == 1
    assert first["started_at"].endswith("Z") and first["duration_s"] >= 0
    assert len(json.loads(cli("history", "-n", "1", "--json").stdout)) == 1


def test_history_errors_are_one_line(tmp_path, cli):
    missing = cli("--db", tmp_path / "nope.db", "history")
    assert missing.returncode == 1
    assert missing.stderr.decode().count("\n") == 1 and b"no store yet" in missing.stderr
    bad = cli("history", "-n", "-3")
    assert bad.returncode == 2 and b"-n -3" in bad.stderr


def test_history_on_empty_store(db, cli):
    from ottolytics.store.connection import Store
    Store.open(db).close()
    out = cli("history")
    assert out.returncode == 0 and b"no runs recorded yet" in out.stdout
    assert json.loads(cli("history", "--json").stdout) == []


def test_doctor_healthy_and_json(db, cli):
    cli("exec", "--", "true")
    out = cli("doctor", "--json")
    assert out.returncode == 0
    report = json.loads(out.stdout)
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert names[:4] == ["store", "integrity", "schema", "wal"] and "spool" in names


def test_doctor_marks_stale_and_reports_newer_schema(db, cli):
    import sqlite3
    run_id = cli("run", "start").stdout.decode().strip()
    # Two days later nobody has ended it and no process owns it.
    out = cli("doctor", "--max-age", "0s")
    assert out.returncode == 0 and b"marked 1 runs" in out.stdout
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM runs WHERE uid = ?", (run_id,)).fetchone() == (
        "interrupted",)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    bad = cli("doctor")
    assert bad.returncode == 1 and b"newer ottolytics" in bad.stdout
    assert cli("doctor", "--max-age", "soon").returncode == 2


@pytest.mark.parametrize("argv", [["history"], ["history", "build"], ["list"],
                                  ["info", "latest"], ["stats"], ["usage"],
                                  ["clean", "--dry-run", "--no-sync"], ["report", "weekly"],
                                  ["export", "prometheus", "out.prom"]])
def test_a_file_that_is_not_a_store_is_a_one_line_error(tmp_path, argv, cli):
    bad = tmp_path / "home" / "ottolytics.db"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not a database, just text\n" * 40)
    out = cli("--db", bad, *argv, env={"OTTO_HOME": str(bad.parent)}, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert out.stderr.decode().count("\n") == 1 and b"Traceback" not in out.stderr
    assert b"not an SQLite database" in out.stderr
    assert b"move this file aside" not in out.stderr   # e.g. --db /etc/passwd: never that
    assert bad.read_bytes().startswith(b"this is not a database")   # left as it was


@pytest.mark.parametrize("argv", [["history"], ["info", "latest"], ["stats"]])
def test_a_damaged_store_is_called_damaged(tmp_path, argv, cli, db):
    assert cli("exec", "--", "true").returncode == 0
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)   # the schema page, after the file header
    db.write_bytes(bytes(data))
    out = cli(*argv)
    err = out.stderr.decode()
    assert out.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "damaged" in err and "move this file aside" in err


def test_sync_of_a_path_that_does_not_exist_fails(tmp_path, cli, db):
    proc = cli("sync", tmp_path / "nonexistent" / "path")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.count("\n") == 1 and "does not exist" in err
    assert not db.exists()   # nothing was written


ISO_Z = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$"


def _timestamps(doc, names=("started_at", "finished_at", "week_start", "measured_at",
                            "oldest_run", "at", "changed_at", "first_seen", "last_seen")):
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in names and v is not None:
                yield v
            yield from _timestamps(v, names)
    elif isinstance(doc, list):
        for v in doc:
            yield from _timestamps(v, names)


def test_one_timestamp_format_in_all_json_output(db, cli, tmp_path):
    """ISO 8601 UTC with 'Z', and no fraction when it is zero."""
    import re
    from known_history import record
    record(db)
    docs = [json.loads(cli(*argv).stdout) for argv in (
        ["history", "--json"], ["history", "test", "--json"], ["list", "--json"],
        ["info", "latest", "--json"], ["stats", "test", "--since", "", "--json"],
        ["report", "weekly", "--week", "2026-W39", "--json"], ["usage", "--json"],
        ["clean", "--dry-run", "--json", "--keep", "0", "--keep-last", "0"])]
    found = list(_timestamps(docs))
    assert len(found) > 100
    bad = [t for t in found if not (isinstance(t, str) and re.match(ISO_Z, t))]
    assert not bad, bad[:5]
    assert "2026-09-23T05:13:20Z" in found   # run039 started on the second: no fraction
    lines = cli("history", "--jsonl").stdout.decode().splitlines()
    assert all(re.match(ISO_Z, json.loads(x)["started_at"]) for x in lines)


def test_iso_utc():
    from datetime import datetime, timezone
    from ottolytics.core.formatting import iso_utc
    assert iso_utc(1790149999.0) == "2026-09-23T07:53:19Z"
    assert iso_utc(1790149999.25) == "2026-09-23T07:53:19.25Z"
    assert iso_utc(datetime(2026, 9, 23, 6, 33, 19, 123456, timezone.utc)) == \
        "2026-09-23T06:33:19.123456Z"
    assert iso_utc(None) is None and iso_utc(float("nan")) is None


@pytest.mark.parametrize("argv", [
    ["history", "-n", "5"], ["history", "true", "--since", "7d", "--json"],
    ["history", "--project", "nope"], ["list", "--project", "nope"], ["list", "--limit", "5"],
    ["info", "latest"], ["info", "latest", "--json"], ["--db", "/", "history"],
    ["info", "latest", "--jsonl", "--plain"], ["history", "--jsonl"], ["list", "--plain"],
])
def test_quick_commands_import_only_the_standard_library(argv, db, cli):
    code = ("import sys\nbefore = set(sys.modules)\nfrom ottolytics.cli.main import main\n"
            "main(sys.argv[1:])\n"
            "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            "print('NONSTD', sorted(new - set(sys.stdlib_module_names) - {'ottolytics'}), "
            "file=sys.stderr)")
    assert cli("exec", "--", "true").returncode == 0
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert "NONSTD []" in proc.stderr, proc.stderr


@pytest.mark.parametrize("group", ["run", "export", "report"])
def test_a_command_group_without_its_subcommand_is_a_usage_error(group, cli):
    """`ottolytics export` alone shows the group's help and exits 2, as a bare
    `ottolytics` does (it exited 0, as if it had done something)."""
    out = cli(group)
    assert out.returncode == 2
    assert f"usage: ottolytics {group}".encode() in out.stdout


@pytest.mark.parametrize("argv", [
    ["stats", "--since", "-5d"], ["history", "-n", "abc"], ["logs", "--stream", "bogus", "x"],
    ["nope"], ["history", "--bogus"], ["flaky", "--window"],
])
def test_an_argument_error_is_one_line_that_says_what_to_do(argv, cli):
    """A new user's report: argparse printed its usage block, then the error;
    every other error of ottolytics is one line."""
    proc = cli(*argv)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "error:" in err and "--help" in err and not proc.stdout
    if argv[:2] == ["stats", "--since"]:
        assert "--since=VALUE" in err
    if argv == ["flaky", "--window"]:  # a value missing, not one taken for a flag
        assert "=VALUE" not in err
