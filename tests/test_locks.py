"""Waiting for a lock another process holds: an export into a shared dataset
directory and the first copy of a store's mirror wait for the holder, but not
for ever. Past OTTOLYTICS_LOCK_WAIT seconds they stop with one line that names
the lock, the process holding it and what to do (a stuck cron export used to
make every later one wait without end); the mirror's own upkeep (sealing,
compacting) is put off instead, and the answer is still right."""

import fcntl
import os
import subprocess
import sys
import threading
import time

import pytest

import ottolytics
from ottolytics.analyze.sources.parquet import LOCK
from ottolytics.core.errors import Busy
from ottolytics.core.files import FileLock

from conftest import q
from known_history import RUNS, record


def _hold(path, pid_text="4242\n"):
    """Hold the flock of *path* as another process would (a lock on another
    open file description blocks this process too); the file names its holder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, pid_text.encode())
    return fd


def test_a_lock_held_too_long_is_one_line_that_names_its_holder(tmp_path):
    path = str(tmp_path / "x.lock")
    fd = _hold(path)
    try:
        t0 = time.monotonic()
        with pytest.raises(Busy) as err:
            with FileLock(path, wait=0.3, what="exporting into /data/ds"):
                pass
        assert 0.3 <= time.monotonic() - t0 < 5
    finally:
        os.close(fd)
    line = str(err.value)
    assert "\n" not in line and "pid 4242" in line and path in line
    assert "exporting into /data/ds" in line and "OTTOLYTICS_LOCK_WAIT" in line
    assert err.value.exit_code == 1


def test_a_lock_released_in_time_is_taken_and_names_the_new_holder(tmp_path):
    path = str(tmp_path / "x.lock")
    fd = _hold(path)
    threading.Timer(0.3, os.close, (fd,)).start()
    with FileLock(path, wait=30):
        assert open(path).read().strip() == str(os.getpid())


def test_an_export_stops_in_one_line_when_another_holds_the_dataset(db, tmp_path, cli):
    """Before: the second export waited on the lock for as long as it was held."""
    record(db)
    out = tmp_path / "dataset"
    fd = _hold(str(out / LOCK))
    try:
        proc = cli("--db", db, "export", "parquet", out, env={"OTTOLYTICS_LOCK_WAIT": "1"},
                   timeout=60)
    finally:
        os.close(fd)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1 and "pid 4242" in err, err
    assert not (out / "manifest.json").exists()
    again = cli("--db", db, "export", "parquet", out, timeout=120)  # free again: it works
    assert again.returncode == 0, again.stderr


def test_the_first_copy_of_a_mirror_held_elsewhere_stops_in_one_line(db, tmp_path):
    record(db)
    h = ottolytics.open(db)
    lock = os.path.join(h._source.mirrors[0].dir, ".lock")
    h.close()
    fd = _hold(lock)
    code = ("import ottolytics, sys\n"
            "from ottolytics.core.errors import OttolyticsError\n"
            "try:\n    ottolytics.open(sys.argv[1]).runs()\n"
            "except OttolyticsError as exc:\n    print(type(exc).__name__, exc)\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True,
                              text=True, timeout=60,
                              env=dict(os.environ, OTTOLYTICS_LOCK_WAIT="1"))
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Busy ") and "pid 4242" in proc.stdout, proc.stdout
    assert "OTTOLYTICS_MIRROR=off" in proc.stdout
    assert len(proc.stdout.strip().splitlines()) == 1
    assert len(ottolytics.open(db).runs()) > 0  # free again: it works


def test_sealing_a_mirror_held_elsewhere_is_put_off_and_answers_stay_right(
        db, tmp_path, monkeypatch):
    from ottolytics.analyze.sources import mirror as mirror_mod
    record(db)
    h = ottolytics.open(db)
    assert len(h.tasks()) == q(db, "SELECT count(*) FROM tasks")[0][0]
    sealed = len(h._source.mirrors[0].state["segments"])
    monkeypatch.setattr(mirror_mod, "SEAL_ROWS", 0)  # seal at the next refresh
    monkeypatch.setenv("OTTOLYTICS_LOCK_WAIT", "0.2")
    fd = _hold(os.path.join(h._source.mirrors[0].dir, ".lock"))
    try:
        record(db, range(RUNS, 2 * RUNS))  # more runs: the next question reads them and seals
        assert len(h.tasks()) == q(db, "SELECT count(*) FROM tasks")[0][0]
        assert len(h._source.mirrors[0].state["segments"]) == sealed  # put off
    finally:
        os.close(fd)
    assert len(h.tasks()) == q(db, "SELECT count(*) FROM tasks")[0][0]
    h.close()
