import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import q, run_cli
from ottolytics.record.shim import FORWARDED

PY = sys.executable




def shim(*cmd, **kw):
    return run_cli("exec", *kw.pop("opts", ()), "--", *cmd, **kw)


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_code_is_the_childs(db, code):
    proc = shim(PY, "-c", f"import sys; sys.exit({code})", opts=("--task", "t"))
    assert proc.returncode == code
    expected = "success" if code == 0 else "failed"
    assert q(db, "SELECT name, status, exit_code, signal FROM tasks") == [
        ("t", expected, code, None)]
    assert q(db, "SELECT status FROM runs") == [(expected,)]


def test_child_killed_by_signal_exits_128_plus_n(db):
    proc = shim(PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert proc.returncode == 128 + 9
    assert q(db, "SELECT status, exit_code, signal FROM tasks") == [("failed", None, 9)]


def test_command_not_found_is_127_and_recorded(db):
    proc = shim("definitely-not-a-command-xyz")
    assert proc.returncode == 127
    assert b"definitely-not-a-command-xyz" in proc.stderr
    assert q(db, "SELECT status, exit_code FROM tasks") == [("failed", 127)]


def test_output_passes_through_unchanged_and_is_logged(db, home):
    payload = bytes(range(256)) * 64 + b"no newline at end"
    code = ("import sys; sys.stdout.buffer.write(bytes(range(256)) * 64 + b'no newline at end');"
            "sys.stdout.flush(); sys.stderr.buffer.write(b'E' * 5000 + b'last words')")
    proc = shim(PY, "-c", code, opts=("--project", "p", "--task", "gen"))
    assert proc.returncode == 0
    assert proc.stdout == payload
    assert proc.stderr.endswith(b"last words")
    out_path, err_path, script, run_dir = q(
        db, "SELECT stdout_path, stderr_path, script_path, run_dir FROM tasks, runs")[0]
    # Under OTTO_HOME: the run directory relative to it, task files relative to that.
    assert not os.path.isabs(run_dir) and out_path == "tasks/gen/stdout.log"
    assert (home / run_dir / out_path).read_bytes() == payload
    assert (home / run_dir / err_path).read_bytes() == b"E" * 5000 + b"last words"
    assert (home / run_dir / script).read_text().startswith(PY)
    tail = q(db, "SELECT tail FROM task_stderr")[0][0]
    assert tail.endswith("last words") and len(tail) == 4096
    assert q(db, "SELECT p.name, r.size_bytes > 20000 FROM runs r JOIN projects p "
                 "ON p.id = r.project_id") == [("p", 1)]


def test_rusage_is_recorded(db):
    busy = "x = bytearray(50_000_000); t = __import__('time').process_time()\n" \
           "while __import__('time').process_time() - t < 0.3: pass"
    assert shim(PY, "-c", busy).returncode == 0
    cpu_user, cpu_sys, rss = q(db, "SELECT cpu_user_s, cpu_system_s, peak_rss_bytes FROM tasks")[0]
    assert cpu_user > 0 and cpu_sys >= 0
    assert cpu_user + cpu_sys >= 0.25  # the child spun for 0.3 s of CPU
    assert rss >= 50_000_000


def _deliverable_signals():
    # A signal blocked in the mask we inherit (CI's runner blocked SIGINT) stays
    # blocked in the shim and in the command: neither could react to it, which is
    # what the command would do without the shim too. These tests are about
    # forwarding, so the shim starts with the signals it forwards deliverable.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)


def _spawn_shim(db, *cmd, opts=()):
    return subprocess.Popen([PY, "-m", "ottolytics", "exec", *opts, "--", *cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_deliverable_signals)


def _wait_for(predicate, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _log_path(db, home, column="stdout_path"):
    def find():
        try:
            rows = q(db, f"SELECT t.{column}, r.run_dir FROM tasks t JOIN runs r "
                         "ON r.id = t.run_id")
        except sqlite3.Error:
            return None
        return home / rows[0][1] / rows[0][0] if rows and rows[0][0] else None
    return _wait_for(find)


def test_logs_are_tailable_while_the_command_runs(db, home):
    code = ("import time, sys\nfor i in range(3):\n"
            "    print(f'step {i}', flush=True); print(f'warn {i}', file=sys.stderr, flush=True)\n"
            "    time.sleep(0.4)\ntime.sleep(30)")
    proc = _spawn_shim(db, PY, "-c", code)
    try:
        out = _log_path(db, home)
        err = _log_path(db, home, "stderr_path")
        _wait_for(lambda: out.exists() and "step 2" in out.read_text())
        assert "warn 2" in err.read_text()
        assert proc.poll() is None, "the command is still running while we read its log"
        assert q(db, "SELECT status FROM tasks") == [("running",)]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_and_the_task_is_interrupted(db, home, sig):
    code = ("import signal, sys, time\n"
            "def h(n, f):\n    print(f'child got {n}', flush=True); sys.exit(70)\n"
            "signal.signal(signal.SIGTERM, h); signal.signal(signal.SIGINT, h)\n"
            "print('ready', flush=True)\ntime.sleep(30)")
    proc = _spawn_shim(db, PY, "-c", code)
    out = _log_path(db, home)
    _wait_for(lambda: out.exists() and "ready" in out.read_text())
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=20)
    assert f"child got {int(sig)}".encode() in stdout
    assert proc.returncode == 70
    status, reason = q(db, "SELECT t.status, x.reason FROM tasks t JOIN transitions x "
                           "ON x.task_id = t.id AND x.to_status = t.status")[0]
    assert status == "interrupted" and sig.name in reason
    assert q(db, "SELECT status FROM runs") == [("interrupted",)]


def test_kill_9_of_the_shim_leaves_an_interrupted_run_after_reopen(db, home, cli):
    proc = _spawn_shim(db, PY, "-c", "import time; print('go', flush=True); time.sleep(60)")
    out = _log_path(db, home)
    _wait_for(lambda: out.exists() and "go" in out.read_text())
    proc.kill()
    proc.wait()
    # The orphaned child keeps sleeping; the shim (recording process) is gone.
    assert q(db, "SELECT status FROM runs") == [("running",)]
    # history only reads: it shows the stored status and says the recorder is gone
    hist = cli("history", "--json")
    assert hist.returncode == 0 and json.loads(hist.stdout)[0]["status"] == "running"
    assert b"is gone" in hist.stderr and b"doctor" in hist.stderr
    assert q(db, "SELECT status FROM runs") == [("running",)]
    cli("doctor")   # marks it, as the next recording would
    hist = cli("history", "--json")
    assert json.loads(hist.stdout)[0]["status"] == "interrupted" and hist.stderr == b""
    assert q(db, "SELECT status FROM tasks") == [("interrupted",)]
    assert q(db, "PRAGMA integrity_check") == [("ok",)]
    reason = q(db, "SELECT reason FROM transitions WHERE task_id IS NULL "
                   "AND to_status = 'interrupted'")[0][0]
    assert "is gone" in reason


def test_run_start_exec_run_end(db, cli):
    start = cli("run", "start", "--project", "web", "--param", "branch=main")
    assert start.returncode == 0
    run_id = start.stdout.decode().strip()
    assert cli("exec", "--task", "lint", "--run", run_id, "--", PY, "-c", "pass").returncode == 0
    env = {"OTTOLYTICS_RUN_ID": run_id}
    assert cli("exec", "--task", "test", "--", PY, "-c", "raise SystemExit(4)",
               env=env).returncode == 4
    assert cli("exec", "--task", "test", "--", PY, "-c", "pass", env=env).returncode == 0
    end = cli("run", "end", run_id)
    assert end.returncode == 0 and end.stdout.decode().strip() == "success"
    assert q(db, "SELECT uid, status FROM runs") == [(run_id, "success")]
    assert q(db, "SELECT name, attempt, status FROM tasks ORDER BY id") == [
        ("lint", 1, "success"), ("test", 1, "failed"), ("test", 2, "success")]
    assert q(db, "SELECT key, value FROM run_params") == [("branch", "main")]
    # Retried task logs do not overwrite each other.
    paths = [r[0] for r in q(db, "SELECT stdout_path FROM tasks WHERE name = 'test'")]
    assert len(set(paths)) == 2


def test_run_end_with_status_override_and_unknown_run(db, cli):
    run_id = cli("run", "start").stdout.decode().strip()
    assert cli("run", "end", run_id, "--status", "failed").stdout.decode().strip() == "failed"
    missing = cli("run", "end", "nope")
    assert missing.returncode == 1 and b"run nope: not found" in missing.stderr
    bad = cli("run", "start", "--param", "novalue")
    assert bad.returncode == 2 and b"KEY=VALUE" in bad.stderr


def test_exec_with_unknown_run_records_a_run_of_its_own(db, cli):
    cli("run", "start").check_returncode()
    proc = cli("exec", "--run", "missing-run", "--", PY, "-c", "pass")
    assert proc.returncode == 0
    assert b"no such run" in proc.stderr
    assert len(q(db, "SELECT id FROM runs")) == 2


def test_exec_without_a_command(cli):
    proc = cli("exec", "--")
    assert proc.returncode == 2 and b"no command given" in proc.stderr


def test_console_entry_exits_fast_with_the_code_and_everything_recorded(db):
    code = ("import sys; sys.argv = ['ottolytics', 'exec', '--task', 'e', '--', 'sh', '-c', "
            "'echo out; echo err >&2; exit 3']; from ottolytics.cli.main import entry; entry()")
    proc = subprocess.run([PY, "-c", code], capture_output=True, timeout=30)
    assert proc.returncode == 3
    assert proc.stdout == b"out\n" and proc.stderr == b"err\n"
    assert q(db, "SELECT name, status, exit_code FROM tasks") == [("e", "failed", 3)]
    assert q(db, "SELECT status FROM runs") == [("failed",)]
    assert q(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_command_line_that_is_not_utf8_is_recorded_exactly(db, home):
    """Undecodable bytes in argv: recorded, args kept byte for byte, names shown escaped."""
    proc = subprocess.run([PY, "-m", "ottolytics", "exec", "--project", b"p\xff", "--",
                           "echo", b"caf\xe9"], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"caf\xe9\n"
    assert b"warning" not in proc.stderr, proc.stderr
    [(project, args, task, script, run_dir)] = q(
        db, "SELECT p.name, r.args, t.name, t.script_path, r.run_dir FROM runs r "
            "JOIN projects p ON p.id = r.project_id JOIN tasks t ON t.run_id = r.id")
    assert project == "p\\xff" and task == "echo"
    assert [os.fsencode(a) for a in json.loads(args)] == [b"echo", b"caf\xe9"]
    assert (home / run_dir / script).read_bytes() == b"echo 'caf\xe9'\n"
    assert q(db, "SELECT status FROM runs") == [("success",)]


def _hold_exclusive(db):
    """Another process's view: an EXCLUSIVE lock with an open write transaction."""
    from ottolytics.store.connection import Store
    Store.open(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE IF NOT EXISTS held(x)")
    return holder


def test_a_locked_store_neither_delays_the_command_nor_counts_in_its_duration(db, cli):
    holder = _hold_exclusive(db)
    try:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [PY, "-m", "ottolytics", "exec", "--task", "quick", "--", PY, "-c",
             "print('hello', flush=True); raise SystemExit(5)"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = proc.stdout.readline()
        first_after = time.monotonic() - t0
        _rest, err = proc.communicate(timeout=60)
        total = time.monotonic() - t0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert first == b"hello\n" and first_after < 2.0, (first, first_after)
    assert proc.returncode == 5
    assert total < 4.0, total  # the default busy timeout is 5 s, tried 4 times before
    assert b"spooled" in err and err.count(b"ottolytics: warning") == 1, err
    assert q(db, "SELECT count(*) FROM tasks") == [(0,)]
    assert cli("doctor").returncode == 0  # the next open replays the spool
    [(status, code, duration)] = q(db, "SELECT status, exit_code, finished_at - started_at "
                                       "FROM tasks WHERE name = 'quick'")
    assert (status, code) == ("failed", 5) and duration < 1.0, duration
    [(run_duration,)] = q(db, "SELECT finished_at - started_at FROM runs")
    assert run_duration < 1.0


def test_sigterm_while_the_shim_waits_for_the_store_does_not_start_the_command(
        db, cli, tmp_path):
    marker = tmp_path / "started"
    holder = _hold_exclusive(db)
    try:
        proc = subprocess.Popen(
            [PY, "-m", "ottolytics", "exec", "--task", "never", "--", "touch", str(marker)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "OTTOLYTICS_EXEC_WAIT": "4"})
        time.sleep(1.5)  # started, and waiting for the lock
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 143, err
    assert not marker.exists(), "the command must not start after SIGTERM"
    assert cli("doctor").returncode == 0
    [(status, reason)] = q(db, "SELECT t.status, x.reason FROM tasks t JOIN transitions x "
                               "ON x.task_id = t.id AND x.to_status = t.status")
    assert status == "interrupted" and "SIGTERM" in reason and "before" in reason
    assert q(db, "SELECT status FROM runs") == [("interrupted",)]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs; skipped where mounting is not permitted."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_keeps_what_fits_of_the_logs_and_says_so(tmp_path, tiny_disk):
    # the store on a disk with room, its runs' logs (beside it) on the full one
    db = tmp_path / "elsewhere.db"
    (tiny_disk / "ottolytics").mkdir()
    (tmp_path / "ottolytics").symlink_to(tiny_disk / "ottolytics")
    code = ("import sys; sys.stdout.write('o' * 200000); sys.stdout.flush(); "
            "sys.stderr.write('e' * 200000); sys.exit(4)")
    proc = run_cli("--db", db, "exec", "--task", "big", "--", PY, "-c", code)
    assert proc.returncode == 4
    assert proc.stdout == b"o" * 200000, "the terminal gets everything"
    assert proc.stderr.startswith(b"e" * 200000)
    warnings = [l for l in proc.stderr.decode().splitlines() if "ottolytics: warning" in l]
    [run_dir, out_path, err_path] = q(db, "SELECT r.run_dir, t.stdout_path, t.stderr_path "
                                          "FROM tasks t JOIN runs r ON r.id = t.run_id")[0]
    out_log = (tiny_disk / run_dir / out_path).read_bytes()
    err_log = (tiny_disk / run_dir / err_path).read_bytes()
    assert len(out_log) > 0 and out_log == b"o" * len(out_log), "what fitted is kept"
    assert err_log == b"e" * len(err_log)
    incomplete = [n for n, log in (("stdout.log", out_log), ("stderr.log", err_log))
                  if len(log) < 200000]
    assert incomplete
    for name in incomplete:
        assert any(name in w and "No space left" in w for w in warnings), warnings
    [(status, reason)] = q(db, "SELECT t.status, x.reason FROM tasks t JOIN transitions x "
                               "ON x.task_id = t.id AND x.to_status = t.status")
    assert status == "failed" and all(n in reason for n in incomplete), reason
    assert f"kept {len(out_log)} of 200000 bytes" in reason
    assert q(db, "SELECT tail FROM task_stderr") == [("e" * 4096,)]


@pytest.mark.parametrize("cmd", [["true"], ["sleep", "1"]])
def test_peak_rss_is_the_commands_own_not_the_shims(db, cmd):
    """Within 10 % of what /usr/bin/time reports for the same command."""
    if not os.access("/usr/bin/time", os.X_OK):
        pytest.skip("/usr/bin/time is not installed (apt-get install time)")
    reference = []  # /usr/bin/time's own figure for `true` varies by ~25 % run to run
    for _ in range(7 if cmd == ["true"] else 3):
        done = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True)
        reference.append(int(done.stderr.split()[-1]) * 1024)
    for _ in range(2):
        assert shim(*cmd).returncode == 0
    recorded = [r for (r,) in q(db, "SELECT peak_rss_bytes FROM tasks")]
    for rss in recorded:
        assert 0.9 * min(reference) <= rss <= 1.1 * max(reference), (recorded, reference)


def test_processes_the_command_orphans_are_reaped_not_left_zombies(db):
    """The shim adopts what the command orphans (it is a subreaper): no zombies pile up."""
    proc = _spawn_shim(db, "sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.1 &); done; "
                                       "sleep 0.3; echo ready; sleep 3")

    def zombies_of(pid):
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    data = open(f"/proc/{entry}/stat", "rb").read()
                except OSError:
                    continue
                fields = data[data.rfind(b")") + 2:].split()
                if fields[0] == b"Z" and int(fields[1]) == pid:
                    found.append(int(entry))
        return found

    try:
        assert proc.stdout.readline() == b"ready\n"  # the orphans have ended by now
        time.sleep(0.6)  # the shim looks for them every 0.2 s
        assert proc.poll() is None
        assert zombies_of(proc.pid) == []
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_lock_released_while_the_command_runs_leaves_no_trace(db):
    """Spooled at the start, the run lands in the store at the end: nothing to say."""
    from ottolytics.store import spool
    holder = _hold_exclusive(db)
    released = False
    try:
        proc = subprocess.Popen(
            [PY, "-m", "ottolytics", "exec", "--task", "brief", "--", "sh", "-c",
             "echo started; sleep 1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline() == b"started\n"
        holder.execute("ROLLBACK")
        holder.close()
        released = True
        _out, err = proc.communicate(timeout=60)
    finally:
        if not released:
            holder.execute("ROLLBACK")
            holder.close()
    assert proc.returncode == 0
    assert b"warning" not in err, err
    assert q(db, "SELECT name, status FROM tasks") == [("brief", "success")]
    assert q(db, "SELECT status FROM runs") == [("success",)]
    assert not spool.pending_files(db)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_store_outside_otto_home_keeps_its_runs_logs_beside_it(home, tmp_path, how):
    """A new user's report: with the store elsewhere (--db or OTTOLYTICS_DB), the
    shim wrote the logs under OTTO_HOME but stored a path relative to it, and
    readers resolve against the store's directory: logs, grep and info found
    nothing. The logs now go beside the store, where the read rule says."""
    import json as _json
    store = tmp_path / "elsewhere" / "x.db"
    store.parent.mkdir()
    env = {"OTTOLYTICS_DB": str(store)} if how == "env" else {}
    db = [] if how == "env" else ["--db", store]
    run = run_cli(*db, "run", "start", "--project", "p", env=env)
    uid = run.stdout.decode().strip()
    assert run.returncode == 0 and uid
    done = run_cli(*db, "exec", "--task", "a", "--", "sh", "-c", "echo viaflag; echo oops >&2",
                   env=dict(env, OTTOLYTICS_RUN_ID=uid))
    assert done.returncode == 0 and b"viaflag" in done.stdout
    assert run_cli(*db, "run", "end", uid, env=env).returncode == 0
    alone = run_cli(*db, "exec", "--task", "b", "--", "echo", "alone", env=env)
    assert alone.returncode == 0
    assert (store.parent / "ottolytics" / "runs" / uid).is_dir()
    assert not (home / "ottolytics" / "runs").exists()
    out = run_cli(*db, "logs", uid, "a", "--stream", "stdout", env=env)
    assert out.returncode == 0 and b"viaflag" in out.stdout, out
    assert b"alone" in run_cli(*db, "logs", "latest", "--stream", "stdout", env=env).stdout
    assert run_cli(*db, "grep", "oops", env=env).returncode == 0
    info = _json.loads(run_cli(*db, "info", uid, "--json", env=env).stdout)
    assert os.path.isfile(info["tasks"][0]["stdout_path"])
    assert info["size_bytes"] and info["size_bytes"] > 0


def test_run_start_and_end_on_a_locked_store_do_not_hold_the_script_up(db, cli):
    """A new user's report: `run start` blocked the script 8-20 s on a locked
    store (the Recorder's default wait), and `run end` 8 s, where exec spools at
    once. They now wait as exec does, and what they spooled lands later."""
    cli("exec", "--", "true")  # the store exists
    holder = _hold_exclusive(db)
    try:
        t0 = time.monotonic()
        start = cli("run", "start", "--project", "script")
        took_start = time.monotonic() - t0
        uid = start.stdout.decode().strip()
        t0 = time.monotonic()
        end = cli("run", "end", uid)
        took_end = time.monotonic() - t0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert start.returncode == 0 and uid, start
    assert end.returncode == 0, end
    assert took_start < 4.0 and took_end < 4.0, (took_start, took_end)
    assert cli("doctor").returncode == 0  # replays the spool
    [(status, duration)] = q(db, "SELECT status, finished_at - started_at FROM runs "
                                 "WHERE uid = ?", uid)
    assert status == "success" and duration < 4.0, (status, duration)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_store_path_that_is_no_file_is_refused_and_nothing_made_beside_it(tmp_path, kind):
    """A new user's report: OTTOLYTICS_DB=/dev/null made exec write
    /dev/null-journal, /dev/null.spool/ and /dev/ottolytics/runs/... A store path
    naming something that is not a regular file is refused in one line; the
    command still runs and keeps its exit code; nothing is created beside it;
    the Recorder API refuses it too."""
    folder = tmp_path / "place"
    folder.mkdir()
    target = folder / "store"
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    before = sorted(os.listdir(folder))
    proc = run_cli("exec", "--", sys.executable, "-c", "raise SystemExit(3)",
                   env={"OTTOLYTICS_DB": str(target)}, timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 3, err
    assert len(err.strip().splitlines()) == 1 and "not a regular file" in err, err
    assert sorted(os.listdir(folder)) == before
    if kind == "directory":
        assert os.listdir(target) == []
    proc = run_cli("run", "start", "--project", "p", env={"OTTOLYTICS_DB": str(target)},
                   timeout=30)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert "not a regular file" in err and sorted(os.listdir(folder)) == before
    from ottolytics.core.errors import StoreError
    from ottolytics.record.recorder import Recorder
    with pytest.raises(StoreError, match="not a regular file"):
        Recorder(target)
