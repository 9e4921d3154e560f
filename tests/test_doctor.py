"""doctor on stores it cannot use: locked, not ours, not a file (issues 13 and 14)."""

import os
import subprocess
import sys
import time

import pytest


def _hold_exclusive(db, journal_mode):
    """Another process holding the store with locking_mode=EXCLUSIVE."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        f"c.execute('PRAGMA journal_mode={journal_mode}')\n"
        "c.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
        "c.execute('BEGIN EXCLUSIVE'); c.execute('UPDATE runs SET status = status')\n"
        "c.execute('COMMIT')\n"
        "print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"held\n"
    return proc


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_a_locked_store_waits_then_says_what_to_do_in_one_line(db, cli, journal_mode):
    assert cli("exec", "--", "true").returncode == 0
    holder = _hold_exclusive(db, journal_mode)
    try:
        start = time.monotonic()
        out = cli("doctor", env={"OTTOLYTICS_BUSY_TIMEOUT": "1"})
        took = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 1
    assert took >= 1
    text = (out.stdout + out.stderr).decode()
    assert "Traceback" not in text and text.count("\n") == 1, text
    assert "locked by another process" in text and "OTTOLYTICS_BUSY_TIMEOUT" in text
    assert " mv " not in text and "ottolytics doctor" not in text
    assert cli("doctor").returncode == 0  # and fine once the lock is gone


def test_a_file_that_is_not_ours_is_never_to_be_moved(tmp_path, cli):
    other = tmp_path / "passwd"
    other.write_text("root:x:0:0:root:/root:/bin/bash\n")
    out = cli("--db", other, "doctor")
    assert out.returncode == 1
    text = out.stdout.decode()
    assert "mv " not in text and "not an ottolytics store" in text and "--db" in text
    assert other.read_text().startswith("root:")
    # an SQLite database of another program is not ours either
    import sqlite3
    theirs = tmp_path / "theirs.sqlite"
    conn = sqlite3.connect(theirs)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    text = cli("--db", theirs, "doctor").stdout.decode()
    assert "mv " not in text and "not an ottolytics store" in text


def test_a_damaged_store_of_ours_may_be_moved_aside(db, cli):
    assert cli("exec", "--", "true").returncode == 0
    with open(db, "r+b") as f:  # keep the header (it names us), damage the pages after it
        f.seek(100)
        f.write(os.urandom(8000))
    out = cli("doctor")
    assert out.returncode == 1
    assert f"mv {db} {db}.corrupt".encode() in out.stdout


def test_a_directory_is_not_a_store(tmp_path, cli):
    out = cli("--db", tmp_path, "doctor")
    assert out.returncode == 1
    text = out.stdout.decode()
    assert f"ok   store      {tmp_path}" not in text
    assert "is a directory, not a store" in text and "mv " not in text
    assert f"--db {tmp_path / 'ottolytics.db'}" in text


def test_only_a_file_named_like_the_store_may_be_moved_when_its_header_is_gone(tmp_path, cli):
    named = tmp_path / "ottolytics.db"
    named.write_bytes(b"garbage" * 100)
    assert f"mv {named} {named}.corrupt".encode() in cli("--db", named, "doctor").stdout
    other = tmp_path / "notes.db"
    other.write_bytes(b"garbage" * 100)
    out = cli("--db", other, "doctor").stdout
    assert b"mv " not in out and b"not an ottolytics store" in out
