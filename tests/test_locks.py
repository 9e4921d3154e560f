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


def _parquet_files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".parquet"))


def test_sealing_a_mirror_held_elsewhere_is_put_off_and_answers_stay_right(
        db, tmp_path, monkeypatch):
    """Put off: no wait, nothing written (a review found each question wrote the
    live rows' files again and left them), and sealed once the lock is free."""
    from ottolytics.analyze.sources import mirror as mirror_mod
    record(db)
    h = ottolytics.open(db)
    assert len(h.tasks()) == q(db, "SELECT count(*) FROM tasks")[0][0]
    mirror = h._source.mirrors[0]
    sealed, files = len(mirror.state["segments"]), _parquet_files(mirror.dir)
    monkeypatch.setattr(mirror_mod, "SEAL_ROWS", 0)  # seal at each refresh
    fd = _hold(os.path.join(mirror.dir, ".lock"))
    try:
        for k in range(3):  # more runs each time: each question reads them and would seal
            record(db, range((k + 1) * RUNS, (k + 2) * RUNS))
            t0 = time.monotonic()
            assert len(h.tasks()) == q(db, "SELECT count(*) FROM tasks")[0][0]
            assert time.monotonic() - t0 < 5  # the question did not wait for the lock
            assert len(mirror.state["segments"]) == sealed  # put off
            assert _parquet_files(mirror.dir) == files  # and nothing written
    finally:
        os.close(fd)
    record(db, range(4 * RUNS, 5 * RUNS))
    assert len(h.tasks()) == q(db, "SELECT count(*) FROM tasks")[0][0]
    assert len(mirror.state["segments"]) > sealed  # the lock free: sealed
    h.close()


def test_a_lock_that_is_a_symbolic_link_is_refused_and_its_target_kept(tmp_path):
    """A review found the pid written through a link planted at the lock's path
    (a shared, group-writable dataset directory): the target was emptied."""
    from ottolytics.core.errors import Refused
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    lock = tmp_path / "ds" / LOCK
    lock.parent.mkdir()
    lock.symlink_to(victim)
    with pytest.raises(Refused) as err:
        with FileLock(str(lock)):
            pass
    assert "symbolic link" in str(err.value) and "\n" not in str(err.value)
    assert victim.read_text() == "precious data"


def test_a_lock_file_with_another_name_still_locks_but_is_not_written(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    lock = tmp_path / "x.lock"
    os.link(victim, lock)
    with FileLock(str(lock)):
        pass
    assert victim.read_text() == "precious data"


def test_an_interrupted_wait_closes_its_descriptor(tmp_path):
    """A review found a Ctrl-C during the wait left the lock file open."""
    import signal

    path = str(tmp_path / "x.lock")
    fd = _hold(path)

    def interrupt(*_):
        raise KeyboardInterrupt
    before = len(os.listdir("/proc/self/fd"))
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            with FileLock(path, wait=30):
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(fd)
    assert len(os.listdir("/proc/self/fd")) == before - 1  # (less the held one)


def test_the_holder_pid_goes_with_the_lock(tmp_path):
    path = str(tmp_path / "x.lock")
    with FileLock(path):
        assert open(path).read().strip() == str(os.getpid())
    assert open(path).read() == ""  # no stale pid named to the next that waits


def test_a_first_copy_made_by_a_child_and_held_elsewhere_is_busy(db, tmp_path, monkeypatch):
    """In a recording process the first copy of a big store is made by a child;
    the lock held elsewhere reached the caller as a ReadError (a review)."""
    from ottolytics.analyze.sources import mirror as mirror_mod
    from ottolytics.record.recorder import Recorder
    record(db)
    rec = Recorder(db)
    rec.run(project="web", uid="now").start()  # this process has the store open
    monkeypatch.setattr(mirror_mod, "BULK_TASKS", 0)
    monkeypatch.setenv("OTTOLYTICS_LOCK_WAIT", "0.5")
    real, held = mirror_mod._copy_in_child, []

    def child(path, root):  # another process takes the lock just before the child
        h_dir = os.path.join(root, mirror_mod.Mirror(path, root).dir)
        held.append(_hold(os.path.join(h_dir, ".lock")))
        return real(path, root)
    monkeypatch.setattr(mirror_mod, "_copy_in_child", child)
    h = ottolytics.open(db)
    try:
        with pytest.raises(Busy) as err:
            h.runs()
    finally:
        for fd in held:
            os.close(fd)
        h.close()
        rec.close()
    line = str(err.value)
    assert "pid 4242" in line and "\n" not in line and "OTTOLYTICS_MIRROR=off" in line
    assert held  # the child's path was taken


def test_the_mcp_server_answers_busy_in_one_line(db, tmp_path, monkeypatch):
    """A review found Busy reached an MCP client as a bare tool crash."""
    import anyio
    from mcp.server.mcpserver.exceptions import ToolError
    from ottolytics.mcp.server import build_server
    record(db)
    h = ottolytics.open(db)
    lock = os.path.join(h._source.mirrors[0].dir, ".lock")
    h.close()
    monkeypatch.setenv("OTTOLYTICS_LOCK_WAIT", "0.3")
    fd = _hold(lock)
    try:
        server = build_server(db)
        with pytest.raises(ToolError) as err:
            anyio.run(lambda: server.call_tool("task_stats", {"task": "lint"}))
    finally:
        os.close(fd)
    assert "pid 4242" in str(err.value) and "\n" not in str(err.value)
