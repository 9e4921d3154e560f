"""Store rows are untrusted: names, messages and paths printed to a terminal have
their control characters escaped, so no escape sequence (a window title, colours,
a cleared screen) reaches the terminal. JSON output keeps the exact values."""

import json
import sqlite3
import sys

import pytest

from conftest import run_cli_on_a_tty
from ottolytics.cli.main import main

PROJECT = "web\x1b]0;pwned\x07"
TASK = "build\x1b[31m"
TAIL = "boom \x1b]2;owned\x07 \x9b2J end\x00"
HOSTILE = ("\x1b", "\x07", "\x00", "\x9b")


@pytest.fixture
def hostile(db, cli):
    proc = cli("exec", "--project", PROJECT, "--task", TASK, "--", sys.executable, "-c",
               "raise SystemExit(3)")
    assert proc.returncode == 3
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE runs SET user = ?, args = ?", ("eve\x00\x1bc", "a\x1b[2Jb"))
        (task_id,) = conn.execute("SELECT id FROM tasks").fetchone()
        conn.execute("INSERT OR REPLACE INTO task_stderr(task_id, tail) VALUES (?, ?)",
                     (task_id, TAIL))
        conn.commit()
    finally:
        conn.close()
    return db


def _clean(text):
    for ch in HOSTILE:
        assert ch not in text, (ch, text)


@pytest.mark.parametrize("argv", [["history"], ["history", TASK], ["list"], ["info", "latest"],
                                  ["stats", "--since", ""], ["stats", "--since", "", TASK]],
                         ids=["history", "history TASK", "list", "info", "stats", "stats TASK"])
def test_plain_output_escapes_control_characters(argv, hostile, cli):
    proc = cli(*argv)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    _clean(out)
    assert "\\x1b" in out


def test_info_shows_the_stderr_tail_escaped(hostile, cli):
    out = cli("info", "latest").stdout.decode()
    assert "boom \\x1b]2;owned\\x07 \\x9b2J end\\x00" in out
    assert "eve\\x00\\x1bc" in out and "a\\x1b[2Jb" in out


@pytest.mark.parametrize("argv", [["history"], ["list"], ["info", "latest"]])
def test_rich_output_escapes_control_characters(argv, hostile, monkeypatch, capsys):
    from ottolytics.cli import terminal
    monkeypatch.setattr(terminal, "fancy", lambda stream=None: True)
    assert main(argv) == 0
    out = capsys.readouterr().out
    _clean(out)
    assert "\\x1b" in out


def test_json_output_keeps_the_exact_values(hostile, cli):
    runs = json.loads(cli("history", "--json").stdout)
    assert runs[0]["project"] == PROJECT and runs[0]["user"] == "eve\x00\x1bc"
    info = json.loads(cli("info", "latest", "--json").stdout)
    assert info["tasks"][0]["task"] == TASK and info["tasks"][0]["stderr_tail"] == TAIL


def test_errors_escape_what_the_user_typed(hostile, cli):
    proc = cli("info", "nope\x1b]0;x\x07")
    assert proc.returncode == 1
    _clean(proc.stderr.decode())


def test_printable():
    from ottolytics.core.formatting import printable
    assert printable("plain ünïcode ✓") == "plain ünïcode ✓"
    assert printable("a\x1b[31mb\x07\x00\x7f\x9b") == "a\\x1b[31mb\\x07\\x00\\x7f\\x9b"
    assert printable("tab\tnew\nline\r") == "tab\\tnew\\nline\\r"
    assert printable("caf\udce9") == "caf\\xe9"              # a byte kept by surrogateescape
    assert printable("abc\u202edef") == "abc\\u202edef"       # bidi override
    assert printable(None) is None and printable(3) == 3


def test_weekly_csv_on_a_terminal_is_escaped_and_exact_in_a_pipe(hostile, cli):
    from datetime import datetime
    week = datetime.now().strftime("%G-W%V")
    piped = cli("report", "weekly", "--week", week)
    assert piped.returncode == 0 and PROJECT.encode() in piped.stdout   # data stays exact
    proc, out = run_cli_on_a_tty("report", "weekly", "--week", week)
    assert proc.returncode == 0 and "week,week_start" in out
    _clean(out)
    assert "web\\x1b]0;pwned\\x07" in out
