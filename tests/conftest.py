"""Shared fixtures: an isolated OTTO_HOME per test, and helpers to run the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Every test gets its own OTTO_HOME, HOME and state dir; nothing touches ~/.otto
    (otto keeps otto.db in $HOME/.otto whatever OTTO_HOME says)."""
    home = tmp_path / "otto-home"
    home.mkdir()
    monkeypatch.setenv("OTTO_HOME", str(home))
    (tmp_path / "user-home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.delenv("OTTO_DB_PATH", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for var in ("OTTOLYTICS_DB", "OTTOLYTICS_RUN_ID", "OTTOLYTICS_SPOOL_DIR",
                "OTTOLYTICS_BUSY_TIMEOUT", "OTTOLYTICS_MAX_RUN_AGE", "OTTOLYTICS_CACHE",
                "OTTOLYTICS_MIRROR", "OTTOLYTICS_LOCK_WAIT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def db(home):
    return home / "ottolytics.db"


def q(db, sql, *args):
    """All rows of *sql* against the store at *db*, through a fresh connection."""
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def run_cli(*args, env=None, input=None, timeout=60, **kwargs):
    """Run ``python -m ottolytics ARGS`` in a subprocess; returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ottolytics", *map(str, args)],
                          capture_output=True, env=full_env, input=input, timeout=timeout,
                          **kwargs)


@pytest.fixture
def cli():
    return run_cli


def run_cli_on_a_tty(*args, timeout=60):
    """Run ``python -m ottolytics ARGS`` with its stdout on a pseudo-terminal and
    its stderr piped: (CompletedProcess, what the terminal got, as text)."""
    import pty
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "ottolytics", *map(str, args)],
                              stdout=follower, stderr=subprocess.PIPE, timeout=timeout)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    return proc, b"".join(chunks).decode()


def _immutable(path, on):
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def make_readonly():
    """Make a file or directory really read-only, even for root; undone after the test.

    Not root: chmod. Root: the immutable attribute (chattr +i), which root
    cannot write through either. Where neither holds, the test is skipped
    with the reason rather than faked.
    """
    undo = []

    def apply(path):
        path = Path(path)
        if os.geteuid() != 0:
            mode = path.stat().st_mode
            path.chmod(0o555 if path.is_dir() else 0o444)
            undo.append(lambda: path.chmod(mode))
        elif _immutable(path, True):
            undo.append(lambda: _immutable(path, False))
        else:
            pytest.skip("running as root where chattr +i is not supported: a read-only "
                        "file cannot be made real here")
        probe = path / ".probe" if path.is_dir() else path
        try:
            with open(probe, "a"):
                pass
        except OSError:
            return undo[-1]  # call it to make the path writable again mid-test
        pytest.skip(f"{path} is still writable after making it read-only")

    yield apply
    for fn in reversed(undo):
        fn()
