"""cli/render.py: --json, --jsonl and --plain on every command that prints rows."""

import re
import json
import math
from datetime import datetime, timezone

import pytest

from known_history import record
from ottolytics.cli import render
from ottolytics.cli.main import build_parser, main


@pytest.fixture
def store(db):
    return str(record(db))


def _run(capsys, store, *argv):
    code = main(["--db", store, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _rows_printers():
    """Every command whose parser has --json: it prints rows or a document."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    found = {}
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        for inner_name, inner in (nested[0].choices.items() if nested else [(None, p)]):
            flags = {o for a in inner._actions for o in a.option_strings}
            if "--json" in flags:
                found[" ".join(filter(None, (name, inner_name)))] = flags
    return found


def test_every_command_with_json_has_jsonl():
    found = _rows_printers()
    assert {"history", "list", "info", "logs", "grep", "stats", "usage", "clean", "doctor",
            "sync", "export parquet", "report weekly", "flaky", "failures",
            "regressions"} <= set(found)
    assert [c for c, flags in found.items() if "--jsonl" not in flags] == []


def test_every_command_that_prints_tables_has_plain():
    found = _rows_printers()
    for command in ("history", "list", "info", "stats", "usage", "clean", "flaky",
                    "failures", "regressions"):
        assert "--plain" in found[command], command


@pytest.mark.parametrize("argv", [
    ["history"], ["history", "test"], ["list"], ["info", "run007"], ["logs", "run007"],
    ["grep", "Error"], ["stats", "test", "--since", ""], ["doctor"], ["flaky", "--window", "40"],
    ["failures"], ["failures", "--groups"],
])
def test_jsonl_is_one_json_object_per_line(capsys, store, argv):
    code, out, _ = _run(capsys, store, *argv, "--jsonl")
    assert code in (0, 1)
    lines = out.splitlines()
    assert lines, argv
    for line in lines:
        assert isinstance(json.loads(line), dict), line


def test_info_jsonl_is_the_json_tasks_with_their_run(capsys, store):
    _code, out, _ = _run(capsys, store, "info", "run007", "--json")
    doc = json.loads(out)
    _code, out, _ = _run(capsys, store, "info", "run007", "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [{"run_id": doc["run_id"], **t} for t in doc["tasks"]]


def test_doctor_jsonl_is_its_json_checks(capsys, store):
    _code, out, _ = _run(capsys, store, "doctor", "--json")
    checks = json.loads(out)["checks"]
    _code, out, _ = _run(capsys, store, "doctor", "--jsonl")
    assert [json.loads(line) for line in out.splitlines()] == checks


def test_plain_forces_plain_text_on_a_terminal(capsys, store, monkeypatch):
    """On a terminal the table is rich's (box drawing); --plain keeps it plain."""
    import sys
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    _code, rich_out, _ = _run(capsys, store, "list", "--limit", "2")
    _code, plain_out, _ = _run(capsys, store, "list", "--limit", "2", "--plain")
    assert "━" in rich_out or "─" in rich_out or "┃" in rich_out
    assert not any(c in plain_out for c in "━─┃│")
    assert plain_out.splitlines()[0].split() == ["PROJECT", "TIMESTAMP", "TASKS", "STATUS",
                                                 "SIZE"]


def test_json_values_are_json():
    when = datetime(2026, 11, 22, 4, 10, tzinfo=timezone.utc)
    doc = {"a": math.nan, "b": [math.inf, 1.5, -math.inf], "c": when, "d": ("x", None)}
    assert render.json_value(doc) == {"a": None, "b": [None, 1.5, None],
                                      "c": "2026-11-22T04:10:00Z", "d": ["x", None]}


def test_print_json_writes_null_for_nan(capsys):
    render.print_json({"rate": math.nan})
    render.print_jsonl([{"rate": math.inf}])
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    assert json.loads(out.split("\n}\n")[0] + "\n}") == {"rate": None}


def test_sync_usage_clean_and_export_jsonl(capsys, home, db, tmp_path):
    from otto_tree import build
    build(home, [100, 90, 2])
    code, out, _ = _run(capsys, str(db), "sync", "--otto-home", str(home), "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[0]["kind"] == "source" and lines[0]["added"] == 3
    code, out, _ = _run(capsys, str(db), "usage", "--otto-home", str(home), "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["kind"] for r in lines} == {"project", "largest_run"}
    code, out, _ = _run(capsys, str(db), "clean", "--otto-home", str(home), "--keep", "30",
                        "--keep-last", "0", "--dry-run", "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["kind"] for r in lines] == ["run", "run"]
    assert all(r["started_at"].endswith("Z") for r in lines)
    code, out, _ = _run(capsys, str(db), "export", "parquet", str(tmp_path / "pq"), "--jsonl")
    assert code == 0 and len(out.splitlines()) == 1 and "written" in json.loads(out)


def test_stats_jsonl_has_every_record_of_its_json(capsys, store):
    """--jsonl is --json a record per line: the overall figures too, as kind overall."""
    _code, out, _ = _run(capsys, store, "stats", "test", "--since", "", "--json")
    doc = json.loads(out)
    _code, out, _ = _run(capsys, store, "stats", "test", "--since", "", "--jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0] == {"kind": "overall", **doc["overall"]}
    assert [r for r in lines if r["kind"] == "top"] == [{"kind": "top", **r} for r in doc["top"]]
    assert [r for r in lines if r["kind"] == "trend"] == [{"kind": "trend", **r}
                                                          for r in doc["trend"]]


@pytest.mark.parametrize("columns", ["80", "60"])
def test_run_ids_and_times_are_never_cut_on_a_narrow_terminal(db, monkeypatch, columns):
    """A new user's report: `history` on an 80-column terminal showed run ids as
    `06h3f2y…` and times as `2026-12…`, the id you need to copy for `info`.
    Ids and times keep their width; the other columns give way."""
    from conftest import run_cli, run_cli_on_a_tty
    for i in range(3):
        assert run_cli("--db", db, "exec", "--project", "a-project-with-a-long-name",
                       "--task", f"task-{i}", "--", "true").returncode == 0
    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.delenv("NO_COLOR", raising=False)
    import json
    ids = [r["run_id"] for r in json.loads(run_cli("--db", db, "history", "--json").stdout)]
    proc, screen = run_cli_on_a_tty("--db", db, "history")
    assert proc.returncode == 0
    assert "│" in screen  # rich's table, as a terminal gets it
    assert all(i in screen for i in ids), screen
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", screen), screen
