"""Commands that only read leave the store alone, and say what is wrong when they
cannot read it: a lock held by another process, a read-only directory, a full
disk, a directory where the file should be."""

import hashlib
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "ottolytics.db"

READ_COMMANDS = [
    ["history"], ["history", "build"], ["list"], ["info", "latest"], ["stats", "--since", ""],
    ["export", "parquet", "{tmp}/pq"], ["export", "prometheus", "{tmp}/metrics.prom"],
    ["report", "weekly", "--week", "2026-W46"], ["clean", "--dry-run"],
]

LOCKED_COMMANDS = [
    ["history"], ["list"], ["info", "latest"], ["stats"], ["usage"],
    ["export", "parquet", "{tmp}/pq"], ["export", "prometheus", "{tmp}/metrics.prom"],
    ["report", "weekly"], ["clean", "--dry-run"], ["sync"],
]

HOLD = textwrap.dedent("""\
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("CREATE TABLE IF NOT EXISTS held(x)")
    print("held", flush=True)
    sys.stdin.read()
""")


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _side_files(path):
    return sorted(p.name for p in Path(path).parent.iterdir()
                  if p.name.startswith(Path(path).name + "-"))


def _argv(argv, tmp_path):
    return [a.replace("{tmp}", str(tmp_path)) for a in argv]


def _one_line_error(proc):
    err = proc.stderr.decode()
    assert b"Traceback" not in proc.stderr, err
    assert err.count("\n") == 1 and err.startswith("ottolytics: error: "), err
    return err


def _wal_store(cli, db):
    for code in (0, 1):
        assert cli("exec", "--project", "web", "--task", "build", "--", sys.executable, "-c",
                   f"raise SystemExit({code})").returncode == code
    assert Path(db).read_bytes()[18] == 2  # WAL mode, as every recorded store
    assert _side_files(db) == []  # the recorder's last close removed them


@pytest.mark.parametrize("argv", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_read_commands_leave_the_sample_untouched(argv, tmp_path, home, cli):
    db = tmp_path / "copy" / "ottolytics.db"
    db.parent.mkdir()
    shutil.copy(SAMPLE, db)
    before = _sha(db)
    proc = cli("--db", db, *_argv(argv, tmp_path))
    assert proc.returncode == 0, proc.stderr.decode()
    assert _sha(db) == before
    assert _side_files(db) == []


@pytest.mark.parametrize("argv", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_read_commands_leave_a_wal_store_untouched(argv, tmp_path, db, cli):
    _wal_store(cli, db)
    before = _sha(db)
    proc = cli(*_argv(argv, tmp_path))
    assert proc.returncode == 0, proc.stderr.decode()
    assert _sha(db) == before
    assert _side_files(db) == []


def test_a_live_writer_is_read_consistently(tmp_path, db, cli):
    """A WAL store being written (its -wal holds the newest runs) reads whole."""
    _wal_store(cli, db)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE projects SET name = 'web2'")
        writer.execute("COMMIT")
        assert os.path.getsize(f"{db}-wal") > 0
        out = cli("list", "--json")
        assert out.returncode == 0
        import json
        assert [r["project"] for r in json.loads(out.stdout)] == ["web2", "web2"]
    finally:
        writer.close()


@pytest.fixture
def locked(tmp_path):
    """Hold the store's lock from another process, as `PRAGMA locking_mode=EXCLUSIVE` does."""
    procs = []

    def hold(path):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
        procs.append(p)
        assert p.stdout.readline() == b"held\n"
        return p
    yield hold
    for p in procs:
        p.stdin.close()
        p.wait(timeout=10)


@pytest.mark.parametrize("argv", LOCKED_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_locked_store_waits_then_fails_in_one_line(argv, tmp_path, db, cli, locked):
    _wal_store(cli, db)
    locked(db)
    started = time.monotonic()
    proc = cli(*_argv(argv, tmp_path), env={"OTTOLYTICS_BUSY_TIMEOUT": "0.5"}, timeout=30)
    waited = time.monotonic() - started
    err = _one_line_error(proc)
    assert proc.returncode == 1
    assert "locked by another process" in err and "OTTOLYTICS_BUSY_TIMEOUT" in err
    assert waited >= 0.5


def test_duckdb_reports_a_lock_taken_after_opening(db, cli, locked):
    """DuckDB's sqlite scanner has its own wait (5 s) and its own error text."""
    import ottolytics
    from ottolytics.store.migrations import StoreLocked
    _wal_store(cli, db)
    h = ottolytics.open(db)
    try:
        locked(db)
        with pytest.raises(StoreLocked, match="locked by another process"):
            h.runs()
    finally:
        h.close()


def test_history_works_in_a_read_only_directory(tmp_path, db, cli, make_readonly):
    _wal_store(cli, db)
    restore = make_readonly(db.parent)
    try:
        proc = cli("history", "--json")
        assert proc.returncode == 0, proc.stderr.decode()
        assert len(__import__("json").loads(proc.stdout)) == 2
        assert cli("info", "latest").returncode == 0
        stats = cli("stats", "--since", "")
        assert stats.returncode == 0 and b"all time: 2 runs" in stats.stdout, stats.stderr
        assert sorted(p.name for p in db.parent.iterdir()) == ["ottolytics", "ottolytics.db"]
        synced = cli("sync")
        err = _one_line_error(synced)
        assert synced.returncode == 1 and "is read-only" in err and "damaged" not in err
    finally:
        restore() if callable(restore) else None


def test_a_full_disk_is_named_not_called_damage(db, cli):
    """Reading a WAL store makes SQLite create its -shm file; with no room for it
    (a file size limit stands in for the full disk) the error says so."""
    _wal_store(cli, db)

    def no_room():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    proc = subprocess.run([sys.executable, "-m", "ottolytics", "history"], capture_output=True,
                          preexec_fn=no_room, timeout=60)
    err = _one_line_error(proc)
    assert proc.returncode == 1
    assert "damaged" not in err and "move this file aside" not in err
    assert "disk" in err and ("full" in err or "write" in err)


@pytest.mark.parametrize("command", [["history"], ["list"], ["info", "latest"]])
def test_db_naming_a_directory_is_one_line(command, tmp_path, cli):
    proc = cli("--db", tmp_path, *command)
    err = _one_line_error(proc)
    assert proc.returncode == 1 and "is a directory" in err


def test_read_commands_do_not_replay_the_spool(db, cli, tmp_path):
    """A read command writes nothing, so spooled events wait for the next
    recording or doctor; history says they are waiting."""
    _wal_store(cli, db)
    spool = Path(f"{db}.spool")
    spool.mkdir(exist_ok=True)
    (spool / "1-1-abcdef.jsonl").write_text('{"spool": 1}\n')
    before = _sha(db)
    proc = cli("history")
    assert proc.returncode == 0
    assert _sha(db) == before and (spool / "1-1-abcdef.jsonl").exists()
    assert b"1 spool file" in proc.stderr and b"doctor" in proc.stderr
